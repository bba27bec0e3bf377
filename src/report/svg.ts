// A tiny plotting kit for the report pages: x/y plots (markers, lines, step lines) and grouped
// bar charts as inline SVG strings, with axes, "nice" ticks (1, 2, 5 x 10^k; decades on a log
// axis), axis labels, reference lines and a legend column at the right, so nothing is drawn
// over the data. Hover text is SVG <title>: the browser shows it without any script.

export const PALETTE = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f'];

export const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** The largest and smallest of `xs` as Math.max(...xs) and Math.min(...xs) give them (-Infinity
 *  and Infinity when empty, NaN when one is NaN), without passing every value as an argument:
 *  a spread of a few hundred thousand values overflows the call stack. */
export function maxOf(xs: Iterable<number>): number {
  let m = -Infinity;
  for (const x of xs) if (x > m || Number.isNaN(x)) m = Number.isNaN(m) ? m : x;
  return m;
}

export function minOf(xs: Iterable<number>): number {
  let m = Infinity;
  for (const x of xs) if (x < m || Number.isNaN(x)) m = Number.isNaN(m) ? m : x;
  return m;
}

/** A number with at most `digits` significant decimals and no trailing zeros. */
export function num(v: number, digits = 4): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  const fixed = a >= 100 ? 1 : a >= 1 ? Math.min(digits, 3) : digits;
  return String(Number(v.toFixed(fixed)));
}

export interface Axis {
  label: string;
  log?: boolean;
  /** the range shown (default: the data's, padded) */
  min?: number;
  max?: number;
}

export type Marker = 'circle' | 'ring' | 'diamond' | 'square';

export interface Point {
  x: number;
  y: number;
  /** hover text */
  tip?: string;
  /** text drawn beside the marker */
  label?: string;
}

export interface Series {
  label: string;
  color: string;
  points: Point[];
  /** markers only, a polyline, or a step line (horizontal then vertical, for Pareto fronts) */
  mode: 'markers' | 'line' | 'line+markers' | 'step';
  marker?: Marker;
  size?: number;
  /** class of each marker (tests and CSS find them by it) */
  cls?: string;
  /** extra attributes of the line, e.g. data-front */
  lineAttrs?: Record<string, string>;
  /** leave out of the legend */
  noLegend?: boolean;
}

export interface RefLine {
  axis: 'x' | 'y';
  value: number;
  label: string;
  color: string;
}

export interface PlotOptions {
  title: string;
  x: Axis;
  y: Axis;
  series: Series[];
  refs?: RefLine[];
  width?: number;
  height?: number;
}

interface Scale {
  (v: number): number;
  ticks: number[];
  fmt: (v: number) => string;
}

const LEGEND_W = 215;
const M = { left: 64, right: 16 + LEGEND_W, top: 34, bottom: 50 };

/** Ticks at 1, 2 or 5 x 10^k, about `count` of them over [lo, hi]. */
export function niceTicks(lo: number, hi: number, count = 6): number[] {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
  const out: number[] = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)));
  return out;
}

function logTicks(lo: number, hi: number): number[] {
  const out: number[] = [];
  const mults = Math.log10(hi / lo) > 3 ? [1] : [1, 2, 5];
  for (let e = Math.floor(Math.log10(lo)); e <= Math.ceil(Math.log10(hi)); e++)
    for (const m of mults) {
      const t = Number((m * 10 ** e).toPrecision(12));
      if (t >= lo * (1 - 1e-9) && t <= hi * (1 + 1e-9)) out.push(t);
    }
  return out;
}

function scale(axis: Axis, values: number[], from: number, to: number): Scale {
  const finite = values.filter((v) => Number.isFinite(v) && (!axis.log || v > 0));
  let lo = axis.min ?? minOf(finite);
  let hi = axis.max ?? maxOf(finite);
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) [lo, hi] = axis.log ? [1, 10] : [0, 1];
  if (axis.log) {
    if (hi / lo < 1.01) [lo, hi] = [lo / 1.5, hi * 1.5];
    else [lo, hi] = [axis.min ?? lo / 1.15, axis.max ?? hi * 1.15];
    const [l0, l1] = [Math.log10(lo), Math.log10(hi)];
    const s = ((v: number) => from + ((Math.log10(v) - l0) / (l1 - l0)) * (to - from)) as Scale;
    s.ticks = logTicks(lo, hi);
    s.fmt = (v) => num(v, 4);
    return s;
  }
  if (hi - lo < 1e-9) [lo, hi] = [lo - 1, hi + 1];
  else {
    const pad = (hi - lo) * 0.06;
    [lo, hi] = [axis.min ?? lo - pad, axis.max ?? hi + pad];
  }
  const s = ((v: number) => from + ((v - lo) / (hi - lo)) * (to - from)) as Scale;
  s.ticks = niceTicks(lo, hi);
  s.fmt = (v) => num(v, 4);
  return s;
}

function markerSvg(kind: Marker, x: number, y: number, r: number, color: string, cls: string, tip?: string): string {
  const t = tip ? `<title>${esc(tip)}</title>` : '';
  const c = `class="pt ${cls}"`;
  const at = `${x.toFixed(1)}`;
  const bt = `${y.toFixed(1)}`;
  switch (kind) {
    case 'circle':
      return `<circle ${c} cx="${at}" cy="${bt}" r="${r}" fill="${color}" fill-opacity="0.75" stroke="white" stroke-width="0.8">${t}</circle>`;
    case 'ring':
      return `<circle ${c} cx="${at}" cy="${bt}" r="${r}" fill="white" fill-opacity="0.6" stroke="${color}" stroke-width="1.5">${t}</circle>`;
    case 'square':
      return `<rect ${c} x="${(x - r).toFixed(1)}" y="${(y - r).toFixed(1)}" width="${2 * r}" height="${2 * r}" fill="${color}">${t}</rect>`;
    case 'diamond':
      return `<path ${c} d="M${at} ${(y - r * 1.4).toFixed(1)}L${(x + r * 1.4).toFixed(1)} ${bt}L${at} ${(y + r * 1.4).toFixed(1)}L${(x - r * 1.4).toFixed(1)} ${bt}Z" fill="${color}" stroke="black" stroke-width="1">${t}</path>`;
  }
}

function legendSvg(
  x: number,
  y: number,
  entries: { label: string; color: string; mode: Series['mode']; marker?: Marker }[],
) {
  return entries
    .map((e, i) => {
      const cy = y + i * 20;
      const line =
        e.mode === 'markers'
          ? ''
          : `<line x1="${x}" x2="${x + 22}" y1="${cy}" y2="${cy}" stroke="${e.color}" stroke-width="2"/>`;
      const mark =
        e.mode === 'line' || e.mode === 'step'
          ? ''
          : markerSvg(e.marker ?? 'circle', x + 11, cy, 4.5, e.color, 'legend-mark');
      return `<g class="legend-entry">${line}${mark}<text x="${x + 30}" y="${cy + 4}" font-size="12">${esc(e.label)}</text></g>`;
    })
    .join('');
}

function axesSvg(sx: Scale, sy: Scale, o: PlotOptions, W: number, H: number): string {
  const [x0, x1, y0, y1] = [M.left, W - M.right, H - M.bottom, M.top];
  const parts: string[] = [];
  for (const t of sx.ticks) {
    const x = sx(t).toFixed(1);
    parts.push(
      `<line x1="${x}" x2="${x}" y1="${y1}" y2="${y0}" stroke="#eee"/>`,
      `<line x1="${x}" x2="${x}" y1="${y0}" y2="${y0 + 5}" stroke="#444"/>`,
      `<text x="${x}" y="${y0 + 18}" font-size="11" text-anchor="middle" fill="#333">${sx.fmt(t)}</text>`,
    );
  }
  for (const t of sy.ticks) {
    const y = sy(t).toFixed(1);
    parts.push(
      `<line x1="${x0}" x2="${x1}" y1="${y}" y2="${y}" stroke="#eee"/>`,
      `<line x1="${x0 - 5}" x2="${x0}" y1="${y}" y2="${y}" stroke="#444"/>`,
      `<text x="${x0 - 8}" y="${Number(y) + 4}" font-size="11" text-anchor="end" fill="#333">${sy.fmt(t)}</text>`,
    );
  }
  parts.push(
    `<rect x="${x0}" y="${y1}" width="${x1 - x0}" height="${y0 - y1}" fill="none" stroke="#444"/>`,
    `<text class="axis-label" x="${(x0 + x1) / 2}" y="${H - 10}" font-size="13" text-anchor="middle">${esc(o.x.label)}${o.x.log ? ' (log scale)' : ''}</text>`,
    `<text class="axis-label" x="16" y="${(y0 + y1) / 2}" font-size="13" text-anchor="middle" transform="rotate(-90 16 ${(y0 + y1) / 2})">${esc(o.y.label)}</text>`,
    `<text class="plot-title" x="${x0}" y="20" font-size="14" font-weight="bold">${esc(o.title)}</text>`,
  );
  return parts.join('');
}

type Box = [left: number, top: number, right: number, bottom: number];

/** A point's label beside it, at the first of a few spots (right/left, above/below, further
 *  out) that overlaps no label placed before and stays in the plot area. */
function placeLabel(text: string, x: number, y: number, placed: Box[], area: Box): string {
  const w = 7.2 * text.length; // 12px bold, about 7 px a character
  const h = 14;
  const spots: [dx: number, dy: number][] = [
    [9, -8],
    [9, 18],
    [-9 - w, -8],
    [-9 - w, 18],
    [9, -24],
    [9, 34],
    [-9 - w, -24],
    [-9 - w, 34],
  ];
  const boxOf = ([dx, dy]: [number, number]): Box => [x + dx, y + dy - h + 3, x + dx + w, y + dy + 3];
  const free = (b: Box) =>
    b[0] >= area[0] &&
    b[2] <= area[1] &&
    b[1] >= area[2] &&
    b[3] <= area[3] &&
    placed.every((q) => b[2] <= q[0] || b[0] >= q[2] || b[3] <= q[1] || b[1] >= q[3]);
  const spot = spots.find((d) => free(boxOf(d))) ?? spots[0];
  placed.push(boxOf(spot));
  return `<text class="point-label" x="${(x + spot[0]).toFixed(1)}" y="${(y + spot[1]).toFixed(1)}" font-size="12" font-weight="bold" fill="#222" stroke="white" stroke-width="3" paint-order="stroke">${esc(text)}</text>`;
}

/** An x/y plot. Points outside a log axis's positive range are left out. */
export function plot(o: PlotOptions): string {
  const W = o.width ?? 900;
  const H = o.height ?? 420;
  const refs = o.refs ?? [];
  const all = o.series.flatMap((s) => s.points);
  const sx = scale(
    o.x,
    [...all.map((p) => p.x), ...refs.filter((r) => r.axis === 'x').map((r) => r.value)],
    M.left,
    W - M.right,
  );
  const sy = scale(
    o.y,
    [...all.map((p) => p.y), ...refs.filter((r) => r.axis === 'y').map((r) => r.value)],
    H - M.bottom,
    M.top,
  );
  const [x0, x1, y0, y1] = [M.left, W - M.right, H - M.bottom, M.top];
  const shown = (p: Point) => Number.isFinite(p.x) && Number.isFinite(p.y) && (!o.x.log || p.x > 0);
  const body: string[] = [];
  for (const r of refs) {
    if (r.axis === 'y') {
      const y = sy(r.value).toFixed(1);
      body.push(
        `<line class="ref" x1="${x0}" x2="${x1}" y1="${y}" y2="${y}" stroke="${r.color}" stroke-dasharray="6 4" stroke-width="1.2"/>`,
      );
    } else if (!o.x.log || r.value > 0) {
      const x = sx(r.value).toFixed(1);
      body.push(
        `<line class="ref" x1="${x}" x2="${x}" y1="${y1}" y2="${y0}" stroke="${r.color}" stroke-dasharray="3 4" stroke-width="1.2"/>`,
      );
    }
  }
  const labels: string[] = [];
  const placed: Box[] = [];
  o.series.forEach((s) => {
    const pts = s.points.filter(shown);
    const xy = pts.map((p) => [sx(p.x), sy(p.y)] as const);
    const attrs = Object.entries(s.lineAttrs ?? {})
      .map(([k, v]) => ` ${k}="${esc(v)}"`)
      .join('');
    if (s.mode !== 'markers' && xy.length > 0) {
      let d = `M${xy[0][0].toFixed(1)} ${xy[0][1].toFixed(1)}`;
      for (let i = 1; i < xy.length; i++) {
        const [x, y] = [xy[i][0].toFixed(1), xy[i][1].toFixed(1)];
        // a step line holds each point's accuracy until the next point's memory
        d += s.mode === 'step' ? `H${x}V${y}` : `L${x} ${y}`;
      }
      body.push(
        `<path class="series-line"${attrs} d="${d}" fill="none" stroke="${s.color}" stroke-width="2" stroke-linejoin="round"/>`,
      );
    }
    if (s.mode !== 'line' && s.mode !== 'step')
      pts.forEach((p, i) => {
        body.push(markerSvg(s.marker ?? 'circle', xy[i][0], xy[i][1], s.size ?? 4, s.color, s.cls ?? '', p.tip));
        if (p.label) labels.push(placeLabel(p.label, xy[i][0], xy[i][1], placed, [x0, x1, y1, y0]));
      });
  });
  const legend = [
    ...o.series.filter((s) => !s.noLegend),
    ...refs.map((r) => ({ label: r.label, color: r.color, mode: 'line' as const, marker: undefined })),
  ];
  return [
    `<svg class="plot" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" role="img" aria-label="${esc(o.title)}">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    axesSvg(sx, sy, o, W, H),
    `<g class="data">`,
    ...body,
    ...labels,
    '</g>',
    legendSvg(W - M.right + 18, M.top + 8, legend),
    '</svg>',
  ].join('\n');
}

export interface BarOptions {
  title: string;
  categories: string[];
  /** one group member per series; null: no bar (e.g. no routing in that layer) */
  series: { label: string; color: string; values: (number | null)[] }[];
  yLabel: string;
  width?: number;
  height?: number;
}

/** Grouped vertical bars, the value written above each bar. */
export function bars(o: BarOptions): string {
  const W = o.width ?? Math.max(520, Math.min(1100, 120 + o.categories.length * 26 * (o.series.length + 1) + M.right));
  const band = (W - M.right - M.left) / o.categories.length;
  const slanted = o.categories.some((c) => 6.5 * c.length > band - 4);
  const longest = maxOf(o.categories.map((c) => c.length));
  const H = (o.height ?? 280) + (slanted ? Math.round(4 * longest) : 0);
  const [x0, x1, y0, y1] = [M.left, W - M.right, H - M.bottom - (slanted ? Math.round(4 * longest) : 0), M.top];
  const max = Math.max(1, maxOf(o.series.flatMap((s) => s.values.filter((v): v is number => v !== null))));
  const ticks = niceTicks(0, max, 4);
  const top = Math.max(max, ticks[ticks.length - 1]) * 1.12;
  const sy = (v: number) => y0 - (v / top) * (y0 - y1);
  const bw = Math.min(28, (band * 0.8) / o.series.length);
  const parts: string[] = [];
  for (const t of ticks)
    parts.push(
      `<line x1="${x0}" x2="${x1}" y1="${sy(t).toFixed(1)}" y2="${sy(t).toFixed(1)}" stroke="#eee"/>`,
      `<text x="${x0 - 8}" y="${(sy(t) + 4).toFixed(1)}" font-size="11" text-anchor="end" fill="#333">${num(t)}</text>`,
    );
  o.categories.forEach((c, i) => {
    const cx = x0 + band * (i + 0.5);
    const gx = cx - (bw * o.series.length) / 2;
    o.series.forEach((s, k) => {
      const v = s.values[i];
      if (v === null || v === undefined) return;
      const x = gx + k * bw;
      parts.push(
        `<rect class="bar" x="${x.toFixed(1)}" y="${sy(v).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(y0 - sy(v)).toFixed(1)}" fill="${s.color}"><title>${esc(`${c}: ${s.label} ${v}`)}</title></rect>`,
        `<text x="${(x + (bw - 2) / 2).toFixed(1)}" y="${(sy(v) - 3).toFixed(1)}" font-size="10" text-anchor="middle" fill="#333">${num(v)}</text>`,
      );
    });
    // names wider than their band are written slanted
    parts.push(
      slanted
        ? `<text class="category" x="${cx.toFixed(1)}" y="${y0 + 14}" font-size="11" text-anchor="end" transform="rotate(-35 ${cx.toFixed(1)} ${y0 + 14})">${esc(c)}</text>`
        : `<text class="category" x="${cx.toFixed(1)}" y="${y0 + 16}" font-size="11" text-anchor="middle">${esc(c)}</text>`,
    );
  });
  parts.push(
    `<line x1="${x0}" x2="${x1}" y1="${y0}" y2="${y0}" stroke="#444"/>`,
    `<line x1="${x0}" x2="${x0}" y1="${y1}" y2="${y0}" stroke="#444"/>`,
    `<text class="axis-label" x="16" y="${(y0 + y1) / 2}" font-size="13" text-anchor="middle" transform="rotate(-90 16 ${(y0 + y1) / 2})">${esc(o.yLabel)}</text>`,
    `<text class="plot-title" x="${x0}" y="20" font-size="14" font-weight="bold">${esc(o.title)}</text>`,
  );
  const legend = o.series.map((s) => ({
    label: s.label,
    color: s.color,
    mode: 'markers' as const,
    marker: 'square' as const,
  }));
  return [
    `<svg class="bars" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" role="img" aria-label="${esc(o.title)}">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    ...parts,
    legendSvg(W - M.right + 18, M.top + 8, legend),
    '</svg>',
  ].join('\n');
}
