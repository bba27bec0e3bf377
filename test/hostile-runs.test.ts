// `report` and `merge` against hostile run JSON: malformed shards (a huge declared grid, fields
// missing or of the wrong type), nesting 100,000 deep, 60,000 layers, 200,000 evaluated points
// and extreme numbers are one error naming the file and the field, or a page without NaN
// coordinates; `merge` checks everything and renders the page before it writes anything, and
// never writes onto one of its inputs.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { FileFormatError } from '../src/io/byte-source.js';
import { checkRunJson, renderReport } from '../src/report/index.js';
import type { SweepPoint, SweepResult } from '../src/search/sweep-result.js';
import { paretoFront } from '../src/search/sweep.js';
import { sampleSearch, sampleSensitivity, sampleSweep } from './report-samples.js';
import { cli } from './small-trained-model.js';

const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 120_000 });

let dir = '';
before(() => (dir = mkdtempSync(join(tmpdir(), 'qcaps-hostile-runs-'))));
after(() => rmSync(dir, { recursive: true, force: true }));

const write = (name: string, json: unknown) => {
  const f = join(dir, name);
  writeFileSync(f, typeof json === 'string' ? json : JSON.stringify(json));
  return f;
};

/** The sample sweep as shard k of 2 (the cells k-1, k+1, ... of its four). */
function shard(k: 1 | 2): SweepResult {
  const r = sampleSweep();
  const order = ['round_to_nearest 1', 'round_to_nearest 2', 'truncation 1', 'truncation 2'];
  return {
    ...r,
    shard: { index: k, count: 2 },
    rows: r.rows.filter((row) => order.indexOf(`${row.method} ${row.tolerance}`) % 2 === k - 1),
  };
}

const deepText = (depth: number) => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
const deepJson = (depth: number) => JSON.parse(deepText(depth)) as unknown;
/** The JSON text of `r` with settings.x nested `depth` deep (JSON.stringify would recurse). */
const withDeepSettings = (r: { settings: Record<string, unknown> }, depth: number) => {
  r.settings.x = 'DEEP';
  return JSON.stringify(r).replace('"DEEP"', deepText(depth));
};

/** `what` must fail with one error that names `file` (and matches `field`), as a FileFormatError. */
function failsNaming(what: () => unknown, file: string, field: RegExp): void {
  assert.throws(what, (e: Error) => {
    assert.ok(e instanceof FileFormatError, `${e.name}: ${e.message}`);
    assert.ok(e.message.startsWith(`${file}: `), e.message);
    assert.match(e.message, field);
    assert.doesNotMatch(e.message, /Maximum call stack|Cannot read properties/);
    return true;
  });
}

test('report: nesting 100,000 deep, 60,000 layers and 1e308 are one error naming the file and field', () => {
  const deep = sampleSearch();
  deep.settings.x = deepJson(100_000);
  failsNaming(
    () => renderReport(deep, 'deep.json'),
    'deep.json',
    /^deep\.json: settings\.x\.a\.a\.\.\.: nested more than 64 levels/,
  );
  const layers = sampleSearch();
  layers.layers = Array.from({ length: 60_000 }, (_, i) => ({
    name: `l${i}`,
    paramCount: 10,
    routes: false,
    iterations: 0,
  }));
  failsNaming(() => renderReport(layers, 'l.json'), 'l.json', /^l\.json: layers: 60000 items; expected at most 1000/);
  const big = sampleSweep();
  big.fullPrecisionAccuracy = 1e308;
  failsNaming(
    () => renderReport(big, 'b.json'),
    'b.json',
    /fullPrecisionAccuracy: expected a percentage in \[0, 100\], got number 1e\+308/,
  );

  // the command: exit 2, one line, no page
  const f = write('deep_qcapsnets.json', withDeepSettings(sampleSearch(), 100_000));
  const r = run(['report', f]);
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /deep_qcapsnets\.json: settings\.x\.a\.a\.\.\.: nested more than 64 levels deep/);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.ok(!existsSync(join(dir, 'deep_qcapsnets.html')));
});

test('every number of a run at an extreme is a named error or a page without NaN coordinates', () => {
  const samples: [string, () => unknown][] = [
    ['search', sampleSearch],
    ['sweep', sampleSweep],
    ['sensitivity', sampleSensitivity],
  ];
  let drawn = 0;
  let refused = 0;
  for (const [kind, sample] of samples) {
    // every path to a number in the sample
    const paths: (string | number)[][] = [];
    const walk = (v: unknown, path: (string | number)[]) => {
      if (typeof v === 'number') paths.push(path);
      else if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...path, i]));
      else if (v && typeof v === 'object') for (const [k, x] of Object.entries(v)) walk(x, [...path, k]);
    };
    walk(sample(), []);
    for (const path of paths)
      for (const value of [1e308, -1e308, 1e15, -1e15, 1e-300, 0]) {
        const json = sample() as Record<string | number, unknown>;
        let at = json;
        for (const k of path.slice(0, -1)) at = at[k] as Record<string | number, unknown>;
        at[path[path.length - 1]] = value;
        let html: string;
        try {
          html = renderReport(json, `${kind}.json`);
        } catch (e) {
          assert.ok(e instanceof FileFormatError && e.message.startsWith(`${kind}.json: `), String(e));
          refused++;
          continue;
        }
        drawn++;
        const bad = /[^\n]{0,80}\b(NaN|Infinity)\b/.exec(html.replace(/<title>[^<]*<\/title>/g, ''));
        assert.equal(bad, null, `${kind} ${path.join('.')} = ${value}: ${bad?.[0]}`);
      }
  }
  assert.ok(drawn > 100 && refused > 100, `${drawn} drawn, ${refused} refused`);
});

test('200,000 evaluated points: the page and the merge run, no spread of the arrays', { timeout: 120_000 }, () => {
  const r = sampleSweep();
  const base = r.evaluated[0];
  r.evaluated = Array.from({ length: 200_000 }, (_, i) => ({
    ...base,
    bits: { weightBits: [i % 32, (i >> 5) % 32, (i >> 10) % 32], actBits: [(i >> 15) % 32, 8, 8], routingBits: [8, 8] },
    accuracy: (i % 1000) / 10,
    weightMemoryMB: 1 + (i % 5000) / 1000,
  }));
  r.pareto = paretoFront(r.evaluated);
  assert.match(renderReport(r, 'many.json'), /<svg/);
  const f = write('many_sweep.json', r);
  const m = run(['merge', f, '--output', join(dir, 'many-merged.json')]);
  assert.equal(m.status, 0, m.stderr);
  assert.equal(
    (JSON.parse(readFileSync(join(dir, 'many-merged.json'), 'utf8')) as SweepResult).evaluated.length,
    200_000,
  );
});

test('the Pareto front of a sweep equals the quadratic definition, ties included', () => {
  let seed = 7;
  const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
  for (let trial = 0; trial < 50; trial++) {
    const points: SweepPoint[] = Array.from({ length: 1 + rand(40) }, () => ({
      method: 'truncation',
      bits: { weightBits: [], actBits: [], routingBits: [] },
      accuracy: rand(6) * 10,
      exact: rand(5) !== 0,
      weightMemoryMB: 1 + rand(6),
      activationKB: 1,
    }));
    const want = points
      .map((p, i) => i)
      .filter(
        (i) =>
          points[i].exact &&
          !points.some(
            (q) =>
              q.exact &&
              q.accuracy >= points[i].accuracy &&
              q.weightMemoryMB <= points[i].weightMemoryMB &&
              (q.accuracy > points[i].accuracy || q.weightMemoryMB < points[i].weightMemoryMB),
          ),
      )
      .sort(
        (i, j) =>
          points[i].weightMemoryMB - points[j].weightMemoryMB || points[j].accuracy - points[i].accuracy || i - j,
      );
    assert.deepEqual(paretoFront(points), want, JSON.stringify(points));
  }
});

test('merge: malformed shards are one error naming the file and the field, nothing written', () => {
  const s1 = write('s_1of2.json', shard(1));
  const edit = (name: string, change: (r: Record<string, unknown>) => void) => {
    const r = shard(2) as unknown as Record<string, unknown>;
    change(r);
    return write(name, r);
  };
  const grid = edit('grid.json', (r) => {
    // 10 kB of JSON declaring 125 million cells
    const axis = <T>(f: (i: number) => T) => Array.from({ length: 500 }, (_, i) => f(i));
    r.grid = { tolerances: axis((i) => i / 5), memoryBudgetsMB: axis((i) => i + 1), methods: axis((i) => `m${i}`) };
  });
  const deep = write('deep.json', withDeepSettings(shard(2), 100_000));
  const cases: [string, RegExp][] = [
    [grid, /grid\.json: grid: 500 tolerances x 500 budgets x 500 methods = 125000000 cells; expected at most 100000/],
    [edit('nomodel.json', (r) => delete r.model), /nomodel\.json: model: missing \(expected an object\)/],
    [edit('nosettings.json', (r) => delete r.settings), /nosettings\.json: settings: missing/],
    [
      edit('sha.json', (r) => ((r.model as Record<string, unknown>).sha256 = 12)),
      /sha\.json: model\.sha256: expected a string, got number 12/,
    ],
    [
      edit('axis.json', (r) => ((r.grid as Record<string, unknown>).tolerances = 5)),
      /axis\.json: grid\.tolerances: expected an array/,
    ],
    [
      edit('nobits.json', (r) => delete (r.evaluated as Record<string, unknown>[])[2].bits),
      /nobits\.json: evaluated\[2\]\.bits: missing/,
    ],
    [deep, /deep\.json: settings\.x\.a\.a\.\.\.: nested more than 64 levels deep/],
    // what only the page checked: a pareto index outside the points
    [edit('pareto.json', (r) => (r.pareto = [0, 99])), /pareto\.json: pareto\[1\]: expected an index into evaluated/],
    [
      edit('fp.json', (r) => (r.fullPrecisionAccuracy = 1e308)),
      /fp\.json: fullPrecisionAccuracy: expected a percentage/,
    ],
    [write('search.json', sampleSearch()), /search\.json: a search result; expected a qcapsnets sweep result/],
  ];
  const out = join(dir, 'merged', 'm.json');
  for (const [bad, message] of cases) {
    const t0 = performance.now();
    const r = run(['merge', s1, bad, '--output', out]);
    assert.equal(r.status, 2, `${bad}: ${r.stderr}`);
    assert.match(r.stderr, /^qcapsnets: error: merge: /);
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.doesNotMatch(r.stderr, /Maximum call stack|Cannot read properties/);
    assert.ok(!existsSync(join(dir, 'merged')), 'nothing written');
    assert.ok(performance.now() - t0 < 60_000, 'refused before any work');
  }
});

test('merge writes nothing onto its inputs; --output names the JSON, the page follows from it', () => {
  const a = write('a_1of2.json', shard(1));
  const b = write('b_2of2.json', shard(2));
  const before = [readFileSync(a, 'utf8'), readFileSync(b, 'utf8')];
  const pageAsInput = write('c.html', shard(2));
  const cases: [string[], RegExp][] = [
    [
      [a, b, '--output', a],
      /merge: .*a_1of2\.json is one of the files to merge and would be overwritten by the merged JSON/,
    ],
    [[a, b, '--output', join(dir, '.', 'b_2of2.json')], /b_2of2\.json is one of the files to merge/],
    [
      [a, pageAsInput, '--output', join(dir, 'c.json')],
      /c\.html is one of the files to merge and would be overwritten by its page/,
    ],
    [[a, b, '--output', join(dir, 'x.html')], /--output .*x\.html: names the merged JSON; expected a \.json name/],
  ];
  const listing = readdirSync(dir).sort();
  for (const [args, message] of cases) {
    const r = run(['merge', ...args]);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, message);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  assert.deepEqual(readdirSync(dir).sort(), listing, 'no file written');
  assert.deepEqual([readFileSync(a, 'utf8'), readFileSync(b, 'utf8')], before, 'the inputs unchanged');

  // the merge of the two: the JSON where --output says, its page beside it
  const out = join(dir, 'whole.json');
  const r = run(['merge', b, a, '--output', out]);
  assert.equal(r.status, 0, r.stderr);
  const m = JSON.parse(readFileSync(out, 'utf8')) as SweepResult;
  assert.equal(checkRunJson(m, out), 'sweep');
  assert.deepEqual(m.rows, sampleSweep().rows);
  assert.equal(m.shard, null);
  assert.match(readFileSync(join(dir, 'whole.html'), 'utf8'), /<table id="grid">/);
});
