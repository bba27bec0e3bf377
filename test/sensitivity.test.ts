// `qcapsnets sensitivity`: FULL_PRECISION in the quantized forward is the float32 model (the
// same accuracy, the parameters restored), and the command writes one curve per layer and
// quantity with accuracies that reach the full-precision accuracy at many bits, its page, a
// progress line per evaluation; a bad --sensitivity-bits fails before any work.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeStateDict } from '../src/io/pt.js';
import { evaluateFullPrecision } from '../src/models/evaluate.js';
import { buildModel } from '../src/models/factory.js';
import { FULL_PRECISION, uniformBits } from '../src/quant/config.js';
import { ModelQuantizer } from '../src/quant/quantized-forward.js';
import { FastEvaluator } from '../src/search/fast-evaluator.js';
import { parseBitList, type SensitivityResult } from '../src/search/sensitivity.js';
import { requireNative, syntheticImages } from './helpers.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

test('FULL_PRECISION everywhere is the float32 forward; a layer set back to it gets its own values', async (t) => {
  if (!requireNative(t)) return;
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 3 });
  const images = syntheticImages(40, 11);
  const fp = evaluateFullPrecision(model, images, { batchSize: 20 });
  const before = model.parameters().map((p) => p.param.data.slice());
  const q = new ModelQuantizer(model, 'round_to_nearest', 'none', 42);
  const ev = new FastEvaluator(model, q, images, { batchSize: 20, cacheMB: 64, earlyStop: false, order: 'dataset' });
  const full = uniformBits(q.layers, FULL_PRECISION);
  assert.equal((await ev.evaluate(full)).accuracy, fp.accuracy);
  await ev.evaluate(full.map((b) => ({ ...b, weight: 2 })));
  q.applyWeights(full.map((b) => ({ ...b, weight: b.name === 'primary' ? 2 : FULL_PRECISION })));
  const same = model.parameters().map((p, i) => ({
    name: p.name,
    same: Buffer.compare(Buffer.from(p.param.data.buffer), Buffer.from(before[i].buffer)) === 0,
  }));
  for (const p of same) if (!p.name.startsWith('primary')) assert.ok(p.same, `${p.name}: its float32 values`);
  assert.ok(
    same.some((p) => p.name.startsWith('primary') && !p.same),
    'primary at 2 bits',
  );
  q.restore();
  assert.deepEqual(parseBitList('2..5'), [2, 3, 4, 5]);
  assert.deepEqual(parseBitList('8, 2,4'), [2, 4, 8]);
  assert.throws(
    () => parseBitList('1..40', '--sensitivity-bits'),
    /--sensitivity-bits '1\.\.40': expected fractional bit counts in \[0, 32\]/,
  );
});

test('qcapsnets sensitivity: a curve per layer and quantity, full precision reached at 24 bits, JSON + page', (t) => {
  if (!requireNative(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-sensitivity-'));
  try {
    const file = join(dir, 'net.pt');
    writeStateDict(file, buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 5 }).stateDict());
    const common = ['sensitivity', '--dataset', 'mnist', '--trained-weights-path', file, '--test-limit', '50'];
    const bad = run([...common, '--sensitivity-bits', '4..2']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /--sensitivity-bits 4\.\.2: the range's start is above its end/);
    const r = run([
      ...common,
      '--sensitivity-bits',
      '1,24',
      '--quantization-method',
      'round_to_nearest',
      '--output-dir',
      join(dir, 'out'),
    ]);
    assert.equal(r.status, 0, r.stderr);
    const res = JSON.parse(readFileSync(join(dir, 'out', 'net_sensitivity.json'), 'utf8')) as SensitivityResult;
    assert.equal(res.tool, 'qcapsnets sensitivity');
    assert.deepEqual(
      res.curves.map((c) => `${c.layer} ${c.kind}`),
      [
        'conv weights',
        'conv activations',
        'primary weights',
        'primary activations',
        'primary routing',
        'digit weights',
        'digit activations',
        'digit routing',
      ],
    );
    assert.equal(res.evaluations, 16);
    for (const c of res.curves) {
      assert.deepEqual(c.bits, [1, 24]);
      // 24 fractional bits of one quantity: at most one of the 50 images changes its class (an
      // untrained model's activations are small: it takes more bits than a trained one's 8)
      assert.ok(Math.abs(c.accuracy[1] - res.fullPrecisionAccuracy) <= 2, `${c.layer} ${c.kind}: ${c.accuracy}`);
    }
    assert.equal((r.stderr.match(/^sensitivity \d+\/16: /gm) ?? []).length, 16, r.stderr);
    // the layers before the varied one run once per batch, then come from the kept outputs
    const [, reused] = /(\d+) of \d+ stage runs reused/.exec(r.stdout) ?? [];
    assert.ok(Number(reused) >= 10, r.stdout);
    const html = readFileSync(join(dir, 'out', 'net_sensitivity.html'), 'utf8');
    assert.equal((html.match(/<svg class="plot"/g) ?? []).length, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
