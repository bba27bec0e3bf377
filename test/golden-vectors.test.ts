import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { exportGoldenVectors } from '../src/export/golden-vectors.js';
import { readSafetensorsRaw } from '../src/io/safetensors.js';
import { writeQuantizedModel } from '../src/export/quantized-file.js';
import { loadDataset } from '../src/data/index.js';
import { buildModel } from '../src/models/index.js';
import { bitsFromLists, quantize, uniformBits } from '../src/quant/index.js';
import { sourceBatch } from '../src/models/evaluate.js';
import { activationQuant } from '../src/quant/methods.js';
import { quantizeTs } from '../src/tensor/ts/quantize.js';
import { conv2dForwardFixedPointTs } from '../src/tensor/ts/fixed-conv.js';
import type { DeepCaps } from '../src/models/deepcaps.js';

const data = loadDataset('mnist', 'test', { limit: 3 });

for (const [name, args] of [
  ['ShallowCapsNet', [28, 1, 10, 16]],
  ['DeepCaps', [28, 1, 10, 32]],
] as const) {
  test(`golden vectors of ${name} match the quantized forward`, () => {
    const dir = mkdtempSync(join(tmpdir(), 'qcaps-gv-'));
    try {
      const m = buildModel(name, [...args]);
      const q = quantize(m, uniformBits(m.quantLayers, 6), { method: 'round_to_nearest' });
      const r = exportGoldenVectors(q, data, { images: 3, outDir: dir });
      const file = readSafetensorsRaw(r.safetensors);
      const doc = JSON.parse(readFileSync(r.json, 'utf8'));
      assert.equal(doc.tensors.length, file.tensors.size);
      const caps = q.forward(sourceBatch(data, 0, 3), 0);
      const lengths = new Float32Array(file.tensors.get('lengths')!.bytes.slice().buffer);
      const preds = new Int32Array(file.tensors.get('predictions')!.bytes.slice().buffer);
      const D = caps.shape[2];
      for (let i = 0; i < 3; i++) {
        let best = 0;
        const l: number[] = [];
        for (let k = 0; k < 10; k++) {
          let s = 0;
          for (let d = 0; d < D; d++) s += caps.data[(i * 10 + k) * D + d] ** 2;
          l.push(Math.sqrt(s));
          if (l[k] > l[best]) best = k;
          assert.ok(Math.abs(lengths[i * 10 + k] - l[k]) < 1e-5);
        }
        assert.equal(preds[i], best);
      }
      for (const t of doc.tensors) {
        assert.ok(file.tensors.has(t.name), t.name);
        assert.equal(file.tensors.get(t.name)!.dtype, t.dtype);
        if (t.fracBits !== null) assert.equal(t.fracBits, 6);
      }
      const last = name === 'ShallowCapsNet' ? 'digit/iter2/v' : 'capsLayer/iter2/v';
      const v = new Int32Array(file.tensors.get(last)!.bytes.slice().buffer);
      for (let i = 0; i < v.length; i++) assert.equal(v[i] / 64, caps.data[i]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

test('ShallowCapsNet digit iteration 0: s recomputed from the recorded votes and c', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-gv-'));
  try {
    const m = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
    const q = quantize(
      m,
      bitsFromLists(m.quantLayers, { weightBits: [7, 6, 5], actBits: [6, 5, 4], routingBits: [5, 3] }),
      { method: 'round_to_nearest' },
    );
    const r = exportGoldenVectors(q, data, { images: 2, outDir: dir });
    const file = readSafetensorsRaw(r.safetensors);
    const get = (n: string) => new Int32Array(file.tensors.get(n)!.bytes.slice().buffer);
    const u = get('digit/votes');
    const c = get('digit/iter0/c');
    const sRec = get('digit/iter0/s');
    const bias = q.stateDict().get('digit.bias')!.data;
    const [I, J, D] = [1152, 10, 16];
    const s = new Float32Array(2 * J * D);
    for (let b = 0; b < 2; b++)
      for (let j = 0; j < J; j++) {
        const so = (b * J + j) * D;
        for (let d = 0; d < D; d++) s[so + d] = bias[j * D + d];
        for (let i = 0; i < I; i++) {
          const ci = c[(b * I + i) * J + j] / 2 ** 4; // activation bits of digit
          for (let d = 0; d < D; d++) s[so + d] += ci * (u[((b * I + i) * J + j) * D + d] / 2 ** 4);
        }
      }
    quantizeTs(s, s, s.length, activationQuant('round_to_nearest', 3, 'none', 42, 0)); // routing bits
    for (let k = 0; k < s.length; k++) assert.equal(s[k] * 2 ** 3, sRec[k], `s[${k}]`);
    const doc = JSON.parse(readFileSync(r.json, 'utf8'));
    const info = doc.tensors.find((t: { name: string }) => t.name === 'digit/iter0/s');
    assert.equal(info.fracBits, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('DeepCaps block1.l2: its conv output recomputed from block1.l1 squash vectors by the TypeScript fixed-point conv, for three methods', () => {
  const m = buildModel('DeepCaps', [28, 1, 10, 32]);
  for (const method of ['round_to_nearest', 'truncation', 'logarithmic'] as const) {
    const dir = mkdtempSync(join(tmpdir(), 'qcaps-gv-'));
    try {
      const bits = { weightBits: [8, 7, 6, 6, 6, 6], actBits: [6, 5, 6, 5, 5, 6], routingBits: [5, 5] };
      const q = quantize(m, bitsFromLists(m.quantLayers, bits), { method });
      const r = exportGoldenVectors(q, data, { images: 2, outDir: dir });
      const file = readSafetensorsRaw(r.safetensors);
      const doc = JSON.parse(readFileSync(r.json, 'utf8'));
      const info = (n: string) => doc.tensors.find((t: { name: string }) => t.name === n);
      const ints = (n: string) => new Int32Array(file.tensors.get(n)!.bytes.slice().buffer);
      const inInfo = info('block1.l1/squash');
      const outInfo = info('block1.l2/conv');
      assert.deepEqual([inInfo.fracBits, outInfo.fracBits], [5, 5], 'block1 activation bits');
      const x = Float32Array.from(ints('block1.l1/squash'), (v) => v / 2 ** inInfo.fracBits);
      const conv = (q.model as DeepCaps).block1.l2.conv;
      const [B, H, W] = inInfo.shape;
      const C = x.length / (B * H * W);
      const [O, K] = [conv.weight.shape[0], conv.weight.shape[1]];
      const g = { B, H, W, C, O, KH: K, KW: K, stride: conv.stride, pad: conv.pad, OH: H, OW: W };
      const y = new Float32Array(B * H * W * O);
      assert.ok(conv2dForwardFixedPointTs(g, x, conv.weight.data, conv.bias!.data, y, false), `${method}: fixed point`);
      quantizeTs(y, y, y.length, activationQuant(method, outInfo.fracBits, 'none', 42, 0));
      const rec = ints('block1.l2/conv');
      assert.deepEqual(outInfo.shape, [B, H, W, O]);
      for (let k = 0; k < y.length; k++)
        assert.equal(y[k] * 2 ** outInfo.fracBits + 0, rec[k], `${method}: conv[${k}]`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('qcapsnets export --format vectors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-gv-cli-'));
  try {
    const m = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
    const q = quantize(m, uniformBits(m.quantLayers, 6), { method: 'round_to_nearest' });
    const file = join(dir, 'm_quantized_satisfied.safetensors');
    writeQuantizedModel(file, q, {});
    const cli = join(process.cwd(), 'dist', 'src', 'cli', 'main.js');
    const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
    const out = join(dir, 'out');
    const ok = run([
      'export',
      '--format',
      'vectors',
      '--images',
      '3',
      '--trained-weights-path',
      file,
      '--dataset',
      'mnist',
      '--output-dir',
      out,
    ]);
    assert.equal(ok.status, 0, ok.stderr);
    const doc = JSON.parse(readFileSync(join(out, 'vectors.json'), 'utf8'));
    assert.deepEqual(doc.images, [0, 1, 2]);
    assert.equal(doc.method, 'round_to_nearest');
    const st = readSafetensorsRaw(join(out, 'vectors.safetensors'));
    assert.deepEqual(st.tensors.get('predictions')!.shape, [3]);
    assert.ok(st.tensors.has('conv.conv/out') && st.tensors.has('digit/iter2/v'));
    const bad = run(['export', '--format', 'nope', '--trained-weights-path', file]);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--format nope: expected one of vectors/);
    const pt = join(dir, 'model.pt');
    writeFileSync(pt, 'x');
    const noq = run(['export', '--trained-weights-path', pt]);
    assert.equal(noq.status, 2);
    assert.match(noq.stderr, /model\.pt: holds no quantized configuration/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
