// The report pages (src/report/) as HTML strings: one marker per evaluated configuration, the
// Pareto step line through exactly the front computed here the slow way, the chosen models
// marked, the tables' rows; self-contained (no script, no URL fetched); a foreign or damaged
// JSON is one error naming the file and the field; `qcapsnets report` writes the page.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { configKey } from '../src/quant/config.js';
import { weightMemoryMB } from '../src/quant/memory.js';
import { renderReport } from '../src/report/index.js';
import { bruteForceFront, sampleSearch, sampleSensitivity, sampleSweep } from './report-samples.js';

const count = (html: string, re: RegExp) => (html.match(re) ?? []).length;

/** The data-front attributes of the page's Pareto lines, as [memory, accuracy] pairs. */
function fronts(html: string): number[][][] {
  return [...html.matchAll(/data-front="([^"]*)"/g)].map((m) =>
    m[1] === '' ? [] : m[1].split(';').map((p) => p.split(',').map(Number)),
  );
}

/** The pixel corners of a step path: M x y, then H x V y per point. */
function stepCorners(d: string): number {
  return (d.match(/V/g) ?? []).length + 1;
}

function selfContained(html: string): void {
  assert.doesNotMatch(html, /<script/i, 'no script');
  assert.doesNotMatch(html, /\b(src|href)\s*=\s*"(https?:|\/\/)/i, 'nothing fetched');
  assert.doesNotMatch(html, /@import|url\(/i, 'no style sheet or font fetched');
  assert.match(html, /^<!doctype html>/);
}

test('search page: a marker per distinct configuration, the Pareto front, chosen models, tables', () => {
  const r = sampleSearch();
  const html = renderReport(r, 'runs/net_qcapsnets.json');
  selfContained(html);
  const distinct = new Map<string, (typeof r.evaluations)[number]>();
  for (const e of r.evaluations) if (!distinct.get(configKey(e))?.exact) distinct.set(configKey(e), e);
  assert.equal(distinct.size, 9);
  assert.equal(count(html, /class="pt eval /g), distinct.size, 'one marker per evaluated configuration');
  assert.equal(count(html, /class="pt eval bounded"/g), 1, 'the configuration only bounded is a ring');
  // the front of the exact configurations, by a quadratic search over every pair
  const exact = [...distinct.values()].filter((e) => e.exact);
  const pts = exact.map((e) => ({
    memoryMB: weightMemoryMB([20992, 5308672, 1474560], e.weightBits),
    accuracy: e.accuracy!,
  }));
  const want = bruteForceFront(pts).map((i) => [pts[i].memoryMB, pts[i].accuracy]);
  assert.ok(want.length >= 3);
  const [front] = fronts(html);
  assert.deepEqual(front, want);
  const d = /id="pareto-front" data-front="[^"]*" d="([^"]+)"/.exec(html)![1];
  assert.equal(stepCorners(d), want.length, 'the step line turns once per front point');
  assert.equal(count(html, /class="pt chosen"/g), 2, 'both chosen models marked');
  for (const k of ['model-memory', 'model-accuracy']) assert.match(html, new RegExp(`class="point-label"[^>]*>${k}<`));
  assert.match(html, /A_min 89\.425%/);
  assert.match(html, /full precision 91\.25%/);
  const steps = /<table id="steps">[\s\S]*?<\/table>/.exec(html)![0];
  assert.equal(count(steps, /<tr>/g), 1 + r.steps.length);
  assert.match(steps, /<td>step3B<\/td><td>\[5, 5, 6\]<\/td>/);
  // per-layer bars: weights and activations for all 3 layers, routing for the 2 routing layers
  assert.equal(count(html, /class="bar"/g), 2 * (3 + 3 + 2));
  assert.match(html, /branch B/);
});

test("sweep page: the grid, one plot per method with its front and the cells' models", () => {
  const r = sampleSweep();
  const html = renderReport(r, 'runs/net_sweep.json');
  selfContained(html);
  const grid = /<table id="grid">[\s\S]*?<\/table>/.exec(html)![0];
  assert.equal(count(grid, /<tr>/g), 1 + r.rows.length);
  assert.match(grid, /<td>truncation<\/td><td class="n">|<td>truncation<\/td><td>1<\/td>/);
  assert.equal(count(html, /<svg class="plot"/g), 2, 'one plot per method');
  assert.equal(count(html, /class="pt eval /g), r.evaluated.length);
  assert.equal(
    count(html, /class="pt chosen"/g),
    r.rows.reduce((a, row) => a + row.models.length, 0),
  );
  const got = fronts(html);
  r.grid.methods.forEach((m, i) => {
    const pts = r.evaluated
      .filter((p) => p.method === m && p.exact)
      .map((p) => ({ memoryMB: p.weightMemoryMB, accuracy: p.accuracy }));
    assert.deepEqual(
      got[i],
      bruteForceFront(pts).map((k) => [pts[k].memoryMB, pts[k].accuracy]),
      m,
    );
  });
  assert.match(html, /the middle cell alone/);
  assert.match(html, /round_to_nearest: accuracy against weight memory/);
});

test('sensitivity page: a plot per kind, a curve per layer, the full-precision line', () => {
  const r = sampleSensitivity();
  const html = renderReport(r, 'runs/net_sensitivity.json');
  selfContained(html);
  assert.equal(count(html, /<svg class="plot"/g), 3);
  assert.equal(count(html, /data-layer="/g), r.curves.length);
  assert.equal(count(html, /class="pt curve-point routing"/g), 2 * 4);
  assert.equal(count(html, /class="pt curve-point weights"/g), 3 * 4);
  assert.equal(count(html, /full precision 91\.25%/g), 3);
  const table = /<table id="curves">[\s\S]*?<\/table>/.exec(html)![0];
  assert.equal(count(table, /<tr>/g), 1 + r.curves.length);
});

test('a foreign or damaged run JSON is one error naming the file and what was expected', () => {
  const f = 'runs/x.json';
  const broken = <T>(v: T, edit: (v: T) => void): T => {
    const c = structuredClone(v);
    edit(c);
    return c;
  };
  const cases: [unknown, RegExp][] = [
    [[1, 2], /^runs\/x\.json: expected the JSON object of a qcapsnets run, got an array$/],
    [
      { name: 'x' },
      /^runs\/x\.json: not a qcapsnets run: its "tool" field is missing; expected 'qcapsnets' \(a search/,
    ],
    [{ tool: 'aimet' }, /^runs\/x\.json: not a qcapsnets run: its "tool" field is 'aimet'/],
    [
      broken(sampleSearch(), (r) => ((r.steps[1] as unknown as Record<string, unknown>).accuracy = 'high')),
      /^runs\/x\.json: steps\[1\]\.accuracy: expected a number, got 'high' \(in a search result\)$/,
    ],
    [
      broken(sampleSearch(), (r) => delete (r as Partial<typeof r>).evaluations),
      /^runs\/x\.json: evaluations: missing \(expected an array\)/,
    ],
    [
      broken(sampleSearch(), (r) => r.evaluations[3].weightBits.pop()),
      /^runs\/x\.json: evaluations\[3\]: expected 3 weight and activation bit counts and 2 routing/,
    ],
    [
      broken(sampleSweep(), (r) => (r.pareto = [0, 99])),
      /^runs\/x\.json: pareto\[1\]: expected an index into evaluated/,
    ],
    [
      broken(sampleSweep(), (r) => ((r as unknown as Record<string, unknown>).version = 7)),
      /^runs\/x\.json: version: expected one of 1, got number 7 \(in a sweep result\)$/,
    ],
    [
      broken(sampleSensitivity(), (r) => r.curves[2].accuracy.pop()),
      /^runs\/x\.json: curves\[2\]: expected as many accuracies as bit counts/,
    ],
  ];
  for (const [json, re] of cases)
    assert.throws(
      () => renderReport(json, f),
      (e: Error) => (assert.match(e.message, re), true),
    );
});

test('qcapsnets report RUN.json writes RUN.html; a corrupt or foreign file writes nothing', () => {
  const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-report-'));
  try {
    const sweep = join(dir, 'net_sweep.json');
    writeFileSync(sweep, JSON.stringify(sampleSweep()));
    const r = run(['report', sweep]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(readFileSync(join(dir, 'net_sweep.html'), 'utf8'), /<table id="grid">/);
    const out = join(dir, 'pages', 'sens.html');
    writeFileSync(join(dir, 's.json'), JSON.stringify(sampleSensitivity()));
    assert.equal(run(['report', join(dir, 's.json'), '--output', out]).status, 0);
    assert.match(readFileSync(out, 'utf8'), /Q-CapsNets sensitivity/);

    const corrupt = join(dir, 'cut.json');
    writeFileSync(corrupt, JSON.stringify(sampleSearch()).slice(0, 300));
    const c = run(['report', corrupt]);
    assert.equal(c.status, 2);
    assert.match(
      c.stderr,
      /^qcapsnets: error: report .*cut\.json: not JSON \(.*\); expected a qcapsnets run's \.json\n$/,
    );
    const foreign = join(dir, 'package.json');
    writeFileSync(foreign, JSON.stringify({ name: 'x', version: '1.0.0' }));
    const f = run(['report', foreign]);
    assert.equal(f.status, 2);
    assert.match(f.stderr, /package\.json: not a qcapsnets run/);
    assert.equal(f.stderr.trim().split('\n').length, 1);
    assert.ok(!existsSync(join(dir, 'cut.html')) && !existsSync(join(dir, 'package.html')));
    assert.match(run(['report']).stderr, /report: expected one run JSON/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('search page of a --selection-split run: the split named, each model with its test accuracy', () => {
  const r = sampleSearch();
  const plain = renderReport(r, 'runs/net_qcapsnets.json');
  assert.doesNotMatch(plain, /test accuracy/, 'no test-accuracy column without a split');
  r.selection = { images: 1000, source: 'the last 1000 training images', fullPrecisionTestAccuracy: 90.5 };
  r.models = r.models.map((m, i) => ({ ...m, testAccuracy: 88 + i, testCorrect: 8800 + 100 * i, testTotal: 10000 }));
  const html = renderReport(r, 'runs/net_qcapsnets.json');
  assert.match(html, /decided on 1000 images held out of the training set/);
  assert.match(html, /full-precision model scores 90\.5%/);
  const models = /<table id="models">[\s\S]*?<\/table>/.exec(html)![0];
  assert.match(models, /<th>test accuracy \(%\)<\/th>/);
  assert.match(models, /<td>88 \(8800\/10000\)<\/td>/);
  assert.match(models, /<td>89 \(8900\/10000\)<\/td>/);
  const bad = { ...r, selection: { images: 'many' } };
  assert.throws(() => renderReport(bad, 'x.json'), /x\.json: selection/);
});
