// Per-layer sensitivity (issue 12, item 3; AIMET's per-layer analysis, the ONNX Runtime QDQ
// debugger): the accuracy against bits of one quantity at a time (one layer's weights, its
// activations, or its routing values), every other quantity at full precision
// (FULL_PRECISION in the quantized forward). Curves show where accuracy is lost.
// Evaluations run on the fast evaluator in layer order, so every configuration that varies
// layer l starts from the kept full-precision outputs of layers 0..l-1.
import { copyModel } from '../models/factory.js';
import type { CapsNet } from '../models/capsnet.js';
import { checkImagesFit, type ImageSource } from '../models/evaluate.js';
import type { Calibration } from '../quant/calibration.js';
import { parseWeightRange, type WeightRange } from '../quant/dynamic.js';
import {
  type BitConfig,
  countRange,
  FULL_PRECISION,
  MAX_FRACTIONAL_BITS,
  type NumberFormat,
  uniformBits,
} from '../quant/config.js';
import { checkQuantizeOptions } from '../quant/quantized-model.js';
import { ModelQuantizer } from '../quant/quantized-forward.js';
import type { RoundingCompat } from '../quant/methods.js';
import type { QuantMethod } from '../tensor/backend.js';
import { FastEvaluator } from './fast-evaluator.js';
import { checkSearchFormat } from './qcapsnets.js';
import { checkCalibrationImages, searchCalibration } from './search-model.js';

export const SENSITIVITY_TOOL = 'qcapsnets sensitivity';
export const SENSITIVITY_VERSION = 1;

export type SensitivityKind = 'weights' | 'activations' | 'routing';
export const SENSITIVITY_KINDS: readonly SensitivityKind[] = ['weights', 'activations', 'routing'];

export interface SensitivityCurve {
  /** the top-level layer (quantLayers' name) */
  layer: string;
  kind: SensitivityKind;
  /** bit counts, ascending: fractional bits ('fixed'), widths ('dynamic': settings.numberFormat) */
  bits: number[];
  /** percent on the test images, one per entry of `bits` */
  accuracy: number[];
}

/** `<stem>_sensitivity.json`, written by `qcapsnets sensitivity`. */
export interface SensitivityResult {
  tool: typeof SENSITIVITY_TOOL;
  version: typeof SENSITIVITY_VERSION;
  model: { kind: string; args: number[]; file: string };
  settings: {
    dataset: string;
    testImages: number;
    method: QuantMethod;
    compat: RoundingCompat;
    seed: number;
    batchSize: number;
    bits: number[];
    [flag: string]: unknown;
  };
  layers: { name: string; paramCount: number; routes: boolean }[];
  fullPrecisionAccuracy: number;
  curves: SensitivityCurve[];
  /** quantized evaluations run (the full-precision pass not counted) */
  evaluations: number;
  seconds: number;
}

export interface SensitivityOptions {
  method: QuantMethod;
  compat?: RoundingCompat;
  seed?: number;
  /** the counts' number format (default 'fixed'; see SearchOptions.numberFormat) */
  numberFormat?: NumberFormat;
  /** 'dynamic': calibrate on the first N test images (default 500; all when fewer) */
  calibrationImages?: number;
  /** 'dynamic': this calibration instead */
  calibration?: Calibration;
  /** 'dynamic': the weight range rule (default 'max'; see SearchOptions.weightRange) */
  weightRange?: WeightRange;
  /** bit counts to try, each an integer in [0, 32] (fractional bits; widths in [1, 32] under
   *  'dynamic') */
  bits: readonly number[];
  /** log lines (the calibration's) */
  log?: (line: string) => void;
  /** images per batch (default 100) */
  batchSize?: number;
  /** MB for the kept stage outputs (default 1024; 0: none) */
  cacheMB?: number;
  /** called after each evaluation: `done` of `total`, the curve's layer and kind, its result */
  onEvaluation?: (p: {
    done: number;
    total: number;
    layer: string;
    kind: SensitivityKind;
    bits: number;
    accuracy: number;
  }) => void;
}

export interface SensitivityAnalysis {
  fullPrecisionAccuracy: number;
  curves: SensitivityCurve[];
  evaluations: number;
  /** stage runs saved by the kept outputs of earlier layers, of all stage runs asked for */
  stagesReused: number;
  stagesRun: number;
}

/** Parses '1..16', '2,4,8' or '8' into sorted distinct bit counts; errors name `label`. */
export function parseBitList(text: string, label = 'bits'): number[] {
  const range = /^\s*(\d+)\s*\.\.\s*(\d+)\s*$/.exec(text);
  let values: number[];
  if (range) {
    const [a, b] = [Number(range[1]), Number(range[2])];
    if (a > b) throw new Error(`${label} ${text}: the range's start is above its end`);
    values = Array.from({ length: b - a + 1 }, (_, i) => a + i);
  } else {
    values = text
      .split(/[\s,]+/)
      .filter((s) => s !== '')
      .map(Number);
  }
  if (values.length === 0 || !values.every((b) => Number.isInteger(b) && b >= 0 && b <= MAX_FRACTIONAL_BITS))
    throw new Error(
      `${label} '${text}': expected fractional bit counts in [0, ${MAX_FRACTIONAL_BITS}], as a range (1..16) or a list (2,4,8)`,
    );
  return [...new Set(values)].sort((x, y) => x - y);
}

/** Every curve the model has, in layer order: weights (layers with parameters), activations,
 *  routing (routing layers). */
export function sensitivityCurves(model: CapsNet): { layer: number; kind: SensitivityKind; routing: number }[] {
  const out: { layer: number; kind: SensitivityKind; routing: number }[] = [];
  let r = 0;
  model.quantLayers.forEach((l, i) => {
    if (l.paramCount > 0) out.push({ layer: i, kind: 'weights', routing: -1 });
    out.push({ layer: i, kind: 'activations', routing: -1 });
    if (l.routes) out.push({ layer: i, kind: 'routing', routing: r++ });
  });
  return out;
}

/** One quantity at `bits`, all others at full precision. */
function oneQuantity(
  model: CapsNet,
  c: { layer: number; kind: SensitivityKind; routing: number },
  bits: number,
  format: NumberFormat,
) {
  const layers = model.quantLayers;
  const config: BitConfig = uniformBits(layers, FULL_PRECISION, format);
  const layer = config[c.layer];
  if (c.kind === 'weights') layer.weight = bits;
  else if (c.kind === 'activations') layer.act = bits;
  else layer.routing = bits;
  return config;
}

/** Runs the sensitivity analysis of a trained model on `test` (exact accuracies, no early stop). */
export async function sensitivityAnalysis(
  model: CapsNet,
  test: ImageSource,
  options: SensitivityOptions,
): Promise<SensitivityAnalysis> {
  const q = checkQuantizeOptions('sensitivityAnalysis', options);
  const batchSize = options.batchSize ?? 100;
  const cacheMB = options.cacheMB ?? 1024;
  if (!(Number.isInteger(batchSize) && batchSize >= 1))
    throw new Error(`sensitivityAnalysis: options.batchSize ${batchSize}: expected a positive integer`);
  if (!(cacheMB >= 0)) throw new Error(`sensitivityAnalysis: options.cacheMB ${cacheMB}: expected 0 or more`);
  let format: NumberFormat;
  let weightRange: WeightRange;
  try {
    weightRange = parseWeightRange(options.weightRange);
    format = checkSearchFormat({ numberFormat: options.numberFormat, compat: q.compat, weightRange });
  } catch (err) {
    throw new Error(`sensitivityAnalysis: options.${(err as Error).message}`, { cause: err });
  }
  const calibrationImages = options.calibrationImages ?? 500;
  checkCalibrationImages(
    calibrationImages,
    format,
    `sensitivityAnalysis: options.calibrationImages ${calibrationImages}`,
  );
  const bits = [...options.bits];
  const { min, max } = countRange(format);
  if (
    bits.length === 0 ||
    !bits.every((b) => Number.isInteger(b) && b >= min && b <= max) ||
    bits.some((b, i) => i > 0 && b <= bits[i - 1])
  )
    throw new Error(
      `sensitivityAnalysis: options.bits [${bits}]: expected ascending distinct integers in [${min}, ${max}]`,
    );
  if (!(test?.count >= 1)) throw new Error('sensitivityAnalysis: the test images are empty');
  checkImagesFit(model, test, 'sensitivityAnalysis: the test images');
  const calibration = searchCalibration(
    'sensitivityAnalysis',
    model,
    test,
    { numberFormat: format, calibrationImages, calibration: options.calibration },
    options.log,
  );

  const net = copyModel(model); // the quantizer writes its weights, never the caller's model
  const quantizer = new ModelQuantizer(net, q.method, q.compat, q.seed, calibration, weightRange);
  const evaluator = new FastEvaluator(net, quantizer, test, { batchSize, cacheMB, earlyStop: false });
  const plan = sensitivityCurves(model);
  const total = plan.length * bits.length;
  const curves: SensitivityCurve[] = [];
  let fullPrecisionAccuracy: number;
  try {
    fullPrecisionAccuracy = (await evaluator.evaluateFullPrecision()).accuracy;
    for (const c of plan) {
      const layer = model.quantLayers[c.layer].name;
      const curve: SensitivityCurve = { layer, kind: c.kind, bits: [...bits], accuracy: [] };
      for (const b of bits) {
        const e = await evaluator.evaluate(oneQuantity(model, c, b, format));
        curve.accuracy.push(e.accuracy);
        options.onEvaluation?.({
          done: evaluator.stats.evaluations,
          total,
          layer,
          kind: c.kind,
          bits: b,
          accuracy: e.accuracy,
        });
      }
      curves.push(curve);
    }
  } finally {
    evaluator.clear();
    quantizer.restore();
  }
  return {
    fullPrecisionAccuracy,
    curves,
    evaluations: evaluator.stats.evaluations,
    stagesReused: evaluator.stats.stagesReused,
    stagesRun: evaluator.stats.stagesRun,
  };
}
