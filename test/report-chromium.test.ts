// The report pages as a reader sees them: each page opened from a file:// URL in headless
// Debian Chromium (/usr/bin/chromium, driven by playwright-core; CI installs it in .ci/run)
// with JavaScript off and every network request refused and counted. Checks what is drawn:
// each plot inside the viewport, a visible marker per configuration, the tables' rows, the
// labels and legends, no console errors, no request; screenshots are saved for people to look
// at (their folder is printed). Without Debian's chromium the test skips, naming the package;
// under QCAPS_REQUIRE_CHROMIUM=1 (CI) it fails instead.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { pathToFileURL } from 'node:url';
import { chromium } from 'playwright-core';
import { renderReport } from '../src/report/index.js';
import { sampleSearch, sampleSensitivity, sampleSweep } from './report-samples.js';
import { CHROMIUM as CHROMIUM_PACKAGE, CHROMIUM_PATH, requirePackages, skipUnless } from './requirements.js';

const CHROMIUM = CHROMIUM_PATH;
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
const VIEWPORT = { width: 1280, height: 900 };

interface Expect {
  name: string;
  json: unknown;
  plots: number;
  /** selector -> how many visible elements */
  visible: Record<string, number>;
  /** table id -> body rows */
  rows: Record<string, number>;
  /** text the SVGs must show */
  svgText: string[];
}

const search = sampleSearch();
const sweep = sampleSweep();
const sensitivity = sampleSensitivity();
const PAGES: Expect[] = [
  {
    name: 'search',
    json: search,
    // the full scatter, the one around A_min (accuracies from 87.6%), a bar chart per model
    plots: 2 + search.models.length,
    visible: {
      '.pt.eval': 9,
      '.pt.chosen': 2,
      '#pareto-front': 1,
      '.bar': 16,
      '.pt.zoomed': 6,
      '.pt.zoomed-chosen': 2,
    },
    rows: { steps: search.steps.length, models: search.models.length },
    svgText: ['Pareto front', 'model-memory', 'model-accuracy', 'A_min 89.425%', 'weight memory (MB)', 'accuracy (%)'],
  },
  {
    name: 'sweep',
    json: sweep,
    plots: sweep.grid.methods.length + 1,
    visible: { '.pt.eval': sweep.evaluated.length, '.pt.chosen': 6 },
    rows: { grid: sweep.rows.length },
    svgText: [
      'round_to_nearest: accuracy against weight memory',
      'truncation: accuracy against weight memory',
      'chosen: memory',
    ],
  },
  {
    name: 'sensitivity',
    json: sensitivity,
    plots: 3,
    visible: { '.pt.curve-point': sensitivity.curves.length * 4 },
    rows: { curves: sensitivity.curves.length },
    svgText: ['conv', 'primary', 'digit', 'fractional bits', 'full precision 91.25%'],
  },
];

test(
  'report pages in headless Chromium: plots in view, markers, tables, labels, no request, no error',
  { skip: skipUnless(CHROMIUM_PACKAGE) },
  async (t) => {
    requirePackages(CHROMIUM_PACKAGE);
    const dir = mkdtempSync(join(tmpdir(), 'qcaps-report-pages-'));
    const profile = mkdtempSync(join(tmpdir(), 'qcaps-chromium-profile-'));
    const shots = mkdtempSync(join(tmpdir(), 'qcaps-report-screenshots-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: ARGS,
      headless: true,
      viewport: VIEWPORT,
      javaScriptEnabled: false, // the page must read fully without scripts
      offline: true,
    });
    try {
      for (const p of PAGES) {
        const file = join(dir, `${p.name}.html`);
        writeFileSync(file, renderReport(p.json, `runs/${p.name}.json`));
        const url = pathToFileURL(file).href;
        const page = await context.newPage();
        const requests: string[] = [];
        const errors: string[] = [];
        await page.route('**/*', (route) => {
          if (route.request().url() === url) return route.continue();
          requests.push(route.request().url());
          return route.abort();
        });
        page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
        page.on('pageerror', (e) => errors.push(e.message));
        await page.goto(url, { waitUntil: 'load' });

        const boxes = await page.$$eval('svg.plot, svg.bars', (els) =>
          els.map((e) => {
            const r = e.getBoundingClientRect();
            return { x: r.x, y: r.y, w: r.width, h: r.height };
          }),
        );
        assert.equal(boxes.length, p.plots, `${p.name}: plots`);
        for (const b of boxes) {
          assert.ok(b.w > 200 && b.h > 150, `${p.name}: a plot of ${b.w}x${b.h} px`);
          assert.ok(
            b.x >= 0 && b.x + b.w <= VIEWPORT.width,
            `${p.name}: a plot at x ${b.x}..${b.x + b.w}, past the viewport`,
          );
        }
        for (const [sel, n] of Object.entries(p.visible)) {
          // drawn: a non-empty box inside the plot that holds it
          const shown = await page.$$eval(
            sel,
            (els) =>
              els.filter((e) => {
                const r = e.getBoundingClientRect();
                const svg = (e as SVGElement).ownerSVGElement!.getBoundingClientRect();
                return (
                  r.width > 0 &&
                  r.height > 0 &&
                  r.left >= svg.left - 1 &&
                  r.right <= svg.right + 1 &&
                  r.top >= svg.top - 1 &&
                  r.bottom <= svg.bottom + 1
                );
              }).length,
          );
          assert.equal(shown, n, `${p.name}: visible ${sel}`);
        }
        for (const [id, n] of Object.entries(p.rows))
          assert.equal(await page.locator(`#${id} tbody tr`).count(), n, `${p.name}: rows of #${id}`);
        const texts = await page.$$eval('svg text', (els) => els.map((e) => e.textContent ?? ''));
        for (const s of p.svgText)
          assert.ok(
            texts.some((x) => x.includes(s)),
            `${p.name}: the text '${s}' in a plot`,
          );
        // legends sit right of their plot areas: no entry overlaps the data
        const overlaps = await page.$$eval('svg.plot', (svgs) =>
          svgs.flatMap((svg) => {
            const frame = svg.querySelector('rect[fill="none"]')!.getBoundingClientRect();
            return [...svg.querySelectorAll('.legend-entry')]
              .map((g) => g.getBoundingClientRect())
              .filter((r) => r.left < frame.right)
              .map((r) => `${r.left} < ${frame.right}`);
          }),
        );
        assert.deepEqual(overlaps, [], `${p.name}: legend entries over the plot area`);
        await page.screenshot({ path: join(shots, `${p.name}.png`), fullPage: true });
        assert.deepEqual(requests, [], `${p.name}: requests made`);
        assert.deepEqual(errors, [], `${p.name}: console errors`);
        await page.close();
      }
      t.diagnostic(`screenshots in ${shots}`);
    } finally {
      await context.close();
      rmSync(dir, { recursive: true, force: true });
      rmSync(profile, { recursive: true, force: true });
    }
  },
);
