// The pre-1.6 torch.save format (still written with _use_new_zipfile_serialization=False):
// five pickles back to back, then raw storage data.
//
//   pickle 1: magic number 0x1950a86a20f9469cfc6c     pickle 2: protocol version 1001
//   pickle 3: sys_info {'little_endian': ..., 'type_sizes': {...}}
//   pickle 4: the object, storages as persistent ids ('storage', type, key, location, numel, view)
//   pickle 5: list of storage keys, in the order their data follows
//   then per key: int64 element count, then count * element_size bytes of data.
//
// The even older tar-based format (PyTorch < 0.4) is recognised and refused.

import { fileError } from './byte-source.js';
import { elementSize } from './dtypes.js';
import { PyDict, unpickle, type PyValue } from './pickle.js';
import { StorageRegistry, toCheckpointValue, type CheckpointValue } from './tensor-data.js';
import { REFUSAL_REASON, resolveTorchGlobal } from './torch-globals.js';

const LEGACY_MAGIC = 0x1950a86a20f9469cfc6cn;
const LEGACY_PROTOCOL_VERSION = 1001;

/** True if `bytes` starts like a legacy torch.save file (a pickle of the magic number). */
export function looksLikeLegacyPickle(bytes: Uint8Array): boolean {
  return bytes[0] === 0x80 && bytes[2] === 0x8a; // PROTO n, LONG1
}

export function looksLikeTar(bytes: Uint8Array): boolean {
  return bytes.length >= 262 && new TextDecoder().decode(bytes.subarray(257, 262)) === 'ustar';
}

export function readLegacyCheckpoint(bytes: Uint8Array, source: string): CheckpointValue {
  const registry = new StorageRegistry(source);
  let pos = 0;
  const next = (persistent: boolean): PyValue => {
    const result = unpickle(bytes, {
      source,
      start: pos,
      resolveGlobal: resolveTorchGlobal,
      refusalReason: REFUSAL_REASON,
      persistentLoad: persistent ? (pid) => registry.load(pid) : undefined,
    });
    pos = result.end;
    return result.value;
  };

  const magic = next(false);
  if (typeof magic !== 'bigint' || magic !== LEGACY_MAGIC) {
    throw fileError(source, 'not a PyTorch checkpoint (legacy format magic number missing)');
  }
  const version = next(false);
  if (version !== LEGACY_PROTOCOL_VERSION) {
    throw fileError(source, `unsupported legacy torch.save protocol version ${String(version)} (expected 1001)`);
  }
  const sysInfo = next(false);
  if (sysInfo instanceof PyDict && sysInfo.get('little_endian') === false) {
    throw fileError(source, 'big-endian checkpoints are not supported');
  }
  const root = next(true);
  const keys = next(false);
  if (!Array.isArray(keys) || !keys.every((k) => typeof k === 'string')) {
    throw fileError(source, 'legacy storage key list is missing or malformed');
  }

  const data = new Map<string, Uint8Array>();
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const key of keys as string[]) {
    const ref = registry.roots.get(key);
    if (!ref) throw fileError(source, `storage '${key}' has data but no tensor refers to it`);
    if (pos + 8 > bytes.length)
      throw fileError(source, `truncated: storage '${key}' header is missing at offset ${pos}`);
    const count = dv.getBigInt64(pos, true);
    const length = count * BigInt(elementSize(ref.dtype));
    pos += 8;
    if (count < 0n || BigInt(pos) + length > BigInt(bytes.length)) {
      throw fileError(
        source,
        `truncated: storage '${key}' needs ${length} bytes at offset ${pos}, the file has ${bytes.length - pos} left`,
      );
    }
    if (BigInt(ref.numel) > count) {
      throw fileError(
        source,
        `storage '${key}' declares ${ref.numel} ${ref.dtype} elements, but its data holds only ${count}`,
      );
    }
    data.set(key, bytes.subarray(pos, pos + Number(length)));
    pos += Number(length);
  }
  return toCheckpointValue(
    root,
    (ref) => {
      const stored = data.get(ref.key);
      if (!stored) throw fileError(source, `storage '${ref.key}' has no data`);
      return stored;
    },
    source,
  );
}
