// A model and its weights file in one call: build the named model, then load a state_dict
// written by torch.save (the reference implementation's checkpoints load unchanged) or by
// qcapsnets; and the reverse.
import type { CapsNet } from './capsnet.js';
import { buildModel } from './factory.js';
import { readStateDict, writeStateDict } from '../io/pt.js';

export interface LoadModelOptions {
  /** 'ShallowCapsNet' (default) or 'DeepCaps' */
  model?: string;
  /** the model's arguments: input_wh, input_ch, num_classes, caps_dim (default 28 1 10 16) */
  args?: readonly number[];
  /** which sub-dict holds the tensors (see ReadStateDictOptions.key) */
  key?: string | readonly string[];
}

/** loadModel('model.pt', { model: 'DeepCaps', args: [28, 1, 10, 32] }). */
export function loadModel(file: string, options: LoadModelOptions = {}): CapsNet {
  const model = buildModel(options.model ?? 'ShallowCapsNet', options.args ?? [28, 1, 10, 16]);
  model.loadStateDict(readStateDict(file, { key: options.key }), file);
  return model;
}

/** Writes the model's state_dict as a PyTorch .pt file (torch.load(f, weights_only=True) reads it). */
export function saveModel(file: string, model: Pick<CapsNet, 'stateDict'>): void {
  writeStateDict(file, model.stateDict());
}
