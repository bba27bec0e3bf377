// qcapsnets as a library: `import { ... } from 'qcapsnets'`.
//
//   const model = loadModel('model.pt', { model: 'ShallowCapsNet', args: [28, 1, 10, 16] });
//   const test = loadDataset('mnist', 'test');
//   evaluateFullPrecision(model, test, { batchSize: 100 }).accuracy;
//   const q = quantize(model, uniformBits(model.quantLayers, 8), { method: 'round_to_nearest' });
//   q.evaluate(test).accuracy;
//   const r = await searchModel(model, test, { method: 'round_to_nearest', memoryBudgetMB: 3,
//                                              onProgress: (p) => ... });
//
// The main calls are exported by name; each folder's whole API is there too, as a namespace
// (tensor, nn, models, data, train, quant, search, io).

// models: build, load, save, and model kinds of the user's
export { buildModel, buildDecoder, MODEL_NAMES, DECODER_NAMES } from './models/factory.js';
export { ShallowCapsNet } from './models/shallow-capsnet.js';
export { DeepCaps } from './models/deepcaps.js';
export { FCDecoder, ConvDecoder28, ConvDecoder64 } from './models/decoders.js';
export { CapsNet, runStages, type InferenceStage } from './models/capsnet.js';
export type { CapsDecoder, ModelName, DecoderName, QuantLayerInfo } from './models/capsnet.js';
export { registerModel, modelKindNames, type ModelKind } from './models/registry.js';
export { ModelDescription, type LayerSpec, type LayerDescription } from './models/description.js';
export { loadModel, saveModel, type LoadModelOptions } from './models/model-file.js';

// data
export { loadDataset, DATASET_INFO } from './data/load.js';
export type { DatasetName } from './data/sources.js';
export type { Dataset, Split } from './data/dataset.js';

// training and full-precision evaluation
export { trainModel } from './train/trainer.js';
export type { TrainOptions } from './train/options.js';
export type { TrainSummary, EpochSummary } from './train/summary.js';
export { evaluateFullPrecision, type ImageSource, type FullPrecisionResult } from './models/evaluate.js';
export { countCorrect, predictedClass, classMargin } from './models/metrics.js';

// quantization
export { quantize, QuantizedModel, type QuantizeOptions } from './quant/quantized-model.js';
export {
  uniformBits,
  bitsFromLists,
  bitsToLists,
  NUMBER_FORMATS,
  type BitConfig,
  type BitLists,
  type LayerBits,
  type NumberFormat,
} from './quant/config.js';
export { calibrate, type Calibration } from './quant/calibration.js';
export { mseFracBits, WEIGHT_RANGES, type WeightRange } from './quant/dynamic.js';
export { weightMemoryMB, minimumBudgetMB, configMemoryMB } from './quant/memory.js';
export { QUANT_METHODS, type RoundingCompat } from './quant/methods.js';
export type { QuantMethod } from './tensor/backend.js';
export { DEFAULT_SEED } from './tensor/seed.js';

// the Q-CapsNets search
export {
  searchModel,
  SEARCH_DEFAULTS,
  type SearchOptions,
  type SearchProgress,
  type ModelSearchResult,
} from './search/search-model.js';
export type { SearchResult, StepResult, StepName } from './search/qcapsnets.js';
export {
  finetune,
  finetuneRun,
  type FinetuneOptions,
  type FinetuneData,
  type FinetuneResult,
} from './search/finetune.js';
export {
  finetuneSearchModels,
  type SearchFinetuneModel,
  type SearchFinetuneOptions,
} from './search/search-finetune.js';
export { runSweep, gridCells, type SweepOptions, type SweepGrid } from './search/sweep.js';
export {
  EvalCache,
  CachingEvaluator,
  readEvalCacheFile,
  type EvalCacheHeader,
  type EvalCacheModel,
} from './search/eval-cache.js';
export type { SweepResult, SweepRow, SweepPoint } from './search/sweep-result.js';

// files
export { readStateDict, writeStateDict, type StateDict } from './io/pt.js';
export { readSafetensors, writeSafetensors } from './io/safetensors.js';
export { writeJsonReport, type SearchReport } from './report/search-json.js';
export { renderReport, writeHtmlReport, writeReportHtml, checkRunJson } from './report/index.js';
export {
  sensitivityAnalysis,
  type SensitivityResult,
  type SensitivityCurve,
  type SensitivityOptions,
} from './search/sensitivity.js';
export { readQuantizedModel, writeQuantizedModel, type QuantizedFileInfo } from './export/quantized-file.js';
export { exportOnnx, type OnnxExportOptions, type OnnxExportResult } from './export/onnx-export.js';
export { exportC, type CExportOptions } from './export/c-export.js';

// the compute backend (threads, native or TypeScript kernels, the exact kernels' level)
export { kernels, backendInfo, activeIsa } from './tensor/kernels.js';
export { Tensor } from './tensor/tensor.js';

export * as tensor from './tensor/index.js';
export * as nn from './nn/index.js';
export * as models from './models/index.js';
export * as data from './data/index.js';
export * as train from './train/index.js';
export * as quant from './quant/index.js';
export * as search from './search/index.js';
export * as io from './io/index.js';
export * as exporters from './export/index.js';
