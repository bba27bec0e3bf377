// Elements per image at each layer's activation quantization points (SPEC 4: layer outputs
// and votes), from the model's description (its quantization points, traced once from the
// model's own forward, whatever its input size).
import type { CapsNet } from '../models/capsnet.js';

export function activationCounts(model: CapsNet): number[] {
  return model.description.quantPoints().map((points) => points.reduce((n, p) => n + p.elements, 0));
}
