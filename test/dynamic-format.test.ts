// The 'dynamic' number format (issue 19, docs/quantization.md): each weight tensor's fractional
// length from its own range, activation and routing fractional lengths from calibration, counts
// that are total widths; on both models and every rounding method, through the memory count,
// the search and the files. Small models and a few images: the whole file runs in well under a
// minute.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { ImageSource } from '../src/models/evaluate.js';
import { buildModel } from '../src/models/factory.js';
import { type Calibration, calibrate, pointKey } from '../src/quant/calibration.js';
import { type BitLists, bitsFromLists, checkBitConfig, uniformBits } from '../src/quant/config.js';
import {
  DYNAMIC_MAX_FRAC,
  DYNAMIC_MIN_FRAC,
  dynamicFracBits,
  dynamicQuant,
  dynamicRange,
} from '../src/quant/dynamic.js';
import { configMemoryBits, EXPONENT_BITS } from '../src/quant/memory.js';
import { QUANT_METHODS } from '../src/quant/methods.js';
import { ModelQuantizer } from '../src/quant/quantized-forward.js';
import { quantize } from '../src/quant/quantized-model.js';
import { FastEvaluator } from '../src/search/fast-evaluator.js';
import { kernels } from '../src/tensor/kernels.js';
import { syntheticImages } from './helpers.js';

const shallow = buildModel('ShallowCapsNet', [28, 1, 10, 4], { seed: 11 });
const deep = buildModel('DeepCaps', [28, 1, 10, 32], { seed: 12 });
const images = syntheticImages(6, 3);

/** The first `n` images of `src`, refusing to hand out any other. */
function onlyFirst(src: ImageSource, n: number): ImageSource {
  return {
    ...src,
    writeImage: (i, out, offset) => {
      assert.ok(i < n, `image ${i} read; only the first ${n} may be`);
      src.writeImage(i, out, offset);
    },
  };
}

const shallowCal = calibrate(shallow, onlyFirst(images, 4), 4);
const deepCal = calibrate(deep, onlyFirst(images, 2), 2);

test('the fractional length rule: f = w - 1 - ceil(log2 max|x|), zeros w - 1, clamped to [-64, 64]', () => {
  assert.equal(dynamicFracBits(8, 0.3), 8); // ceil(log2 0.3) = -1
  assert.equal(dynamicFracBits(8, 0.25), 9); // a power of two: ceil(log2 0.25) = -2 exactly
  assert.equal(dynamicFracBits(8, 0.25 * (1 + 2 ** -23)), 8); // just above it
  assert.equal(dynamicFracBits(8, 0.25 * (1 - 2 ** -24)), 9); // just below it
  assert.equal(dynamicFracBits(4, 5), 0); // 3 - ceil(log2 5) = 3 - 3
  assert.equal(dynamicFracBits(4, 100), -4); // a negative fractional length: steps of 16
  assert.equal(dynamicFracBits(6, 0), 5); // a tensor of zeros
  assert.equal(dynamicFracBits(4, 2 ** -80), DYNAMIC_MAX_FRAC);
  assert.equal(dynamicFracBits(32, 2 ** 100), DYNAMIC_MIN_FRAC);
  assert.throws(() => dynamicFracBits(0, 1), /a width of 0 bits: expected an integer in \[1, 32\]/);
  assert.throws(() => dynamicFracBits(8, NaN), /expected a finite number >= 0/);

  // hand-made tensors through the kernel: a power-of-two maximum saturates to the top code,
  // the rest round on the grid of 2^-f within [-2^(w-1-f), 2^(w-1-f) - 2^-f]
  const k = kernels();
  const x = Float32Array.of(0.25, -0.25, 0.1, -0.003, 0.12345, 0);
  const f = dynamicFracBits(8, 0.25);
  const y = new Float32Array(x.length);
  k.quantize(x, y, x.length, dynamicQuant('round_to_nearest', 8, f, 1, 0));
  assert.deepEqual([...y], [127 / 512, -128 / 512, 51 / 512, -2 / 512, 63 / 512, 0]);
  const zeros = new Float32Array(4);
  k.quantize(zeros, y.subarray(0, 4), 4, dynamicQuant('truncation', 6, dynamicFracBits(6, 0), 1, 0));
  assert.deepEqual([...y.subarray(0, 4)], [0, 0, 0, 0]);
  // widths over 25 bits: the top code has more significant bits than a float32, hi is the
  // largest grid value a float32 holds
  assert.deepEqual(dynamicRange(8, 9), { lo: -0.25, hi: 127 / 512 });
  const wide = dynamicRange(30, 0);
  assert.equal(wide.hi, 2 ** 29 - 2 ** 5);
  assert.equal(Math.fround(wide.hi), wide.hi);
});

test("checkBitConfig: a 'dynamic' count is a width in [1, 32]; dac2020 and a missing calibration are errors", () => {
  const layers = shallow.quantLayers;
  assert.doesNotThrow(() => checkBitConfig(layers, uniformBits(layers, 1, 'dynamic')));
  assert.doesNotThrow(() => checkBitConfig(layers, uniformBits(layers, 32, 'dynamic')));
  assert.throws(
    () => checkBitConfig(layers, uniformBits(layers, 0, 'dynamic')),
    /^Error: bits\[0\] \(conv\)\.weight: expected an integer width \(sign included\) under 'dynamic' in \[1, 32\], got 0$/,
  );
  assert.throws(
    () => checkBitConfig(layers, uniformBits(layers, 33, 'dynamic')),
    /bits\[0\] \(conv\)\.weight: expected an integer width .* in \[1, 32\], got 33/,
  );
  assert.doesNotThrow(() => checkBitConfig(layers, uniformBits(layers, 0)), "'fixed' keeps 0 fractional bits");
  const bits = uniformBits(layers, 6, 'dynamic');
  assert.throws(
    () => quantize(shallow, bits, { method: 'truncation', compat: 'dac2020', calibration: shallowCal }),
    /^Error: quantize: options.compat 'dac2020' applies to the 'fixed' number format only; layer conv's bits are 'dynamic'$/,
  );
  assert.throws(
    () => quantize(shallow, bits, { method: 'truncation' }),
    /quantize: layer conv's bits are 'dynamic', whose activation and routing fractional lengths come from calibration: pass options.calibration/,
  );
  const partial: Calibration = { ...shallowCal, activations: { ...shallowCal.activations } };
  delete partial.activations['digit|votes'];
  assert.throws(
    () => quantize(shallow, bits, { method: 'truncation', calibration: partial }),
    /quantize: options.calibration.activations\['digit\|votes'\]: missing; expected a largest magnitude/,
  );
  assert.throws(
    () => calibrate(shallow, images, 7),
    /calibrate: count 7: expected an integer number of images in \[1, 6\]/,
  );
});

test('calibration: the largest magnitudes of every activation and routing point, from the given images only', () => {
  const d = shallow.description;
  assert.deepEqual(
    Object.keys(shallowCal.activations),
    d.quantPoints().flatMap((ps) => ps.map((p) => pointKey(p.path, p.point))),
  );
  assert.deepEqual(Object.keys(shallowCal.routing), ['primary', 'digit']);
  assert.deepEqual(Object.keys(deepCal.routing), ['block4.l_skip', 'capsLayer']);
  assert.equal(shallowCal.images, 4);
  for (const v of Object.values(shallowCal.activations)) assert.ok(v > 0 && Number.isFinite(v));
  // the coupling coefficients are a softmax: within (0, 1]
  for (const r of Object.values(shallowCal.routing)) assert.ok(r.act > 0 && r.act <= 1 && r.routing > 0);
  // the same images give the same ranges; other images others
  assert.deepEqual(calibrate(shallow, images, 4), shallowCal);
  const later: ImageSource = { ...images, writeImage: (i, out, o) => images.writeImage(i + 2, out, o) };
  assert.notDeepEqual(calibrate(shallow, later, 4), shallowCal);
});

for (const [model, cal, widths] of [
  [shallow, shallowCal, { weightBits: [7, 5, 4], actBits: [6, 5, 5], routingBits: [6, 5] }],
  [deep, deepCal, { weightBits: [8, 7, 6, 5, 5, 4], actBits: [7, 6, 6, 6, 5, 5], routingBits: [6, 5] }],
] as const)
  test(`'dynamic' on ${model.kind}, every method: memory, each tensor's own grid within w bits, calibrated points`, () => {
    const bits = bitsFromLists(model.quantLayers, structuredClone(widths) as unknown as BitLists, 'bits', 'dynamic');
    const d = model.description;
    const maxOf = new Map<string, number>();
    for (const [name, t] of model.stateDict())
      maxOf.set(
        name,
        t.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0),
      );
    for (const method of QUANT_METHODS) {
      const q = quantize(model, bits, { method, calibration: cal, seed: 5 });
      // memory: parameters x w + 8 bits per parameter tensor
      let want = 0;
      model.quantLayers.forEach(
        (l, i) => (want += l.paramCount * widths.weightBits[i] + EXPONENT_BITS * l.params.length),
      );
      assert.equal(q.weightMemoryMB, want / 8e6, `${method}: memory`);
      assert.equal(configMemoryBits(model.quantLayers, bits), want);
      const values = q.stateDict();
      for (const p of q.integers) {
        const w = q.bitsOf(p.name).weight;
        const f = dynamicFracBits(w, maxOf.get(p.name)!);
        assert.equal(p.fracBits, f, `${method} ${p.name}: its own fractional length`);
        assert.equal(p.totalBits, w, `${method} ${p.name}: w bits`);
        assert.equal(p.width, 'format');
        assert.deepEqual(q.weightSpec(p.name), dynamicQuant(method, w, f, 5, q.weightSpec(p.name)!.stream));
        // every stored value: an integer of w bits times 2^-f, the integer the model reports
        const stored = values.get(p.name)!.data;
        const ints = p.values as Int32Array;
        const [scale, lo, hi] = [2 ** f, -(2 ** (w - 1)), 2 ** (w - 1) - 1];
        for (let i = 0; i < stored.length; i++) {
          const k = stored[i] * scale;
          if (!(Number.isInteger(k) && k >= lo && k <= hi && k === ints[i]))
            assert.fail(`${method} ${p.name}[${i}]: ${stored[i]} x 2^${f} = ${k}: not the ${w}-bit integer ${ints[i]}`);
        }
      }
      // the activation and routing quantizers: fractional lengths from the calibrated ranges
      d.layers.forEach((l, i) => {
        for (const p of d.quantPoints()[i]) {
          const s = q.activationSpec(p.path, p.point)!;
          const key = pointKey(p.path, p.point);
          assert.equal(s.frac, dynamicFracBits(widths.actBits[i], cal.activations[key]), `${method} ${key}`);
          assert.deepEqual({ lo: s.lo, hi: s.hi }, dynamicRange(widths.actBits[i], s.frac));
        }
        for (const path of d.routingPaths()[i]) {
          const r = q.routingSpecs(path)!;
          const routing = widths.routingBits[d.routingNames.indexOf(l.name)];
          assert.equal(r.act!.frac, dynamicFracBits(widths.actBits[i], cal.routing[path].act));
          assert.equal(r.routing!.frac, dynamicFracBits(routing, cal.routing[path].routing));
        }
      });
    }
  });

test("the fast evaluator counts what QuantizedModel.evaluate counts under 'dynamic', reused prefixes too", async () => {
  const data = syntheticImages(30, 8);
  const cal = calibrate(shallow, data, 10);
  for (const method of ['round_to_nearest', 'stochastic_rounding'] as const) {
    const quantizer = new ModelQuantizer(
      buildModel('ShallowCapsNet', [28, 1, 10, 4], { seed: 11 }),
      method,
      'none',
      3,
      cal,
    );
    const fast = new FastEvaluator(quantizer.model, quantizer, data, { batchSize: 10, cacheMB: 64, earlyStop: false });
    const lists = [
      { weightBits: [6, 5, 4], actBits: [6, 6, 5], routingBits: [6, 5] },
      { weightBits: [6, 5, 4], actBits: [6, 6, 3], routingBits: [6, 3] }, // reuses conv and primary
      { weightBits: [6, 3, 3], actBits: [6, 6, 3], routingBits: [6, 3] }, // reuses conv
      { weightBits: [3, 2, 2], actBits: [3, 3, 2], routingBits: [2, 2] },
    ];
    for (const l of lists) {
      const bits = bitsFromLists(shallow.quantLayers, l, 'bits', 'dynamic');
      const e = await fast.evaluate(bits);
      const q = quantize(shallow, bits, { method, seed: 3, calibration: cal });
      assert.equal(e.accuracy, q.evaluate(data, { batchSize: 10 }).accuracy, `${method} ${JSON.stringify(l)}`);
    }
    assert.ok(fast.stats.stagesReused > 0, 'prefixes were reused');
  }
});
