// DeepCaps (Rajasegaran et al. 2019 as in the reference, SPEC 2.3), input_wh 28 or 64:
//   conv1     Conv2d_BN_ReLU(input_ch -> 128, 3x3, pad 1)   [B,H,W,C] -> [B,H,W,1,128]
//   block1    DeepCapsBlock(1 x 128 -> 32 x 4, stride 2)     -> [B,H/2,..,32,4]
//   block2    DeepCapsBlock(32 x 4 -> 32 x 8, stride 2)
//   block3    DeepCapsBlock(32 x 8 -> 32 x 8, stride 2)      -> l3 [B,4,4,32,8] (28x28)
//   block4    DeepCapsBlock(32 x 8 -> 32 x 8, stride 2, Conv3DCaps skip with 3 iterations)
//   flatten block3's and block4's outputs in the order (type, y, x), concatenate block3 first
//                                                             -> [B, 640 | 2560, 8]
//   capsLayer Capsules(n_in x 8 -> num_classes x caps_dim), 3 iterations
import { flattenCapsules, flattenCapsulesBackward } from '../nn/capsule-shapes.js';
import { Capsules } from '../nn/capsules.js';
import { Conv2dBnRelu } from '../nn/conv-bn-relu.js';
import { DeepCapsBlock } from '../nn/deepcaps-block.js';
import { inputGrad } from '../nn/module.js';
import { concat, split } from '../tensor/ops/shape.js';
import { give } from '../tensor/pool.js';
import type { Tensor } from '../tensor/tensor.js';
import { convOutputSide } from '../tensor/conv-geometry.js';
import { CapsNet, type InferenceStage } from './capsnet.js';
import { ModelDescription } from './description.js';
import { DEFAULT_SEED } from '../tensor/seed.js';

export const DEEPCAPS_INPUT_SIZES = [28, 64] as const;

const CONV1 = { kernel: 3, stride: 1, pad: 1 };
/** every block's first convolutions (l1 and the skip's input side): 3x3, stride 2, pad 1 */
const BLOCK = { kernel: 3, stride: 2, pad: 1 };
const half = (n: number) => convOutputSide(n, BLOCK);

export class DeepCaps extends CapsNet {
  readonly kind = 'DeepCaps';
  readonly conv1: Conv2dBnRelu;
  readonly block1: DeepCapsBlock;
  readonly block2: DeepCapsBlock;
  readonly block3: DeepCapsBlock;
  readonly block4: DeepCapsBlock;
  readonly capsLayer: Capsules;
  /** Capsules into capsLayer (640 for 28x28, 2560 for 64x64). */
  readonly numFlatCaps: number;
  readonly description: ModelDescription;

  constructor(
    readonly inputWh: number,
    readonly inputCh: number,
    readonly numClasses: number,
    readonly capsDim: number,
    seed = DEFAULT_SEED,
  ) {
    super();
    if (!(DEEPCAPS_INPUT_SIZES as readonly number[]).includes(inputWh))
      throw new Error(`DeepCaps: input_wh must be 28 or 64, got ${inputWh}`);
    const s3 = half(half(half(inputWh)));
    const s4 = half(s3);
    this.numFlatCaps = 32 * s3 * s3 + 32 * s4 * s4;
    this.conv1 = this.addChild(
      'conv1',
      new Conv2dBnRelu({
        inChannels: inputCh,
        outChannels: 128,
        ...CONV1,
        momentum: 0.99,
        eps: 1e-3,
      }),
    );
    this.block1 = this.addChild('block1', new DeepCapsBlock(1, 128, 32, 4, 2, 1));
    this.block2 = this.addChild('block2', new DeepCapsBlock(32, 4, 32, 8, 2, 1));
    this.block3 = this.addChild('block3', new DeepCapsBlock(32, 8, 32, 8, 2, 1));
    this.block4 = this.addChild('block4', new DeepCapsBlock(32, 8, 32, 8, 2, 3));
    this.capsLayer = this.addChild('capsLayer', new Capsules(this.numFlatCaps, 8, numClasses, capsDim, 3));
    this.resetParameters(seed);
    const block = (name: string, b: DeepCapsBlock) => ({
      name,
      module: b,
      capsule: true,
      routingIterations: b.routingIterations,
      conv: BLOCK,
    });
    this.description = new ModelDescription(this, [
      { name: 'conv1', module: this.conv1, capsule: false, routingIterations: null, conv: CONV1 },
      block('block1', this.block1),
      block('block2', this.block2),
      block('block3', this.block3),
      block('block4', this.block4),
      {
        name: 'capsLayer',
        module: this.capsLayer,
        capsule: true,
        routingIterations: this.capsLayer.iterations,
        // block3's and block4's capsules, flattened and concatenated (block3 first)
        input: { from: ['block3', 'block4'], flatten: true },
      },
    ]);
  }

  readonly stages: readonly InferenceStage[] = [
    {
      name: 'conv1',
      run: (x, ctx) => {
        const [B, H, W] = x.shape;
        return this.conv1.forward(x, ctx).reshape([B, H, W, 1, 128]);
      },
    },
    { name: 'block1', run: (c, ctx) => this.block1.forward(c, ctx) },
    { name: 'block2', run: (b1, ctx) => this.block2.forward(b1, ctx) },
    { name: 'block3', run: (b2, ctx) => this.block3.forward(b2, ctx) },
    {
      // block4, then block3's and block4's capsules flattened and concatenated (block3 first)
      name: 'block4',
      run: (b3, ctx) => {
        const b4 = this.block4.forward(b3, ctx);
        const l3 = flattenCapsules(b3);
        const l4 = flattenCapsules(b4);
        const flat = concat([l3, l4], 1);
        for (const t of [b4, l3, l4]) give(t.data);
        return flat;
      },
    },
    { name: 'capsLayer', run: (flat, ctx) => this.capsLayer.forward(flat, ctx) },
  ];

  /** The stages backwards from the kept inputs: conv1's output, blocks 1-3's, the flat capsules. */
  backward(dCaps: Tensor): void {
    const [c, b1, b2, b3, flat] = this.takeKept();
    const b4Shape = [b3.shape[0], half(b3.shape[1]), half(b3.shape[2]), 32, 8];
    const dFlat = inputGrad(this.capsLayer.backward(dCaps));
    give(flat.data);
    const n3 = b3.size / (b3.shape[0] * 8);
    const [dl3, dl4] = split(dFlat, 1, [n3, dFlat.shape[1] - n3]);
    give(dFlat.data);
    const db4 = flattenCapsulesBackward(dl4, b4Shape);
    give(dl4.data);
    const db3 = inputGrad(this.block4.backward(db4));
    give(db4.data);
    const db3Flat = flattenCapsulesBackward(dl3, b3.shape);
    give(dl3.data);
    for (let i = 0; i < db3.data.length; i++) db3.data[i] += db3Flat.data[i];
    give(db3Flat.data);
    give(b3.data);
    const db2 = inputGrad(this.block3.backward(db3));
    give(db3.data);
    give(b2.data);
    const db1 = inputGrad(this.block2.backward(db2));
    give(db2.data);
    give(b1.data);
    const dc = inputGrad(this.block1.backward(db1));
    give(db1.data);
    const [B, H, W] = c.shape;
    this.conv1.backward(dc.reshape([B, H, W, 128]), false);
    give(dc.data);
    give(c.data);
  }
}
