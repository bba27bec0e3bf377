// The capsule networks and decoders of the reference implementation, by name.
export * from './capsnet.js';
export * from './shallow-capsnet.js';
export * from './deepcaps.js';
export * from './decoders.js';
export * from './factory.js';
export * from './registry.js';
export * from './description.js';
export * from './training-step.js';
export * from './metrics.js';
export * from './evaluate.js';
export * from './model-file.js';
