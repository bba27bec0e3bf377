// A model file with NaN or infinite weights (a training run that diverged, a damaged or forged
// file) is refused where it is loaded: one error naming the file and the tensor, from the
// library's loadModel, from every command that loads a .pt, from a packed quantized file's
// float buffers and from a training checkpoint, before any work and with nothing written.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readQuantizedModel, writeQuantizedModel } from '../src/export/quantized-file.js';
import { writeStateDict } from '../src/io/pt.js';
import { readSafetensors, readSafetensorsRaw, writeSafetensors, writeSafetensorsRaw } from '../src/io/safetensors.js';
import { buildModel } from '../src/models/factory.js';
import { loadModel } from '../src/models/model-file.js';
import { quantize } from '../src/quant/quantized-model.js';
import { bitsFromLists } from '../src/quant/config.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

/** A ShallowCapsNet state_dict with `value` at element `at` of `tensor`, written to `file`. */
function poisoned(file: string, tensor: string, at: number, value: number): void {
  const sd = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 1 }).stateDict();
  sd.get(tensor)!.data[at] = value;
  writeStateDict(file, sd);
}

test('loadModel: NaN and infinite weights are an error naming the file, the tensor and the element', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-nan-'));
  try {
    const nan = join(dir, 'nan.pt');
    poisoned(nan, 'conv.conv.weight', 5, NaN);
    assert.throws(
      () => loadModel(nan),
      (err: Error) => {
        assert.match(err.message, /^ShallowCapsNet: the .*nan\.pt holds values that are not finite numbers/);
        assert.match(err.message, /conv\.conv\.weight element 5 is NaN \(1 of 20736 values\)/);
        return true;
      },
    );
    const inf = join(dir, 'inf.pt');
    poisoned(inf, 'digit.bias', 3, -Infinity);
    assert.throws(() => loadModel(inf), /inf\.pt holds .*digit\.bias element 3 is -Infinity/);

    // the same file with finite values loads (the check refuses only what it should)
    const fine = join(dir, 'fine.pt');
    poisoned(fine, 'digit.bias', 3, 1e30);
    assert.equal(loadModel(fine).kind, 'ShallowCapsNet');

    // DeepCaps' BatchNorm running statistics are checked as the parameters are
    const deep = buildModel('DeepCaps', [28, 1, 10, 32], { seed: 1 });
    const sd = deep.stateDict();
    const bufferName = [...sd.keys()].find((k) => k.endsWith('running_var'))!;
    sd.get(bufferName)!.data[0] = Infinity;
    const deepFile = join(dir, 'deep.pt');
    writeStateDict(deepFile, sd);
    assert.throws(
      () => loadModel(deepFile, { model: 'DeepCaps', args: [28, 1, 10, 32] }),
      new RegExp(`deep\\.pt holds .*${bufferName.replace(/\./g, '\\.')} element 0 is Infinity`),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('evaluate, search, sweep, sensitivity: a NaN model is one error before any work, nothing written', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-nan-cli-'));
  try {
    const net = join(dir, 'net.pt');
    poisoned(net, 'primary.conv3d.weight', 0, NaN);
    const out = join(dir, 'out');
    const data = ['--dataset', 'mnist', '--test-limit', '20', '--trained-weights-path', net];
    for (const cmd of [
      ['evaluate'],
      ['search', '--output-dir', out],
      ['sweep', '--output-dir', out],
      ['sensitivity', '--output-dir', out],
    ]) {
      const r = run([...cmd, ...data]);
      assert.equal(r.status, 2, `${cmd[0]}: exit 2\n${r.stderr}`);
      const lines = r.stderr.trim().split('\n');
      assert.equal(lines.length, 1, `${cmd[0]}: one line\n${r.stderr}`);
      assert.match(
        lines[0],
        /^qcapsnets: error: ShallowCapsNet: the .*net\.pt holds values that are not finite numbers .*primary\.conv3d\.weight element 0 is NaN/,
      );
      assert.doesNotMatch(r.stderr + r.stdout, /full-precision accuracy|STEP|Step 0/, `${cmd[0]}: before any work`);
    }
    assert.ok(!existsSync(out) || readdirSync(out).length === 0, 'nothing written');
    assert.deepEqual(readdirSync(dir).sort(), ['net.pt'], 'no temporary files');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a packed quantized file's float buffers and a training checkpoint: the file and the tensor", () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-nan-packed-'));
  try {
    // DeepCaps packs its BatchNorm running statistics as float32
    const model = buildModel('DeepCaps', [28, 1, 10, 32], { seed: 2 });
    const bits = {
      weightBits: model.quantLayers.map(() => 6),
      actBits: model.quantLayers.map(() => 6),
      routingBits: model.routingLayerNames.map(() => 6),
    };
    const packed = join(dir, 'deep_quantized_memory.safetensors');
    writeQuantizedModel(
      packed,
      quantize(model, bitsFromLists(model.quantLayers, bits), { method: 'round_to_nearest', seed: 1 }),
    );
    const raw = readSafetensorsRaw(packed);
    const name = [...raw.tensors.keys()].find((k) => k.endsWith('running_mean'))!;
    const t = raw.tensors.get(name)!;
    const bytes = new Uint8Array(t.bytes);
    new DataView(bytes.buffer).setFloat32(4, NaN, true);
    raw.tensors.set(name, { ...t, bytes });
    writeSafetensorsRaw(packed, raw.tensors, raw.metadata);
    assert.throws(
      () => readQuantizedModel(packed),
      new RegExp(
        `deep_quantized_memory\\.safetensors.*not finite numbers.*${name.replace(/\./g, '\\.')} element 1 is NaN`,
      ),
    );

    // a training checkpoint: its model's and its optimizer's tensors
    const ckptFile = join(dir, 'm.ckpt.safetensors');
    const { tensors, metadata } = readSafetensors(fixtureCheckpoint(dir));
    tensors.get('model.digit.weight')!.data[7] = NaN;
    writeSafetensors(ckptFile, [...tensors], metadata);
    const resumed = run([...trainFlags(join(dir, 'm.pt')), '--resume', ckptFile]);
    assert.equal(resumed.status, 2, resumed.stderr);
    assert.match(
      resumed.stderr,
      /m\.ckpt\.safetensors holds values that are not finite numbers .*digit\.weight element 7 is NaN/,
    );
    assert.ok(!existsSync(join(dir, 'm.pt')), 'no model written');

    const { tensors: t2, metadata: m2 } = readSafetensors(fixtureCheckpoint(dir));
    const moment = [...t2.keys()].find((k) => k.startsWith('adam.v.'))!;
    t2.get(moment)!.data[0] = Infinity;
    writeSafetensors(ckptFile, [...t2], m2);
    const adam = run([...trainFlags(join(dir, 'm.pt')), '--resume', ckptFile]);
    assert.equal(adam.status, 2, adam.stderr);
    assert.match(
      adam.stderr,
      new RegExp(
        `m\\.ckpt\\.safetensors: the optimizer state holds values that are not finite numbers: ${moment.replace(/\./g, '\\.')} element 0 is Infinity`,
      ),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

// 2 batches of 10 MNIST digits an epoch; a checkpoint after each
const trainFlags = (file: string, epochs = 2) =>
  ['train', '--dataset', 'mnist', '--epochs', String(epochs), '--train-limit', '20', '--test-limit', '10'].concat([
    '--batch-size',
    '10',
    '--threads',
    '1',
    '--full-precision-filename',
    file,
  ]);

let checkpoint: string | null = null;

/** The checkpoint of a one-epoch run (trained once per test file). */
function fixtureCheckpoint(dir: string): string {
  if (checkpoint) return checkpoint;
  const file = join(dir, 'first.pt');
  const r = run(trainFlags(file, 1));
  assert.equal(r.status, 0, r.stderr);
  checkpoint = join(dir, 'first.ckpt.safetensors');
  assert.ok(existsSync(checkpoint));
  return checkpoint;
}
