export * from './evaluator.js';
export * from './qcapsnets.js';
export * from './fast-evaluator.js';
export * from './search-model.js';
export * from './sensitivity.js';
export * from './eval-cache.js';
export * from './sweep.js';
export * from './sweep-result.js';
