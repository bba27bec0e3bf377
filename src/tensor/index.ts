// The numeric core: tensors, ops with explicit forward/backward, backends.
export * from './tensor.js';
export * from './pool.js';
export * from './backend.js';
export { kernels, backendInfo, useKernels, typescriptKernels } from './kernels.js';
export * from './ops/conv2d.js';
export * from './ops/conv-transpose2d.js';
export * from './ops/linear.js';
export * from './ops/batchnorm2d.js';
export * from './ops/activations.js';
export * from './ops/softmax.js';
export * from './ops/squash.js';
export * from './ops/capsule-votes.js';
export * from './ops/routing.js';
export * from './ops/losses.js';
export * from './ops/shape.js';
export * from './ops/adam.js';
