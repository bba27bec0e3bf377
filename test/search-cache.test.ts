// --cache-mb is honoured: the fast evaluator never holds more reused intermediate results than
// its budget, and a whole search makes the same decisions with any budget as with none.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildModel } from '../src/models/factory.js';
import { activationCounts } from '../src/quant/activation-volume.js';
import { ModelQuantizer } from '../src/quant/quantized-forward.js';
import { FastEvaluator } from '../src/search/fast-evaluator.js';
import { runSearch } from '../src/search/qcapsnets.js';
import { syntheticImages } from './helpers.js';

test('the search with a small --cache-mb stays within it and decides as with no cache', async () => {
  const model = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 11 });
  const src = syntheticImages(80, 13);
  const search = async (cacheMB: number) => {
    const quantizer = new ModelQuantizer(model, 'stochastic_rounding', 'none', 42);
    const ev = new FastEvaluator(model, quantizer, src, { batchSize: 40, cacheMB, earlyStop: true });
    const fp = await ev.evaluateFullPrecision();
    const r = await runSearch(
      model.quantLayers,
      {
        fpAccuracy: fp.accuracy,
        tolerance: 20,
        memoryBudgetMB: 3,
        compat: 'none',
        activationCounts: activationCounts(model),
      },
      ev,
      { info: () => {} },
    );
    const peak = ev.peakCacheBytes;
    ev.clear();
    quantizer.restore();
    assert.equal(ev.cacheBytes, 0, 'clear() frees the cache');
    return { r, peak, reused: ev.stats.stagesReused };
  };
  const none = await search(0);
  assert.equal(none.peak, 0);
  // 4 MB holds one prefix of the digit capsules' input (2 batches of 40 x 1152 x 8 floats: 2.9
  // MB) and not two; the conv layer's output (16 MB a batch) never fits
  const cacheMB = 4;
  const cached = await search(cacheMB);
  assert.ok(cached.reused > 0, 'intermediate results were reused');
  assert.ok(cached.peak > 2 * 2 ** 20, `the budget was used (${cached.peak} bytes)`);
  assert.ok(cached.peak <= cacheMB * 2 ** 20, `at most ${cacheMB} MB held (${cached.peak} bytes)`);
  assert.deepEqual(cached.r.steps, none.r.steps, 'the same steps');
  assert.deepEqual(
    cached.r.models.map((m) => [m.kind, m.result.accuracy]),
    none.r.models.map((m) => [m.kind, m.result.accuracy]),
  );
});
