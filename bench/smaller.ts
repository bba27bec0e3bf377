// `npm run bench:smaller` (issue 19): how much smaller a model gets at the same accuracy with
// per-layer power-of-two scales ('dynamic' fixed point) and quantization-aware fine-tuning,
// against today's post-training 'fixed' search, on the same trained model.
//
// For ShallowCapsNet (28 1 10 16) and DeepCaps (28 1 10 32), each trained on Fashion-MNIST
// (bench-model.ts SMALLER_KINDS; cached in .bench-cache/), tolerance 0.5% and the budgets
// 32-bit memory / {4, 6, 8, 10, 12, 16}, round to nearest: the largest weight-memory reduction
// whose model keeps the tolerance, for fixed, dynamic and dynamic with the 'mse' weight range
// rule (--weight-range mse: docs/quantization.md), post-training (a sweep over every
// budget) and with --finetune-epochs (the budgets from the smallest up, stopping at the first
// whose model keeps the tolerance: a larger budget cannot give a larger reduction than the
// smallest one that works, and each fine-tuning epoch costs minutes). The last line is one JSON
// object (keys in docs/benchmarks.md).
// Fine-tuning uses the recipe that measured best here: distillation from the float model
// (--distill-scale 1) on a quarter of each batch (--distill-fraction 0.25: the teacher's forward
// on the whole batch would cost a quarter of a float step) and no reconstruction loss
// (--regularization-scale 0; the .pt holds no decoder, and a fresh one's loss only adds noise).
//   npm run bench:smaller [-- --model-kind ShallowCapsNet|DeepCaps|both|none] [--finetune-epochs N]
//                         [--distill-scale 1] [--distill-fraction 0.25] [--regularization-scale 0]
//                         [--test-size N] [--steps 9] [--variants fixed_ptq,dynamic_mse_ft,...]
// (--model-kind none: only the fine-tuning step's cost, finetune_step_ratio, bench/finetune-step.ts)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SweepResult } from '../src/search/sweep-result.js';
import { checkFraction, checkPositiveNumber } from '../src/train/checks.js';
import { arg } from './common.js';
import { benchModel, SMALLER_KINDS } from './bench-model.js';
import { finetuneStepRatio } from './finetune-step.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const DIVISORS = [4, 6, 8, 10, 12, 16];
const TOLERANCE = 0.5;
/** fine-tuning's settings (--distill-scale, --distill-fraction, --regularization-scale) */
interface Recipe {
  distillScale: number;
  distillFraction: number;
  regularizationScale: number;
}
const METHOD = 'round_to_nearest';

type Format = 'fixed' | 'dynamic';

interface Variant {
  format: Format;
  /** 'dynamic' with --weight-range mse (absent: the default 'max') */
  weightRange?: 'mse';
  finetuneEpochs: number;
}

/** A variant's name in the JSON keys: fixed, dynamic or dynamic_mse, then ptq or ft. */
const variantKey = (v: Variant) =>
  `${v.format}${v.weightRange ? `_${v.weightRange}` : ''}_${v.finetuneEpochs ? 'ft' : 'ptq'}`;

interface VariantResult extends Variant {
  /** the largest reduction within the tolerance (0: no budget's model kept it) */
  reduction: number;
  /** that model's accuracy, percent, and its budget divisor */
  accuracy: number | null;
  divisor: number | null;
  seconds: number;
}

/** One `qcapsnets sweep` over `divisors` for a variant; its SweepResult. */
function sweep(
  kindName: string,
  modelFile: string,
  v: Variant,
  recipe: Recipe,
  divisors: number[],
  testSize: number,
): SweepResult {
  const kind = SMALLER_KINDS[kindName];
  const out = mkdtempSync(join(tmpdir(), 'qcaps-smaller-'));
  try {
    const args = [
      join(root, 'dist/src/cli/main.js'),
      'sweep',
      '--dataset',
      'fashion-mnist',
      '--model',
      kindName,
      '--model-args',
      ...kind.modelArgs.map(String),
      '--trained-weights-path',
      modelFile,
      '--tolerances',
      String(TOLERANCE),
      '--budget-divisors',
      divisors.join(','),
      '--methods',
      METHOD,
      '--number-format',
      v.format,
      ...(v.weightRange ? ['--weight-range', v.weightRange] : []),
      '--finetune-epochs',
      String(v.finetuneEpochs),
      // the fine-tuning recipe (docs/benchmarks.md#smaller-models): distillation from the float
      // model, and no reconstruction loss from the fresh decoder
      ...(v.finetuneEpochs
        ? [
            '--distill-scale',
            String(recipe.distillScale),
            ...(recipe.distillScale > 0 ? ['--distill-fraction', String(recipe.distillFraction)] : []),
            '--regularization-scale',
            String(recipe.regularizationScale),
          ]
        : []),
      '--test-limit',
      String(testSize),
      '--output-dir',
      out,
    ];
    const r = spawnSync(process.execPath, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    if (r.status !== 0)
      throw new Error(`bench:smaller: qcapsnets ${args.slice(1).join(' ')} failed (exit ${r.status})`);
    const file = readdirSync(out).find((f) => f.endsWith('_sweep.json'));
    if (!file) throw new Error(`bench:smaller: the sweep wrote no _sweep.json in ${out}`);
    return JSON.parse(readFileSync(join(out, file), 'utf8')) as SweepResult;
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

/** The largest weight reduction of a model that keeps the tolerance, in a sweep's rows. */
function best(result: SweepResult): { reduction: number; accuracy: number | null; divisor: number | null } {
  const minimum = result.fullPrecisionAccuracy * (1 - TOLERANCE / 100);
  const fp32 = result.fullPrecisionMemoryMB;
  let out: { reduction: number; accuracy: number | null; divisor: number | null } = {
    reduction: 0,
    accuracy: null,
    divisor: null,
  };
  for (const row of result.rows)
    for (const m of row.models)
      if (m.accuracy >= minimum && m.weightReduction > out.reduction)
        out = { reduction: m.weightReduction, accuracy: m.accuracy, divisor: fp32 / row.memoryBudgetMB };
  return out;
}

function runVariant(kindName: string, modelFile: string, v: Variant, recipe: Recipe, testSize: number) {
  const t0 = performance.now();
  let fp = 0;
  let found = { reduction: 0, accuracy: null as number | null, divisor: null as number | null };
  if (v.finetuneEpochs === 0) {
    const r = sweep(kindName, modelFile, v, recipe, DIVISORS, testSize);
    fp = r.fullPrecisionAccuracy;
    found = best(r);
  } else {
    for (const d of [...DIVISORS].reverse()) {
      const r = sweep(kindName, modelFile, v, recipe, [d], testSize);
      fp = r.fullPrecisionAccuracy;
      found = best(r);
      if (found.reduction > 0) break;
    }
  }
  const result: VariantResult = { ...v, ...found, seconds: (performance.now() - t0) / 1000 };
  const name =
    `${v.format}${v.weightRange ? ` (${v.weightRange} weight ranges)` : ''}` +
    `${v.finetuneEpochs ? ` + ${v.finetuneEpochs} fine-tuning epochs` : ' post-training'}`;
  console.log(
    `${kindName} ${name}: ${result.reduction ? `${result.reduction.toFixed(2)}x at ${result.accuracy?.toFixed(2)}% (budget 1/${result.divisor?.toFixed(0)})` : 'no budget keeps the tolerance'} [${result.seconds.toFixed(0)} s]`,
  );
  return { fp, result };
}

async function main(): Promise<void> {
  const which = arg('model-kind', 'both');
  const kinds = which === 'both' ? ['ShallowCapsNet', 'DeepCaps'] : which === 'none' ? [] : [which];
  for (const k of kinds)
    if (!SMALLER_KINDS[k]) throw new Error(`--model-kind ${k}: expected ShallowCapsNet, DeepCaps, both or none`);
  const epochs = Number(arg('finetune-epochs', '2'));
  const recipe: Recipe = {
    distillScale: Number(arg('distill-scale', '1')),
    distillFraction: Number(arg('distill-fraction', '0.25')),
    regularizationScale: Number(arg('regularization-scale', '0')),
  };
  // training's own checks, before hours of sweeps
  checkPositiveNumber(recipe.distillScale, '--distill-scale', true);
  checkPositiveNumber(recipe.regularizationScale, '--regularization-scale', true);
  checkFraction(recipe.distillFraction, '--distill-fraction');
  if (!Number.isInteger(epochs) || epochs < 1)
    throw new Error(`--finetune-epochs ${epochs}: expected a positive integer`);
  const all = [
    { format: 'fixed', finetuneEpochs: 0 },
    { format: 'dynamic', finetuneEpochs: 0 },
    { format: 'dynamic', weightRange: 'mse', finetuneEpochs: 0 },
    { format: 'fixed', finetuneEpochs: epochs },
    { format: 'dynamic', finetuneEpochs: epochs },
    { format: 'dynamic', weightRange: 'mse', finetuneEpochs: epochs },
  ] as Variant[];
  // --variants fixed_ptq,dynamic_mse_ft,...: only those (each fine-tuned one is hours of the
  // training set on 2 cores)
  const names = all.map(variantKey);
  const chosen = process.argv.includes('--variants') ? arg('variants', '').split(',') : names;
  for (const c of chosen)
    if (!names.includes(c)) throw new Error(`--variants ${c}: expected a comma-separated list of ${names.join(', ')}`);
  const variants = all.filter((v) => chosen.includes(variantKey(v)));
  const out: Record<string, number | null> = {};
  const prefix: Record<string, string> = { ShallowCapsNet: 'shallow', DeepCaps: 'deepcaps' };
  for (const kindName of kinds) {
    const kind = SMALLER_KINDS[kindName];
    const modelFile = benchModel(kind);
    const testSize = Number(arg('test-size', String(kind.testSize)));
    const p = prefix[kindName];
    for (const v of variants) {
      const { fp, result } = runVariant(kindName, modelFile, v, recipe, testSize);
      out[`${p}_fp_accuracy`] = fp;
      out[`${p}_${variantKey(v)}_x`] = Number(result.reduction.toFixed(3));
      out[`${p}_${variantKey(v)}_accuracy`] = result.accuracy;
    }
  }
  const step = finetuneStepRatio(Number(arg('steps', '9')), recipe.distillFraction);
  const ms = (v: number) => `${v.toFixed(0)} ms`;
  console.log(
    `ShallowCapsNet 28 1 10 16, batch 100, ${step.threads} threads, median of ${step.steps} steps: float training ${ms(step.float_step_ms)}; ` +
      `fine-tuning 'fixed' ${ms(step.finetune_step_ms)} (${step.finetune_step_ratio.toFixed(3)}x), ` +
      `'dynamic' ${ms(step.finetune_dynamic_step_ms)} (${step.finetune_dynamic_step_ratio.toFixed(3)}x), ` +
      `the recipe ('dynamic', distillation on ${recipe.distillFraction} of the batch, no reconstruction loss) ` +
      `${ms(step.finetune_distill_step_ms)} (${step.finetune_distill_step_ratio.toFixed(3)}x)`,
  );
  out.finetune_distill_step_ratio = Number(step.finetune_distill_step_ratio.toFixed(3));
  out.finetune_dynamic_step_ratio = Number(step.finetune_dynamic_step_ratio.toFixed(3));
  out.distill_scale = recipe.distillScale;
  out.distill_fraction = recipe.distillFraction;
  out.regularization_scale = recipe.regularizationScale;
  out.finetune_step_ratio = Number(step.finetune_step_ratio.toFixed(3));
  out.finetune_epochs = epochs;
  out.tolerance = TOLERANCE;
  console.log(JSON.stringify(out));
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
