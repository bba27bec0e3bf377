// What a command works on, from its checked flags: the model (and decoder) built and fitted to
// --dataset before any file is read, the test and training splits loaded (downloaded with
// --download), and the trained weights of --trained-weights-path read into the model.
import { existsSync, statSync } from 'node:fs';
import type { Dataset } from '../data/dataset.js';
import { downloadDataset } from '../data/download.js';
import { DATASET_INFO, DatasetMissingError, loadDataset } from '../data/load.js';
import { splitOffSelection } from '../data/selection-split.js';
import type { DatasetName } from '../data/sources.js';
import { readStateDict } from '../io/pt.js';
import type { CapsDecoder, CapsNet, DecoderName, ModelName } from '../models/capsnet.js';
import { DEEPCAPS_INPUT_SIZES } from '../models/deepcaps.js';
import {
  buildDecoder,
  buildModel,
  DECODER_NAMES,
  isDecoderName,
  isModelName,
  MODEL_NAMES,
  modelOfStateDict,
  moduleArgsProblem,
  orList,
} from '../models/factory.js';
import { checkDecoderFits, checkModelFitsDataset, type DatasetShape } from '../train/checks.js';
import type { Flags } from './flags.js';
import { FLAG_OPTION_NAMES } from './validate.js';

export type Log = (line: string) => void;
export type DataFlags = Flags<'dataset' | 'data-dir' | 'download'>;

/** --dataset's image shape and classes, known before its files are read. */
export function datasetShapeFromFlags(o: Flags<'dataset'>): DatasetShape {
  const name = o.dataset as DatasetName;
  return { name, ...DATASET_INFO[name] };
}

/** A split of --dataset, its first `limit` images (all when null); an empty split is an error. */
export async function loadSplit(o: DataFlags, split: 'train' | 'test', limit: number | null, log: Log) {
  const ds = await findSplit(o, split, limit ?? undefined, log);
  // a split of 0 images would give an accuracy of NaN% and a search on nothing
  if (ds.count === 0)
    throw new Error(`${ds.source}: the ${ds.split} split of ${ds.name} holds 0 images; expected at least one`);
  return ds;
}

async function findSplit(o: DataFlags, split: 'train' | 'test', limit: number | undefined, log: Log) {
  const name = o.dataset as DatasetName;
  const dataDir = o.dataDir ?? undefined;
  try {
    return loadDataset(name, split, { dataDir, limit });
  } catch (err) {
    if (!o.download) {
      if (err instanceof DatasetMissingError)
        throw new Error(`${err.what}, or pass --data-dir DIR, or add --download (with --data-dir) to fetch them.`, {
          cause: err,
        });
      throw err;
    }
    if (!dataDir) throw new Error(`--download needs --data-dir (the folder to download ${name} into)`, { cause: err });
    log(`downloading ${name} into ${dataDir} ...`);
    await downloadDataset(name, dataDir, { log });
    return loadDataset(name, split, { dataDir, limit });
  }
}

/** The test split (its first --test-limit images), checked against the model. */
export async function loadTestSplit(o: DataFlags & Flags<'test-limit'>, model: CapsNet, log: Log): Promise<Dataset> {
  const test = await loadSplit(o, 'test', o.testLimit, log);
  checkLoadedDataset(model, test);
  return test;
}

/** The training set less its --selection-split images, and those images (null when 0). */
export async function loadTrainingSplit(
  o: DataFlags & Flags<'train-limit' | 'selection-split'>,
  model: CapsNet,
  log: Log,
): Promise<{ train: Dataset; selection: Dataset | null }> {
  const train = await loadSplit(o, 'train', o.trainLimit, log);
  const n = o.selectionSplit;
  const parts = n === 0 ? { train, selection: null } : splitOffSelection(train, n);
  if (parts.selection)
    log(`--selection-split ${n}: the search decides on ${parts.selection}; training uses ${parts.train.count} images`);
  checkLoadedDataset(model, parts.train);
  return parts;
}

/** A loaded split must match the model as --dataset's shape did (labels included). */
export function checkLoadedDataset(model: CapsNet, ds: Dataset): void {
  checkModelFitsDataset(model, ds, FLAG_OPTION_NAMES);
}

/** --trained-weights-path read into `model`; a file of another model names the flags that fit it. */
export function loadTrained(o: Flags<'trained-weights-path'>, model: CapsNet): string {
  const path = o.trainedWeightsPath;
  if (!existsSync(path) || statSync(path).isDirectory()) {
    throw new Error(
      `--trained-weights-path ${path}: expected a .pt state_dict file (written by torch.save or by qcapsnets)`,
    );
  }
  const sd = readStateDict(path);
  try {
    model.loadStateDict(sd, path);
  } catch (err) {
    // a file of the other model, or of other --model-args: one line that says which flags fit
    const found = modelOfStateDict(sd);
    const same = found && found.name === model.kind && found.args.join(' ') === model.args.join(' ');
    if (!found || same) throw err;
    throw new Error(
      `--trained-weights-path ${path} holds a ${found.name} ${found.args.join(' ')} state_dict, not ${model.kind} ` +
        `${model.args.join(' ')}: pass --model ${found.name} --model-args ${found.args.join(' ')}`,
      { cause: err },
    );
  }
  return path;
}

function moduleFromFlags<T>(which: 'model' | 'decoder', name: string, args: number[], build: () => T): T {
  const known = which === 'model' ? isModelName(name) : isDecoderName(name);
  if (!known)
    throw new Error(
      `--${which} ${name}: unknown ${which} '${name}': expected ${orList(which === 'model' ? MODEL_NAMES : DECODER_NAMES)}`,
    );
  const flags = `--${which} ${name} --${which}-args ${args.join(' ')}`;
  const problem = moduleArgsProblem(name as ModelName | DecoderName, args);
  if (problem) throw new Error(`${flags}: ${problem}`);
  try {
    return build();
  } catch (err) {
    throw new Error(`${flags}: ${(err as Error).message}`, { cause: err });
  }
}

/** --model / --model-args built (with --seed) and checked against --dataset's images and
 *  classes, before any data is loaded. */
export function modelFromFlags(o: Flags<'model' | 'model-args' | 'seed' | 'dataset'>): CapsNet {
  // the fit against --dataset before anything is built (a wrong --model-args can ask for GBs)
  const { model: name, modelArgs: args, seed } = o;
  const buildable = name !== 'DeepCaps' || (DEEPCAPS_INPUT_SIZES as readonly number[]).includes(args[0]);
  if (isModelName(name) && moduleArgsProblem(name, args) === null && buildable) {
    const [inputWh, inputCh, numClasses, capsDim] = args;
    const model = { kind: name, inputWh, inputCh, numClasses, capsDim, args };
    checkModelFitsDataset(model, datasetShapeFromFlags(o), FLAG_OPTION_NAMES);
  }
  return moduleFromFlags('model', name, args, () => buildModel(name, args, { seed }));
}

/** --decoder / --decoder-args built (with --seed) and checked against the model and the images. */
export function decoderFromFlags(
  o: Flags<'decoder' | 'decoder-args' | 'seed' | 'dataset'>,
  model: CapsNet,
): CapsDecoder {
  const { decoder: name, decoderArgs: args, seed } = o;
  const decoder = moduleFromFlags('decoder', name, args, () => buildDecoder(name, args, { seed }));
  checkDecoderFits(decoder, model, datasetShapeFromFlags(o), FLAG_OPTION_NAMES);
  return decoder;
}
