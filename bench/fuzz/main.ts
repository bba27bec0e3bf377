// npm run fuzz [-- --inputs N] [--seed S] [--reader NAME] [--workers W] [--save-dir DIR] [--json]
// Mutation-fuzzes every file reader (see readers.ts); a progress line goes to stderr, the
// figures to stdout (with --json: one JSON object on the last line). Exits 1 when any input
// hung, crashed, escaped as an error that is not the reader's own, or allocated more than the
// file could hold; the failing inputs are in --save-dir (default fuzz-failures/).
import { READER_NAMES, READERS } from './readers.js';
import { runFuzz, scaledInputs } from './run.js';

const DEFAULT_TOTAL = READER_NAMES.reduce((a, r) => a + READERS[r].defaultInputs, 0);

function flag(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const v = process.argv[i + 1];
  if (v === undefined || v.startsWith('--')) fail(`--${name} needs a value`);
  return v;
}

function fail(message: string): never {
  process.stderr.write(`fuzz: ${message}\n`);
  process.exit(2);
}

function integer(name: string, fallback: number, min: number): number {
  const text = flag(name);
  if (text === undefined) return fallback;
  const v = Number(text);
  if (!Number.isSafeInteger(v) || v < min) fail(`--${name} ${text}: expected an integer >= ${min}`);
  return v;
}

const known = new Set(['--inputs', '--seed', '--reader', '--workers', '--save-dir', '--json']);
for (const a of process.argv.slice(2)) if (a.startsWith('--') && !known.has(a)) fail(`unknown flag ${a}`);

const total = integer('inputs', DEFAULT_TOTAL, 1);
const seed = integer('seed', 1, 0);
const workers = integer('workers', 1, 1);
const readerFlag = flag('reader');
const readers = readerFlag === undefined ? READER_NAMES : readerFlag.split(',');
for (const r of readers) if (!READERS[r]) fail(`--reader ${r}: expected one of ${READER_NAMES.join(', ')}`);
const saveDir = flag('save-dir') ?? 'fuzz-failures';
const json = process.argv.includes('--json');

// Ctrl-C (or SIGTERM) ends the campaign early and still prints the figures of what ran
const stop = new AbortController();
for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => stop.abort());

let lastLine = 0;
const report = await runFuzz({
  signal: stop.signal,
  seed,
  inputs: scaledInputs(total, readers),
  workers,
  saveDir,
  onProgress(done, all, r) {
    const now = performance.now();
    if (now - lastLine < 1000 && done !== all) return;
    lastLine = now;
    const bad = r.hangs + r.crashes + r.uncaught + r.oversized;
    process.stderr.write(`\rfuzz: ${done}/${all} inputs, ${bad} failing   `);
    if (done === all) process.stderr.write('\n');
  },
});

for (const f of report.failures) {
  process.stdout.write(`${f.kind} ${f.reader} #${f.index}: ${f.message}${f.file ? ` (saved as ${f.file})` : ''}\n`);
}
const figures = {
  inputs: report.inputs,
  hangs: report.hangs,
  crashes: report.crashes,
  uncaught: report.uncaught,
  oversized_allocations: report.oversized,
  readers: Object.fromEntries(Object.entries(report.readers).map(([r, f]) => [r, f.inputs])),
  outcomes: report.readers,
  seed,
  seconds: report.seconds,
  interrupted: stop.signal.aborted,
};
if (json) process.stdout.write(`${JSON.stringify(figures)}\n`);
else {
  process.stdout.write(
    `${report.inputs} inputs in ${report.seconds} s: ${report.hangs} hangs, ${report.crashes} crashes, ` +
      `${report.uncaught} uncaught, ${report.oversized} oversized allocations\n`,
  );
  for (const [r, f] of Object.entries(report.readers))
    process.stdout.write(`  ${r}: ${f.inputs} inputs (${f.ok} valid, ${f.typed} typed errors)\n`);
}
process.exitCode = report.failures.length > 0 ? 1 : 0;
