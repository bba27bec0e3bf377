// The page of a sensitivity analysis (<stem>_sensitivity.json, src/search/sensitivity.ts): one
// plot per kind (weights, activations, routing) with one accuracy-against-bits curve per
// layer, every other quantity at full precision; the full-precision accuracy as a line.
import type { SensitivityResult } from '../search/sensitivity.js';
import { SENSITIVITY_KINDS } from '../search/sensitivity.js';
import { facts, figure, page, settingsTable, table } from './page.js';
import { maxOf, minOf, num, PALETTE, plot } from './svg.js';

const MARKERS = ['circle', 'square', 'diamond', 'ring'] as const;

/** The fewest bits at which a curve stays within `points` of full precision ('–': never). */
function bitsWithin(c: SensitivityResult['curves'][number], fp: number, points: number): string {
  const i = c.bits.findIndex((_, k) => c.accuracy.slice(k).every((a) => a >= fp - points));
  return i < 0 ? '–' : String(c.bits[i]);
}

export function sensitivityPage(r: SensitivityResult, source: string): string {
  // what the bits are: fractional bits, or widths under the 'dynamic' number format
  const counts = r.settings.numberFormat === 'dynamic' ? 'widths' : 'fractional bits';
  // 'dynamic' weights by the 'mse' range rule: said in the weights' plot title
  const mse = r.settings.weightRange === 'mse' ? ' (mse weight ranges)' : '';
  const layerNames = r.layers.map((l) => l.name);
  const color = (layer: string) => PALETTE[Math.max(0, layerNames.indexOf(layer)) % PALETTE.length];
  const plots = SENSITIVITY_KINDS.filter((k) => r.curves.some((c) => c.kind === k)).map((kind) => {
    const curves = r.curves.filter((c) => c.kind === kind);
    return figure(
      plot({
        title: `${kind}${kind === 'weights' ? mse : ''}: accuracy against ${counts}, one layer at a time`,
        x: { label: counts },
        y: { label: 'accuracy (%)' },
        series: curves.map((c, i) => ({
          label: c.layer,
          color: color(c.layer),
          mode: 'line+markers' as const,
          marker: MARKERS[i % MARKERS.length],
          cls: `curve-point ${kind}`,
          lineAttrs: { 'data-layer': c.layer, 'data-kind': kind },
          points: c.bits.map((b, k) => ({
            x: b,
            y: c.accuracy[k],
            tip: `${c.layer} ${kind}, ${b} bits: ${num(c.accuracy[k])}%`,
          })),
        })),
        refs: [
          {
            axis: 'y',
            value: r.fullPrecisionAccuracy,
            label: `full precision ${num(r.fullPrecisionAccuracy)}%`,
            color: '#2ca02c',
          },
        ],
      }),
      `Each curve quantizes only that layer's ${kind} (${r.settings.method}); everything else stays at float32.`,
    );
  });
  const rows = r.curves.map((c) => [
    c.layer,
    c.kind,
    num(minOf(c.accuracy), 2),
    num(maxOf(c.accuracy), 2),
    bitsWithin(c, r.fullPrecisionAccuracy, 0.5),
  ]);
  return page(`Q-CapsNets sensitivity: ${r.model.kind} ${r.model.args.join(' ')}`, `${source} · ${r.settings.method}`, [
    facts([
      [`${num(r.fullPrecisionAccuracy, 2)}%`, 'full-precision accuracy'],
      [`${r.curves.length}`, 'curves (layer x weights / activations / routing)'],
      [`${r.settings.bits[0]}–${r.settings.bits[r.settings.bits.length - 1]}`, `${counts} tried`],
      [`${r.evaluations}`, 'evaluations'],
      [`${num(r.seconds, 1)} s`, 'run time'],
    ]),
    ...plots,
    '<h2>Per curve</h2>',
    table(
      'curves',
      [
        'layer',
        'kind',
        'lowest accuracy (%)',
        'highest accuracy (%)',
        'fewest bits within 0.5 points of full precision',
      ],
      rows,
    ),
    '<h2>Settings</h2>',
    settingsTable({ ...r.settings, model: `${r.model.kind} ${r.model.args.join(' ')}`, 'model file': r.model.file }),
  ]);
}
