// The page of one search (<stem>_qcapsnets.html): its settings and reference accuracies, the
// steps table, per-layer bits of the chosen models, and every evaluated configuration as
// accuracy against weight memory with the Pareto front and the chosen models.
import { basename } from 'node:path';
import type { SearchReport } from './search-json.js';
import { configKey } from '../quant/config.js';
import { BITS_PER_MB, formatMemoryBits, weightMemoryMB } from '../quant/memory.js';
import { bitList, facts, figure, page, settingsTable, table } from './page.js';
import { paretoFront } from './pareto.js';
import { bars, esc, maxOf, minOf, num, PALETTE, plot, type Point, type RefLine, type Series } from './svg.js';

export const STEP_COLORS: Record<string, string> = {
  step1: PALETTE[0],
  step2: PALETTE[1],
  step3A: PALETTE[2],
  step4A: PALETTE[4],
  step3B: PALETTE[3],
};
export const BIT_COLORS = { weights: '#1f77b4', activations: '#ff7f0e', routing: '#2ca02c' };

/** One point per distinct configuration evaluated: its exact accuracy where any evaluation
 *  of it was exact, else the bounds of the one that stopped early. */
export interface EvaluatedConfig {
  key: string;
  step: string;
  memoryMB: number;
  exact: boolean;
  accuracy: number;
  lower: number;
  upper: number;
  bits: string;
}

export function evaluatedConfigs(r: SearchReport): EvaluatedConfig[] {
  const paramCounts = r.layers.map((l) => l.paramCount);
  // 'dynamic' (its layers give their tensor counts): parameters x w + 8 bits per tensor
  const dynamic = r.layers.every((l) => l.tensorCount !== undefined);
  const memoryMB = (weightBits: number[]) =>
    dynamic
      ? formatMemoryBits(
          r.layers.map((l) => ({ name: l.name, paramCount: l.paramCount, tensorCount: l.tensorCount })),
          weightBits,
          'dynamic',
        ) / BITS_PER_MB
      : weightMemoryMB(paramCounts, weightBits);
  const byKey = new Map<string, EvaluatedConfig>();
  for (const e of r.evaluations) {
    const key = configKey(e);
    const old = byKey.get(key);
    if (old?.exact) continue;
    const exact = e.exact && e.accuracy !== null;
    if (old && !exact) continue;
    byKey.set(key, {
      key,
      step: old?.step ?? e.step,
      memoryMB: memoryMB(e.weightBits),
      exact,
      accuracy: exact ? e.accuracy! : e.lower,
      lower: e.lower,
      upper: e.upper,
      bits: `w ${bitList(e.weightBits)} a ${bitList(e.actBits)} r ${bitList(e.routingBits)}`,
    });
  }
  return [...byKey.values()];
}

/** The scatter of every configuration; with `zoom`, only what lies at or above that accuracy
 *  (the region around A_min, which far-off failures squash in the full plot). */
function scatter(r: SearchReport, zoom: number | null = null): string {
  const keep = (y: number) => zoom === null || y >= zoom;
  const kind = zoom === null ? 'eval' : 'zoomed';
  const configs = evaluatedConfigs(r);
  const steps = [...new Set(configs.map((c) => c.step))];
  const series: Series[] = [];
  for (const step of steps) {
    const color = STEP_COLORS[step] ?? PALETTE[7];
    const mine = configs.filter((c) => c.step === step);
    const tip = (c: EvaluatedConfig) =>
      `${step}: ${c.bits}\n${num(c.memoryMB)} MB, ${c.exact ? `${num(c.accuracy)}%` : `between ${num(c.lower)}% and ${num(c.upper)}% (stopped early)`}`;
    series.push({
      label: step,
      color,
      mode: 'markers',
      cls: `${kind} exact`,
      points: mine
        .filter((c) => c.exact && keep(c.accuracy))
        .map((c) => ({ x: c.memoryMB, y: c.accuracy, tip: tip(c) })),
    });
    series.push({
      label: `${step} (stopped early)`,
      color,
      mode: 'markers',
      marker: 'ring',
      cls: `${kind} bounded`,
      noLegend: true,
      points: mine.filter((c) => !c.exact && keep(c.upper)).map((c) => ({ x: c.memoryMB, y: c.upper, tip: tip(c) })),
    });
  }
  if (configs.some((c) => !c.exact))
    series.push({ label: 'stopped early (bound)', color: '#666', mode: 'markers', marker: 'ring', points: [] });
  const exact = configs.filter((c) => c.exact);
  const front = paretoFront(exact).map((i) => exact[i]);
  series.push({
    label: 'Pareto front',
    color: '#111',
    mode: 'step',
    points: front.filter((c) => keep(c.accuracy)).map((c) => ({ x: c.memoryMB, y: c.accuracy })),
    lineAttrs:
      zoom === null
        ? { id: 'pareto-front', 'data-front': front.map((c) => `${c.memoryMB},${c.accuracy}`).join(';') }
        : {},
  });
  series.push({
    label: 'chosen model',
    color: '#ffd400',
    mode: 'markers',
    marker: 'diamond',
    size: 6,
    cls: zoom === null ? 'chosen' : 'zoomed-chosen',
    points: r.models
      .filter((m) => keep(m.accuracy))
      .map((m): Point => ({
        x: m.memoryMB,
        y: m.accuracy,
        label: `model-${m.kind}`,
        tip: `model-${m.kind}: ${num(m.accuracy)}%, ${num(m.memoryMB)} MB`,
      })),
  });
  const xs = configs.map((c) => c.memoryMB).filter((v) => v > 0);
  const log = xs.length > 0 && maxOf(xs) / minOf(xs) > 20;
  const budget = Number(r.settings['memory-budget']);
  const refs: RefLine[] = [
    {
      axis: 'y',
      value: r.fullPrecisionAccuracy,
      label: `full precision ${num(r.fullPrecisionAccuracy)}%`,
      color: '#2ca02c',
    },
    { axis: 'y', value: r.minimumAccuracy, label: `A_min ${num(r.minimumAccuracy)}%`, color: '#d62728' },
  ];
  if (Number.isFinite(budget) && budget > 0 && budget <= 4 * Math.max(maxOf(xs), 0))
    refs.push({ axis: 'x', value: budget, label: `budget ${num(budget)} MB`, color: '#777' });
  if (zoom !== null)
    return figure(
      plot({
        title: `Around A_min: the configurations at ${num(zoom, 2)}% or more`,
        x: { label: 'weight memory (MB)', log },
        y: { label: 'accuracy (%)', min: zoom },
        series,
        refs,
      }),
      `The same plot, from ${num(zoom, 2)}% up: where the search decided.`,
    );
  return figure(
    plot({
      title: 'Accuracy against weight memory, every evaluated configuration',
      x: { label: 'weight memory (MB)', log },
      y: { label: 'accuracy (%)' },
      series,
      refs,
    }),
    `${configs.length} distinct configurations (filled: exact accuracy; rings: evaluations that stopped ` +
      `once their step's pass/fail was certain, drawn at their upper bound). The black step line is the Pareto ` +
      `front of the exact ones; diamonds are the chosen models.`,
  );
}

/** The plot around A_min when the full plot's accuracies span much more than the search's
 *  window (A_min minus the tolerance band, up to full precision); '' otherwise. */
function zoomedScatter(r: SearchReport): string {
  const band = Math.max(1, r.fullPrecisionAccuracy - r.minimumAccuracy);
  const from = Math.max(0, r.minimumAccuracy - band);
  const ys = evaluatedConfigs(r).map((c) => (c.exact ? c.accuracy : c.upper));
  const inside = ys.filter((y) => y >= from).length;
  const span = Math.max(maxOf(ys), r.fullPrecisionAccuracy) - Math.min(minOf(ys), r.minimumAccuracy);
  return inside >= 2 && span > 4 * (r.fullPrecisionAccuracy + 1 - from) ? scatter(r, from) : '';
}

/** What a model's counts are: fractional bits ('fixed', also of files from before the format)
 *  or widths ('dynamic'). */
const countsOf = (m: SearchReport['models'][number]) => (m.number_format === 'dynamic' ? 'widths' : 'fractional bits');

function bitBars(r: SearchReport, m: SearchReport['models'][number]): string {
  const names = r.layers.map((l) => l.name);
  let k = 0;
  const routing = r.layers.map((l) => (l.routes ? (m.routingBits[k++] ?? null) : null));
  return bars({
    title: `model-${m.kind}: ${countsOf(m)} per layer`,
    categories: names,
    yLabel: countsOf(m),
    series: [
      { label: 'weights', color: BIT_COLORS.weights, values: m.weightBits },
      { label: 'activations', color: BIT_COLORS.activations, values: m.actBits },
      { label: 'routing', color: BIT_COLORS.routing, values: routing },
    ],
  });
}

export function searchPage(r: SearchReport, source: string): string {
  const model = String(r.settings.model ?? 'model');
  const method = String(r.settings['quantization-method'] ?? '');
  const kb = (v: number | null | undefined) => (v == null ? '' : num(v, 2));
  const xr = (v: number | null | undefined) => (v == null ? '' : `${num(v, 2)}x`);
  const stepRows = r.steps.map((s) => [
    s.step,
    bitList(s.weightBits),
    bitList(s.actBits),
    bitList(s.routingBits),
    num(s.accuracy, 2),
    num(s.memoryMB, 4),
    xr(s.reduction),
    kb(s.activationKB),
    xr(s.activationReduction),
  ]);
  // --selection-split: the search decided on held-out training images; the chosen models'
  // accuracies on the test set are shown beside them
  const split = r.selection ?? null;
  const modelRows = r.models.map((m) => [
    `model-${m.kind}${m.number_format === 'dynamic' ? ` (dynamic${m.weight_range === 'mse' ? ', mse weight ranges' : ''}: widths)` : ''}` +
      (m.finetune_epochs
        ? `, fine-tuned ${m.finetune_epochs} epoch${m.finetune_epochs === 1 ? '' : 's'} (before: ${m.kind_before_finetune} model, ${num(m.accuracy_before_finetune ?? NaN, 2)}%)`
        : ''),
    bitList(m.weightBits),
    bitList(m.actBits),
    bitList(m.routingBits),
    m.correct !== undefined && m.total !== undefined
      ? `${num(m.accuracy, 2)} (${m.correct}/${m.total})`
      : num(m.accuracy, 2),
    ...(split
      ? [
          m.testAccuracy === undefined
            ? '–'
            : `${num(m.testAccuracy, 2)}${m.testCorrect !== undefined ? ` (${m.testCorrect}/${m.testTotal})` : ''}`,
        ]
      : []),
    num(m.memoryMB, 4),
    xr(m.reduction),
    kb(m.activationKB),
    basename(m.file),
    m.packedFile ? `${basename(m.packedFile)} (${m.packedBytes} bytes of tensors)` : '',
  ]);
  const evalRows = r.evaluations.map((e, i) => [
    i + 1,
    e.step,
    bitList(e.weightBits),
    bitList(e.actBits),
    bitList(e.routingBits),
    e.exact && e.accuracy !== null ? num(e.accuracy, 2) : `${num(e.lower, 2)}–${num(e.upper, 2)}`,
    `${e.exact ? 'exact' : 'stopped early'}${e.reused ? ', reused' : ''}`,
    e.passed ? 'pass' : 'fail',
    num(e.seconds, 2),
  ]);
  const best = r.models.reduce((a, m) => Math.max(a, m.reduction), 0);
  return page(`Q-CapsNets search: ${model}`, `${source} · ${method} · branch ${r.branch}`, [
    facts([
      [`${num(r.fullPrecisionAccuracy, 2)}%`, 'full-precision accuracy'],
      [`${num(r.minimumAccuracy, 2)}%`, 'A_min (the accuracy the search keeps)'],
      [r.branch, 'branch (A: budget met above A_min)'],
      [`${best ? num(best, 2) : '–'}x`, 'weight memory reduction of the chosen models'],
      [String(r.evaluations.length), 'evaluations'],
      [`${num(r.seconds, 1)} s`, 'run time'],
    ]),
    ...(split
      ? [
          `<p class="note">The search decided on ${split.images} images held out of the training set ` +
            `(${esc(split.source)}), not on the test set: the accuracies in the plots and the steps are ` +
            `theirs. On the test set, the full-precision model scores ${num(split.fullPrecisionTestAccuracy, 2)}% ` +
            `and each chosen model the "test accuracy" below.</p>`,
        ]
      : []),
    ...r.notes.map((n) => `<p class="note">${esc(n)}</p>`),
    '<h2>Accuracy against weight memory</h2>',
    scatter(r),
    zoomedScatter(r),
    '<h2>Steps</h2>',
    table(
      'steps',
      [
        'step',
        'weight bits',
        'activation bits',
        'routing bits',
        'accuracy (%)',
        'weight memory (MB)',
        'vs 32 bits',
        'activations per image (kB)',
        'vs 32 bits',
      ],
      stepRows,
    ),
    '<h2>Chosen models</h2>',
    table(
      'models',
      [
        'model',
        'weight bits',
        'activation bits',
        'routing bits',
        split ? 'accuracy on the selection split (%)' : 'accuracy (%)',
        ...(split ? ['test accuracy (%)'] : []),
        'weight memory (MB)',
        'vs 32 bits',
        'activations (kB)',
        'file',
        'packed file',
      ],
      modelRows,
    ),
    ...r.models.map((m) =>
      figure(
        bitBars(r, m),
        `${m.number_format === 'dynamic' ? 'Widths' : 'Fractional bits'} of model-${m.kind}, layer by layer (routing: routing layers only).`,
      ),
    ),
    '<h2>Settings</h2>',
    settingsTable(r.settings),
    `<details><summary>Every evaluation (${r.evaluations.length})</summary>`,
    table(
      'evaluations',
      ['#', 'step', 'weight bits', 'activation bits', 'routing bits', 'accuracy (%)', 'kind', 'test', 'seconds'],
      evalRows,
    ),
    '</details>',
  ]);
}
