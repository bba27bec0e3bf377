// One training step's forward and backward through a capsule network and its decoder
// (SPEC 3, the reference's capsnet_training_loss):
//   loss = mean_b( margin_b + regularization_scale * sum_pixels (recon - image)^2 )
// and, with a teacher (distillation in fine-tuning, TrainingStepOptions.distill),
//   + distill_scale * mean_{b < n} sum_{k,d} (v_bkd - t_bkd)^2,   n = ceil(fraction * B)
// where t are the teacher's class capsules for the same images (a float forward, no gradient):
// the student's capsule vectors are pulled towards the teacher's, lengths and poses alike. The
// teacher sees the batch's first n images (fraction 1, the default: all of them); batches are
// shuffled, so the term is an unbiased estimate of the whole batch's at n/B of the teacher's
// cost (its forward is about a quarter of a ShallowCapsNet float training step).
// The reconstruction gradient flows through the decoder's mask into the class capsules and on
// into the network, as in the reference (no detach). Parameter gradients accumulate: call
// zeroGrad() on both modules before, and the optimizer after.
import type { QuantHooks } from '../nn/module.js';
import { give } from '../tensor/pool.js';
import { MARGIN_DEFAULT, MARGIN_HARD, marginLoss, reconstructionLoss } from '../tensor/ops/losses.js';
import { permute } from '../tensor/ops/shape.js';
import { check, shapeStr, Tensor } from '../tensor/tensor.js';
import type { CapsDecoder, CapsNet } from './capsnet.js';

/**
 * The image a reconstruction [B, ...] is compared with, from images x [B,H,W,C]:
 * - [B,H,W,C] (the conv decoders): the image itself;
 * - [B, C*H*W] (FCDecoder): the image flattened in PyTorch's (C, H, W) order, as the reference's
 *   data.view(batch, -1) of NCHW images (the same as channels-last when C = 1);
 * - [B, H*W] with C > 1 (ShallowCapsNet on CIFAR-10 with FCDecoder 16 4096): the mean of the
 *   C channels, i.e. a grey-level plane. The reference cannot run this configuration (it
 *   compares 4096 reconstructed values with 12288 pixels and fails on the size mismatch), so
 *   this is our choice: one plane that keeps every channel's information with equal weight.
 * `owned` says whether the target is a new buffer (give it back after use).
 */
export function reconstructionTarget(x: Tensor, reconShape: readonly number[]): { target: Tensor; owned: boolean } {
  check(x.rank === 4, 'reconstruction target', `images must be [B,H,W,C], got ${shapeStr(x.shape)}`);
  const [B, H, W, C] = x.shape;
  const per = reconShape.slice(1).reduce((p, d) => p * d, 1);
  check(reconShape[0] === B, 'reconstruction target', `reconstruction ${shapeStr(reconShape)} for ${B} images`);
  if (reconShape.length === 4) {
    check(
      reconShape[1] === H && reconShape[2] === W && reconShape[3] === C,
      'reconstruction target',
      `the decoder reconstructs ${shapeStr(reconShape)} but the images are ${shapeStr(x.shape)} (check the decoder and its args)`,
    );
    return { target: x, owned: false };
  }
  if (per === H * W * C) {
    if (C === 1) return { target: x.reshape([B, per]), owned: false };
    return { target: permute(x, [0, 3, 1, 2]).reshape([B, per]), owned: true };
  }
  if (per === H * W) {
    const out = new Float32Array(B * H * W);
    const d = x.data;
    for (let p = 0; p < B * H * W; p++) {
      let s = 0;
      for (let c = 0; c < C; c++) s += d[p * C + c];
      out[p] = s / C;
    }
    return { target: new Tensor(out, [B, H * W]), owned: false };
  }
  throw new Error(
    `reconstruction target: the decoder gives ${per} values per image but the images ${shapeStr(x.shape)} have ` +
      `${H * W * C} values${C > 1 ? ` (or ${H * W} per plane)` : ''} (check the decoder's args)`,
  );
}

export interface TrainingStepOptions {
  /** Weight of the reconstruction loss (the reference's regularization_scale, 0.0005 by default). */
  regularizationScale: number;
  /** Margins 0.95 / 0.05 and lambda 0.8 instead of 0.9 / 0.1 / 0.5. */
  hard?: boolean;
  /** The model's forward through these quantization hooks (quantization-aware fine-tuning);
   *  absent: the float forward. The decoder always runs in float. */
  quant?: QuantHooks | null;
  /** Distillation: the class capsules are also pulled towards `teacher`'s for the same images,
   *  with weight `scale`, on the first ceil(fraction * B) images of the batch (fraction in
   *  (0, 1], default 1; see the top). Absent or scale 0: none. */
  distill?: Distillation | null;
}

/** A teacher for distillation (TrainingStepOptions.distill). */
export interface Distillation {
  teacher: CapsNet;
  scale: number;
  /** the share of each batch the teacher runs on, in (0, 1] (absent: 1, the whole batch) */
  fraction?: number;
}

export interface TrainingStepResult {
  /** mean over the batch of margin + scale * reconstruction */
  loss: number;
  /** mean margin loss */
  marginLoss: number;
  /** mean (unscaled) sum of squared reconstruction errors */
  reconLoss: number;
  /** mean (unscaled) sum of squared differences from the teacher's capsules, over the images
   *  the teacher saw (0 without one) */
  distillLoss: number;
  /** the class capsules [B, K, D] of this forward (the caller's; give it back when done) */
  caps: Tensor;
}

/** Forward and backward of one batch; gradients accumulate in model and decoder. */
export function trainingStep(
  model: CapsNet,
  decoder: CapsDecoder,
  x: Tensor,
  labels: Int32Array,
  opts: TrainingStepOptions,
): TrainingStepResult {
  if (decoder.inDim !== model.capsDim)
    throw new Error(
      `${decoder.kind} reads capsules of dimension ${decoder.inDim} but ${model.kind} gives ${model.capsDim} ` +
        `(decoder.args[0], in_dim, must equal model.args[3], caps_dim)`,
    );
  const caps = model.forward(x, opts.quant ? { training: true, quant: opts.quant } : true);
  const { loss: margin, dv } = marginLoss(caps, labels, opts.hard ? MARGIN_HARD : MARGIN_DEFAULT);
  const distill = opts.distill && opts.distill.scale > 0 ? opts.distill : null;
  const distillLoss = distill ? addDistillation(caps, teacherCapsules(x, distill), distill.scale, dv) : 0;
  const recon = decoder.forward(caps, labels, true);
  const { target, owned } = reconstructionTarget(x, recon.shape);
  const { loss: recLoss, dRecon } = reconstructionLoss(recon, target, 1);
  const scale = opts.regularizationScale;
  if (owned) give(target.data);
  // at scale 0 the decoder's backward is skipped: its gradients stay 0 and the capsules get
  // none from it, as the backward of 0 x dRecon gives; its loss is still reported
  if (scale !== 0) {
    const dr = dRecon.data;
    for (let i = 0; i < dr.length; i++) dr[i] *= scale;
    const dCapsDecoder = decoder.backward(dRecon);
    const a = dv.data;
    const b = dCapsDecoder.data;
    for (let i = 0; i < a.length; i++) a[i] += b[i];
    give(b);
  }
  give(dRecon.data);
  give(recon.data);
  model.backward(dv);
  give(dv.data);
  return {
    loss: margin + scale * recLoss + (distill?.scale ?? 0) * distillLoss,
    marginLoss: margin,
    reconLoss: recLoss,
    distillLoss,
    caps,
  };
}

/** The teacher's class capsules [n, K, D] for the first n = ceil(fraction * B) images of x. */
function teacherCapsules(x: Tensor, distill: Distillation): Tensor {
  const fraction = distill.fraction ?? 1;
  check(
    fraction > 0 && fraction <= 1,
    'distillation',
    `the teacher's share of the batch must be in (0, 1], got ${fraction}`,
  );
  const B = x.shape[0];
  const n = Math.min(B, Math.ceil(fraction * B));
  if (n === B) return distill.teacher.forward(x, false);
  const per = x.size / B;
  return distill.teacher.forward(new Tensor(x.data.subarray(0, n * per), [n, ...x.shape.slice(1)]), false);
}

/** The distillation term's value mean_{b < n} sum_{k,d} (v - t)^2 over the n images the teacher
 *  [n, K, D] saw, its gradient scale * 2 (v - t) / n added into dv (the first n rows);
 *  `teacher` (ours) is given back. */
function addDistillation(caps: Tensor, teacher: Tensor, scale: number, dv: Tensor): number {
  const n = teacher.shape[0];
  check(
    teacher.shape.length === caps.shape.length &&
      n <= caps.shape[0] &&
      teacher.shape.every((d, i) => i === 0 || d === caps.shape[i]),
    'distillation',
    `the teacher's class capsules ${shapeStr(teacher.shape)} differ from the model's ${shapeStr(caps.shape)}`,
  );
  const v = caps.data;
  const t = teacher.data;
  const g = dv.data;
  const k = (2 * scale) / n;
  let sum = 0;
  for (let i = 0; i < t.length; i++) {
    const d = v[i] - t[i];
    sum += d * d;
    g[i] += k * d;
  }
  give(t);
  return sum / n;
}
