// BatchNorm2d on channels-last tensors x [B,H,W,C] (PyTorch semantics, in src/tensor/ops).
// Parameters weight (gamma, init 1) and bias (beta, init 0); buffers running_mean (0),
// running_var (1) and num_batches_tracked (int64). `momentum` is PyTorch's: new running value =
// (1 - momentum) old + momentum batch.
import { give } from '../tensor/pool.js';
import {
  batchNorm2dBackward,
  batchNorm2dForward,
  type BatchNormCache,
  type BatchNormState,
} from '../tensor/ops/batchnorm2d.js';
import { Tensor } from '../tensor/tensor.js';
import { type ForwardContext, type Layer, Module, needCache } from './module.js';

export class BatchNorm2d extends Module implements Layer {
  readonly kind = 'BatchNorm2d';
  readonly state: BatchNormState;
  readonly dWeight: Tensor;
  readonly dBias: Tensor;
  private cache: BatchNormCache | null = null;

  constructor(
    readonly channels: number,
    opts: { momentum?: number; eps?: number } = {},
  ) {
    super();
    this.state = {
      weight: Tensor.from(new Array<number>(channels).fill(1), [channels]),
      bias: Tensor.zeros([channels]),
      runningMean: Tensor.zeros([channels]),
      runningVar: Tensor.from(new Array<number>(channels).fill(1), [channels]),
      numBatchesTracked: 0,
      momentum: opts.momentum ?? 0.1,
      eps: opts.eps ?? 1e-5,
    };
    this.dWeight = this.addParam('weight', this.state.weight, [channels]);
    this.dBias = this.addParam('bias', this.state.bias, [channels]);
    const st = this.state;
    this.addBuffer({
      local: 'running_mean',
      torchShape: [channels],
      dtype: 'float32',
      read: () => st.runningMean.data.slice(),
      write: (v) => st.runningMean.data.set(v),
    });
    this.addBuffer({
      local: 'running_var',
      torchShape: [channels],
      dtype: 'float32',
      read: () => st.runningVar.data.slice(),
      write: (v) => st.runningVar.data.set(v),
    });
    this.addBuffer({
      local: 'num_batches_tracked',
      torchShape: [],
      dtype: 'int64',
      read: () => Float32Array.of(st.numBatchesTracked),
      write: (v) => {
        st.numBatchesTracked = v[0];
      },
    });
  }

  /** nn.BatchNorm2d's reset_parameters and reset_running_stats. */
  override resetParameters(): void {
    this.state.weight.data.fill(1);
    this.state.bias.data.fill(0);
    this.state.runningMean.data.fill(0);
    this.state.runningVar.data.fill(1);
    this.state.numBatchesTracked = 0;
  }

  /** Training: batch statistics, running statistics updated; eval: running statistics. */
  forward(x: Tensor, ctx: ForwardContext): Tensor {
    const { y, cache } = batchNorm2dForward(x, this.state, ctx.training);
    this.cache = cache;
    return y;
  }

  backward(dy: Tensor, needInputGrad = true): Tensor | null {
    const cache = needCache(this.cache, this.kind, this.path);
    this.cache = null;
    const dx = batchNorm2dBackward(dy, cache, this.state, { dw: this.dWeight, db: this.dBias });
    give(cache.xhat.data);
    if (!needInputGrad) {
      give(dx.data);
      return null;
    }
    return dx;
  }
}
