// The packed quantized file's format (docs/formats.md): its tags, the records its metadata
// holds, and the test set's fingerprint. The layout is at the top of quantized-file.ts.
import { type BitConfig } from '../quant/config.js';
import { type Calibration } from '../quant/calibration.js';
import { type NumberFormat } from '../quant/config.js';
import type { WeightRange } from '../quant/dynamic.js';
import { type RoundingCompat } from '../quant/methods.js';
import type { QuantMethod } from '../tensor/backend.js';
import { crc32 } from '../io/crc32.js';
export const QUANTIZED_FORMAT = 'qcapsnets-quantized';
export const QUANTIZED_FORMAT_VERSION = '1';
/** The tensor holding the search's evaluation order (stochastic rounding). */
export const EVAL_ORDER_TENSOR = 'qcapsnets.eval_order';
export const QWEIGHT = '.qweight';
/** Widest packed code: values are handled as exact doubles. */
export const MAX_CODE_BITS = 53;

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
  /** 'dynamic': how the weights' fractional lengths were chosen (metadata weight_range; absent:
   *  'max'). The stored frac_bits are authoritative either way */
  weightRange: WeightRange;
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
