// `qcapsnets finetune --number-format dynamic` on a tiny ShallowCapsNet (28 1 10 4): the
// calibration comes from the starting model on the first --calibration-images training images,
// is stored in the packed file, which `evaluate` reloads to the report's count; --bits-from that
// file takes its format and calibration, and --calibration-images beside it is an error.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { evaluateCommand } from '../src/cli/evaluate-job.js';
import { configurationFromFlags, finetuneCommand } from '../src/cli/finetune-job.js';
import { parseCommandLine } from '../src/cli/parse.js';
import { checkFlagValues } from '../src/cli/validate.js';
import { readQuantizedModel } from '../src/export/quantized-file.js';
import { buildModel } from '../src/models/factory.js';
import { saveModel } from '../src/models/model-file.js';
import type { FinetuneReport } from '../src/report/finetune-json.js';

const dir = mkdtempSync(join(tmpdir(), 'qcaps-cli-finetune-dynamic-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const modelFile = join(dir, 'net.pt');
const model = buildModel('ShallowCapsNet', [28, 1, 10, 4], { seed: 3 });
saveModel(modelFile, model);
const bitsFile = join(dir, 'bits.json');
writeFileSync(
  bitsFile,
  JSON.stringify({
    conv: { weight: 5, activation: 7 },
    primary: { weight: 4, activation: 7, routing: 7 },
    digit: { weight: 4, activation: 7, routing: 6 },
  }),
);
const DATA = ['--train-limit', '10', '--test-limit', '10', '--batch-size', '5', '--test-batch-size', '5'];
const MODEL = ['--trained-weights-path', modelFile, '--model-args', '28', '1', '10', '4', '--decoder-args', '4', '784'];

async function finetuneCli(args: string[], log: (line: string) => void = () => {}): Promise<void> {
  const cl = parseCommandLine(['finetune', ...MODEL, ...DATA, ...args]);
  checkFlagValues(cl.command, cl.options);
  if (cl.command !== 'finetune') throw new Error('not finetune');
  await finetuneCommand(cl.options, cl.given, log, 0);
}

test('a dynamic fine-tune stores its calibration; evaluate reloads the count; --bits-from takes both', async () => {
  const out = join(dir, 'out');
  const lines: string[] = [];
  const args = ['--bits', bitsFile, '--number-format', 'dynamic', '--calibration-images', '4', '--epochs', '1'];
  await finetuneCli([...args, '--output-dir', out], (l) => lines.push(l));
  assert.ok(
    lines.some((l) => /over the first 4 images of the training images/.test(l)),
    'calibrated on the training images',
  );
  const report = JSON.parse(readFileSync(join(out, 'net_finetuned.json'), 'utf8')) as FinetuneReport;
  assert.equal(report.format, 'dynamic');
  const packedFile = join(out, 'net_finetuned.safetensors');
  const { info } = readQuantizedModel(packedFile);
  assert.equal(info.numberFormat, 'dynamic');
  assert.equal(info.calibration?.images, 4, 'the calibration of the first 4 training images');

  const ev = parseCommandLine(['evaluate', '--trained-weights-path', packedFile, '--test-limit', '10']);
  if (ev.command !== 'evaluate') throw new Error('not evaluate');
  const evLines: string[] = [];
  await evaluateCommand(ev.options, ev.given, (l) => evLines.push(l));
  const { correct } = report.after;
  assert.ok(evLines.includes(`the fine-tuning counted ${correct}/10 on these images (the same)`), evLines.join('\n'));

  const cl = parseCommandLine(['finetune', ...MODEL, '--epochs', '0', '--bits-from', packedFile]);
  if (cl.command !== 'finetune') throw new Error('not finetune');
  const c = configurationFromFlags(cl.options, cl.given, model);
  assert.deepEqual(
    c.bits.map((b) => b.format),
    ['dynamic', 'dynamic', 'dynamic'],
  );
  assert.deepEqual(c.calibration, info.calibration);
  const cl2 = parseCommandLine([
    'finetune',
    ...MODEL,
    '--epochs',
    '0',
    '--bits-from',
    packedFile,
    '--calibration-images',
    '9',
  ]);
  if (cl2.command !== 'finetune') throw new Error('not finetune');
  assert.throws(
    () => configurationFromFlags(cl2.options, cl2.given, model),
    /^Error: --calibration-images 9: --bits-from .* holds .*the file decides/,
  );
  // resuming at another calibration is refused, naming it
  await assert.rejects(
    finetuneCli([
      ...args.slice(0, -4),
      '--calibration-images',
      '3',
      '--epochs',
      '2',
      '--output-dir',
      join(dir, 'other'),
      '--resume',
      join(out, 'net_finetuned.ckpt.safetensors'),
    ]),
    /--calibration-images "sha256:[0-9a-f]+": the checkpoint used "sha256:/,
  );
});
