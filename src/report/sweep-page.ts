// The page of a sweep (<stem>_sweep.json, src/search/sweep-result.ts): the grid as a table,
// one accuracy-against-weight-memory plot per method with that method's Pareto front and the
// model each cell chose, and what the shared evaluations saved.
import type { SweepResult } from '../search/sweep-result.js';
import { bitList, facts, figure, page, settingsTable, table } from './page.js';
import { paretoFront } from './pareto.js';
import { bars, maxOf, minOf, num, PALETTE, plot, type Series } from './svg.js';

const KIND_COLORS = { satisfied: '#ffd400', memory: '#e377c2', accuracy: '#17becf' };

function methodPlot(r: SweepResult, method: string, color: string): string {
  const pts = r.evaluated.filter((p) => p.method === method);
  const exact = pts.filter((p) => p.exact);
  const front = paretoFront(exact.map((p) => ({ memoryMB: p.weightMemoryMB, accuracy: p.accuracy }))).map(
    (i) => exact[i],
  );
  const tip = (p: (typeof pts)[number]) =>
    `w ${bitList(p.bits.weightBits)} a ${bitList(p.bits.actBits)} r ${bitList(p.bits.routingBits)}\n` +
    `${num(p.weightMemoryMB)} MB, ${p.exact ? '' : 'at least '}${num(p.accuracy)}%`;
  const series: Series[] = [
    {
      label: 'exact evaluation',
      color,
      mode: 'markers',
      cls: 'eval exact',
      points: exact.map((p) => ({ x: p.weightMemoryMB, y: p.accuracy, tip: tip(p) })),
    },
    {
      label: 'stopped early (lower bound)',
      color,
      mode: 'markers',
      marker: 'ring',
      cls: 'eval bounded',
      points: pts.filter((p) => !p.exact).map((p) => ({ x: p.weightMemoryMB, y: p.accuracy, tip: tip(p) })),
    },
    {
      label: 'Pareto front',
      color: '#111',
      mode: 'step',
      points: front.map((p) => ({ x: p.weightMemoryMB, y: p.accuracy })),
      lineAttrs: { 'data-front': front.map((p) => `${p.weightMemoryMB},${p.accuracy}`).join(';') },
    },
  ];
  const rows = r.rows.filter((row) => row.method === method);
  for (const kind of ['satisfied', 'memory', 'accuracy'] as const) {
    const chosen = rows.flatMap((row) => row.models.filter((m) => m.kind === kind).map((m) => ({ row, m })));
    if (chosen.length === 0) continue;
    series.push({
      label: `chosen: ${kind}`,
      color: KIND_COLORS[kind],
      mode: 'markers',
      marker: 'diamond',
      size: kind === 'satisfied' ? 8 : 6, // under the others where a cell's models coincide
      cls: 'chosen',
      points: chosen.map(({ row, m }) => ({
        x: m.weightMemoryMB,
        y: m.accuracy,
        tip:
          `tolerance ${row.tolerance}%, budget ${row.memoryBudgetMB} MB: model-${kind}, ${num(m.accuracy)}%, ${num(m.weightMemoryMB)} MB` +
          (m.finetune_epochs
            ? `, fine-tuned ${m.finetune_epochs} epochs (before ${num(m.accuracy_before_finetune ?? NaN)}%)`
            : ''),
      })),
    });
  }
  const xs = pts.map((p) => p.weightMemoryMB).filter((v) => v > 0);
  const log = xs.length > 0 && maxOf(xs) / minOf(xs) > 20;
  return figure(
    plot({
      title: `${method}: accuracy against weight memory`,
      x: { label: 'weight memory (MB)', log },
      y: { label: 'accuracy (%)' },
      series,
      refs: [
        {
          axis: 'y',
          value: r.fullPrecisionAccuracy,
          label: `full precision ${num(r.fullPrecisionAccuracy)}%`,
          color: '#2ca02c',
        },
      ],
    }),
    `${pts.length} configurations evaluated with ${method}; the black step line is their Pareto front; ` +
      `diamonds are the models the ${rows.length} cells chose.`,
  );
}

export function sweepPage(r: SweepResult, source: string): string {
  const rows = r.rows.map((row) => {
    const m = row.models;
    const join = (f: (x: (typeof m)[number]) => string) => m.map(f).join(' / ');
    return [
      row.method,
      num(row.tolerance),
      num(row.memoryBudgetMB),
      row.branch,
      join(
        (x) =>
          `${x.kind}${x.number_format === 'dynamic' ? (x.weight_range === 'mse' ? ' (dynamic, mse)' : ' (dynamic)') : ''} ${num(x.accuracy, 2)}` +
          // --finetune-epochs: the fine-tuned memory model, and its accuracy before
          (x.finetune_epochs
            ? ` (fine-tuned ${x.finetune_epochs} ep., from ${num(x.accuracy_before_finetune ?? NaN, 2)})`
            : ''),
      ),
      join((x) => `${num(x.weightReduction, 2)}x`),
      join((x) => `${num(x.activationReduction, 2)}x`),
      join((x) => `w ${bitList(x.bits.weightBits)} a ${bitList(x.bits.actBits)} r ${bitList(x.bits.routingBits)}`),
      `${row.evaluations} (${row.newEvaluations} new)`,
      num(row.seconds, 1),
    ];
  });
  const cellSum = r.rows.reduce((a, row) => a + row.evaluations, 0);
  const counts = bars({
    title: 'Evaluations',
    categories: ['this sweep', 'middle cell alone', 'cells one by one'],
    yLabel: 'evaluations',
    series: [{ label: 'evaluations', color: PALETTE[0], values: [r.evaluations, r.middleCellEvaluations, cellSum] }],
    width: 760,
    height: 240,
  });
  const methods = r.grid.methods;
  return page(
    `Q-CapsNets sweep: ${r.model.kind} ${r.model.args.join(' ')}`,
    `${source} · ${r.settings.dataset}, ${r.settings.testImages} test images${r.shard ? ` · shard ${r.shard.index + 1}/${r.shard.count}` : ''}`,
    [
      facts([
        [`${num(r.fullPrecisionAccuracy, 2)}%`, 'full-precision accuracy'],
        [`${num(r.fullPrecisionMemoryMB, 4)} MB`, '32-bit weight memory'],
        [`${num(r.fullPrecisionActivationKB, 1)} kB`, '32-bit activations per image'],
        [
          `${r.rows.length}`,
          `cells (${methods.length} methods x ${r.grid.tolerances.length} tolerances x ${r.grid.memoryBudgetsMB.length} budgets)`,
        ],
        [`${r.evaluations}`, `evaluations (the middle cell alone: ${r.middleCellEvaluations})`],
        [`${num(r.seconds, 1)} s`, 'run time'],
      ]),
      '<h2>The grid</h2>',
      table(
        'grid',
        [
          'method',
          'tolerance (%)',
          'budget (MB)',
          'branch',
          'accuracy (%)',
          'weight reduction',
          'activation reduction',
          'bits',
          'evaluations',
          'seconds',
        ],
        rows,
      ),
      '<h2>Accuracy against weight memory, per method</h2>',
      ...methods.map((m, i) => methodPlot(r, m, PALETTE[i % PALETTE.length])),
      '<h2>Evaluations</h2>',
      figure(
        counts,
        `Distinct evaluations of the whole sweep against those of its middle cell and the sum of every cell's own search (${cellSum}).`,
      ),
      '<h2>Settings</h2>',
      settingsTable({
        ...r.settings,
        model: `${r.model.kind} ${r.model.args.join(' ')}`,
        'model file': r.model.file,
        sha256: r.model.sha256,
      }),
    ],
  );
}
