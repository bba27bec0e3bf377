// Elements per image at each layer's activation quantization points (SPEC 4: layer outputs
// and votes), counted by running the model once on one blank image with hooks that count
// instead of rounding, so the numbers come from the model's own forward, whatever its input
// size.
import type { CapsNet } from '../models/capsnet.js';
import type { QuantHooks } from '../nn/module.js';
import { give, take } from '../tensor/pool.js';
import { Tensor } from '../tensor/tensor.js';

export function activationCounts(model: CapsNet): number[] {
  const index = new Map(model.layerNames.map((n, i) => [n, i]));
  const counts = model.layerNames.map(() => 0);
  const hooks: QuantHooks = {
    activation: (layer, _point, t) => {
      const l = index.get(layer.split('.')[0]);
      if (l === undefined) throw new Error(`activationCounts: no layer named '${layer}'`);
      counts[l] += t.size; // one image
    },
    routing: () => null,
  };
  const size = model.inputWh * model.inputWh * model.inputCh;
  const x = new Tensor(take(size).fill(0), [1, model.inputWh, model.inputWh, model.inputCh]);
  const wasTraining = model.training;
  model.eval();
  try {
    give(model.forward(x, { training: false, quant: hooks }).data);
  } finally {
    give(x.data);
    model.train(wasTraining);
  }
  return counts;
}
