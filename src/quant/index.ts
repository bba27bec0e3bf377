export * from './methods.js';
export * from './memory.js';
export * from './config.js';
export * from './quantized-forward.js';
export * from './quantized-model.js';
export * from './activation-volume.js';
export * from './integer-container.js';
