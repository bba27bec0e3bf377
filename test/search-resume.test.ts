// A search killed mid-way (SIGKILL: no chance to clean up) and run again with the same flags
// and --eval-cache reuses every evaluation the killed run stored, runs only the rest, and
// makes the same decisions and prints the same tries, accuracies and steps as a run that was
// never stopped; a torn last line (a kill mid-write) is dropped with a note.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { cli, trainSmallModel } from './small-trained-model.js';

/** The lines a search prints about its tries and steps (not times, files or the cache). */
const searchLines = (stdout: string) =>
  stdout
    .split('\n')
    .filter((l) =>
      /^( {2}step\w+ try |STEP|full-precision accuracy| {2}(weight|activation|dynamic routing) bits| {2}accuracy:| {2}activation memory)/.test(
        l,
      ),
    )
    .map((l) => l.replace(/ \(\d+\.\d s\)$/, ''));

test(
  'a search killed mid-way resumes from its --eval-cache and makes the same decisions',
  { timeout: 300_000 },
  async () => {
    const dir = mkdtempSync(join(tmpdir(), 'qcaps-resume-'));
    try {
      const model = trainSmallModel(dir);
      const flags = (out: string) =>
        [
          'search',
          '--dataset',
          'mnist',
          '--trained-weights-path',
          model,
          '--test-limit',
          '100',
          '--test-batch-size',
          '25',
        ]
          .concat(['--accuracy-tolerance', '10', '--memory-budget', '8', '--quantization-method', 'round_to_nearest'])
          .concat(['--threads', '1', '--output-dir', join(dir, out), '--json']);
      const whole = spawnSync(process.execPath, [cli, ...flags('whole')], { encoding: 'utf8' });
      assert.equal(whole.status, 0, whole.stderr);
      const wholeJson = JSON.parse(whole.stdout.trim().split('\n').pop()!);
      const total: number = wholeJson.evaluations;
      assert.ok(total >= 10, `${total} evaluations`);

      const cache = join(dir, 'evals.jsonl');
      const child = spawn(process.execPath, [cli, ...flags('killed'), '--eval-cache', cache], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if ((out.match(/ try /g) ?? []).length >= 6) child.kill('SIGKILL');
      });
      const code = await new Promise<NodeJS.Signals | null>((done) => child.on('close', (_c, signal) => done(signal)));
      assert.equal(code, 'SIGKILL', 'the search was killed before it ended');
      const lines = readFileSync(cache, 'utf8').split('\n').filter(Boolean);
      const stored = lines.length - 1; // the header
      assert.ok(stored >= 6 && stored < total, `${stored} of ${total} evaluations stored`);
      appendFileSync(cache, '{"method":"round_to_nea'); // as if killed in the middle of a write

      const again = spawnSync(process.execPath, [cli, ...flags('again'), '--eval-cache', cache], { encoding: 'utf8' });
      assert.equal(again.status, 0, again.stderr);
      assert.match(again.stdout, new RegExp(`${stored} evaluations read; a torn last line \\(23 bytes`));
      assert.match(
        again.stdout,
        new RegExp(`eval cache: ${stored} of ${total} evaluations answered from it, ${total - stored} run`),
      );
      assert.deepEqual(searchLines(again.stdout), searchLines(whole.stdout));
      assert.ok(searchLines(whole.stdout).filter((l) => l.includes(' try ')).length >= 10);
      const againJson = JSON.parse(again.stdout.trim().split('\n').pop()!);
      assert.equal(againJson.evaluations, total);
      assert.deepEqual(againJson.steps, wholeJson.steps);
      assert.deepEqual(
        againJson.models.map((m: { accuracy: number }) => m.accuracy),
        wholeJson.models.map((m: { accuracy: number }) => m.accuracy),
      );
      const report = (sub: string) => JSON.parse(readFileSync(join(dir, sub, 'net_qcapsnets.json'), 'utf8'));
      const decisions = (r: { evaluations: Record<string, unknown>[] }) =>
        r.evaluations.map(({ seconds: _s, ...e }) => e);
      assert.deepEqual(decisions(report('again')), decisions(report('whole')));

      // once more: everything from the file
      const third = spawnSync(process.execPath, [cli, ...flags('third'), '--eval-cache', cache], { encoding: 'utf8' });
      assert.equal(third.status, 0, third.stderr);
      assert.match(third.stdout, new RegExp(`eval cache: ${total} of ${total} evaluations answered from it, 0 run`));
      assert.deepEqual(searchLines(third.stdout), searchLines(whole.stdout));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
);
