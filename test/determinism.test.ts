// Determinism (README, Threads and memory): the same command with the same seed, backend and
// thread count writes the same bytes: the best model, the checkpoint, the quantized models (.pt
// and packed .safetensors), the JSON and HTML reports and the printed decisions, stochastic
// rounding included. Only timings differ (seconds, images per second), and are left out of the
// comparison; each HTML page must be exactly the page of its own JSON. Between thread counts: the search on a given model file is the same; training's
// weights are not (the weight gradients are summed in per-thread parts), as the README says.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readStateDict } from '../src/io/pt.js';
import { readSafetensors } from '../src/io/safetensors.js';
import { renderReport } from '../src/report/index.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
/** Runs the CLI (concurrently with others: each runs on its own --threads) and returns stdout. */
async function run(args: string[]): Promise<string> {
  const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((res) => child.on('close', (c) => res(c)));
  assert.equal(code, 0, `${args.join(' ')}\n${err}`);
  return out;
}
// 4 training steps of 50 digits, then the search with stochastic rounding on 200 test digits
const data = ['--dataset', 'mnist', '--test-limit', '200', '--seed', '7'];
const training = [...data, '--epochs', '1', '--train-limit', '200', '--batch-size', '50'];
const searching = ['--quantization-method', 'stochastic_rounding', '--memory-budget', '3', '--accuracy-tolerance', '5'];
const TIMING_KEYS = new Set(['seconds', 'testSeconds', 'totalSeconds', 'imagesPerSecond']);

/** A JSON value without its timing fields. */
function untimed(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(untimed);
  if (typeof v !== 'object' || v === null) return v;
  return Object.fromEntries(
    Object.entries(v)
      .filter(([k]) => !TIMING_KEYS.has(k))
      .map(([k, x]) => [k, untimed(x)]),
  );
}

/** The search's printed decisions: every try, every step's bits and accuracy. */
const decisions = (stdout: string) =>
  stdout
    .split('\n')
    .filter((l) => /^STEP|^ {2}(step\w+ try|weight bits|activation bits|dynamic routing bits|accuracy)/.test(l));

test(
  'the same command twice writes the same bytes; thread counts: same search, training documented',
  { timeout: 600_000 },
  async () => {
    const root = mkdtempSync(join(tmpdir(), 'qcaps-determinism-'));
    try {
      const dirs = ['runa', 'runb'].map((n) => join(root, n));
      // run d trains at 2 threads (compared below), alongside runs a and b
      const d = join(root, 'rund');
      const outs = await Promise.all([
        ...dirs.map((dir) =>
          run([...training, ...searching, '--threads', '1', '--full-precision-filename', join(dir, 'm.pt'), '--json']),
        ),
        run(['train', ...training, '--threads', '2', '--full-precision-filename', join(d, 'm.pt')]),
      ]);
      const [a, b] = dirs;
      const names = readdirSync(a).sort();
      assert.deepEqual(readdirSync(b).sort(), names, 'the same files');
      for (const f of ['m.pt', 'm.ckpt.safetensors', 'm_qcapsnets.json', 'm_qcapsnets.html'])
        assert.ok(names.includes(f), `${f} written`);
      assert.ok(
        names.some((n) => /^m_quantized_\w+\.pt$/.test(n)) &&
          names.some((n) => /^m_quantized_\w+\.safetensors$/.test(n)),
      );
      // the two folders' names have the same length: paths inside binary files are swapped in place
      const bytes = (dir: string, f: string) =>
        Buffer.from(readFileSync(join(dir, f)).toString('latin1').split(dir).join('<dir>'), 'latin1');
      for (const f of names) {
        if (f === 'm.ckpt.safetensors') {
          // its state records each epoch's seconds (the header's length may differ with them)
          const [ca, cb] = [a, b].map((d) => readSafetensors(join(d, f)));
          for (const [k, t] of ca.tensors) assert.deepEqual(cb.tensors.get(k)!.data, t.data, `checkpoint tensor ${k}`);
          const state = (c: typeof ca, d: string) => untimed(JSON.parse(c.metadata.state.split(d).join('<dir>')));
          assert.deepEqual(state(cb, b), state(ca, a), 'checkpoint state (timings left out)');
        } else if (f.endsWith('.json')) {
          const json = (d: string) => untimed(JSON.parse(bytes(d, f).toString('utf8')));
          assert.deepEqual(json(b), json(a), `${f} (timings left out)`);
        } else if (f.endsWith('.html')) {
          // the page is drawn from its JSON alone (compared above, timings left out): each run's
          // page is exactly renderReport of that run's JSON
          const jsonFile = f.replace(/\.html$/, '.json');
          for (const d of [a, b]) {
            const page = readFileSync(join(d, f), 'utf8');
            const source = join(d, jsonFile);
            assert.equal(
              page,
              renderReport(JSON.parse(readFileSync(source, 'utf8')), source),
              `${f}: the page of its JSON`,
            );
          }
        } else assert.ok(bytes(b, f).equals(bytes(a, f)), `${f}: the same bytes`);
      }
      const printed = outs.map((o) => decisions(o.split(a).join('<dir>').split(b).join('<dir>')));
      assert.ok(printed[0].length >= 10, `the decisions were printed:\n${outs[0]}`);
      assert.deepEqual(printed[1], printed[0], 'the same printed decisions');
      const last = (o: string, d: string) => untimed(JSON.parse(o.trim().split('\n').pop()!.split(d).join('<dir>')));
      assert.deepEqual(last(outs[1], b), last(outs[0], a), 'the same --json results (timings left out)');

      // 2 threads: the search on run a's model makes the same decisions and the same models
      const c = join(root, 'runc');
      const searched = await run([
        'search',
        ...data,
        ...searching,
        '--threads',
        '2',
        '--trained-weights-path',
        join(a, 'm.pt'),
        '--output-dir',
        c,
      ]);
      assert.deepEqual(decisions(searched.split(c).join('<dir>')), printed[0], 'the same decisions at 2 threads');
      for (const f of readdirSync(c).filter((n) => /^m_quantized_\w+\.pt$/.test(n)))
        assert.ok(readFileSync(join(c, f)).equals(readFileSync(join(a, f))), `${f}: the same bytes at 2 threads`);
      const steps = (d: string) =>
        (JSON.parse(readFileSync(join(d, 'm_qcapsnets.json'), 'utf8')) as { steps: unknown }).steps;
      assert.deepEqual(steps(c), steps(a), 'the same steps at 2 threads');

      // 2 threads: training's weights differ in their last bits, then by up to the size of a few
      // Adam steps (lr 0.001 each); when they no longer differ, docs/machines.md's paragraph must change
      const one = readStateDict(join(a, 'm.pt'));
      const two = readStateDict(join(d, 'm.pt'));
      let differing = 0;
      let largest = 0;
      for (const [k, t] of one) {
        const u = two.get(k)!.data;
        let same = true;
        for (let i = 0; i < t.data.length; i++) {
          if (t.data[i] !== u[i]) same = false;
          largest = Math.max(largest, Math.abs(Number(t.data[i]) - Number(u[i])));
        }
        if (!same) differing++;
      }
      assert.ok(
        differing > 0,
        'training at 1 and 2 threads now gives the same weights: update docs/machines.md (Determinism) and this test',
      );
      assert.ok(
        largest <= 4 * 2 * 0.001,
        `weights at 1 and 2 threads differ by ${largest}, more than 4 Adam steps could explain`,
      );
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  },
);
