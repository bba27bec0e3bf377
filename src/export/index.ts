// Model-aware artifacts of a QuantizedModel: the packed file (<stem>_quantized_<kind>.safetensors),
// golden vectors, ONNX and C. They read the model's description and the quantized integers;
// nothing below this folder imports it.
export {
  readQuantizedModel,
  writeQuantizedModel,
  datasetFingerprint,
  packBits,
  unpackBits,
  QUANTIZED_FORMAT,
  QUANTIZED_FORMAT_VERSION,
  type QuantizedFileInfo,
  type QuantizedFileSummary,
  type WriteQuantizedInfo,
  type TensorFormat,
  type EvaluationOrder,
  type QuantizedSearchRecord,
} from './quantized-file.js';
export { exportOnnx, type OnnxExportOptions, type OnnxExportResult } from './onnx-export.js';
export { exportC, type CExportOptions } from './c-export.js';
export { exportGoldenVectors } from './golden-vectors.js';
