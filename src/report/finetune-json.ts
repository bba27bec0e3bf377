// A fine-tuning's result (`qcapsnets finetune`, src/cli/finetune-job.ts): <stem>_finetuned.json,
// and its page <stem>_finetuned.html drawn from it (finetune-page.ts). Bits are positional lists
// in the order of `layers`, as in the search JSON; accuracies are percent of the test images.
import { writeFileAtomic } from '../io/atomic-write.js';

export const FINETUNE_TOOL = 'qcapsnets finetune';
export const FINETUNE_VERSION = 1;

/** A count of correct test images. */
export interface FinetuneCount {
  accuracy: number;
  correct: number;
  total: number;
}

/** One fine-tuning epoch (training's EpochSummary, its test pass the quantized model's). */
export interface FinetuneEpoch {
  epoch: number;
  hard: boolean;
  trainLoss: number;
  trainMarginLoss: number;
  trainReconLoss: number;
  /** mean of the batch accuracies through the quantized forward, percent */
  trainAccuracy: number;
  /** the quantized model after the epoch, on the test images */
  testAccuracy: number;
  testCorrect: number;
  testTotal: number;
  testLoss: number;
  seconds: number;
  lastLr: number;
}

export interface FinetuneReport {
  tool: typeof FINETUNE_TOOL;
  version: typeof FINETUNE_VERSION;
  /** every flag of the command, by its long name */
  settings: Record<string, unknown>;
  model: { kind: string; args: number[]; file: string };
  /** where the bits came from: the --bits file or the --bits-from packed model */
  bitsSource: string;
  /** the bits' number format ('fixed') */
  format: string;
  /** 'dynamic' weights' fractional lengths by the 'mse' rule (absent: 'max') */
  weight_range?: 'mse';
  method: string;
  compat: string;
  seed: number;
  layers: { name: string; paramCount: number; routes: boolean }[];
  bits: { weightBits: number[]; actBits: number[]; routingBits: number[] };
  /** fine-tuning epochs run in all (a resumed run's earlier ones included) */
  epochs: number;
  fullPrecisionAccuracy: number;
  /** the trained model quantized at the bits, before fine-tuning, and the fine-tuned one */
  before: FinetuneCount;
  after: FinetuneCount;
  /** SPEC 4's weight memory of the bits, and the 32-bit memory over it */
  weightMemoryMB: number;
  weightReduction: number;
  history: FinetuneEpoch[];
  /** the quantized state_dict (.pt), the packed model (.safetensors), the last checkpoint (null:
   *  none, 0 epochs) */
  files: { pt: string; packed: string; checkpoint: string | null };
  /** the packed file's tensor bytes and its whole size */
  packedBytes: number;
  packedFileBytes: number;
  /** where a resumed run started (1-based epoch, 0-based batch), or null */
  resumedFrom: { epoch: number; batch: number } | null;
  seconds: number;
}

export function writeFinetuneJson(file: string, report: FinetuneReport): void {
  writeFileAtomic(file, () => [Buffer.from(JSON.stringify(report, null, 2) + '\n')]);
}
