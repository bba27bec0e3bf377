// `qcapsnets sweep` and `merge`: a 2x2 grid (tolerances x budgets, both branches) on a small
// trained model; the same grid as two shards run as two processes at once, merged, equals the
// unsharded result row for row, with the same evaluated configurations and Pareto front; each
// row asks for the evaluations of its search alone (checked against `search`); bad input is
// one clear error line before any work.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { buildModel } from '../src/models/factory.js';
import { writeStateDict } from '../src/io/pt.js';
import type { SweepResult } from '../src/search/sweep-result.js';
import { cli, trainSmallModel } from './small-trained-model.js';

const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
const runAsync = (args: string[]) =>
  new Promise<{ status: number | null; stdout: string; stderr: string }>((done) => {
    const child = spawn(process.execPath, [cli, ...args]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (status) => done({ status, stdout, stderr }));
  });

let dir = '';
let model = '';
const grid = ['--tolerances', '2,10', '--memory-budgets', '8,2', '--methods', 'round_to_nearest'];
const common = () =>
  ['sweep', '--dataset', 'mnist', '--trained-weights-path', model, '--test-limit', '100'].concat([
    '--test-batch-size',
    '25',
    '--threads',
    '1',
  ]);
const read = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as SweepResult;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'qcaps-sweep-'));
  model = trainSmallModel(dir);
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('two shards as two processes, merged, equal the unsharded sweep row for row', { timeout: 300_000 }, async () => {
  const whole = run([...common(), ...grid, '--output-dir', join(dir, 'whole'), '--eval-cache', join(dir, 'c.jsonl')]);
  assert.equal(whole.status, 0, whole.stderr);
  const w = read(join(dir, 'whole', 'net_sweep.json'));
  assert.equal(w.rows.length, 4);
  assert.deepEqual(
    w.rows.map((r) => [r.tolerance, r.memoryBudgetMB]),
    [
      [2, 8],
      [2, 2],
      [10, 8],
      [10, 2],
    ],
  );
  assert.deepEqual(new Set(w.rows.map((r) => r.branch)), new Set(['A', 'B']), 'the grid takes both branches');
  assert.ok(w.evaluations < w.rows.reduce((a, r) => a + r.evaluations, 0), 'cells share evaluations');
  assert.equal(
    w.evaluations,
    w.rows.reduce((a, r) => a + r.newEvaluations, 0),
  );
  assert.equal(w.middleCellEvaluations, w.rows[0].evaluations);
  assert.ok(w.pareto.length >= 1 && w.pareto.every((i) => w.evaluated[i].exact));
  assert.match(whole.stdout, /round_to_nearest +2% +8\.0000 +[AB] /);

  // a cell's search alone: the same bits and the same count of evaluations as its row
  const cell = w.rows[2];
  const alone = run(
    ['search', '--dataset', 'mnist', '--trained-weights-path', model, '--test-limit', '100', '--test-batch-size', '25']
      .concat(['--accuracy-tolerance', '10', '--memory-budget', '8', '--quantization-method', 'round_to_nearest'])
      .concat(['--output-dir', join(dir, 'alone'), '--json']),
  );
  assert.equal(alone.status, 0, alone.stderr);
  const a = JSON.parse(alone.stdout.trim().split('\n').pop()!);
  assert.equal(a.branch, cell.branch);
  assert.equal(a.evaluations, cell.evaluations);
  assert.deepEqual(
    a.models.map((m: { weightBits: number[]; actBits: number[]; routingBits: number[]; accuracy: number }) => [
      m.weightBits,
      m.actBits,
      m.routingBits,
      m.accuracy,
    ]),
    cell.models.map((m) => [m.bits.weightBits, m.bits.actBits, m.bits.routingBits, m.accuracy]),
  );

  const shards = await Promise.all(
    ['1/2', '2/2'].map((s) => runAsync([...common(), ...grid, '--shard', s, '--output-dir', join(dir, 'shards')])),
  );
  for (const s of shards) assert.equal(s.status, 0, s.stderr);
  const s1 = join(dir, 'shards', 'net_sweep_1of2.json');
  const s2 = join(dir, 'shards', 'net_sweep_2of2.json');
  assert.deepEqual(
    read(s1).rows.map((r) => [r.tolerance, r.memoryBudgetMB]),
    [
      [2, 8],
      [10, 8],
    ],
  );
  const merged = join(dir, 'merged.json');
  const m = run(['merge', s2, s1, '--output', merged]);
  assert.equal(m.status, 0, m.stderr);
  const g = read(merged);
  assert.equal(g.shard, null);
  // newEvaluations and seconds differ: a shard cannot reuse what the other shard's cells
  // evaluated, and runs at its own speed; what each cell asks for (evaluations) is the same
  const strip = (r: SweepResult['rows'][number]) => ({ ...r, newEvaluations: 0, seconds: 0 });
  assert.deepEqual(g.rows.map(strip), w.rows.map(strip));
  assert.deepEqual(g.evaluated, w.evaluated);
  assert.deepEqual(
    g.pareto.map((i) => g.evaluated[i]),
    w.pareto.map((i) => w.evaluated[i]),
  );
  assert.equal(g.middleCellEvaluations, w.middleCellEvaluations);
  assert.equal(g.evaluations, read(s1).evaluations + read(s2).evaluations);
  assert.equal(g.middleCellImages, w.middleCellImages);
  assert.ok(w.imagesEvaluated! < w.rows.reduce((a, r) => a + r.imagesEvaluated!, 0), 'cells share images');

  // merging: a shard missing, another grid, another model, a cell twice
  const bad = (name: string, edit: (r: SweepResult) => void) => {
    const r = read(s2);
    edit(r);
    const f = join(dir, name);
    writeFileSync(f, JSON.stringify(r));
    return f;
  };
  const cases: [string[], RegExp][] = [
    [[s1], /merge: 2 of 4 cells are in none of the files .*; add the result of --shard 2\/2/],
    [[s1, bad('grid.json', (r) => (r.grid.tolerances = [2, 5]))], /merge: .*grid\.json is a sweep of another grid/],
    [
      [s1, bad('model.json', (r) => (r.model.sha256 = '0'.repeat(64)))],
      /merge: .*model\.json is a sweep of another model/,
    ],
    [[s1, s1], /merge: the cell round_to_nearest tolerance 2 budget 8 is in both .*1of2\.json and .*1of2\.json/],
    [
      [s1, bad('limit.json', (r) => (r.settings.testLimit = 50))],
      /merge: .*limit\.json was run with testLimit 50, .* with 100/,
    ],
  ];
  for (const [files, message] of cases) {
    const r = run(['merge', ...files, '--output', join(dir, 'never.json')]);
    assert.equal(r.status, 2, files.join(' '));
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }

  // the eval cache now holds every evaluation: a second sweep runs none
  const again = run([...common(), ...grid, '--output-dir', join(dir, 'again'), '--eval-cache', join(dir, 'c.jsonl')]);
  assert.equal(again.status, 0, again.stderr);
  const ag = read(join(dir, 'again', 'net_sweep.json'));
  assert.equal(ag.evaluations, 0);
  assert.deepEqual(ag.rows.map(strip), w.rows.map(strip));
});

test('bad sweep input is one clear error line before any work', () => {
  const other = join(dir, 'other.pt');
  writeStateDict(other, buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 9 }).stateDict());
  const cache = join(dir, 'c2.jsonl');
  // a cache of this model (made by a tiny sweep), then used with another model
  const made = run(
    [...common(), '--tolerances', '50', '--memory-budgets', '2', '--methods', 'truncation'].concat([
      '--test-limit',
      '25',
      '--eval-cache',
      cache,
      '--output-dir',
      join(dir, 'tiny'),
    ]),
  );
  assert.equal(made.status, 0, made.stderr);
  const withModel = (file: string, args: string[]) => [
    'sweep',
    '--dataset',
    'mnist',
    '--trained-weights-path',
    file,
    '--test-limit',
    '25',
    ...args,
  ];
  const cases: [string[], RegExp][] = [
    [withModel(model, ['--tolerances', '']), /--tolerances '': the grid axis is empty/],
    [
      withModel(model, ['--memory-budgets', '2,,1']),
      /--memory-budgets '2,,1': the grid axis is empty or has an empty item/,
    ],
    [withModel(model, ['--methods', 'round_to_nearest,rounding']), /--methods: unknown quantization method 'rounding'/],
    [withModel(model, ['--shard', '3/2']), /--shard 3\/2: expected i\/n with 1 <= i <= n/],
    [['search', '--shard', '1/2'], /--shard applies to sweep only/],
    [['train', '--eval-cache', cache], /--eval-cache applies to sweep, search and the default command only/],
    [withModel(model, ['--shard', '0/2']), /--shard 0\/2: expected i\/n with 1 <= i <= n/],
    [withModel(model, ['--budget-divisors', '64']), /--budget-divisors: 64: expected values in \[1, 32\]/],
    [withModel(model, ['--memory-budgets', '0.1']), /--memory-budgets: 0.1 MB cannot be met/],
    [
      withModel(other, ['--eval-cache', cache]),
      /--eval-cache .*c2\.jsonl: made with modelSha256 "[0-9a-f]+", this run has modelSha256 "[0-9a-f]+"; use another --eval-cache file for this model/,
    ],
    [
      withModel(model, ['--eval-cache', cache, '--seed', '7']),
      /--eval-cache .*c2\.jsonl: made with seed 42, this run has seed 7/,
    ],
  ];
  for (const [args, message] of cases) {
    const t0 = performance.now();
    const r = run(args);
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, message, args.join(' '));
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.doesNotMatch(r.stdout, /cell 1\//, 'no cell ran');
    assert.ok(performance.now() - t0 < 30_000);
  }
});
