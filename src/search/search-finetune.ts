// Fine-tuning inside the search (issue 19, `search --finetune-epochs N`): after the search, the
// model that meets the memory budget but misses the accuracy target (branch B's 'memory' model)
// is fine-tuned through its quantized forward (finetune.ts) on the training images, then
// evaluated again on the images the search decided on, in the search's order (hardest first,
// the same batches, so stochastic rounding draws as the search's evaluator did). If it now
// reaches the minimum accuracy (>=, as steps 3B and 4A test) it becomes the 'satisfied' model.
// The images the search decides on are never trained on: they are only the test pass of each
// fine-tuning epoch. With 0 epochs nothing runs and nothing changes.
import type { Dataset } from '../data/dataset.js';
import type { CapsNet } from '../models/capsnet.js';
import type { Calibration } from '../quant/calibration.js';
import type { WeightRange } from '../quant/dynamic.js';
import { countRange, type BitConfig } from '../quant/config.js';
import type { ImageSource } from '../models/evaluate.js';
import type { QuantizedModel } from '../quant/quantized-model.js';
import type { QuantMethod } from '../tensor/backend.js';
import type { RoundingCompat } from '../quant/methods.js';
import { NonFiniteTrainingError } from '../train/non-finite.js';
import type { StepOptionName } from '../train/options.js';
import { finetuneRun, type FinetuneOptions } from './finetune.js';

/** What fine-tuning inside a search trains with (training's options: FinetuneOptions). */
export interface SearchFinetuneOptions extends Pick<
  FinetuneOptions,
  | StepOptionName
  | 'threads'
  | 'augment'
  | 'progress'
  | 'progressStream'
  | 'decoder'
  | 'distillScale'
  | 'distillFraction'
> {
  /** the images it trains on: the training set (never the images the search decides on) */
  train: Dataset;
}

/** One chosen model of a search, as the search left it and after fine-tuning. */
export interface SearchFinetuneModel {
  kind: 'satisfied' | 'memory' | 'accuracy';
  model: QuantizedModel;
  accuracy: number;
  memoryMB: number;
  /** fine-tuning epochs run on it (0: as the search chose it) */
  finetuneEpochs: number;
  /** fine-tuned models: the kind and accuracy the search gave it */
  before?: { kind: 'memory'; accuracy: number };
}

/** How a search fine-tunes: the epochs, the search's rounding and calibration, and the order
 *  it evaluated in. */
export interface SearchFinetuneSettings {
  epochs: number;
  method: QuantMethod;
  compat: RoundingCompat;
  seed: number;
  calibration: Calibration | null;
  /** 'dynamic': the weight range rule (absent: 'max') */
  weightRange?: WeightRange;
  batchSize: number;
  /** position -> image index: the search's evaluation order (hardest first) */
  order: Int32Array;
  training: SearchFinetuneOptions;
  log: (line: string) => void;
}

/** A model at `bits` fine-tuned (finetuneRun) and evaluated again on `images` in the search's
 *  order; a divergence is one error that says the search stopped. */
export async function finetuneForSearch(
  model: CapsNet,
  bits: BitConfig,
  images: Dataset,
  s: SearchFinetuneSettings,
): Promise<{ quantized: QuantizedModel; correct: number; total: number; accuracy: number }> {
  const { train, ...training } = s.training;
  let quantized: QuantizedModel;
  try {
    ({ quantized } = await finetuneRun(
      model,
      bits,
      { train, test: images },
      {
        ...training,
        epochs: s.epochs,
        method: s.method,
        compat: s.compat,
        seed: s.seed,
        calibration: s.calibration,
        weightRange: s.weightRange,
        testBatchSize: training.testBatchSize ?? s.batchSize,
        checkpointFilename: null,
        log: s.log,
      },
    ));
  } catch (err) {
    if (err instanceof NonFiniteTrainingError)
      throw new Error(
        `search: fine-tuning the memory model stopped: ${err.message.replace(/ ?(No checkpoint was written yet)?;? resume.*$/, '')} ` +
          `Nothing was written; run the search again with a smaller learning rate (--lr).`,
        { cause: err },
      );
    throw err;
  }
  return { quantized, ...quantized.evaluate(images, { batchSize: s.batchSize, order: s.order }) };
}

/** A note for the log when `bits` give some layer's weights the narrowest count (0 fractional
 *  bits under 'fixed', a width of 1 under 'dynamic'): such a layer holds only -2^-f and 0, and
 *  its positive weights saturate, so the clipped straight-through gradient passes none of them.
 *  The search's falling pattern gives the last layers these counts at small budgets (DeepCaps at
 *  1/12 of its 32-bit memory); fine-tuning seldom brings such a model back. '' when none. */
export function narrowestLayersNote(bits: BitConfig): string {
  const narrowest = bits.filter((b) => b.weight === countRange(b.format).min).map((b) => b.name);
  if (narrowest.length === 0) return '';
  const count = bits[0].format === 'dynamic' ? 'a width of 1' : '0 fractional bits';
  return (
    ` (note: ${narrowest.join(', ')} ${narrowest.length > 1 ? 'have' : 'has'} weights at ${count}, ` +
    'only -2^-f and 0; fine-tuning seldom brings such a layer back)'
  );
}

/** The 'memory' model of `models` fine-tuned `s.epochs` epochs and evaluated again on `images`
 *  (see the top); the other models as they are. */
export async function finetuneSearchModels(
  model: CapsNet,
  models: readonly Omit<SearchFinetuneModel, 'finetuneEpochs'>[],
  images: Dataset,
  s: SearchFinetuneSettings & { minimumAccuracy: number },
): Promise<SearchFinetuneModel[]> {
  const out: SearchFinetuneModel[] = [];
  for (const m of models) {
    if (s.epochs === 0 || m.kind !== 'memory') {
      out.push({ ...m, finetuneEpochs: 0 });
      continue;
    }
    s.log(
      `fine-tuning the memory model (${m.accuracy}% < ${s.minimumAccuracy}%) for ${epochsText(s.epochs)} on ${s.training.train.count} training images` +
        narrowestLayersNote(m.model.bits),
    );
    const after = await finetuneForSearch(model, m.model.bits, images, s);
    const meets = after.accuracy >= s.minimumAccuracy;
    s.log(
      `fine-tuned memory model: accuracy ${m.accuracy}% -> ${after.accuracy}% (${after.correct}/${after.total}) after ${epochsText(s.epochs)}` +
        (meets
          ? `; it meets the minimum ${s.minimumAccuracy}%: saved as satisfied`
          : `; still below ${s.minimumAccuracy}%`),
    );
    out.push({
      kind: meets ? 'satisfied' : 'memory',
      model: after.quantized,
      accuracy: after.accuracy,
      memoryMB: m.memoryMB,
      finetuneEpochs: s.epochs,
      before: { kind: 'memory', accuracy: m.accuracy },
    });
  }
  return out;
}

const epochsText = (n: number) => `${n} epoch${n === 1 ? '' : 's'}`;

/** Fine-tuning's epochs test on the images as training tests on a dataset. */
export const isDataset = (x: ImageSource): x is Dataset => 'numClasses' in x && 'name' in x;
