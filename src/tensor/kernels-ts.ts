// The typescript backend: every kernel as plain loops. The reference in tests and the
// fallback when the native addon cannot load.
import type { Kernels } from './backend.js';
import { conv2dBackwardDataTs, conv2dBackwardWeightTs, conv2dForwardTs } from './ts/conv.js';
import { conv2dForwardFixedPointTs } from './ts/fixed-conv.js';
import {
  adamUpdateTs,
  batchNormApplyTs,
  batchNormBackwardTs,
  channelSumsTs,
  permuteTs,
  squashRowsBackwardTs,
  squashRowsTs,
} from './ts/elementwise.js';
import { sgemmTs } from './ts/gemm.js';
import { fracErrorsTs } from './ts/frac-errors.js';
import { maskGradientTs, quantizeMaskedTs, quantizeTs } from './ts/quantize.js';
import { capsulesForwardTs, routingBackwardTs, routingForwardTs } from './ts/routing.js';

export const typescriptKernels: Kernels = {
  name: 'typescript',
  setThreads() {},
  getThreads: () => 1,
  conv2dForwardFixedPoint: conv2dForwardFixedPointTs,
  sgemm: sgemmTs,
  conv2dForward: (g, x, w, bias, y, relu, quant) => {
    conv2dForwardTs(g, x, w, bias, y, relu);
    if (quant) quantizeTs(y, y, y.length, quant);
    return null; // a float convolution, fixed-point values or not
  },
  conv2dBackwardData: conv2dBackwardDataTs,
  conv2dBackwardWeight: conv2dBackwardWeightTs,
  routingForward: routingForwardTs,
  capsulesForward: capsulesForwardTs,
  routingBackward: routingBackwardTs,
  quantize: quantizeTs,
  quantizeMasked: quantizeMaskedTs,
  maskGradient: maskGradientTs,
  fracErrors: fracErrorsTs,
  adamUpdate: adamUpdateTs,
  squashRows: squashRowsTs,
  squashRowsBackward: squashRowsBackwardTs,
  channelSums: channelSumsTs,
  batchNormApply: batchNormApplyTs,
  batchNormBackward: batchNormBackwardTs,
  reluMask(dy, y, n) {
    for (let i = 0; i < n; i++) if (!(y[i] > 0)) dy[i] = 0;
  },
  permute: permuteTs,
};
