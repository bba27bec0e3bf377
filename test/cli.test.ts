// The qcapsnets command: --help, bad input as one clear error before any work, `evaluate`
// and `search` end to end on a small model and test subset (real Fashion-MNIST images when
// Debian's dataset-fashion-mnist is installed).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readStateDict, writeStateDict } from '../src/io/pt.js';
import { buildModel } from '../src/models/factory.js';
import { FASHION_MNIST, requirePackages, skipUnless } from './requirements.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
const needsFashion = skipUnless(FASHION_MNIST);

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
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-cli-bad-'));
  writeFileSync(join(dir, 'a-file'), 'not a folder');
  const cases: [string[], RegExp][] = [
    [['--visible-gpus', '0'], /--visible-gpus 0: this build has no GPU backend/],
    [
      ['--quantization-method', 'rounding'],
      /unknown quantization method 'rounding'; expected one of truncation, round_to_nearest, stochastic_rounding, logarithmic/,
    ],
    [['--model', 'ResNet'], /unknown model 'ResNet': expected ShallowCapsNet or DeepCaps/],
    [['--accuracy-tolerance', '0'], /--accuracy-tolerance 0: expected a percentage in \(0, 100\)/],
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
    // flags the library would refuse under its option names are refused here under the flag's
    [['--lr', '-1'], /--lr -1: expected a positive number/],
    [['train', '--batch-size', '0'], /--batch-size 0: expected a positive integer/],
    [['train', '--regularization-scale', '-1'], /--regularization-scale -1: expected 0 or more/],
    [
      ['search', '--finetune-epochs', '1', '--distill-scale', '1', '--distill-fraction', '0'],
      /--distill-fraction 0: expected a number in \(0, 1\], the share of each batch the float model runs on/,
    ],
    [
      ['sweep', '--finetune-epochs', '1', '--distill-fraction', '0.5'],
      /--distill-fraction 0\.5 without --distill-scale: it is the share of each batch the float model runs on for distillation/,
    ],
    [['--seed', '1e300'], /--seed 1e\+300: expected an integer/],
    [['--memory-budget', '0'], /--memory-budget 0: expected a positive number of MB/],
    [['evaluate', '--test-limit', '0'], /--test-limit 0: expected a positive integer/],
    [['train', '--train-limit', '0'], /--train-limit 0: expected a positive integer/],
    [
      ['train', '--checkpoint-every', '-1'],
      /--checkpoint-every -1: expected 0 \(only at epoch ends\) or a number of batches/,
    ],
    [
      ['--model-args', '28', '1', '10'],
      /--model ShallowCapsNet --model-args 28 1 10: args needs 4 values \(input_wh input_ch num_classes caps_dim\), got 3/,
    ],
    [
      ['--model', 'DeepCaps', '--model-args', '28', '0', '10', '32'],
      /--model DeepCaps --model-args 28 0 10 32: args\[1\] \(input_ch\) must be a positive integer, got 0/,
    ],
    [
      ['--model', 'DeepCaps', '--model-args', '32', '1', '10', '32'],
      /--model DeepCaps --model-args 32 1 10 32: DeepCaps: input_wh must be 28 or 64, got 32/,
    ],
    [['train', '--decoder', 'NoDecoder'], /--decoder NoDecoder: unknown decoder 'NoDecoder'/],
    // the dataset-fit checks: --dataset's shape is known before its files are read
    [
      ['--dataset', 'cifar10'],
      /ShallowCapsNet takes 28x28x1 images \(--model-args 28 1 10 16: input_wh 28, input_ch 1\) but cifar10 has 64x64x3 images; use --model-args 64 3 10 16/,
    ],
    [
      ['--model-args', '28', '1', '5', '16'],
      /ShallowCapsNet has 5 classes \(--model-args 28 1 5 16: num_classes 5\) but mnist has 10 classes; use num_classes 10/,
    ],
    [
      ['train', '--decoder-args', '8', '784'],
      /FCDecoder reads capsules of dimension 8 \(--decoder-args 8 784\) but ShallowCapsNet gives 16 \(--model-args 28 1 10 16\)/,
    ],
    [
      ['train', '--dataset', 'cifar10', '--model-args', '64', '3', '10', '16'],
      /FCDecoder \(--decoder-args 16 784\) reconstructs 784 values per image but cifar10 images are 64x64x3; use --decoder ConvDecoder64 16 3/,
    ],
    [['train', '--full-precision-filename', dir], /--full-precision-filename .* is a folder/],
    // an --output-dir that is a file fails before any training or search
    [
      ['--output-dir', join(dir, 'a-file'), '--full-precision-filename', join(dir, 'm.pt')],
      /--output-dir .*a-file: .*a-file is a file, not a folder/,
    ],
    [['--output-dir', join(dir, 'a-file', 'sub')], /--output-dir .*a-file\/sub: .*a-file is a file, not a folder/],
    [
      ['train', '--full-precision-filename', join(dir, 'm.pt'), '--resume', join(dir, 'none.ckpt.safetensors')],
      /--resume .*none\.ckpt\.safetensors: no such file/,
    ],
    [
      ['train', '--dataset', 'svhn', '--model-args', '64', '3', '10', '16', '--decoder-args', '16', '4096'].concat([
        '--data-dir',
        join(dir, 'empty'),
        '--full-precision-filename',
        join(dir, 'm.pt'),
      ]),
      /svhn files not found: .*, or pass --data-dir DIR, or add --download \(with --data-dir\) to fetch them\./,
    ],
  ];
  try {
    for (const [args, message] of cases) {
      const r = run(args);
      assert.equal(r.status, 2, `${args.join(' ')} exits 2`);
      assert.match(r.stderr, message, args.join(' '));
      assert.equal(r.stderr.trim().split('\n').length, 1, `one line for ${args.join(' ')}: ${r.stderr}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('train, then --resume with other flags: the error names the flags that differ', (t) => {
  if (needsFashion) return t.skip(needsFashion);
  requirePackages(FASHION_MNIST);
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-cli-resume-'));
  try {
    const common = ['train', '--dataset', 'fashion-mnist', '--train-limit', '20', '--test-limit', '20'].concat([
      '--batch-size',
      '10',
      '--full-precision-filename',
      join(dir, 'm.pt'),
    ]);
    const first = run([...common, '--epochs', '1']);
    assert.equal(first.status, 0, first.stderr);
    const again = run([...common, '--epochs', '1', '--lr', '0.002', '--resume', join(dir, 'm.ckpt.safetensors')]);
    assert.equal(again.status, 2);
    assert.match(
      again.stderr,
      /--resume .*m\.ckpt\.safetensors: the checkpoint belongs to a different run:\n {2}--lr 0\.002: the checkpoint used 0\.001\n/,
    );
    assert.match(again.stderr, /only --epochs may grow, and --lr shrink\), or start afresh without --resume/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('evaluate and search end to end: JSON, quantized .pt files that load back, JSON + HTML reports', (t) => {
  if (needsFashion) return t.skip(needsFashion);
  requirePackages(FASHION_MNIST);
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
    // a wrong model for the checkpoint: the flags that fit it
    const wrong = run(['evaluate', ...common, '--model', 'DeepCaps', '--model-args', '28', '1', '10', '32']);
    assert.equal(wrong.status, 2);
    assert.match(wrong.stderr, /pass --model ShallowCapsNet --model-args 28 1 10 16/);
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

test('a checkpoint of the other model (or other args) is one line naming the flags that fit it', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-cli-other-'));
  try {
    const file = join(dir, 'deep.pt');
    writeStateDict(file, buildModel('DeepCaps', [28, 1, 10, 32]).stateDict());
    const r = run(['evaluate', '--trained-weights-path', file, '--test-limit', '10']);
    assert.equal(r.status, 2);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(
      r.stderr,
      /holds a DeepCaps 28 1 10 32 state_dict, not ShallowCapsNet 28 1 10 16: pass --model DeepCaps --model-args 28 1 10 32/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
