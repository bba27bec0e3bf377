// A quantized model at its bit widths, as one safetensors file (`<stem>_quantized_<kind>.safetensors`,
// written by the search next to the float32 `.pt`):
//
//   tensors   <param>.qweight   U8 [bytes]: the parameter's codes as a little-endian bitstream
//                               (element i, row-major in PyTorch's layout, occupies stream bits
//                               [i*b, (i+1)*b), least significant bit first; stream bit j is bit
//                               j mod 8 of byte floor(j/8)); the last byte is zero-padded
//             <buffer>          BatchNorm running_mean / running_var (F32) and
//                               num_batches_tracked (I64), unquantized, with PyTorch's names
//             qcapsnets.eval_order  (stochastic rounding only) U8 bitstream of the search's
//                               evaluation order, one unsigned `bits`-bit image index per position
//   metadata  format = "qcapsnets-quantized", format_version = "1", model, model_args (JSON),
//             decoder / decoder_args (when known), method, compat, seed, layers (JSON: name,
//             param_count, weight_bits, act_bits, routing_bits or null), tensors (JSON: every
//             tensor's format, below), bit_order, memory_bits (SPEC 4's count), packed_bytes,
//             search (JSON, optional: what the search measured for this model), eval_order (JSON,
//             optional: batch_size, images, bits, fingerprint of the test set); under the
//             'dynamic' number format also number_format = "dynamic" (absent: 'fixed'),
//             calibration (JSON: the ranges the activation and routing fractional lengths come
//             from), activation_frac_bits and routing_frac_bits (JSON: each point's fractional
//             length), and each parameter's own frac_bits in "tensors"
//
// Tensor formats (metadata "tensors"[name]):
//   fixed  b-bit two's complement integer q, value = q * 2^-frac_bits. Default arithmetic:
//          weights saturate to [-1, 1 - 2^-frac], so b = frac_bits + 1 (width "format");
//          dac2020: nothing saturates, b is the width the tensor's values need (width "measured");
//          'dynamic': b is the layer's width and frac_bits the tensor's own (width "format").
//   log2   (logarithmic method) b = 1 + m bits: code 0 is 0; otherwise the top bit is the sign
//          (1: negative) and the low m bits hold e >= 1, magnitude 2^(exp_min + e - 1). Under the
//          default arithmetic a positive magnitude of 2^0 stands for the weights' saturation
//          value 1 - 2^-frac_bits (positive values never reach 1 there); "saturation" says so
//          (under 'dynamic' a positive 2^(w-1-frac_bits) stands for the top of the w-bit range).
//   float32 / int64  buffers, stored as F32 / I64 under their own names.
//
// Reading rebuilds the model from the metadata alone, sets each parameter to its exact
// quantized value, loads the buffers, and quantizes it again with the file's bits, method,
// arithmetic and seed; re-quantizing values on the grid leaves them unchanged (checked for
// every tensor, an error if not), so the result computes what the search evaluated.
import { statSync } from 'node:fs';
import { basename } from 'node:path';
import type { CapsNet } from '../models/capsnet.js';
import { buildModel, isModelName, leastParameterCount, moduleArgsProblem, orList } from '../models/factory.js';
import { modelKindNames } from '../models/registry.js';
import { type BitConfig, type BitLists, bitsFromLists } from '../quant/config.js';
import { type Calibration, checkCalibration, pointKey } from '../quant/calibration.js';
import { formatOf, type NumberFormat } from '../quant/config.js';
import { DYNAMIC_MAX_FRAC, DYNAMIC_MIN_FRAC, dynamicFracBits, dynamicRange } from '../quant/dynamic.js';
import { configMemoryBits } from '../quant/memory.js';
import { parseQuantMethod, parseRoundingCompat, type RoundingCompat } from '../quant/methods.js';
import { type IntegerParameter, QuantizedModel, quantize } from '../quant/quantized-model.js';
import type { QuantMethod } from '../tensor/backend.js';
import { fileError } from '../io/byte-source.js';
import { crc32 } from '../io/crc32.js';
import { decodeElements } from '../io/dtypes.js';
import { type RawTensor, readSafetensorsRaw, writeSafetensorsRaw } from '../io/safetensors.js';
import { encodeForWriting, type NamedTensor, type StateDict } from '../io/tensor-data.js';

export const QUANTIZED_FORMAT = 'qcapsnets-quantized';
export const QUANTIZED_FORMAT_VERSION = '1';
/** The tensor holding the search's evaluation order (stochastic rounding). */
export const EVAL_ORDER_TENSOR = 'qcapsnets.eval_order';
const QWEIGHT = '.qweight';
/** Widest packed code: values are handled as exact doubles. */
const MAX_CODE_BITS = 53;

export const BIT_ORDER =
  'little-endian bitstream: element i (row-major, PyTorch layout) occupies stream bits [i*bits, (i+1)*bits), ' +
  'least significant bit first; stream bit j is bit (j mod 8) of byte floor(j/8); the last byte is zero-padded';

/** What the search measured for this model (stored in the file; `evaluate` compares). */
export interface QuantizedSearchRecord {
  kind: string;
  dataset?: string;
  images: number;
  correct: number;
  accuracy: number;
  batchSize: number;
  /** the batches' order: 'hardest-first' (the search's) */
  order: string;
  /** datasetFingerprint of the test images */
  fingerprint?: string;
}

/** The order and batch size an evaluation ran in, and which test images (datasetFingerprint). */
export interface EvaluationOrder {
  order: Int32Array;
  batchSize: number;
  fingerprint: string;
}

export interface WriteQuantizedInfo {
  /** the decoder the model was trained with, when known */
  decoder?: { name: string; args: readonly number[] } | null;
  search?: QuantizedSearchRecord;
  /** stochastic rounding's draws depend on the batches: the search's order, to reproduce its count */
  evaluationOrder?: EvaluationOrder;
}

/** One tensor's format, as metadata "tensors" holds it. */
export interface TensorFormat {
  encoding: 'fixed' | 'log2' | 'float32' | 'int64';
  shape: number[];
  layer?: string;
  /** bits per element of the packed codes */
  bits?: number;
  frac_bits?: number;
  width?: 'format' | 'measured';
  exp_min?: number;
  saturation?: string;
}

export interface QuantizedFileSummary {
  file: string;
  /** bytes of every tensor in the file (packed parameters, buffers, evaluation order) */
  packedBytes: number;
  /** bytes of the packed parameters alone */
  weightBytes: number;
  /** SPEC 4's weight memory, sum over layers of parameters x (w_l + 1) bits ('dynamic':
   *  parameters x w_l bits and 8 bits per tensor exponent), in bytes */
  memoryBytes: number;
  /** the whole file, header included */
  fileBytes: number;
}

export interface QuantizedFileInfo extends QuantizedFileSummary {
  /** the model kind (built in or registered) */
  model: string;
  modelArgs: number[];
  decoder: { name: string; args: number[] } | null;
  method: QuantMethod;
  compat: RoundingCompat;
  seed: number;
  /** 'fixed', or 'dynamic' (metadata number_format) */
  numberFormat: NumberFormat;
  /** 'dynamic': the calibration the activation and routing fractional lengths come from */
  calibration: Calibration | null;
  bits: BitConfig;
  tensors: Record<string, TensorFormat>;
  search: QuantizedSearchRecord | null;
  evaluationOrder: EvaluationOrder | null;
  metadata: Record<string, string>;
}

/** A fingerprint of a test set's images and labels, in its order (for EvaluationOrder). */
export function datasetFingerprint(ds: { pixels: Uint8Array; labels: Int32Array }): string {
  const labels = new Uint8Array(ds.labels.buffer, ds.labels.byteOffset, ds.labels.byteLength);
  const hex = (n: number) => n.toString(16).padStart(8, '0');
  return `crc32:${hex(crc32(ds.pixels))}:${hex(crc32(labels))}:${ds.labels.length}`;
}

// ---- bit packing

/** Packs unsigned codes (exact integers in [0, 2^bits)) as a little-endian bitstream. */
export function packBits(codes: ArrayLike<number>, bits: number): Uint8Array {
  if (!(Number.isInteger(bits) && bits >= 1 && bits <= MAX_CODE_BITS))
    throw new Error(`packBits: bits ${bits}: expected 1..${MAX_CODE_BITS}`);
  const n = codes.length;
  const out = new Uint8Array(Math.ceil((n * bits) / 8));
  let o = 0;
  if (bits <= 24) {
    let acc = 0;
    let nacc = 0;
    for (let i = 0; i < n; i++) {
      acc |= codes[i] << nacc;
      nacc += bits;
      while (nacc >= 8) {
        out[o++] = acc & 255;
        acc >>>= 8;
        nacc -= 8;
      }
    }
    if (nacc > 0) out[o] = acc & 255;
    return out;
  }
  let acc = 0; // < 2^(7 + 32), exact in a double
  let nacc = 0;
  const put = (word: number, count: number) => {
    acc += word * 2 ** nacc;
    nacc += count;
    while (nacc >= 8) {
      const byte = acc % 256;
      out[o++] = byte;
      acc = (acc - byte) / 256;
      nacc -= 8;
    }
  };
  for (let i = 0; i < n; i++) {
    const c = codes[i];
    if (bits <= 32) put(c, bits);
    else {
      const lo = c % 2 ** 32;
      put(lo, 32);
      put((c - lo) / 2 ** 32, bits - 32);
    }
  }
  if (nacc > 0) out[o] = acc % 256;
  return out;
}

/** The n unsigned codes of a bitstream written by packBits. */
export function unpackBits(bytes: Uint8Array, n: number, bits: number): Float64Array {
  if (!(Number.isInteger(bits) && bits >= 1 && bits <= MAX_CODE_BITS))
    throw new Error(`unpackBits: bits ${bits}: expected 1..${MAX_CODE_BITS}`);
  if (bytes.length < Math.ceil((n * bits) / 8))
    throw new Error(
      `unpackBits: ${n} codes of ${bits} bits need ${Math.ceil((n * bits) / 8)} bytes, got ${bytes.length}`,
    );
  const out = new Float64Array(n);
  let p = 0;
  if (bits <= 24) {
    const mask = (1 << bits) - 1;
    let acc = 0;
    let nacc = 0;
    for (let i = 0; i < n; i++) {
      while (nacc < bits) {
        acc |= bytes[p++] << nacc;
        nacc += 8;
      }
      out[i] = acc & mask;
      acc >>>= bits;
      nacc -= bits;
    }
    return out;
  }
  let acc = 0;
  let nacc = 0;
  const take = (count: number): number => {
    while (nacc < count) {
      acc += bytes[p++] * 2 ** nacc;
      nacc += 8;
    }
    const word = acc % 2 ** count;
    acc = (acc - word) / 2 ** count;
    nacc -= count;
    return word;
  };
  for (let i = 0; i < n; i++) out[i] = bits <= 32 ? take(bits) : take(32) + take(bits - 32) * 2 ** 32;
  return out;
}

// ---- encodings of one parameter

function integersOf(p: IntegerParameter): Float64Array {
  const v = p.values;
  if (v instanceof Int32Array) return Float64Array.from(v);
  return Float64Array.from(v, (x) => {
    const d = Number(x);
    if (!Number.isSafeInteger(d)) throw new Error(`writeQuantizedModel: ${p.name}: an integer needs more than 53 bits`);
    return d;
  });
}

function encodeFixed(q: Float64Array, bits: number): Uint8Array {
  const wrap = 2 ** bits;
  const codes = new Float64Array(q.length);
  for (let i = 0; i < q.length; i++) codes[i] = q[i] < 0 ? q[i] + wrap : q[i];
  return packBits(codes, bits);
}

/** Exponent j with |q| = 2^j, or -1 when |q| is not a power of two. */
function powerOfTwo(a: number): number {
  if (a <= 0) return -1;
  if (a < 2 ** 31) return (a & (a - 1)) === 0 ? 31 - Math.clz32(a) : -1;
  const j = Math.round(Math.log2(a));
  return 2 ** j === a ? j : -1;
}

/** The integer of the largest positive value of a saturated tensor and the power of two it
 *  stands for in the log2 encoding: 'fixed' 2^F - 1 for 2^F (1 - 2^-F for 1), 'dynamic' the top
 *  of the w-bit range for 2^(w-1). */
function saturationOf(format: NumberFormat, F: number, width: number): { top: number; j: number } {
  if (format !== 'dynamic') return { top: 2 ** F - 1, j: F };
  return { top: dynamicRange(width, F).hi * 2 ** F, j: width - 1 };
}

function encodeLog(
  p: IntegerParameter,
  q: Float64Array,
  saturated: boolean,
  format: NumberFormat,
): { bytes: Uint8Array; format: TensorFormat } {
  const F = p.fracBits;
  const { top: sat, j: satJ } = saturationOf(format, F, p.totalBits); // the saturation value's integer
  const exps = new Int32Array(q.length); // j with |q| = 2^j (the saturation value: j = satJ)
  let jmin = Infinity;
  let jmax = -Infinity;
  for (let i = 0; i < q.length; i++) {
    const v = q[i];
    if (v === 0) continue;
    let j = powerOfTwo(Math.abs(v));
    if (saturated && v === sat && j < 0) j = satJ;
    else if (saturated && v === 2 ** satJ)
      throw new Error(`writeQuantizedModel: ${p.name}[${i}] = ${v * 2 ** -F} is outside the saturation range`);
    if (j < 0)
      throw new Error(
        `writeQuantizedModel: ${p.name}[${i}] = ${v * 2 ** -F} is not 0 or a power of two (logarithmic method)`,
      );
    exps[i] = j;
    if (j < jmin) jmin = j;
    if (j > jmax) jmax = j;
  }
  const nexp = jmin === Infinity ? 0 : jmax - jmin + 1;
  const mbits = nexp === 0 ? 0 : Math.ceil(Math.log2(nexp + 1));
  const bits = mbits + 1;
  const codes = new Float64Array(q.length);
  const signBit = 2 ** mbits;
  for (let i = 0; i < q.length; i++) {
    if (q[i] === 0) continue;
    codes[i] = (q[i] < 0 ? signBit : 0) + (exps[i] - jmin + 1);
  }
  const out: TensorFormat = {
    encoding: 'log2',
    shape: p.shape,
    layer: p.layer,
    bits,
    frac_bits: F,
    exp_min: nexp === 0 ? 0 : jmin - F,
  };
  if (saturated)
    out.saturation =
      format === 'dynamic'
        ? `a positive 2^${satJ - F} stands for ${sat} x 2^${-F}`
        : `a positive 2^0 stands for 1 - 2^-${F}`;
  return { bytes: packBits(codes, bits), format: out };
}

// ---- writing

/** Writes `q` as a packed safetensors file (see the top of this file), atomically. */
export function writeQuantizedModel(
  file: string,
  q: QuantizedModel,
  info: WriteQuantizedInfo = {},
): QuantizedFileSummary {
  if (!(q instanceof QuantizedModel)) throw new Error('writeQuantizedModel: q must be a QuantizedModel');
  const model = q.model;
  const saturated = q.compat !== 'dac2020';
  const numberFormat = formatOf(q.bits);
  if (numberFormat === 'dynamic' && q.bits.some((b) => b.format !== 'dynamic'))
    throw new Error(
      "writeQuantizedModel: the layers' bits mix the 'fixed' and 'dynamic' number formats; a packed file holds one",
    );
  const params = q.integers;
  const paramNames = new Set(params.map((p) => p.name));
  const formats: Record<string, TensorFormat> = {};
  const tensors: [string, RawTensor][] = [];
  let weightBytes = 0;
  const byName = new Map(params.map((p) => [p.name, p]));
  for (const [name, t] of model.stateDict()) {
    const p = byName.get(name);
    if (!p) {
      // a buffer, unquantized
      const { dtype, bytes } = encodeForWriting(file, name, t);
      if (dtype === 'float64') throw fileError(file, `buffer '${name}' is float64`);
      formats[name] = { encoding: dtype, shape: [...t.shape] };
      tensors.push([name, { dtype: dtype === 'int64' ? 'I64' : 'F32', shape: [...t.shape], bytes }]);
      continue;
    }
    const ints = integersOf(p);
    let bytes: Uint8Array;
    if (q.method === 'logarithmic') {
      const e = encodeLog(p, ints, saturated, numberFormat);
      bytes = e.bytes;
      formats[name] = e.format;
    } else {
      if (p.totalBits > MAX_CODE_BITS)
        throw fileError(file, `tensor '${name}' needs ${p.totalBits} bits, more than ${MAX_CODE_BITS}`);
      bytes = encodeFixed(ints, p.totalBits);
      formats[name] = {
        encoding: 'fixed',
        shape: p.shape,
        layer: p.layer,
        bits: p.totalBits,
        frac_bits: p.fracBits,
        width: p.width,
      };
    }
    if (paramNames.has(name + QWEIGHT)) throw fileError(file, `tensor name '${name}${QWEIGHT}' is taken`);
    tensors.push([name + QWEIGHT, { dtype: 'U8', shape: [bytes.length], bytes }]);
    weightBytes += bytes.length;
  }
  const bits = q.bits;
  const memoryBits = configMemoryBits(q.layers, bits);
  const metadata: Record<string, string> = {
    format: QUANTIZED_FORMAT,
    format_version: QUANTIZED_FORMAT_VERSION,
    model: model.kind,
    model_args: JSON.stringify(model.args),
    method: q.method,
    compat: q.compat,
    seed: String(q.seed),
    layers: JSON.stringify(
      q.layers.map((l, i) => ({
        name: l.name,
        param_count: l.paramCount,
        weight_bits: bits[i].weight,
        act_bits: bits[i].act,
        routing_bits: bits[i].routing,
      })),
    ),
    tensors: JSON.stringify(formats),
    bit_order: BIT_ORDER,
    memory_bits: String(memoryBits),
    packed_bytes: String(weightBytes),
  };
  if (numberFormat === 'dynamic') Object.assign(metadata, dynamicMetadata(q));
  if (info.decoder) {
    metadata.decoder = info.decoder.name;
    metadata.decoder_args = JSON.stringify([...info.decoder.args]);
  }
  if (info.search) metadata.search = JSON.stringify(info.search);
  let packedBytes = weightBytes;
  for (const [, t] of tensors) if (t.dtype !== 'U8') packedBytes += t.bytes.length;
  const ev = info.evaluationOrder;
  if (ev) {
    const n = ev.order.length;
    const orderBits = Math.max(1, Math.ceil(Math.log2(n)));
    const bytes = packBits(ev.order, orderBits);
    metadata.eval_order = JSON.stringify({
      batch_size: ev.batchSize,
      images: n,
      bits: orderBits,
      fingerprint: ev.fingerprint,
    });
    tensors.push([EVAL_ORDER_TENSOR, { dtype: 'U8', shape: [bytes.length], bytes }]);
    packedBytes += bytes.length;
  }
  writeSafetensorsRaw(file, tensors, metadata);
  return { file, packedBytes, weightBytes, memoryBytes: memoryBits / 8, fileBytes: statSync(file).size };
}

/** The 'dynamic' keys: the format, the calibration, and every activation and routing point's
 *  fractional length (as the model's quantizers have them). */
function dynamicMetadata(q: QuantizedModel): Record<string, string> {
  const d = q.model.description;
  const act: Record<string, number> = {};
  const routing: Record<string, { act: number | null; routing: number | null }> = {};
  for (const p of d.quantPoints().flat()) act[pointKey(p.path, p.point)] = q.activationSpec(p.path, p.point)!.frac;
  for (const path of d.routingPaths().flat()) {
    const r = q.routingSpecs(path)!;
    routing[path] = { act: r.act!.frac, routing: r.routing!.frac };
  }
  return {
    number_format: 'dynamic',
    calibration: JSON.stringify(q.calibration),
    activation_frac_bits: JSON.stringify(act),
    routing_frac_bits: JSON.stringify(routing),
  };
}

// ---- reading

function jsonField<T>(file: string, metadata: Record<string, string>, key: string, required: boolean): T | undefined {
  const raw = metadata[key];
  if (raw === undefined) {
    if (required) throw fileError(file, `__metadata__ has no '${key}'`);
    return undefined;
  }
  try {
    return JSON.parse(raw) as T;
  } catch (err) {
    throw fileError(file, `__metadata__ '${key}' is not valid JSON (${(err as Error).message})`);
  }
}

const isInt = (v: unknown): v is number => Number.isSafeInteger(v);

/** A value from the file's JSON for an error message, as a template string would show it, but
 *  a list of lists by its kind only (a tampered header may nest lists 100,000 deep, and
 *  Array.prototype.toString recurses). */
function brief(v: unknown): string {
  if (Array.isArray(v) && v.some((x) => typeof x === 'object' && x !== null)) return `a nested list of ${v.length}`;
  return String(v);
}

/** A metadata value for a message about its type: a string in quotes, said to be one. */
function typed(v: unknown): string {
  if (typeof v === 'string') return `${JSON.stringify(v)} (a string)`;
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? 'an object' : brief(v);
}

/** The metadata's 'search' record (what the search measured; `evaluate` prints it beside its
 *  own count), or null when there is none: its counts must be counts of its images and its
 *  accuracy theirs, or the error names the file and the field. */
function checkSearchRecord(file: string, v: unknown): QuantizedSearchRecord | null {
  if (v === undefined) return null;
  const bad = (what: string) => fileError(file, `__metadata__ 'search': ${what}`);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('expected an object');
  const r = v as Record<string, unknown>;
  const int = (key: string, min: number, max: number, what: string) => {
    const x = r[key];
    if (!(isInt(x) && x >= min && x <= max)) throw bad(`'${key}' is ${typed(x)}, expected ${what}`);
    return x;
  };
  const images = int('images', 1, Number.MAX_SAFE_INTEGER, 'an integer >= 1 (the images evaluated)');
  const correct = int('correct', 0, images, `an integer from 0 to 'images' (${images})`);
  int('batchSize', 1, Number.MAX_SAFE_INTEGER, 'an integer >= 1');
  const accuracy = r.accuracy;
  if (!(typeof accuracy === 'number' && Math.round((accuracy * images) / 100) === correct))
    throw bad(`'accuracy' is ${typed(accuracy)}, expected ${correct}/${images} in percent`);
  for (const key of ['kind', 'order'])
    if (typeof r[key] !== 'string') throw bad(`'${key}' is ${typed(r[key])}, expected a string`);
  for (const key of ['dataset', 'fingerprint'])
    if (r[key] !== undefined && typeof r[key] !== 'string')
      throw bad(`'${key}' is ${typed(r[key])}, expected a string`);
  return v as QuantizedSearchRecord;
}

/** A value checked by the library's own check, its error made this file's (naming the file). */
function asFileError<T>(file: string, check: () => T): T {
  try {
    return check();
  } catch (err) {
    throw fileError(file, (err as Error).message, { cause: err });
  }
}

/** Reads a file written by writeQuantizedModel: the QuantizedModel it holds (rebuilt from the
 *  metadata alone) and what the metadata says. Any disagreement is an error naming the file. */
export function readQuantizedModel(file: string): { quantized: QuantizedModel; info: QuantizedFileInfo } {
  const raw = readSafetensorsRaw(file);
  const md = raw.metadata;
  checkFormatTag(file, md);
  const { name, args, model, decoder } = modelOfMetadata(file, md, raw.fileBytes);
  const { method, compat, seed } = roundingOfMetadata(file, md);
  const numberFormat = numberFormatOfMetadata(file, md, compat);
  const bits = layerBits(file, model, jsonField<unknown>(file, md, 'layers', true), numberFormat);
  const calibration = numberFormat === 'dynamic' ? calibrationOfMetadata(file, md, model, bits) : null;
  const { sd, formats, evaluationOrder, packedBytes, weightBytes, weightFracBits } = decodeTensors(
    file,
    raw,
    model,
    bits,
    method,
    compat,
  );
  const quantized = quantizeOnGrid(file, model, sd, bits, {
    method,
    compat,
    seed,
    calibration,
    weightFracBits: numberFormat === 'dynamic' ? weightFracBits : null,
  });
  const search = checkSearchRecord(file, jsonField<unknown>(file, md, 'search', false));
  const memoryBits = configMemoryBits(model.quantLayers, bits);
  return {
    quantized,
    info: {
      file,
      model: name,
      modelArgs: args,
      decoder,
      method,
      compat,
      seed,
      numberFormat,
      calibration,
      bits,
      tensors: formats,
      search,
      evaluationOrder,
      metadata: md,
      packedBytes,
      weightBytes,
      memoryBytes: memoryBits / 8,
      fileBytes: raw.fileBytes,
    },
  };
}

/** The format tag and version, with a hint when the file is a training checkpoint. */
function checkFormatTag(file: string, md: Record<string, string>): void {
  if (md.format !== QUANTIZED_FORMAT) {
    const what =
      md.format === undefined ? 'its __metadata__ has no format tag' : `its __metadata__ format is '${md.format}'`;
    const hint =
      md.format === 'qcapsnets-training-checkpoint' || basename(file).endsWith('.ckpt.safetensors')
        ? ' (a training checkpoint holds full-precision weights: evaluate the model file that training wrote instead)'
        : '';
    throw fileError(
      file,
      `not a qcapsnets quantized model: ${what}, expected format '${QUANTIZED_FORMAT}' (the <stem>_quantized_<kind>.safetensors files the search writes)${hint}`,
    );
  }
  if (md.format_version !== QUANTIZED_FORMAT_VERSION)
    throw fileError(
      file,
      `quantized model format version '${md.format_version}', this qcapsnets reads version ${QUANTIZED_FORMAT_VERSION}`,
    );
}

/** The model the metadata names, built from its model_args (refused before building when the
 *  file could not hold its parameters), and the decoder it names. */
function modelOfMetadata(
  file: string,
  md: Record<string, string>,
  fileBytes: number,
): { name: string; args: number[]; model: CapsNet; decoder: QuantizedFileInfo['decoder'] } {
  const name = md.model;
  if (typeof name !== 'string' || !isModelName(name))
    throw fileError(file, `__metadata__ model '${name}' is not a model: expected ${orList(modelKindNames())}`);
  const args = jsonField<unknown>(file, md, 'model_args', true);
  if (!Array.isArray(args) || !args.every(isInt))
    throw fileError(file, `__metadata__ model_args ${md.model_args}: expected an array of integers`);
  const problem = moduleArgsProblem(name, args);
  if (problem) throw fileError(file, `__metadata__ model ${name} model_args [${args.join(', ')}]: ${problem}`);
  // every parameter takes at least one bit of the file: refuse model_args whose model could
  // not fit before building it (its weights are allocated from model_args alone)
  const least = leastParameterCount(name, args);
  if (least > 8 * fileBytes)
    throw fileError(
      file,
      `__metadata__ model ${name} model_args [${args.join(', ')}] describe at least ${least} parameters, more than a file of ${fileBytes} bytes holds`,
    );
  let model: CapsNet;
  try {
    model = buildModel(name, args);
  } catch (err) {
    throw fileError(
      file,
      `__metadata__ model ${name} model_args [${args.join(', ')}] do not build: ${(err as Error).message}`,
    );
  }
  let decoder: QuantizedFileInfo['decoder'] = null;
  if (md.decoder !== undefined) {
    const dargs = jsonField<unknown>(file, md, 'decoder_args', false) ?? [];
    if (!Array.isArray(dargs) || !dargs.every(isInt))
      throw fileError(file, `__metadata__ decoder_args ${md.decoder_args}: expected an array of integers`);
    decoder = { name: md.decoder, args: dargs };
  }
  return { name, args, model, decoder };
}

/** The metadata's method, arithmetic and seed. */
function roundingOfMetadata(
  file: string,
  md: Record<string, string>,
): { method: QuantMethod; compat: RoundingCompat; seed: number } {
  const method = asFileError(file, () => parseQuantMethod(md.method, '__metadata__ method'));
  const compat = asFileError(file, () => parseRoundingCompat(md.compat, '__metadata__ compat'));
  const seed = Number(md.seed);
  if (md.seed === undefined || !/^\d+$/.test(md.seed) || !Number.isSafeInteger(seed))
    throw fileError(file, `__metadata__ seed '${md.seed}': expected a non-negative integer`);
  return { method, compat, seed };
}

/** The metadata's number format: absent 'fixed' (every file before the format), or 'dynamic'
 *  (not with dac2020). */
function numberFormatOfMetadata(file: string, md: Record<string, string>, compat: RoundingCompat): NumberFormat {
  const f = md.number_format;
  if (f === undefined) return 'fixed';
  if (f !== 'dynamic')
    throw fileError(file, `__metadata__ number_format '${f}': expected 'dynamic' (or no number_format: 'fixed')`);
  if (compat === 'dac2020')
    throw fileError(
      file,
      "__metadata__ number_format 'dynamic' with compat 'dac2020': dac2020 applies to 'fixed' only",
    );
  return f;
}

/** A 'dynamic' file's calibration, checked against the model, and the fractional lengths it
 *  stores for every activation and routing point against those the calibration and the bits
 *  give. */
function calibrationOfMetadata(file: string, md: Record<string, string>, model: CapsNet, bits: BitConfig): Calibration {
  const c = asFileError(file, () =>
    checkCalibration(model, jsonField<unknown>(file, md, 'calibration', true), '__metadata__ calibration'),
  );
  const act = jsonField<Record<string, unknown>>(file, md, 'activation_frac_bits', true);
  const routing = jsonField<Record<string, Record<string, unknown> | undefined>>(file, md, 'routing_frac_bits', true);
  const isObj = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObj(act) || !isObj(routing))
    throw fileError(file, '__metadata__ activation_frac_bits and routing_frac_bits: expected JSON objects');
  const d = model.description;
  const layerOf = (path: string) => bits[d.index(d.layerOf(path).name)];
  const agree = (key: string, where: string, stored: unknown, width: number, range: number) => {
    const want = dynamicFracBits(width, range);
    if (stored !== want)
      throw fileError(
        file,
        `__metadata__ ${where}['${key}'] is ${brief(stored)}, but the calibration's range ${range} at ${width} bits gives ${want}`,
      );
  };
  for (const p of d.quantPoints().flat()) {
    const key = pointKey(p.path, p.point);
    agree(key, 'activation_frac_bits', act![key], layerOf(p.path).act, c.activations[key]);
  }
  for (const path of d.routingPaths().flat()) {
    const r = routing![path];
    const b = layerOf(path);
    agree(path, 'routing_frac_bits', isObj(r) ? r!.act : r, b.act, c.routing[path].act);
    agree(path, 'routing_frac_bits', isObj(r) ? r!.routing : r, b.routing!, c.routing[path].routing);
  }
  const extra = [
    ...Object.keys(act!).filter((k) => !(k in c.activations)),
    ...Object.keys(routing!).filter((k) => !(k in c.routing)),
  ];
  if (extra.length) throw fileError(file, `__metadata__ frac bits of '${extra[0]}', which ${model.kind} does not have`);
  return c;
}

/** Every tensor against its format, the model and the data: the state_dict the file holds,
 *  the evaluation order when it has one, the bytes of its tensors, and ('dynamic') each
 *  parameter's fractional length. */
function decodeTensors(
  file: string,
  raw: ReturnType<typeof readSafetensorsRaw>,
  model: CapsNet,
  bits: BitConfig,
  method: QuantMethod,
  compat: RoundingCompat,
): {
  sd: StateDict;
  formats: Record<string, TensorFormat>;
  evaluationOrder: EvaluationOrder | null;
  packedBytes: number;
  weightBytes: number;
  weightFracBits: Map<string, number>;
} {
  const md = raw.metadata;
  const weightFracBits = new Map<string, number>();
  const name = model.kind;
  const args = model.args;
  // every tensor's format against the model and the data
  const formats = jsonField<Record<string, TensorFormat>>(file, md, 'tensors', true);
  if (typeof formats !== 'object' || formats === null || Array.isArray(formats))
    throw fileError(file, `__metadata__ tensors: expected an object of tensor formats`);
  const paramNames = new Set(model.parameters().map((p) => p.name));
  const layerBitsOf = (tensor: string) => bits[model.description.index(model.description.layerOf(tensor).name)];
  const sd: StateDict = new Map();
  const used = new Set<string>();
  let weightBytes = 0;
  let packedBytes = 0;
  const saturated = compat !== 'dac2020';
  for (const [tname, t] of model.stateDict()) {
    const f = formats[tname];
    const bad = (what: string) => fileError(file, `tensor '${tname}': ${what}`);
    if (!f || typeof f !== 'object') throw bad('missing from __metadata__ tensors');
    if (!Array.isArray(f.shape) || f.shape.some(Array.isArray) || f.shape.join(',') !== t.shape.join(','))
      throw bad(
        `__metadata__ shape [${brief(f.shape)}] but ${name} [${args.join(' ')}] has [${t.shape.join(', ')}] (model_args that do not fit the tensors?)`,
      );
    const numel = t.data.length;
    if (!paramNames.has(tname)) {
      // a buffer
      const stored = raw.tensors.get(tname);
      if (!stored) throw bad('buffer missing from the file');
      used.add(tname);
      const want = t.dtype === 'int64' ? 'I64' : 'F32';
      if (stored.dtype !== want || stored.shape.join(',') !== t.shape.join(','))
        throw bad(`stored as ${stored.dtype} [${stored.shape.join(', ')}], expected ${want} [${t.shape.join(', ')}]`);
      const dec = decodeElements(stored.bytes, t.dtype === 'int64' ? 'int64' : 'float32', numel);
      const nt: NamedTensor = { shape: [...t.shape], dtype: t.dtype, data: dec.floats };
      if (dec.integers) nt.integers = dec.integers;
      sd.set(tname, nt);
      packedBytes += stored.bytes.length;
      continue;
    }
    const stored = raw.tensors.get(tname + QWEIGHT);
    if (!stored) throw bad(`the file has no '${tname}${QWEIGHT}'`);
    used.add(tname + QWEIGHT);
    if (stored.dtype !== 'U8' || stored.shape.length !== 1)
      throw bad(`'${tname}${QWEIGHT}' is ${stored.dtype} [${stored.shape.join(', ')}], expected U8 [bytes]`);
    const { name: layer, weight, format } = layerBitsOf(tname);
    const dynamic = format === 'dynamic';
    let F = weight;
    if (dynamic) {
      // a tensor's own fractional length, within the format's range
      if (!(isInt(f.frac_bits) && f.frac_bits >= DYNAMIC_MIN_FRAC && f.frac_bits <= DYNAMIC_MAX_FRAC))
        throw bad(
          `frac_bits ${typed(f.frac_bits)}: expected an integer in [${DYNAMIC_MIN_FRAC}, ${DYNAMIC_MAX_FRAC}] (a 'dynamic' tensor's fractional length)`,
        );
      F = f.frac_bits;
      weightFracBits.set(tname, F);
    } else {
      if (!isInt(f.frac_bits))
        throw bad(`frac_bits ${typed(f.frac_bits)}: expected the integer ${F} (layer ${layer}'s weight bits)`);
      if (f.frac_bits !== F) throw bad(`frac_bits ${brief(f.frac_bits)} but layer ${layer} has ${F} weight bits`);
    }
    const b = f.bits;
    if (!(isInt(b) && b >= 1 && b <= MAX_CODE_BITS))
      throw bad(`bits ${typed(b)}: expected an integer from 1 to ${MAX_CODE_BITS}`);
    const need = Math.ceil((numel * b) / 8);
    if (stored.bytes.length !== need)
      throw bad(
        `${numel} values of ${b} bits need ${need} bytes, '${tname}${QWEIGHT}' has ${stored.bytes.length} (bits disagree with the data)`,
      );
    const codes = unpackBits(stored.bytes, numel, b);
    let values: Float32Array;
    if (method === 'logarithmic') {
      if (f.encoding !== 'log2') throw bad(`encoding '${brief(f.encoding)}', the logarithmic method stores 'log2'`);
      if (!isInt(f.exp_min)) throw bad(`exp_min ${typed(f.exp_min)}: expected an integer`);
      values = decodeLog(bad, codes, b, f.exp_min, F, saturated, dynamic ? weight : null);
    } else {
      if (f.encoding !== 'fixed') throw bad(`encoding '${brief(f.encoding)}', method ${method} stores 'fixed'`);
      if (dynamic && b !== weight) throw bad(`bits ${b}: layer ${layer}'s 'dynamic' width is ${weight}`);
      if (!dynamic && saturated && b !== F + 1)
        throw bad(`bits ${b}: the default arithmetic's format of ${F} fractional bits has ${F + 1}`);
      values = decodeFixed(bad, codes, b, F);
    }
    sd.set(tname, { shape: [...t.shape], dtype: 'float32', data: values });
    weightBytes += stored.bytes.length;
  }
  let evaluationOrder: EvaluationOrder | null = null;
  if (md.eval_order !== undefined) {
    evaluationOrder = readOrder(file, raw.tensors.get(EVAL_ORDER_TENSOR), jsonField(file, md, 'eval_order', true));
    used.add(EVAL_ORDER_TENSOR);
  }
  const extra = [...raw.tensors.keys()].filter((k) => !used.has(k));
  if (extra.length)
    throw fileError(
      file,
      `tensors ${extra.map((k) => `'${k}'`).join(', ')} are not part of ${name} [${args.join(' ')}]`,
    );
  packedBytes += weightBytes + (evaluationOrder ? raw.tensors.get(EVAL_ORDER_TENSOR)!.bytes.length : 0);

  return { sd, formats, evaluationOrder, packedBytes, weightBytes, weightFracBits };
}

/** The model at the file's values, quantized again: every value must be on the quantizer's
 *  grid, so that quantizing leaves it as it is. */
function quantizeOnGrid(
  file: string,
  model: CapsNet,
  sd: StateDict,
  bits: BitConfig,
  options: {
    method: QuantMethod;
    compat: RoundingCompat;
    seed: number;
    calibration: Calibration | null;
    weightFracBits: ReadonlyMap<string, number> | null;
  },
): QuantizedModel {
  const { method, compat } = options;
  const paramNames = new Set(model.parameters().map((p) => p.name));
  const layerBitsOf = (tensor: string) => bits[model.description.index(model.description.layerOf(tensor).name)];
  // the model at those values, quantized again: on-grid values stay as they are
  const exact = new Map<string, Float32Array>();
  for (const [k, v] of sd) if (paramNames.has(k)) exact.set(k, v.data);
  if (method === 'logarithmic' && compat === 'dac2020')
    for (const [k, v] of sd) if (paramNames.has(k)) v.data = dac2020LogPreimage(v.data);
  try {
    model.loadStateDict(sd, file);
  } catch (err) {
    throw fileError(file, (err as Error).message);
  }
  const quantized = asFileError(file, () => quantize(model, bits, options));
  for (const [k, t] of quantized.stateDict()) {
    const want = exact.get(k);
    if (!want) continue;
    for (let i = 0; i < want.length; i++)
      if (!Object.is(t.data[i], want[i]) && !(t.data[i] === 0 && want[i] === 0))
        throw fileError(
          file,
          `tensor '${k}' element ${i}: the file holds ${want[i]}, which ${method} (${compat}) at ${layerBitsOf(k).weight} bits quantizes to ${t.data[i]}: not a value of this quantizer`,
        );
  }
  return quantized;
}

function layerBits(file: string, model: CapsNet, layers: unknown, format: NumberFormat): BitConfig {
  const names = model.layerNames;
  if (!Array.isArray(layers) || layers.length !== names.length)
    throw fileError(
      file,
      `__metadata__ layers: expected ${names.length} layers (${names.join(', ')}) of ${model.kind}, got ${Array.isArray(layers) ? layers.length : typeof layers}`,
    );
  const bits: BitLists = { weightBits: [], actBits: [], routingBits: [] };
  const routing = new Set(model.routingLayerNames);
  layers.forEach((l: Record<string, unknown>, i) => {
    if (l?.name !== names[i])
      throw fileError(
        file,
        `__metadata__ layers[${i}] is '${brief(l?.name)}', ${model.kind}'s layer ${i} is '${names[i]}'`,
      );
    for (const key of ['weight_bits', 'act_bits', 'routing_bits', 'param_count'])
      if (typeof l[key] === 'object' && l[key] !== null)
        throw fileError(
          file,
          `__metadata__ layers[${i}] (${names[i]}) ${key} is ${brief(l[key])}, expected an integer`,
        );
    bits.weightBits.push(l.weight_bits as number);
    bits.actBits.push(l.act_bits as number);
    if (routing.has(names[i])) bits.routingBits.push(l.routing_bits as number);
    else if (l.routing_bits !== null && l.routing_bits !== undefined)
      throw fileError(file, `__metadata__ layers[${i}] (${names[i]}) has routing bits but does not route`);
    if (l.param_count !== undefined && l.param_count !== model.quantLayers[i].paramCount)
      throw fileError(
        file,
        `__metadata__ layers[${i}] (${names[i]}) has ${l.param_count} parameters, but ${model.kind} [${model.args.join(' ')}] has ${model.quantLayers[i].paramCount} (model_args that do not fit the tensors?)`,
      );
  });
  try {
    return bitsFromLists(model.quantLayers, bits, 'bits', format);
  } catch (err) {
    throw fileError(file, `__metadata__ layers: ${(err as Error).message}`);
  }
}

function toFloat32(bad: (what: string) => Error, v: number, i: number): number {
  const f = Math.fround(v);
  if (f !== v) throw bad(`element ${i}: ${v} is not a float32 value`);
  return f;
}

function decodeFixed(bad: (what: string) => Error, codes: Float64Array, b: number, F: number): Float32Array {
  const half = 2 ** (b - 1);
  const wrap = 2 ** b;
  const scale = 2 ** -F;
  const out = new Float32Array(codes.length);
  for (let i = 0; i < codes.length; i++) {
    const c = codes[i];
    out[i] = toFloat32(bad, (c >= half ? c - wrap : c) * scale, i);
  }
  return out;
}

/** `width`: a 'dynamic' tensor's width (null: 'fixed'), whose saturation value a positive
 *  2^(width-1-F) stands for. */
function decodeLog(
  bad: (what: string) => Error,
  codes: Float64Array,
  b: number,
  expMin: number,
  F: number,
  saturated: boolean,
  width: number | null = null,
): Float32Array {
  const mbits = b - 1;
  const signBit = 2 ** mbits;
  const satK = width === null ? 0 : width - 1 - F;
  const satValue = width === null ? 1 - 2 ** -F : dynamicRange(width, F).hi;
  const value = (c: number, i: number): number => {
    if (c === 0) return 0;
    const negative = c >= signBit;
    const e = negative ? c - signBit : c;
    if (e === 0) throw bad(`element ${i}: code ${c} (a negative zero) is not a log2 code`);
    const k = expMin + e - 1;
    let m = 2 ** k;
    if (saturated && !negative && k === satK) m = satValue;
    return toFloat32(bad, negative ? -m : m, i);
  };
  const out = new Float32Array(codes.length);
  if (b > 16) {
    for (let i = 0; i < codes.length; i++) out[i] = value(codes[i], i);
    return out;
  }
  // a table of the 2^b codes' values (NaN: not a code)
  const table = new Float64Array(2 ** b);
  for (let c = 0; c < table.length; c++) {
    try {
      table[c] = value(c, 0);
    } catch {
      table[c] = NaN;
    }
  }
  for (let i = 0; i < codes.length; i++) {
    const v = table[codes[i]];
    out[i] = Number.isNaN(v) ? value(codes[i], i) : v;
  }
  return out;
}

/** Under dac2020 the logarithmic quantizer rounds log2(|x| + 1e-8), so magnitudes of 2^-26 and
 *  below do not map to themselves; a value of |x| - 1e-8 (or a tiny one, for 2^-27) does. */
function dac2020LogPreimage(values: Float32Array): Float32Array {
  const out = values.slice();
  for (let i = 0; i < out.length; i++) {
    const a = Math.abs(out[i]);
    if (a === 0 || a > 2 ** -24) continue;
    const pre = a > 1e-8 ? Math.fround(a - 1e-8) : 2 ** -60;
    out[i] = out[i] < 0 ? -pre : pre;
  }
  return out;
}

/** JSON.stringify for an error message, or the value's kind where it nests too deep to print. */
function shortJson(v: unknown): string {
  try {
    return String(JSON.stringify(v));
  } catch {
    return Array.isArray(v) ? 'a nested list' : 'a nested object';
  }
}

function readOrder(file: string, stored: RawTensor | undefined, meta: unknown): EvaluationOrder {
  const m = (meta ?? {}) as Record<string, unknown>;
  const bad = (what: string) => fileError(file, `evaluation order ('${EVAL_ORDER_TENSOR}'): ${what}`);
  if (!stored) throw bad('__metadata__ eval_order is set but the tensor is missing');
  const { images, bits, batch_size: batchSize, fingerprint } = m;
  if (!(isInt(images) && images >= 1 && isInt(bits) && bits >= 1 && bits <= 31 && isInt(batchSize) && batchSize >= 1))
    throw bad(`__metadata__ eval_order ${shortJson(meta)}: expected images, bits (1..31), batch_size`);
  if (typeof fingerprint !== 'string') throw bad('__metadata__ eval_order has no fingerprint');
  if (stored.dtype !== 'U8' || stored.bytes.length !== Math.ceil((images * bits) / 8))
    throw bad(
      `${images} indices of ${bits} bits need ${Math.ceil((images * bits) / 8)} bytes, the tensor has ${stored.bytes.length}`,
    );
  const order = Int32Array.from(unpackBits(stored.bytes, images, bits));
  const seen = new Uint8Array(images);
  for (const i of order) {
    if (i >= images || seen[i]) throw bad(`not a permutation of 0..${images - 1}`);
    seen[i] = 1;
  }
  return { order, batchSize, fingerprint };
}
