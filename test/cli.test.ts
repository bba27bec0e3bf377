// The qcapsnets command: --help, bad input as one clear error before any work, `evaluate`
// and `search` end to end on a small model and test subset (real Fashion-MNIST images when
// Debian's dataset-fashion-mnist is installed).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readStateDict, writeStateDict } from '../src/io/pt.js';
import { buildModel } from '../src/models/factory.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
const fashion = existsSync('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz');

test('--help lists every flag of the reference with its default', () => {
  const r = run(['--help']);
  assert.equal(r.status, 0);
  for (const flag of [
    '--model-args',
    '--quantization_method',
    '--memory-budget 200'.split(' ')[0],
    '--rounding-compat',
    '--visible-gpus',
  ]) {
    assert.ok(r.stdout.includes(flag), flag);
  }
  assert.match(r.stdout, /--memory-budget X +weight memory budget in MB .*\(default: 200\)/);
});

test('bad input is one clear error line before any work', () => {
  const cases: [string[], RegExp][] = [
    [['--visible-gpus', '0'], /--visible-gpus 0: this build has no GPU backend/],
    [
      ['--quantization-method', 'rounding'],
      /unknown quantization method 'rounding'; expected one of truncation, round_to_nearest, stochastic_rounding, logarithmic/,
    ],
    [['--model', 'ResNet'], /unknown model 'ResNet': expected ShallowCapsNet or DeepCaps/],
    [['--accuracy-tolerance', '0'], /--accuracy-tolerance 0: expected a value in \(0, 100\)/],
    [
      ['--memory-budget', '0.1', '--dataset', 'fashion-mnist'],
      /--memory-budget 0.1 MB cannot be met: even 1 bit per parameter needs 0.850548 MB/,
    ],
    [['--epochs', 'two'], /--epochs: expected an integer, got 'two'/],
    [['--frobnicate'], /unknown flag --frobnicate/],
    [['quantize'], /unknown command 'quantize'/],
    [
      ['search', '--no-training', '--dataset', 'fashion-mnist', '--trained-weights-path', '/nonexistent.pt'],
      /--trained-weights-path \/nonexistent.pt: expected a .pt state_dict file/,
    ],
  ];
  for (const [args, message] of cases) {
    const r = run(args);
    assert.equal(r.status, 2, `${args.join(' ')} exits 2`);
    assert.match(r.stderr, message, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, `one line for ${args.join(' ')}: ${r.stderr}`);
  }
});

test('evaluate and search end to end: JSON, quantized .pt files that load back, JSON + HTML reports', (t) => {
  if (!fashion) return t.skip('dataset-fashion-mnist is not installed');
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-cli-'));
  try {
    const model = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 5 });
    const file = join(dir, 'net.pt');
    writeStateDict(file, model.stateDict());
    const common = ['--dataset', 'fashion-mnist', '--trained-weights-path', file, '--test-limit', '200', '--json'];
    const ev = run(['evaluate', ...common]);
    assert.equal(ev.status, 0, ev.stderr);
    const acc = JSON.parse(ev.stdout.trim().split('\n').pop()!);
    assert.equal(acc.total, 200);
    assert.equal(acc.accuracy, (acc.correct * 100) / 200);
    // a wrong model for the checkpoint: the differing keys are listed
    const wrong = run(['evaluate', ...common, '--model', 'DeepCaps', '--model-args', '28', '1', '10', '32']);
    assert.equal(wrong.status, 2);
    assert.match(wrong.stderr, /conv1\.conv\.weight/);
    const out = join(dir, 'out');
    const s = run([
      'search',
      ...common,
      '--memory-budget',
      '3',
      '--quantization-method',
      'round_to_nearest',
      '--accuracy-tolerance',
      '50',
      '--output-dir',
      out,
    ]);
    assert.equal(s.status, 0, s.stderr);
    const res = JSON.parse(s.stdout.trim().split('\n').pop()!);
    assert.equal(res.fullPrecisionAccuracy, acc.accuracy);
    assert.ok(res.models.length >= 1);
    for (const m of res.models) {
      assert.ok(existsSync(m.file), m.file);
      assert.match(m.file, /net_quantized_(satisfied|memory|accuracy)\.pt$/);
      const sd = readStateDict(m.file);
      assert.deepEqual([...sd.keys()], [...model.stateDict().keys()]);
    }
    const report = JSON.parse(readFileSync(join(out, 'net_qcapsnets.json'), 'utf8'));
    assert.ok(report.evaluations.length >= 5 && report.steps.length >= 3);
    assert.match(readFileSync(join(out, 'net_qcapsnets.html'), 'utf8'), /<svg[\s\S]*STEP|step1/);
    assert.match(s.stdout, /STEP1 output:\n {2}weight bits: +\[\d+, \d+, \d+\]/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
