// The search's result for plotting tools and the report page: <stem>_qcapsnets.json
// (settings, every evaluation, every step, the final models). Its page,
// <stem>_qcapsnets.html, is drawn from this JSON by src/report/.
import { writeFileAtomic } from '../io/atomic-write.js';
import type { NumberFormat } from '../quant/config.js';

export interface ReportStep {
  step: string;
  weightBits: number[];
  actBits: number[];
  routingBits: number[];
  accuracy: number;
  memoryMB: number;
  reduction: number;
  /** activation memory per image, kB (sum over activation points of elements x (a_l + 1) bits) */
  activationKB?: number | null;
  activationReduction?: number | null;
}

export interface ReportEvaluation {
  step: string;
  weightBits: number[];
  actBits: number[];
  routingBits: number[];
  accuracy: number | null;
  lower: number;
  upper: number;
  exact: boolean;
  passed: boolean;
  reused: boolean;
  seconds: number;
}

export interface SearchReport {
  tool: string;
  settings: Record<string, unknown>;
  /** tensorCount: 'dynamic' only, the layer's parameter tensors (one 8-bit exponent each) */
  layers: { name: string; paramCount: number; routes: boolean; iterations: number; tensorCount?: number }[];
  fullPrecisionAccuracy: number;
  minimumAccuracy: number;
  branch: 'A' | 'B';
  steps: ReportStep[];
  models: (ReportStep & {
    kind: string;
    /** the number format of the model's bits ('fixed': fractional bits; 'dynamic': widths;
     *  absent in files from before the format: 'fixed') */
    number_format?: NumberFormat;
    /** 'dynamic' weights' fractional lengths by the 'mse' rule (absent: 'max') */
    weight_range?: 'mse';
    /** the float32 state_dict (.pt) */
    file: string;
    /** the accuracy as a count of the test images */
    correct?: number;
    total?: number;
    /** the model at its bit widths (.safetensors, src/export/quantized-file.ts) */
    packedFile?: string;
    /** that file's tensor bytes (packed parameters, buffers, evaluation order) */
    packedBytes?: number;
    /** of which the packed parameters */
    packedWeightBytes?: number;
    /** SPEC 4's weight memory (sum of parameters x (w_l + 1) bits) in bytes */
    memoryBytes?: number;
    /** the packed file's size, header included */
    packedFileBytes?: number;
    /** --selection-split: the search decided on held-out training images (accuracy, correct,
     *  total); this is the chosen model's accuracy on the test set */
    testAccuracy?: number;
    testCorrect?: number;
    testTotal?: number;
    /** --finetune-epochs N > 0 only (absent otherwise): the epochs this model was fine-tuned
     *  (0: as the search chose it); a fine-tuned one's accuracy is after fine-tuning, on the
     *  images the search decided on, and these give the search's kind and accuracy before */
    finetune_epochs?: number;
    kind_before_finetune?: string;
    accuracy_before_finetune?: number;
  })[];
  /** --selection-split: the images the search decided on, and the full-precision test accuracy */
  selection?: { images: number; source: string; fullPrecisionTestAccuracy: number };
  evaluations: ReportEvaluation[];
  notes: string[];
  seconds: number;
}

export function writeJsonReport(file: string, report: SearchReport): void {
  writeFileAtomic(file, () => [Buffer.from(JSON.stringify(report, null, 2) + '\n')]);
}
