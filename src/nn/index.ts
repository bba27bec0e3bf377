// Layers built on the ops of src/tensor: each holds its parameters and gradients, caches in a
// training forward what its backward needs, and names its state like PyTorch's state_dict.
export * from './module.js';
export * from './init.js';
export * from './conv2d.js';
export * from './batchnorm2d.js';
export * from './conv-bn-relu.js';
export * from './linear.js';
export * from './conv-transpose2d.js';
export * from './capsules.js';
export * from './conv-caps.js';
export * from './deepcaps-block.js';
export * from './capsule-shapes.js';
