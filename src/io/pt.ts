// PyTorch checkpoints (.pt/.pth), as written by torch.save since 1.6: a ZIP archive whose
// records all sit in one folder named after the file stem:
//
//   <stem>/data.pkl     pickle of the object; tensors are _rebuild_tensor_v2(storage, offset,
//                       shape, strides, ...) with storage = persistent id ('storage', type, key, ...)
//   <stem>/data/<key>   raw little-endian bytes of storage <key>, 64-byte aligned in the archive
//   <stem>/version      "3"
//   <stem>/byteorder    "little" (torch >= 2.1)
//
// Reading unpickles data.pkl with the allow-listed, non-executing VM (see torch-globals.ts),
// so a checkpoint cannot run code. The legacy non-ZIP format is read too (pt-legacy.ts).
// Writing produces the same layout for a flat state_dict, atomically.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from './atomic-write.js';
import { fileError, fileSource } from './byte-source.js';
import { elementSize } from './dtypes.js';
import { unpickle } from './pickle.js';
import { pickleStateDict, type PickledTensor } from './pickle-writer.js';
import { looksLikeLegacyPickle, looksLikeTar, readLegacyCheckpoint } from './pt-legacy.js';
import {
  StorageRegistry,
  encodeForWriting,
  isNamedTensor,
  toCheckpointValue,
  type CheckpointDict,
  type CheckpointValue,
  type NamedTensor,
  type StateDict,
} from './tensor-data.js';
import { REFUSAL_REASON, resolveTorchGlobal } from './torch-globals.js';
import { ZipReader, zipChunks, type ZipWriteEntry } from './zip.js';

export type { CheckpointDict, CheckpointValue, NamedTensor, StateDict } from './tensor-data.js';
export { isNamedTensor } from './tensor-data.js';

const ZIP_MAGIC = [0x50, 0x4b, 0x03, 0x04];

/** Reads any torch.save file: tensors become NamedTensors, dicts become Maps. */
export function readCheckpoint(file: string): CheckpointValue {
  const source = fileSource(file);
  try {
    if (source.size === 0) throw fileError(file, 'file is empty (expected a torch.save checkpoint)');
    const head = source.read(0, Math.min(source.size, 512));
    if (ZIP_MAGIC.every((b, i) => head[i] === b)) return readZipCheckpoint(ZipReader.open(source));
    if (looksLikeLegacyPickle(head)) return readLegacyCheckpoint(fs.readFileSync(file), file);
    if (looksLikeTar(head)) {
      throw fileError(
        file,
        'is a tar-based checkpoint from PyTorch < 0.4, which is not supported; re-save it with a newer torch',
      );
    }
    throw fileError(
      file,
      'not a PyTorch checkpoint (expected a ZIP archive written by torch.save, or the legacy pickle format)',
    );
  } finally {
    source.close();
  }
}

export interface ReadStateDictOptions {
  /**
   * Which sub-dict holds the tensors, for checkpoints like {'model': ..., 'optimizer': ...}:
   * a key, or a path of keys for deeper nesting. Without it, a dict of tensors at the top level
   * is used, else the first of 'state_dict', 'model_state_dict', 'model', 'net' that is one.
   */
  readonly key?: string | readonly string[];
}

/** Reads a state_dict (name -> tensor) from a torch.save file. */
export function readStateDict(file: string, options: ReadStateDictOptions = {}): StateDict {
  return pickStateDict(readCheckpoint(file), options.key, file);
}

const USUAL_STATE_DICT_KEYS = ['state_dict', 'model_state_dict', 'model', 'net'];

/** Picks the dict of tensors at `key` (see ReadStateDictOptions.key) out of a checkpoint. */
export function pickStateDict(
  checkpoint: CheckpointValue,
  key?: string | readonly string[],
  source = 'checkpoint',
): StateDict {
  if (!(checkpoint instanceof Map)) throw fileError(source, 'top level is not a dict, so it holds no state_dict');
  if (key !== undefined) {
    const keys = typeof key === 'string' ? [key] : key;
    let node: CheckpointValue = checkpoint;
    for (const [i, k] of keys.entries()) {
      const next: CheckpointValue | undefined = node instanceof Map ? node.get(k) : undefined;
      if (next === undefined) {
        const where = keys.slice(0, i).join('/') || 'top level';
        const available = node instanceof Map ? [...node.keys()].join(', ') : 'not a dict';
        throw fileError(source, `no key '${k}' in ${where} (keys: ${available})`);
      }
      node = next;
    }
    return asStateDict(node, keys.join('/'), source);
  }
  if (isTensorDict(checkpoint)) return asStateDict(checkpoint, 'top level', source);
  for (const candidate of USUAL_STATE_DICT_KEYS) {
    const value = checkpoint.get(candidate);
    if (value instanceof Map && isTensorDict(value)) return asStateDict(value, candidate, source);
  }
  throw fileError(
    source,
    `top-level dict is not a state_dict (keys: ${[...checkpoint.keys()].join(', ')}); choose one with { key: '...' }`,
  );
}

function isTensorDict(dict: CheckpointDict): boolean {
  return [...dict.values()].every((v) => isNamedTensor(v));
}

function asStateDict(value: CheckpointValue, where: string, source: string): StateDict {
  if (!(value instanceof Map)) throw fileError(source, `'${where}' is not a dict of tensors`);
  const out: StateDict = new Map();
  for (const [name, tensor] of value) {
    if (!isNamedTensor(tensor)) throw fileError(source, `'${where}' entry '${name}' is not a tensor`);
    out.set(name, tensor);
  }
  return out;
}

function readZipCheckpoint(zip: ZipReader): CheckpointValue {
  const file = zip.sourceName;
  const pickleName = zip.names().find((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (!pickleName) {
    const hint = zip.names().some((n) => n.endsWith('/constants.pkl'))
      ? ' (a TorchScript archive? use torch.save files)'
      : '';
    throw fileError(file, `ZIP archive has no <folder>/data.pkl record, so it was not written by torch.save${hint}`);
  }
  const folder = pickleName.slice(0, -'data.pkl'.length);
  if (zip.has(`${folder}byteorder`)) {
    const order = new TextDecoder().decode(zip.read(`${folder}byteorder`)).trim();
    if (order !== 'little') throw fileError(file, `byte order '${order}' is not supported (expected 'little')`);
  }
  const registry = new StorageRegistry(file);
  const { value } = unpickle(zip.read(pickleName), {
    source: file,
    resolveGlobal: resolveTorchGlobal,
    refusalReason: REFUSAL_REASON,
    persistentLoad: (pid) => registry.load(pid),
  });
  return toCheckpointValue(
    value,
    (ref) => {
      const record = `${folder}data/${ref.key}`;
      if (!zip.has(record)) throw fileError(file, `missing storage record '${record}'`);
      const bytes = zip.read(record);
      const expected = ref.numel * elementSize(ref.dtype);
      if (bytes.length < expected) {
        throw fileError(
          file,
          `storage '${ref.key}' declares ${ref.numel} ${ref.dtype} elements (${expected} bytes), ` +
            `but its record '${record}' has only ${bytes.length} bytes`,
        );
      }
      return bytes;
    },
    file,
  );
}

// ---------------------------------------------------------------------------------------------
// Writing

/**
 * Writes `tensors` as torch.save(state_dict) would, so `torch.load(file, weights_only=True)`
 * and `module.load_state_dict` accept it. dtype 'float64' is written as float64, integer and
 * bool dtypes as int64 (from `integers` when present), everything else as float32. The file
 * is replaced atomically: a failure leaves any previous file untouched and no partial file.
 */
export function writeStateDict(file: string, tensors: StateDict | Iterable<readonly [string, NamedTensor]>): void {
  const records: ZipWriteEntry[] = [];
  const pickled: PickledTensor[] = [];
  const stem = archiveFolderName(file);
  for (const [name, tensor] of tensors) {
    const key = String(pickled.length);
    const { dtype, bytes } = encodeForWriting(file, name, tensor);
    const storageClass = STORAGE_CLASS[dtype];
    pickled.push({ name, storageClass, storageKey: key, storageNumel: tensor.data.length, shape: tensor.shape });
    records.push({ name: `${stem}/data/${key}`, data: bytes });
  }
  const text = (s: string): Uint8Array => new TextEncoder().encode(s);
  const entries: ZipWriteEntry[] = [
    { name: `${stem}/data.pkl`, data: pickleStateDict(pickled) },
    { name: `${stem}/byteorder`, data: text('little') },
    ...records,
    { name: `${stem}/version`, data: text('3\n') },
  ];
  writeFileAtomic(file, () => zipChunks(entries));
}

const STORAGE_CLASS = { float32: 'FloatStorage', float64: 'DoubleStorage', int64: 'LongStorage' } as const;

/** torch.save names the archive folder after the file name without its extension. */
function archiveFolderName(file: string): string {
  const base = path.basename(file);
  const dot = base.lastIndexOf('.');
  const stem = dot > 0 ? base.slice(0, dot) : base;
  return stem.length > 0 ? stem : 'archive';
}
