// The HTML shell of every report page: one self-contained file (inline CSS and SVG, no
// script, font, image or style sheet fetched), readable without JavaScript; hover text is
// SVG <title> and HTML title attributes.
import { esc } from './svg.js';

const CSS = `
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1120px;margin:0 auto;padding:20px 28px 48px;background:white;min-height:100vh}
h1{font-size:24px;margin:8px 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#555;margin:0 0 12px}
.facts{display:flex;flex-wrap:wrap;gap:10px;margin:12px 0}
.fact{border:1px solid #ddd;border-radius:6px;padding:8px 12px;min-width:120px;background:#fcfcfc}
.fact b{display:block;font-size:18px}.fact span{font-size:12px;color:#555}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
td,th{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.chosen td{background:#fff7e0}
figure{margin:12px 0 20px}figcaption{font-size:13px;color:#555;max-width:760px}
svg{display:block;max-width:100%;height:auto}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:6px 10px;margin:8px 0;font-size:14px}
details summary{cursor:pointer;color:#1f5fa0;margin:8px 0}
.settings{display:grid;grid-template-columns:repeat(3,minmax(150px,max-content) minmax(120px,1fr));gap:3px 12px;font-size:13px;margin:8px 0}
.settings dt{color:#666}.settings dd{margin:0;font-variant-numeric:tabular-nums;overflow-wrap:anywhere}
td{overflow-wrap:break-word}
code{background:#f2f2f2;padding:0 3px;border-radius:3px}
`;

/** A whole page: title, one line under it, and the sections' HTML. */
export function page(title: string, subtitle: string, body: string[]): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>${esc(title)}</title>
<style>${CSS}</style></head>
<body><main>
<h1>${esc(title)}</h1>
<p class="sub">${esc(subtitle)}</p>
${body.join('\n')}
</main></body></html>
`;
}

/** Headline numbers as boxes. */
export function facts(items: [string, string][]): string {
  return `<div class="facts">${items.map(([v, what]) => `<div class="fact"><b>${esc(v)}</b><span>${esc(what)}</span></div>`).join('')}</div>`;
}

/** A table; cells are text (escaped), numbers are right-aligned. */
export function table(
  id: string,
  head: string[],
  rows: (string | number)[][],
  rowClass?: (i: number) => string,
): string {
  const th = head.map((h) => `<th>${esc(h)}</th>`).join('');
  const tr = rows
    .map((r, i) => {
      const cls = rowClass?.(i);
      const tds = r.map((c) => (typeof c === 'number' ? `<td class="n">${c}</td>` : `<td>${esc(c)}</td>`)).join('');
      return `<tr${cls ? ` class="${cls}"` : ''}>${tds}</tr>`;
    })
    .join('\n');
  return `<table id="${id}"><thead><tr>${th}</tr></thead><tbody>\n${tr}\n</tbody></table>`;
}

export function figure(svg: string, caption: string): string {
  return `<figure>${svg}<figcaption>${esc(caption)}</figcaption></figure>`;
}

export const bitList = (b: readonly number[]): string => `[${b.join(', ')}]`;

/** Settings as a compact grid of name / value pairs. */
export function settingsTable(settings: Record<string, unknown>): string {
  const value = (v: unknown) =>
    Array.isArray(v) ? v.join(' ') : v === null ? '—' : typeof v === 'object' ? JSON.stringify(v) : String(v);
  const items = Object.entries(settings).map(([k, v]) => `<dt>${esc(k)}</dt><dd>${esc(value(v))}</dd>`);
  return `<dl class="settings">${items.join('')}</dl>`;
}
