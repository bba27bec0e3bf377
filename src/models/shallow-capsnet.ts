// ShallowCapsNet (Sabour et al. 2017 as in the reference, SPEC 2.2):
//   conv    Conv2d_ReLU(input_ch -> 256, 9x9)             [B,H,W,C] -> [B,H-8,W-8,256]
//   primary ConvPixelToCapsules(256 -> 32 x 8, 9x9, s2), one routing iteration
//                                                          -> [B,h,w,32,8]
//   flatten capsules in the order (type, y, x)             -> [B, 32*h*w, 8]
//   digit   Capsules(32*h*w x 8 -> num_classes x caps_dim), 3 iterations -> [B, K, D]
// The reference hard-codes 1152 input capsules to digit (28x28 inputs); here n_in follows the
// input size (18432 for 64x64), so every SPEC 7 configuration runs.
import { flattenCapsules, flattenCapsulesBackward } from '../nn/capsule-shapes.js';
import { Capsules } from '../nn/capsules.js';
import { ConvPixelToCapsules } from '../nn/conv-caps.js';
import { Conv2dRelu } from '../nn/conv2d.js';
import { inputGrad } from '../nn/module.js';
import { give } from '../tensor/pool.js';
import type { Tensor } from '../tensor/tensor.js';
import { convOutputSide } from '../tensor/conv-geometry.js';
import { CapsNet, type InferenceStage } from './capsnet.js';
import { ModelDescription } from './description.js';

const CONV = { kernel: 9, stride: 1, pad: 0 };
const PRIMARY = { kernel: 9, stride: 2, pad: 0 };
import { DEFAULT_SEED } from '../tensor/seed.js';

/** Spatial size of the primary capsule grid for a square input of side `inputWh`. */
export function shallowPrimaryGrid(inputWh: number): number {
  return convOutputSide(convOutputSide(inputWh, CONV), PRIMARY);
}

export class ShallowCapsNet extends CapsNet {
  readonly kind = 'ShallowCapsNet';
  readonly conv: Conv2dRelu;
  readonly primary: ConvPixelToCapsules;
  readonly digit: Capsules;
  /** Number of primary capsules (1152 for 28x28, 18432 for 64x64). */
  readonly numPrimaryCaps: number;
  readonly description: ModelDescription;

  constructor(
    readonly inputWh: number,
    readonly inputCh: number,
    readonly numClasses: number,
    readonly capsDim: number,
    seed = DEFAULT_SEED,
  ) {
    super();
    const grid = shallowPrimaryGrid(inputWh);
    if (!(grid >= 1)) throw new Error(`ShallowCapsNet: input_wh ${inputWh} is too small (at least 17 pixels)`);
    this.numPrimaryCaps = 32 * grid * grid;
    this.conv = this.addChild('conv', new Conv2dRelu({ inChannels: inputCh, outChannels: 256, ...CONV }));
    this.primary = this.addChild('primary', new ConvPixelToCapsules({ ci: 1, ni: 256, co: 32, no: 8, ...PRIMARY }, 1));
    this.digit = this.addChild('digit', new Capsules(this.numPrimaryCaps, 8, numClasses, capsDim, 3));
    this.resetParameters(seed);
    this.description = new ModelDescription(this, [
      { name: 'conv', module: this.conv, capsule: false, routingIterations: null, conv: CONV },
      {
        name: 'primary',
        module: this.primary,
        capsule: true,
        routingIterations: this.primary.iterations,
        conv: PRIMARY,
      },
      {
        name: 'digit',
        module: this.digit,
        capsule: true,
        routingIterations: this.digit.iterations,
        input: { from: ['primary'], flatten: true },
      },
    ]);
  }

  readonly stages: readonly InferenceStage[] = [
    { name: 'conv', run: (x, ctx) => this.conv.forward(x, ctx) },
    {
      name: 'primary',
      run: (h, ctx) => {
        const map = this.primary.forward(h, ctx);
        const caps = flattenCapsules(map); // [B, 32*h*w, 8], order (type, y, x)
        give(map.data);
        return caps;
      },
    },
    { name: 'digit', run: (caps, ctx) => this.digit.forward(caps, ctx) },
  ];

  /** The stages backwards from the kept inputs: conv's output and the flat primary capsules. */
  backward(dCaps: Tensor): void {
    const [h, caps] = this.takeKept();
    const grid = shallowPrimaryGrid(this.inputWh);
    const mapShape = [h.shape[0], grid, grid, 32, 8];
    const dList = inputGrad(this.digit.backward(dCaps));
    give(caps.data);
    const dMap = flattenCapsulesBackward(dList, mapShape);
    give(dList.data);
    const dh = inputGrad(this.primary.backward(dMap));
    give(dMap.data);
    this.conv.backward(dh, false);
    give(dh.data);
    give(h.data);
  }
}
