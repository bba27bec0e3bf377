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
//             length), and each parameter's own frac_bits in "tensors"; weight_range = "mse"
//             when the weights' fractional lengths were chosen by the 'mse' rule (absent:
//             'max'; the stored frac_bits are what the reader uses either way)
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
export {
  BIT_ORDER,
  datasetFingerprint,
  EVAL_ORDER_TENSOR,
  type EvaluationOrder,
  type QuantizedFileInfo,
  type QuantizedFileSummary,
  type QuantizedSearchRecord,
  QUANTIZED_FORMAT,
  QUANTIZED_FORMAT_VERSION,
  type TensorFormat,
  type WriteQuantizedInfo,
} from './packed-format.js';
export { packBits, unpackBits } from './packed-bits.js';
export { writeQuantizedModel } from './packed-writer.js';
export { readQuantizedModel } from './packed-reader.js';
