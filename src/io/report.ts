// The search's artifacts for people and plotting tools: <stem>_qcapsnets.json (settings,
// every evaluation, every step, the final models) and <stem>_qcapsnets.html (the same as
// tables and a chart of accuracy against weight memory).
import { writeFileAtomic } from './atomic-write.js';

export interface ReportStep {
  step: string;
  weightBits: number[];
  actBits: number[];
  routingBits: number[];
  accuracy: number;
  memoryMB: number;
  reduction: number;
  /** activation memory per image, kB (sum over activation points of elements x (a_l + 1) bits) */
  activationKB?: number | null;
  activationReduction?: number | null;
}

export interface ReportEvaluation {
  step: string;
  weightBits: number[];
  actBits: number[];
  routingBits: number[];
  accuracy: number | null;
  lower: number;
  upper: number;
  exact: boolean;
  passed: boolean;
  reused: boolean;
  seconds: number;
}

export interface SearchReport {
  tool: string;
  settings: Record<string, unknown>;
  layers: { name: string; paramCount: number; routes: boolean; iterations: number }[];
  fullPrecisionAccuracy: number;
  minimumAccuracy: number;
  branch: 'A' | 'B';
  steps: ReportStep[];
  models: (ReportStep & {
    kind: string;
    /** the float32 state_dict (.pt) */
    file: string;
    /** the accuracy as a count of the test images */
    correct?: number;
    total?: number;
    /** the model at its bit widths (.safetensors, src/io/quantized-file.ts) */
    packedFile?: string;
    /** that file's tensor bytes (packed parameters, buffers, evaluation order) */
    packedBytes?: number;
    /** of which the packed parameters */
    packedWeightBytes?: number;
    /** SPEC 4's weight memory (sum of parameters x (w_l + 1) bits) in bytes */
    memoryBytes?: number;
    /** the packed file's size, header included */
    packedFileBytes?: number;
    /** --selection-split: the search decided on held-out training images (accuracy, correct,
     *  total); this is the chosen model's accuracy on the test set */
    testAccuracy?: number;
    testCorrect?: number;
    testTotal?: number;
  })[];
  /** --selection-split: the images the search decided on, and the full-precision test accuracy */
  selection?: { images: number; source: string; fullPrecisionTestAccuracy: number };
  evaluations: ReportEvaluation[];
  notes: string[];
  seconds: number;
}

export function writeJsonReport(file: string, report: SearchReport): void {
  writeFileAtomic(file, () => [Buffer.from(JSON.stringify(report, null, 2) + '\n')]);
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function chart(report: SearchReport): string {
  const W = 640;
  const H = 260;
  const pad = 44;
  const pts = report.steps.map((s) => ({ x: s.memoryMB, y: s.accuracy, label: s.step }));
  const budget = Number(report.settings['memory-budget'] ?? report.settings.budget);
  const xs = [...pts.map((p) => p.x), ...(Number.isFinite(budget) ? [budget] : [])];
  const ys = [...pts.map((p) => p.y), report.minimumAccuracy, report.fullPrecisionAccuracy];
  const x0 = 0;
  const x1 = Math.max(...xs) * 1.1 || 1;
  const y0 = Math.min(...ys) - 1;
  const y1 = Math.max(...ys) + 1;
  const sx = (x: number) => pad + ((x - x0) / (x1 - x0)) * (W - 2 * pad);
  const sy = (y: number) => H - pad - ((y - y0) / (y1 - y0)) * (H - 2 * pad);
  const line = (y: number, color: string, text: string, below: boolean) =>
    `<line x1="${pad}" x2="${W - pad}" y1="${sy(y)}" y2="${sy(y)}" stroke="${color}" stroke-dasharray="4 3"/>` +
    `<text x="${pad + 4}" y="${sy(y) + (below ? 12 : -4)}" font-size="11" fill="${color}">${esc(text)}</text>`;
  const budgetLine = Number.isFinite(budget)
    ? `<line x1="${sx(budget)}" x2="${sx(budget)}" y1="${pad}" y2="${H - pad}" stroke="#888" stroke-dasharray="2 3"/>` +
      `<text x="${sx(budget) + 4}" y="${H - pad - 6}" font-size="11" fill="#555">budget ${budget} MB</text>`
    : '';
  return [
    `<svg width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" xmlns="http://www.w3.org/2000/svg" font-family="sans-serif">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<line x1="${pad}" y1="${H - pad}" x2="${W - pad}" y2="${H - pad}" stroke="black"/>`,
    `<line x1="${pad}" y1="${pad}" x2="${pad}" y2="${H - pad}" stroke="black"/>`,
    `<text x="${W / 2}" y="${H - 8}" font-size="12" text-anchor="middle">weight memory (MB)</text>`,
    `<text x="12" y="${H / 2}" font-size="12" text-anchor="middle" transform="rotate(-90 12 ${H / 2})">accuracy (%)</text>`,
    `<text x="${pad}" y="${H - pad + 14}" font-size="10" text-anchor="middle">0</text>`,
    `<text x="${W - pad}" y="${H - pad + 14}" font-size="10" text-anchor="middle">${x1.toFixed(2)}</text>`,
    `<text x="${pad - 4}" y="${sy(y0) + 3}" font-size="10" text-anchor="end">${y0.toFixed(1)}</text>`,
    `<text x="${pad - 4}" y="${sy(y1) + 3}" font-size="10" text-anchor="end">${y1.toFixed(1)}</text>`,
    line(report.fullPrecisionAccuracy, '#2a7', `full precision ${report.fullPrecisionAccuracy.toFixed(2)}%`, false),
    line(report.minimumAccuracy, '#c33', `minimum ${report.minimumAccuracy.toFixed(2)}%`, true),
    budgetLine,
    ...pts.map(
      (p) =>
        `<circle cx="${sx(p.x)}" cy="${sy(p.y)}" r="4" fill="#36c"/>` +
        `<text x="${sx(p.x) + 6}" y="${sy(p.y) - 6}" font-size="11">${esc(p.label)}</text>`,
    ),
    '</svg>',
  ].join('\n');
}

export function writeHtmlReport(file: string, report: SearchReport): void {
  const bits = (b: number[]) => `[${b.join(', ')}]`;
  const stepRows = report.steps
    .map(
      (s) =>
        `<tr><td>${s.step}</td><td>${bits(s.weightBits)}</td><td>${bits(s.actBits)}</td><td>${bits(s.routingBits)}</td>` +
        `<td>${s.accuracy.toFixed(2)}</td><td>${s.memoryMB.toFixed(4)}</td><td>${s.reduction.toFixed(2)}x</td>` +
        `<td>${s.activationKB == null ? '' : `${s.activationKB.toFixed(1)} (${s.activationReduction!.toFixed(2)}x)`}</td></tr>`,
    )
    .join('\n');
  const modelRows = report.models
    .map(
      (m) =>
        `<tr><td>${m.kind}</td><td>${esc(m.file)}</td><td>${bits(m.weightBits)}</td><td>${bits(m.actBits)}</td>` +
        `<td>${bits(m.routingBits)}</td><td>${m.accuracy.toFixed(2)}</td><td>${m.memoryMB.toFixed(4)}</td>` +
        `<td>${m.packedFile ? `${esc(m.packedFile)}: ${m.packedBytes} bytes (weight memory ${m.memoryBytes})` : ''}</td></tr>`,
    )
    .join('\n');
  const evalRows = report.evaluations
    .map(
      (e, i) =>
        `<tr><td>${i + 1}</td><td>${e.step}</td><td>${bits(e.weightBits)}</td><td>${bits(e.actBits)}</td><td>${bits(e.routingBits)}</td>` +
        `<td>${e.exact ? e.lower.toFixed(2) : `${e.lower.toFixed(2)}&ndash;${e.upper.toFixed(2)}`}</td><td>${e.exact ? 'exact' : 'bounded'}${e.reused ? ', reused' : ''}</td>` +
        `<td>${e.passed ? 'pass' : 'fail'}</td><td>${e.seconds.toFixed(2)}</td></tr>`,
    )
    .join('\n');
  const settings = Object.entries(report.settings)
    .map(([k, v]) => `<tr><td>${esc(k)}</td><td>${esc(Array.isArray(v) ? v.join(' ') : String(v))}</td></tr>`)
    .join('\n');
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Q-CapsNets search: ${esc(String(report.settings.model))}</title>
<style>body{font-family:sans-serif;margin:24px;max-width:1100px}table{border-collapse:collapse;margin:8px 0 20px}
td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}th{background:#f3f3f3}</style></head>
<body>
<h1>Q-CapsNets search</h1>
<p>Full-precision accuracy ${report.fullPrecisionAccuracy.toFixed(2)}%, minimum accuracy ${report.minimumAccuracy.toFixed(2)}%,
branch ${report.branch}, ${report.evaluations.length} evaluations in ${report.seconds.toFixed(1)} s.</p>
${report.notes.map((n) => `<p><b>Note:</b> ${esc(n)}</p>`).join('\n')}
${chart(report)}
<h2>Steps</h2>
<table><tr><th>step</th><th>weight bits</th><th>activation bits</th><th>routing bits</th><th>accuracy (%)</th><th>memory (MB)</th><th>vs 32 bits</th><th>activations per image (kB, vs 32 bits)</th></tr>
${stepRows}</table>
<h2>Quantized models</h2>
<table><tr><th>model</th><th>file</th><th>weight bits</th><th>activation bits</th><th>routing bits</th><th>accuracy (%)</th><th>memory (MB)</th><th>packed file: tensor bytes</th></tr>
${modelRows}</table>
<h2>Settings</h2><table>${settings}</table>
<h2>Every evaluation</h2>
<table><tr><th>#</th><th>step</th><th>weight bits</th><th>activation bits</th><th>routing bits</th><th>accuracy (%)</th><th>kind</th><th>test</th><th>seconds</th></tr>
${evalRows}</table>
</body></html>
`;
  writeFileAtomic(file, () => [Buffer.from(html)]);
}
