// Elementwise activations and their gradients.
import { take } from '../pool.js';
import { Tensor } from '../tensor.js';

export function reluForward(x: Tensor): Tensor {
  const y = take(x.size);
  const d = x.data;
  for (let i = 0; i < d.length; i++) y[i] = d[i] > 0 ? d[i] : 0;
  return new Tensor(y, x.shape);
}

/** dx = dy * (y > 0), from the forward output y. */
export function reluBackward(dy: Tensor, y: Tensor): Tensor {
  const dx = take(dy.size);
  for (let i = 0; i < dx.length; i++) dx[i] = y.data[i] > 0 ? dy.data[i] : 0;
  return new Tensor(dx, dy.shape);
}

export function sigmoidForward(x: Tensor): Tensor {
  const y = take(x.size);
  const d = x.data;
  for (let i = 0; i < d.length; i++) y[i] = 1 / (1 + Math.exp(-d[i]));
  return new Tensor(y, x.shape);
}

/** dx = dy * y (1 - y), from the forward output y. */
export function sigmoidBackward(dy: Tensor, y: Tensor): Tensor {
  const dx = take(dy.size);
  for (let i = 0; i < dx.length; i++) dx[i] = dy.data[i] * y.data[i] * (1 - y.data[i]);
  return new Tensor(dx, dy.shape);
}
