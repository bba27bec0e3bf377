// Resumable training checkpoints, one safetensors file (default `<model stem>.ckpt.safetensors`
// next to the model file), replaced atomically after every epoch (and when a run is
// interrupted):
//   tensors   model.<name>      the model's state_dict (PyTorch names, shapes and layouts;
//                               BatchNorm buffers included, num_batches_tracked as I64)
//             decoder.<name>    the decoder's state_dict
//             adam.m.<prefix>.<name>, adam.v.<prefix>.<name>
//                               Adam's first and second moments of each parameter, in
//                               qcapsnets' internal layout (conv weights [O,KH,KW,C]) with the
//                               internal shape, prefix 'model' or 'decoder'
//   metadata  format  = "qcapsnets-training-checkpoint", version = "1",
//             state   = JSON of TrainingState below (options, position, Adam step, data
//                       loader seed and position, best accuracy, per-epoch history, the sums of
//                       the epoch in progress)
// The data loader draws its order and augmentation from Rng(seed, epoch, batch) streams (see
// src/data/loader.ts), so its RNG state is fully given by (seed, epoch, next batch).
import { existsSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { readSafetensors, writeSafetensors } from '../io/safetensors.js';
import { FileFormatError } from '../io/byte-source.js';
import type { NamedTensor } from '../io/tensor-data.js';
import type { Dataset } from '../data/dataset.js';
import type { CapsDecoder, CapsNet } from '../models/capsnet.js';
import type { Adam } from '../tensor/ops/adam.js';
import { nonFiniteTensors } from '../nn/module.js';
import type { OptionNames } from './checks.js';
import type { RunSettings } from './run-settings.js';
import type { EpochSummary } from './summary.js';
import type { VariantState } from './variant.js';

export type { RunSettings } from './run-settings.js';

export const CHECKPOINT_FORMAT = 'qcapsnets-training-checkpoint';
export const CHECKPOINT_VERSION = '1';

/** Sums over the finished batches of the epoch in progress. */
export interface EpochProgress {
  batches: number;
  images: number;
  lossSum: number;
  marginSum: number;
  reconSum: number;
  /** sum of batch accuracies (fractions), as the reference averages them */
  accuracySum: number;
  seconds: number;
}

export interface TrainingState {
  model: { kind: string; args: number[] };
  decoder: { kind: string; args: number[] };
  dataset: { name: string; trainCount: number; testCount: number };
  settings: RunSettings;
  /** 1-based epoch to run next (or in progress) and its next batch index (0-based). */
  epoch: number;
  batch: number;
  /** Optimizer steps done so far (the learning rate's step count). */
  globalStep: number;
  adam: { step: number; beta1: number; beta2: number; eps: number };
  loader: { seed: number; epoch: number; nextBatch: number };
  bestAccuracy: number;
  bestEpoch: number | null;
  history: EpochSummary[];
  partial: EpochProgress | null;
  /** the best model's file ('' for a variant's run, which keeps none) */
  modelFile: string;
  /** a variant's run (fine-tuning): what it is and what decides its numbers; absent: training */
  variant?: VariantState;
}

/** `<dir>/<stem>.ckpt.safetensors` for the model file `<dir>/<stem>.<ext>`. */
export function defaultCheckpointPath(modelFile: string): string {
  const ext = extname(modelFile);
  const stem = basename(modelFile, ext) || 'model';
  return join(dirname(modelFile), `${stem}.ckpt.safetensors`);
}

/** Writes the checkpoint atomically. */
export function writeTrainingCheckpoint(
  file: string,
  model: CapsNet,
  decoder: CapsDecoder,
  adam: Adam,
  state: TrainingState,
): void {
  const tensors: [string, NamedTensor][] = [];
  for (const [name, t] of model.stateDict()) tensors.push([`model.${name}`, t]);
  for (const [name, t] of decoder.stateDict()) tensors.push([`decoder.${name}`, t]);
  const names = adamNames(model, decoder);
  names.forEach((name, k) => {
    const shape = [...adam.params[k].shape];
    tensors.push([`adam.m.${name}`, { shape, data: adam.state[k].m, dtype: 'float32' }]);
    tensors.push([`adam.v.${name}`, { shape, data: adam.state[k].v, dtype: 'float32' }]);
  });
  writeSafetensors(file, tensors, {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    state: JSON.stringify(state),
  });
}

/** The names of Adam's parameters, in its order (model, then decoder, as the reference chains them). */
export function adamNames(model: CapsNet, decoder: CapsDecoder): string[] {
  return [...model.parameters().map((p) => `model.${p.name}`), ...decoder.parameters().map((p) => `decoder.${p.name}`)];
}

export interface LoadedCheckpoint {
  /** the file it was read from */
  file: string;
  state: TrainingState;
  model: Map<string, NamedTensor>;
  decoder: Map<string, NamedTensor>;
  adamM: Map<string, NamedTensor>;
  adamV: Map<string, NamedTensor>;
}

/** Reads a checkpoint written by writeTrainingCheckpoint; errors start with `label` and the file
 *  (trainModel: TrainOptions.resume; the CLI: its option's flag). */
export function readTrainingCheckpoint(file: string, label = 'checkpoint'): LoadedCheckpoint {
  if (!existsSync(file)) throw new FileFormatError(file, `${label} ${file}: no such file`);
  let contents: ReturnType<typeof readSafetensors>;
  try {
    contents = readSafetensors(file);
  } catch (err) {
    throw new FileFormatError(
      file,
      `${label} ${file}: not a qcapsnets training checkpoint (a safetensors file written by trainModel): ${(err as Error).message}`,
      { cause: err },
    );
  }
  const { tensors, metadata } = contents;
  if (metadata.format !== CHECKPOINT_FORMAT)
    throw new FileFormatError(
      file,
      `${label} ${file}: not a qcapsnets training checkpoint (expected metadata format '${CHECKPOINT_FORMAT}'; ` +
        `a model .pt file holds weights only and cannot resume training)`,
    );
  if (metadata.version !== CHECKPOINT_VERSION)
    throw new FileFormatError(
      file,
      `${label} ${file}: checkpoint version ${metadata.version}, this qcapsnets reads ${CHECKPOINT_VERSION}`,
    );
  let state: TrainingState;
  try {
    state = JSON.parse(metadata.state ?? '') as TrainingState;
  } catch (err) {
    throw new FileFormatError(
      file,
      `${label} ${file}: the training state in the metadata is not valid JSON (${(err as Error).message})`,
      { cause: err },
    );
  }
  checkState(state, file, `${label} ${file}`);
  const out: LoadedCheckpoint = {
    file,
    state,
    model: new Map(),
    decoder: new Map(),
    adamM: new Map(),
    adamV: new Map(),
  };
  for (const [name, t] of tensors) {
    if (name.startsWith('adam.m.')) out.adamM.set(name.slice(7), t);
    else if (name.startsWith('adam.v.')) out.adamV.set(name.slice(7), t);
    else if (name.startsWith('model.')) out.model.set(name.slice(6), t);
    else if (name.startsWith('decoder.')) out.decoder.set(name.slice(8), t);
    else throw new FileFormatError(file, `${label} ${file}: unexpected tensor '${name}'`);
  }
  return out;
}

/** The training state's fields have their types (a tampered or truncated state is an error
 *  naming the field, not a TypeError later). */
function checkState(state: unknown, file: string, where: string): asserts state is TrainingState {
  const bad = (what: string) => new FileFormatError(file, `${where}: the training state ${what}`);
  if (typeof state !== 'object' || state === null || Array.isArray(state)) throw bad('is not an object');
  const st = state as Record<string, unknown>;
  const obj = (v: unknown, name: string) => {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`has no '${name}' object`);
    return v as Record<string, unknown>;
  };
  const int = (v: unknown, name: string, min = 0) => {
    if (!(Number.isInteger(v) && (v as number) >= min))
      throw bad(`'${name}' is ${shortJson(v)}, expected an integer >= ${min}`);
  };
  const nums = (v: unknown, name: string) => {
    if (!Array.isArray(v) || !v.every((x) => Number.isInteger(x))) throw bad(`'${name}' is not a list of integers`);
  };
  for (const k of ['model', 'decoder'] as const) {
    const m = obj(st[k], k);
    if (typeof m.kind !== 'string') throw bad(`has no '${k}.kind'`);
    nums(m.args, `${k}.args`);
  }
  const ds = obj(st.dataset, 'dataset');
  if (typeof ds.name !== 'string') throw bad("has no 'dataset.name'");
  obj(st.settings, 'settings');
  int(st.epoch, 'epoch', 1);
  int(st.batch, 'batch');
  int(st.globalStep, 'globalStep');
  const adam = obj(st.adam, 'adam');
  int(adam.step, 'adam.step');
  for (const k of ['beta1', 'beta2', 'eps']) if (typeof adam[k] !== 'number') throw bad(`'adam.${k}' is not a number`);
  if (typeof st.bestAccuracy !== 'number') throw bad("'bestAccuracy' is not a number");
  if (!Array.isArray(st.history)) throw bad("'history' is not a list");
  if (st.partial !== null && typeof st.partial !== 'object') throw bad("'partial' is not an object or null");
}

/** A value for an error message: primitives as JSON, containers by their kind only (a tampered
 *  state may nest them too deep for JSON.stringify). */
function shortJson(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object' && v !== null) return 'an object';
  return String(JSON.stringify(v));
}

/** Loads Adam's step and moments from a checkpoint; every parameter must be there with its size. */
export function restoreAdam(adam: Adam, names: string[], ckpt: LoadedCheckpoint, file: string): void {
  const problems: string[] = [];
  names.forEach((name, k) => {
    const m = ckpt.adamM.get(name);
    const v = ckpt.adamV.get(name);
    const size = adam.params[k].size;
    if (!m || !v) problems.push(`missing Adam moments of ${name}`);
    else if (m.data.length !== size || v.data.length !== size)
      problems.push(`Adam moments of ${name} have ${m.data.length} values, expected ${size}`);
  });
  if (ckpt.adamM.size !== names.length) problems.push(`${ckpt.adamM.size} Adam moments for ${names.length} parameters`);
  const moments = [
    ...[...ckpt.adamM].map(([k, t]) => [`adam.m.${k}`, t] as const),
    ...[...ckpt.adamV].map(([k, t]) => [`adam.v.${k}`, t] as const),
  ];
  if (problems.length)
    throw new Error(`checkpoint ${file}: the optimizer state does not match:\n  ${problems.join('\n  ')}`);
  const nonFinite = nonFiniteTensors(moments);
  if (nonFinite)
    throw new Error(`checkpoint ${file}: the optimizer state holds values that are not finite numbers: ${nonFinite}`);
  names.forEach((name, k) => {
    adam.state[k].m.set(ckpt.adamM.get(name)!.data);
    adam.state[k].v.set(ckpt.adamV.get(name)!.data);
  });
  adam.step = ckpt.state.adam.step;
  adam.beta1 = ckpt.state.adam.beta1;
  adam.beta2 = ckpt.state.adam.beta2;
  adam.eps = ckpt.state.adam.eps;
}

function sameArgs(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** The settings a resumed run must share with its checkpoint (epochs may grow). */
const SAME_SETTINGS = [
  'lr',
  'batchSize',
  'regularizationScale',
  'decaySteps',
  'decayRate',
  'hardTraining',
  'seed',
  'testBatchSize',
] as const satisfies readonly (keyof RunSettings)[];

/** What a run is, for comparing it with a checkpoint's. */
export type RunIdentity = Pick<TrainingState, 'model' | 'decoder' | 'dataset' | 'settings' | 'variant'>;

/** The run's model, decoder, data and settings (and a variant's, when it is one), as a
 *  checkpoint records them. */
export function runIdentity(
  model: CapsNet,
  decoder: CapsDecoder,
  data: { train: Dataset; test: Dataset },
  s: RunSettings,
  variant?: VariantState,
): RunIdentity {
  return {
    ...(variant ? { variant: { kind: variant.kind, settings: { ...variant.settings } } } : {}),
    model: { kind: model.kind, args: [...model.args] },
    decoder: { kind: decoder.kind, args: [...decoder.args] },
    dataset: { name: data.train.name, trainCount: data.train.count, testCount: data.test.count },
    settings: {
      epochs: s.epochs,
      lr: s.lr,
      batchSize: s.batchSize,
      regularizationScale: s.regularizationScale,
      decaySteps: s.decaySteps,
      decayRate: s.decayRate,
      hardTraining: s.hardTraining,
      seed: s.seed,
      testBatchSize: s.testBatchSize,
    },
  };
}

/** A variant's settings against its checkpoint's (a training checkpoint cannot continue a
 *  variant's run, nor the other way round); each named as `names.variant` says. */
function variantProblems(
  theirs: VariantState | undefined,
  ours: VariantState | undefined,
  names: OptionNames,
): string[] {
  const run = (v: VariantState | undefined) => `a ${v ? v.kind : 'training'} run`;
  if (theirs?.kind !== ours?.kind) return [`the checkpoint is ${run(theirs)}'s, this is ${run(ours)}`];
  if (!theirs || !ours) return [];
  const problems: string[] = [];
  for (const key of new Set([...Object.keys(ours.settings), ...Object.keys(theirs.settings)])) {
    const a = JSON.stringify(ours.settings[key]);
    const b = JSON.stringify(theirs.settings[key]);
    if (a !== b) problems.push(`${names.variant?.[key] ?? key} ${a}: the checkpoint used ${b}`);
  }
  return problems;
}

/** A checkpoint may only continue the run it came from (more epochs allowed); the error lists
 *  every difference, each named as `names` says (trainModel's options, or the CLI's flags). */
export function checkResumable(ckpt: LoadedCheckpoint, run: RunIdentity, names: OptionNames): void {
  const { state } = ckpt;
  const problems: string[] = [];
  const modules = [
    ['model', names.model, names.modelArgs],
    ['decoder', names.decoder, names.decoderArgs],
  ] as const;
  for (const [key, kindName, argsName] of modules) {
    const ours = run[key];
    const theirs = state[key];
    if (ours.kind !== theirs.kind || !sameArgs(ours.args, theirs.args))
      problems.push(
        `${kindName} ${ours.kind} ${argsName} ${ours.args.join(' ')}: the checkpoint has ${theirs.kind} ${theirs.args.join(' ')}`,
      );
  }
  const ds = state.dataset;
  const our = run.dataset;
  if (ds.name !== our.name || ds.trainCount !== our.trainCount || ds.testCount !== our.testCount)
    problems.push(
      `${names.dataset} ${our.name} (${our.trainCount} train / ${our.testCount} test images): the checkpoint was trained on ` +
        `${ds.name} (${ds.trainCount} / ${ds.testCount})`,
    );
  for (const key of SAME_SETTINGS) {
    const ours = run.settings[key];
    const theirs = state.settings[key];
    // a smaller learning rate is how a run that diverged continues
    if (key === 'lr' && typeof ours === 'number' && typeof theirs === 'number' && ours < theirs) continue;
    if (ours !== theirs) problems.push(`${names.settings[key]} ${String(ours)}: the checkpoint used ${String(theirs)}`);
  }
  problems.push(...variantProblems(state.variant, run.variant, names));
  const done = state.history.length;
  if (done > run.settings.epochs)
    problems.push(
      `${names.settings.epochs} ${run.settings.epochs}: the checkpoint has already finished ${done} epochs`,
    );
  if (problems.length)
    throw new Error(
      `${names.resume} ${ckpt.file}: the checkpoint belongs to a different run:\n  ${problems.join('\n  ')}\n` +
        `Pass the settings of the original run (only ${names.settings.epochs} may grow, and ${names.settings.lr} shrink), or start afresh without ${names.resume}.`,
    );
}
