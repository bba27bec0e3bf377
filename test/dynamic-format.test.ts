// The 'dynamic' number format (issue 19, docs/quantization.md): each weight tensor's fractional
// length from its own range, activation and routing fractional lengths from calibration, counts
// that are total widths; on both models and every rounding method, through the memory count,
// the search and the files. Small models and a few images: the whole file runs in well under a
// minute.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../src/data/load.js';
import { writeStateDict } from '../src/io/pt.js';
import { readSafetensorsRaw, writeSafetensorsRaw } from '../src/io/safetensors.js';
import { readQuantizedModel, writeQuantizedModel } from '../src/export/quantized-file.js';
import type { SearchReport } from '../src/report/search-json.js';
import type { ImageSource } from '../src/models/evaluate.js';
import { buildModel } from '../src/models/factory.js';
import { type Calibration, calibrate, calibrationHash, pointKey } from '../src/quant/calibration.js';
import { type BitLists, bitsFromLists, bitsToLists, checkBitConfig, uniformBits } from '../src/quant/config.js';
import {
  DYNAMIC_MAX_FRAC,
  DYNAMIC_MIN_FRAC,
  dynamicFracBits,
  dynamicQuant,
  dynamicRange,
} from '../src/quant/dynamic.js';
import { configMemoryBits, EXPONENT_BITS, formatMemoryBits, minimumMemoryBits } from '../src/quant/memory.js';
import { QUANT_METHODS } from '../src/quant/methods.js';
import { ModelQuantizer } from '../src/quant/quantized-forward.js';
import { type QuantizedModel, quantize } from '../src/quant/quantized-model.js';
import { EvalCache } from '../src/search/eval-cache.js';
import { runSweep } from '../src/search/sweep.js';
import { exportGoldenVectors } from '../src/export/golden-vectors.js';
import { FastEvaluator } from '../src/search/fast-evaluator.js';
import { memoryBits, memoryBitsFor } from '../src/search/qcapsnets.js';
import { searchModel } from '../src/search/search-model.js';
import { sensitivityAnalysis } from '../src/search/sensitivity.js';
import { parseCommandLine } from '../src/cli/parse.js';
import { openEvalCache } from '../src/cli/sweep-job.js';
import { checkFlagValues, checkSearchBudget, sweepGridFromFlags } from '../src/cli/validate.js';
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

/** Every key of a packed file's metadata, layers and tensor formats. */
function packedKeys(md: Record<string, string>): string[] {
  return [
    ...Object.keys(md),
    ...Object.values(JSON.parse(md.tensors) as Record<string, object>).flatMap((f) => Object.keys(f)),
    ...(JSON.parse(md.layers) as object[]).flatMap((l) => Object.keys(l)),
  ];
}

/** The backquoted names in the first cell of every table row of docs/formats.md. */
function documentedKeys(): Set<string> {
  const md = readFileSync(fileURLToPath(new URL('../../docs/formats.md', import.meta.url)), 'utf8');
  const keys = new Set<string>();
  for (const line of md.split('\n'))
    if (line.startsWith('|')) for (const m of (line.split('|')[1] ?? '').matchAll(/`([^`]+)`/g)) keys.add(m[1]);
  return keys;
}

// each model with one method whose packed file is written, read back and exported as golden
// vectors: the fixed-point codes on one, the log2 codes on the other
for (const [model, cal, widths, packed] of [
  [shallow, shallowCal, { weightBits: [7, 5, 4], actBits: [6, 5, 5], routingBits: [6, 5] }, 'round_to_nearest'],
  [deep, deepCal, { weightBits: [8, 7, 6, 5, 5, 4], actBits: [7, 6, 6, 6, 5, 5], routingBits: [6, 5] }, 'logarithmic'],
] as const)
  test(`'dynamic' on ${model.kind}, every method: memory, each tensor's own grid within w bits, calibrated points; its packed file and golden vectors`, (t) => {
    const bits = bitsFromLists(model.quantLayers, structuredClone(widths) as unknown as BitLists, 'bits', 'dynamic');
    const d = model.description;
    const maxOf = new Map<string, number>();
    for (const [name, x] of model.stateDict())
      maxOf.set(
        name,
        x.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0),
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
      if (method === packed) checkPackedFile(t.name, q, cal);
    }
  });

/** The packed file of `q` (a 'dynamic' model): the format, each tensor's exponent and every
 *  point's fractional length, every key documented; read back to the same model (values,
 *  quantizers, calibration, class capsules); golden vectors at each point's own fractional
 *  length (ONNX and C: test/export-dynamic.test.ts). */
function checkPackedFile(what: string, q: QuantizedModel, cal: Calibration): void {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-dynamic-packed-'));
  try {
    const model = q.model;
    const file = join(dir, 'q.safetensors');
    assert.equal(writeQuantizedModel(file, q).memoryBytes, configMemoryBits(model.quantLayers, q.bits) / 8);
    const { quantized: r, info } = readQuantizedModel(file);
    assert.equal(info.numberFormat, 'dynamic', what);
    assert.deepEqual(info.calibration, cal, what);
    assert.deepEqual(r.calibration, cal, what);
    assert.deepEqual(r.bits, q.bits, what);
    const md = info.metadata;
    assert.equal(md.number_format, 'dynamic');
    const acts = JSON.parse(md.activation_frac_bits) as Record<string, number>;
    const points = model.description.quantPoints().flat();
    for (const p of points)
      assert.equal(acts[pointKey(p.path, p.point)], q.activationSpec(p.path, p.point)!.frac, `${what} ${p.path}`);
    const routing = JSON.parse(md.routing_frac_bits) as Record<string, { act: number; routing: number }>;
    for (const path of model.description.routingPaths().flat())
      assert.deepEqual(routing[path], {
        act: q.routingSpecs(path)!.act!.frac,
        routing: q.routingSpecs(path)!.routing!.frac,
      });
    for (const p of q.integers) {
      assert.equal(info.tensors[p.name].frac_bits, p.fracBits, `${what} ${p.name}: its exponent`);
      assert.deepEqual(r.weightSpec(p.name), q.weightSpec(p.name));
    }
    const sd = r.stateDict();
    for (const [k, x] of q.stateDict())
      assert.ok(
        x.data.every((v, i) => v === sd.get(k)!.data[i]),
        `${what} ${k}`,
      );
    const documented = documentedKeys();
    assert.deepEqual(
      packedKeys(md).filter((k) => !documented.has(k)),
      [],
      'keys docs/formats.md has no table row for',
    );
    // golden vectors of the reloaded model: each point at its own fractional length, and the
    // class capsules of its forward (the export checks its capture against it)
    exportGoldenVectors(r, images, { images: 2, outDir: join(dir, 'g') });
    const vectors = JSON.parse(readFileSync(join(dir, 'g', 'vectors.json'), 'utf8')) as {
      number_format: string;
      tensors: { name: string; fracBits: number | null }[];
    };
    assert.equal(vectors.number_format, 'dynamic');
    for (const p of points)
      assert.equal(
        vectors.tensors.find((x) => x.name === `${p.path}/${p.point}`)?.fracBits,
        acts[pointKey(p.path, p.point)],
      );
    for (const path of model.description.routingPaths().flat()) {
      const it0 = (v: string) => vectors.tensors.find((x) => x.name === `${path}/iter0/${v}`)?.fracBits;
      assert.equal(it0('c'), routing[path].act);
      assert.equal(it0('s'), routing[path].routing);
    }
    // a stored fractional length its calibration does not give is an error naming the point
    const raw = readSafetensorsRaw(file);
    const [key] = Object.keys(acts);
    const bad = join(dir, 'bad.safetensors');
    writeSafetensorsRaw(bad, [...raw.tensors], {
      ...raw.metadata,
      activation_frac_bits: JSON.stringify({ ...acts, [key]: acts[key] + 1 }),
    });
    assert.throws(
      () => readQuantizedModel(bad),
      new RegExp(
        `bad\\.safetensors: __metadata__ activation_frac_bits\\['${key.replace('|', '\\|')}'\\] is ${acts[key] + 1}, but the calibration's range .* gives ${acts[key]}$`,
      ),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("the fast evaluator counts what QuantizedModel.evaluate counts under 'dynamic', reused prefixes too", async () => {
  const data = syntheticImages(20, 8);
  const cal = calibrate(shallow, data, 10);
  for (const method of ['stochastic_rounding'] as const) {
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

// ---- the search and the command line

test("step 2 under 'dynamic': the falling pattern of the same stored bits (N + 1), the last width >= 1", () => {
  const layers = shallow.quantLayers;
  const counts = layers.map((l) => l.paramCount);
  for (const budget of [1, 2, 3, 5, 12]) {
    const fixed = memoryBits(counts, budget);
    const dynamic = memoryBitsFor(layers, budget, 'dynamic');
    assert.deepEqual(
      dynamic,
      fixed.map((b) => b + 1),
      `budget ${budget} MB`,
    );
    assert.ok(formatMemoryBits(layers, dynamic, 'dynamic') <= budget * 8e6);
  }
  assert.deepEqual(memoryBitsFor(layers, 3, 'fixed'), memoryBits(counts, 3));
  const least = minimumMemoryBits(layers, 'dynamic') / 8e6;
  assert.equal(least, (counts.reduce((a, b) => a + b, 0) + 8 * 6) / 8e6);
  assert.deepEqual(memoryBitsFor(layers, least, 'dynamic'), [1, 1, 1]);
  assert.throws(
    () => memoryBitsFor(layers, least - 1e-6, 'dynamic'),
    /cannot be met: even 1 bit per parameter and the 8-bit exponents of 'dynamic' need .* MB/,
  );
});

test("searchModel under 'dynamic': widths from 32 down, calibrated on the first images it decides on", async () => {
  const data = syntheticImages(20, 5);
  const lines: string[] = [];
  const r = await searchModel(shallow, onlyFirst(data, 20), {
    method: 'round_to_nearest',
    numberFormat: 'dynamic',
    calibrationImages: 8,
    memoryBudgetMB: 2,
    tolerance: 50,
    batchSize: 10,
    log: (l) => lines.push(l),
  });
  assert.deepEqual(r.calibration, calibrate(shallow, onlyFirst(data, 8), 8));
  assert.ok(lines.some((l) => /calibration \('dynamic' number format\).*over the first 8 images/.test(l)));
  assert.deepEqual(bitsToLists(r.search.evaluations[0].bits).weightBits, [32, 32, 32], 'step 1 starts at 32');
  for (const e of r.search.evaluations) {
    assert.ok(e.bits.every((b) => b.format === 'dynamic'));
    const l = bitsToLists(e.bits);
    assert.ok([...l.weightBits, ...l.actBits, ...l.routingBits].every((b) => b >= 1 && b <= 32));
  }
  const step2 = r.search.steps.find((s) => s.step === 'step2')!;
  assert.deepEqual(bitsToLists(step2.bits).weightBits, memoryBitsFor(shallow.quantLayers, 2, 'dynamic'));
  assert.equal(step2.memoryMB, configMemoryBits(shallow.quantLayers, step2.bits) / 8e6);
  for (const m of r.models) {
    assert.equal(m.model.calibration, r.calibration);
    // the reported accuracy is the QuantizedModel's own, in the search's order
    assert.equal(m.model.evaluate(data, { batchSize: 10, order: r.imageOrder }).accuracy, m.accuracy);
  }
  // the sensitivity analysis: widths, calibrated likewise
  const sens = await sensitivityAnalysis(shallow, data, {
    method: 'round_to_nearest',
    numberFormat: 'dynamic',
    calibrationImages: 8,
    bits: [3],
    batchSize: 10,
  });
  assert.equal(sens.curves.length, 8);
  assert.ok(sens.curves.every((c) => c.accuracy.length === 1 && c.accuracy[0] >= 0));
  await assert.rejects(
    sensitivityAnalysis(shallow, data, { method: 'round_to_nearest', numberFormat: 'dynamic', bits: [0, 3] }),
    /sensitivityAnalysis: options.bits \[0,3\]: expected ascending distinct integers in \[1, 32\]/,
  );
  await assert.rejects(
    searchModel(shallow, data, { method: 'truncation', numberFormat: 'dynamic', compat: 'dac2020' }),
    /searchModel: options.numberFormat 'dynamic' with compat 'dac2020'/,
  );
  await assert.rejects(
    searchModel(shallow, data, { method: 'truncation', numberFormat: 'dynamic', calibrationImages: 0 }),
    /searchModel: options.calibrationImages 0: the 'dynamic' number format needs images/,
  );
  await assert.rejects(
    searchModel(shallow, data, { method: 'truncation', calibrationImages: -1 }),
    /searchModel: options.calibrationImages -1: expected a non-negative integer/,
  );
});

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const run = (args: string[]) =>
  spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, QCAPS_THREADS: '1' } });
const errorOf = (r: ReturnType<typeof run>) => {
  assert.equal(r.status, 2, r.stderr);
  return r.stderr.trim().split('\n').pop();
};

test('the command line: --number-format and --calibration-images, each bad value one error before any work', () => {
  // the checks main() runs before any work, in process ...
  const net = 'net.pt';
  const base = ['search', '--trained-weights-path', net, '--model-args', '28', '1', '10', '4'];
  const check = (args: string[]) => {
    const cl = parseCommandLine(args);
    checkFlagValues(cl.command, cl.options);
    if (cl.command === 'search') checkSearchBudget(cl.options, shallow.quantLayers);
    if (cl.command === 'sweep') sweepGridFromFlags(cl.options, shallow.quantLayers);
  };
  const cases: [string[], RegExp][] = [
    [[...base, '--number-format', 'float'], /^--number-format float: expected one of fixed, dynamic$/],
    [[...base, '--calibration-images', '-1'], /^--calibration-images -1: expected a non-negative integer$/],
    [[...base, '--calibration-images', '2.5'], /^--calibration-images: expected an integer, got '2.5'$/],
    [
      [...base, '--number-format', 'dynamic', '--calibration-images', '0'],
      /^--calibration-images 0: --number-format dynamic needs images to calibrate its activation and routing ranges; expected at least 1$/,
    ],
    [
      [...base, '--number-format', 'dynamic', '--memory-budget', '0.7'],
      /^--memory-budget 0.7 MB cannot be met: even 1 bit per parameter and the 8-bit exponents of 'dynamic' need/,
    ],
    [
      ['evaluate', '--number-format', 'dynamic'],
      /^--number-format applies to sweep, search, sensitivity, finetune and the default command only$/,
    ],
    [
      ['sensitivity', '--number-format', 'dynamic', '--sensitivity-bits', '0..4'],
      /^--sensitivity-bits 0..4: 0 is not a width; --number-format dynamic counts total bits/,
    ],
    [
      ['sweep', '--number-format', 'dynamic', '--budget-divisors', '4,32'],
      /^--budget-divisors: 32 \(.* MB\) cannot be met: even 1 bit per parameter and the 8-bit exponents/,
    ],
  ];
  for (const [args, want] of cases) assert.throws(() => check(args), { message: want }, args.join(' '));
  for (const ok of [[...base], [...base, '--number-format', 'dynamic', '--calibration-images', '1']])
    assert.doesNotThrow(() => check(ok), ok.join(' '));
  // ... and as the command line says it: one line, exit 2, nothing written
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-dynamic-flags-'));
  try {
    writeStateDict(join(dir, net), shallow.stateDict());
    const r = run(
      [...base.slice(0, 2), join(dir, net), ...base.slice(3), '--number-format', 'dynamic'].concat([
        '--rounding-compat',
        'dac2020',
      ]),
    );
    assert.equal(
      errorOf(r),
      "qcapsnets: error: --number-format dynamic with --rounding-compat dac2020: the reference code's arithmetic applies to --number-format fixed only",
    );
    assert.deepEqual(readdirSync(dir), [net], 'nothing written');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the evaluation cache's header names 'dynamic' and its calibration, a sweep's rows the format; 'fixed' keeps today's header", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-dynamic-cache-'));
  try {
    const test10 = loadDataset('mnist', 'test', { limit: 10 });
    const cal = calibrate(shallow, test10, 6);
    const header = (calibration: Calibration | null) =>
      openEvalCache(null, {
        model: shallow,
        modelSha256: 'ab',
        test: test10,
        compat: 'none',
        seed: 1,
        batchSize: 5,
        earlyStop: true,
        approximateMarginImages: 0,
        calibration,
      }).header;
    const dynamic = header(cal);
    assert.equal(dynamic.numberFormat, 'dynamic');
    assert.equal(dynamic.calibrationImages, 6);
    assert.equal(dynamic.calibrationSha256, calibrationHash(cal));
    // under 'fixed' the header is today's, key for key
    assert.deepEqual(Object.keys(header(null)), [
      'tool',
      'version',
      'model',
      'modelSha256',
      'images',
      'compat',
      'seed',
      'batchSize',
      'earlyStop',
      'approximateMarginImages',
    ]);
    const file = join(dir, 'evals.jsonl');
    const model = { layers: shallow.quantLayers, images: 10 };
    EvalCache.open(file, dynamic, model).close();
    assert.throws(
      () => EvalCache.open(file, header(null), model),
      /evals\.jsonl: made with numberFormat "dynamic", this run has numberFormat "fixed"; use another --eval-cache file for this setting/,
    );
    assert.throws(
      () => EvalCache.open(file, header(calibrate(shallow, test10, 5)), model),
      /made with calibrationImages 6, this run has calibrationImages 5/,
    );
    // a sweep's rows and its cache's lines: widths, the format named
    const cache = EvalCache.open(file, dynamic, model);
    const sweep = await runSweep(shallow, test10, {
      grid: { tolerances: [50], memoryBudgetsMB: [2], methods: ['truncation'] },
      shard: null,
      compat: 'none',
      seed: 1,
      batchSize: 5,
      cacheMB: 64,
      earlyStop: true,
      numberFormat: 'dynamic',
      calibration: cal,
      evalCache: cache,
    });
    cache.close();
    assert.ok(sweep.rows[0].models.every((m) => m.number_format === 'dynamic'));
    const lines = readFileSync(file, 'utf8')
      .trim()
      .split('\n')
      .slice(1)
      .map((l) => JSON.parse(l) as { w: number[] });
    assert.ok(lines.length > 0 && lines[0].w.every((b) => b === 32), 'step 1 starts at 32 bits wide');
    await assert.rejects(
      runSweep(shallow, test10, {
        grid: { tolerances: [50], memoryBudgetsMB: [2], methods: ['truncation'] },
        shard: null,
        compat: 'dac2020',
        seed: 1,
        batchSize: 5,
        cacheMB: 0,
        earlyStop: true,
        numberFormat: 'dynamic',
        evalCache: EvalCache.inMemory(dynamic),
      }),
      /^Error: runSweep: options.numberFormat 'dynamic' with compat 'dac2020': the dac2020 arithmetic applies to 'fixed' only$/,
    );
    // a search over a cache of another calibration is refused
    await assert.rejects(
      searchModel(shallow, test10, {
        method: 'truncation',
        numberFormat: 'dynamic',
        calibrationImages: 5,
        seed: 1,
        batchSize: 5,
        evalCache: EvalCache.inMemory(dynamic),
      }),
      /searchModel: options.evalCache holds evaluations of another calibration \(6 images/,
    );
    await assert.rejects(
      searchModel(shallow, test10, {
        method: 'truncation',
        seed: 1,
        batchSize: 5,
        evalCache: EvalCache.inMemory(dynamic),
      }),
      /searchModel: options.evalCache holds evaluations in the 'dynamic' number format, options.numberFormat is 'fixed'/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a 'dynamic' search from the command line: calibrated on held-out images, number_format in its JSON, its packed file evaluates to the same count", () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-dynamic-search-'));
  try {
    const net = join(dir, 'net.pt');
    writeStateDict(net, shallow.stateDict());
    const r = run(
      ['search', '--trained-weights-path', net, '--model-args', '28', '1', '10', '4', '--test-limit', '12']
        .concat(['--train-limit', '40', '--selection-split', '10', '--test-batch-size', '5', '--memory-budget', '2'])
        .concat(['--accuracy-tolerance', '50', '--quantization-method', 'stochastic_rounding'])
        .concat(['--number-format', 'dynamic', '--calibration-images', '4', '--output-dir', dir])
        .concat(['--eval-cache', join(dir, 'evals.jsonl')]),
    );
    assert.equal(r.status, 0, r.stderr);
    assert.match(
      r.stdout,
      /calibration \('dynamic' number format\): .* over the first 4 images of mnist\/train \(the images --selection-split holds out\)/,
    );
    const json = JSON.parse(readFileSync(join(dir, 'net_qcapsnets.json'), 'utf8')) as SearchReport;
    assert.equal(json.settings['number-format'], 'dynamic');
    assert.ok(json.models.length > 0);
    for (const m of json.models) assert.equal(m.number_format, 'dynamic');
    const header = JSON.parse(readFileSync(join(dir, 'evals.jsonl'), 'utf8').split('\n')[0]) as Record<string, unknown>;
    assert.equal(header.numberFormat, 'dynamic');
    // the calibration: the first 4 of the 10 held-out training images (30..39 of the first 40),
    // never the test images
    const train = loadDataset('mnist', 'train', { limit: 40 });
    const heldOut: ImageSource = {
      ...train,
      count: 10,
      labels: train.labels.subarray(30),
      writeImage: (i, o, k) => train.writeImage(30 + i, o, k),
    };
    const m = json.models[0];
    const { info } = readQuantizedModel(m.packedFile!);
    assert.deepEqual(info.calibration, calibrate(shallow, heldOut, 4));
    assert.equal(header.calibrationSha256, calibrationHash(info.calibration!));
    // the packed file through `evaluate`: the test-set count the search reported
    const e = run([
      'evaluate',
      '--trained-weights-path',
      m.packedFile!,
      '--test-limit',
      '12',
      '--test-batch-size',
      '5',
      '--json',
    ]);
    assert.equal(e.status, 0, e.stderr);
    assert.match(e.stdout, /'dynamic' widths/);
    assert.equal((JSON.parse(e.stdout.trim().split('\n').pop()!) as { correct: number }).correct, m.testCorrect);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
