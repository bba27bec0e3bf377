// Report pages for people: one self-contained HTML file per run (a search, a sweep or a
// sensitivity analysis), rendered from the run's JSON. This folder sits at the end of the
// data path (data -> models -> train | quant -> search -> io -> report): it reads the
// results' types from search/ and io/ and nothing reads it but the command line, so the
// JSON formats stay in io/ and search/ while the pages can grow their plots here.
// renderReport checks the JSON's shape first: a foreign or damaged file is one error naming
// the file and the field, before anything is drawn.
import { readFileSync, statSync } from 'node:fs';
import { writeFileAtomic } from '../io/atomic-write.js';
import { FileFormatError } from '../io/byte-source.js';
import type { SearchReport } from './search-json.js';
import { SENSITIVITY_TOOL, SENSITIVITY_VERSION, type SensitivityResult } from '../search/sensitivity.js';
import { SWEEP_TOOL, SWEEP_VERSION, type SweepResult } from '../search/sweep-result.js';
import { searchPage } from './search-page.js';
import { sensitivityPage } from './sensitivity-page.js';
import { sweepPage } from './sweep-page.js';
import { FINETUNE_TOOL, FINETUNE_VERSION, type FinetuneReport } from './finetune-json.js';
import { finetunePage } from './finetune-page.js';

export { paretoFront, type ParetoPoint } from './pareto.js';

/** The `tool` of a search's JSON (src/cli/search-job.ts). */
export const SEARCH_TOOL = 'qcapsnets';

export type RunKind = 'search' | 'sweep' | 'sensitivity' | 'finetune';

// ---- shape checks: each names the field's path and what it should hold

type Shape =
  | 'number'
  | 'percent'
  | 'string'
  | 'boolean'
  | 'object'
  | { array: Shape; max?: number }
  | { fields: Record<string, Shape> }
  | { optional: Shape }
  | { nullable: Shape }
  | { oneOf: readonly (string | number)[] };

/** The most a run's JSON may hold where a page draws one item each: quantized layers (a
 *  DeepCaps has 20), values of one sweep axis and cells of a sweep's grid; and the deepest
 *  nesting of its values (a run's own are 5 deep). */
export const RUN_LIMITS = { layers: 1000, axisValues: 1000, gridCells: 100_000, depth: 64 };
/** The largest magnitude of a number in a run's JSON (seconds, megabytes, parameter counts):
 *  beyond it a page's coordinates would overflow. */
const MAX_MAGNITUDE = 1e15;

const bits: Shape = { array: 'number' };
const bitConfig = { weightBits: bits, actBits: bits, routingBits: bits };
const layer: Shape = {
  fields: { name: 'string', paramCount: 'number', routes: 'boolean', tensorCount: { optional: 'number' } },
};
const layers: Shape = { array: layer, max: RUN_LIMITS.layers };
const stepFields = {
  step: 'string',
  ...bitConfig,
  accuracy: 'percent',
  memoryMB: 'number',
  reduction: 'number',
  activationKB: { optional: { nullable: 'number' } },
  activationReduction: { optional: { nullable: 'number' } },
} satisfies Record<string, Shape>;

const SEARCH_SHAPE: Shape = {
  fields: {
    settings: 'object',
    layers,
    fullPrecisionAccuracy: 'percent',
    minimumAccuracy: 'percent',
    branch: { oneOf: ['A', 'B'] },
    steps: { array: { fields: stepFields } },
    models: {
      array: {
        fields: {
          ...stepFields,
          kind: 'string',
          number_format: { optional: { oneOf: ['fixed', 'dynamic'] } },
          weight_range: { optional: { oneOf: ['mse'] } },
          file: 'string',
          testAccuracy: { optional: 'percent' },
          testCorrect: { optional: 'number' },
          testTotal: { optional: 'number' },
          finetune_epochs: { optional: 'number' },
          kind_before_finetune: { optional: 'string' },
          accuracy_before_finetune: { optional: 'percent' },
        },
      },
    },
    selection: {
      optional: { fields: { images: 'number', source: 'string', fullPrecisionTestAccuracy: 'percent' } },
    },
    evaluations: {
      array: {
        fields: {
          step: 'string',
          ...bitConfig,
          accuracy: { nullable: 'percent' },
          lower: 'percent',
          upper: 'percent',
          exact: 'boolean',
          passed: 'boolean',
          reused: 'boolean',
          seconds: 'number',
        },
      },
    },
    notes: { array: 'string' },
    seconds: 'number',
  },
};

const sweepBits: Shape = { fields: bitConfig };
const SWEEP_SHAPE: Shape = {
  fields: {
    version: { oneOf: [SWEEP_VERSION] },
    model: { fields: { kind: 'string', args: bits, file: 'string', sha256: 'string' } },
    settings: { fields: { dataset: 'string', testImages: 'number' } },
    grid: {
      fields: {
        tolerances: { array: 'percent', max: RUN_LIMITS.axisValues },
        memoryBudgetsMB: { array: 'number', max: RUN_LIMITS.axisValues },
        methods: { array: 'string', max: RUN_LIMITS.axisValues },
      },
    },
    shard: { nullable: { fields: { index: 'number', count: 'number' } } },
    fullPrecisionAccuracy: 'percent',
    fullPrecisionMemoryMB: 'number',
    fullPrecisionActivationKB: 'number',
    rows: {
      array: {
        fields: {
          tolerance: 'percent',
          memoryBudgetMB: 'number',
          method: 'string',
          branch: { oneOf: ['A', 'B'] },
          models: {
            array: {
              fields: {
                kind: { oneOf: ['satisfied', 'memory', 'accuracy'] },
                number_format: { optional: { oneOf: ['fixed', 'dynamic'] } },
                weight_range: { optional: { oneOf: ['mse'] } },
                bits: sweepBits,
                accuracy: 'percent',
                testAccuracy: { nullable: 'percent' },
                weightMemoryMB: 'number',
                weightReduction: 'number',
                activationKB: 'number',
                activationReduction: 'number',
                finetune_epochs: { optional: 'number' },
                kind_before_finetune: { optional: { oneOf: ['memory'] } },
                accuracy_before_finetune: { optional: 'percent' },
              },
            },
          },
          evaluations: 'number',
          newEvaluations: 'number',
          seconds: 'number',
        },
      },
    },
    evaluated: {
      array: {
        fields: {
          method: 'string',
          bits: sweepBits,
          accuracy: 'percent',
          exact: 'boolean',
          weightMemoryMB: 'number',
          activationKB: 'number',
        },
      },
    },
    pareto: { array: 'number' },
    evaluations: 'number',
    middleCellEvaluations: 'number',
    seconds: 'number',
  },
};

const SENSITIVITY_SHAPE: Shape = {
  fields: {
    version: { oneOf: [SENSITIVITY_VERSION] },
    model: { fields: { kind: 'string', args: bits, file: 'string' } },
    settings: {
      fields: { dataset: 'string', testImages: 'number', method: 'string', compat: 'string', seed: 'number', bits },
    },
    layers,
    fullPrecisionAccuracy: 'percent',
    curves: {
      array: {
        fields: {
          layer: 'string',
          kind: { oneOf: ['weights', 'activations', 'routing'] },
          bits: { array: 'number' },
          accuracy: { array: 'percent' },
        },
      },
    },
    evaluations: 'number',
    seconds: 'number',
  },
};

const count: Shape = { fields: { accuracy: 'percent', correct: 'number', total: 'number' } };
const FINETUNE_SHAPE: Shape = {
  fields: {
    version: { oneOf: [FINETUNE_VERSION] },
    settings: 'object',
    model: { fields: { kind: 'string', args: bits, file: 'string' } },
    bitsSource: 'string',
    format: 'string',
    weight_range: { optional: { oneOf: ['mse'] } },
    method: 'string',
    compat: 'string',
    seed: 'number',
    layers,
    bits: { fields: bitConfig },
    epochs: 'number',
    fullPrecisionAccuracy: 'percent',
    before: count,
    after: count,
    weightMemoryMB: 'number',
    weightReduction: 'number',
    history: {
      array: {
        fields: {
          epoch: 'number',
          trainLoss: 'number',
          trainAccuracy: 'percent',
          testAccuracy: 'percent',
          testCorrect: 'number',
          testTotal: 'number',
          testLoss: 'number',
          seconds: 'number',
          lastLr: 'number',
        },
      },
    },
    files: { fields: { pt: 'string', packed: 'string', checkpoint: { nullable: 'string' } } },
    seconds: 'number',
  },
};

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `'${v.length > 40 ? v.slice(0, 40) + '...' : v}'`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

function expected(s: Shape): string {
  if (s === 'percent') return 'a number';
  if (typeof s === 'string') return s === 'object' ? 'an object' : `a ${s}`;
  if ('array' in s) return s.max === undefined ? 'an array' : `an array of at most ${s.max} items`;
  if ('fields' in s) return 'an object';
  if ('optional' in s) return expected(s.optional);
  if ('nullable' in s) return `${expected(s.nullable)} or null`;
  return `one of ${s.oneOf.map((v) => JSON.stringify(v)).join(', ')}`;
}

function check(v: unknown, s: Shape, path: string, fail: (path: string, what: string) => never): void {
  const bad = () => fail(path, `expected ${expected(s)}, got ${describe(v)}`);
  if (typeof s === 'string') {
    if (s === 'number' || s === 'percent') {
      if (!(typeof v === 'number' && Number.isFinite(v))) bad();
      const [lo, hi, range] =
        s === 'percent'
          ? [0, 100, 'a percentage in [0, 100]']
          : [-MAX_MAGNITUDE, MAX_MAGNITUDE, 'a number within ±1e15'];
      if (!((v as number) >= lo && (v as number) <= hi)) fail(path, `expected ${range}, got number ${String(v)}`);
    } else if (s === 'object' ? !isObject(v) : typeof v !== s) bad();
    return;
  }
  if ('optional' in s) {
    if (v !== undefined) check(v, s.optional, path, fail);
    return;
  }
  if ('nullable' in s) {
    if (v !== null) check(v, s.nullable, path, fail);
    return;
  }
  if ('oneOf' in s) {
    if (!s.oneOf.includes(v as string | number)) bad();
    return;
  }
  if ('array' in s) {
    if (!Array.isArray(v)) bad();
    if (s.max !== undefined && (v as unknown[]).length > s.max)
      fail(path, `${(v as unknown[]).length} items; expected at most ${s.max}`);
    (v as unknown[]).forEach((x, i) => check(x, s.array, `${path}[${i}]`, fail));
    return;
  }
  if (!isObject(v)) bad();
  for (const [k, sub] of Object.entries(s.fields)) {
    const x = (v as Record<string, unknown>)[k];
    if (x === undefined && !(typeof sub === 'object' && 'optional' in sub))
      fail(path ? `${path}.${k}` : k, `missing (expected ${expected(sub)})`);
    check(x, sub, path ? `${path}.${k}` : k, fail);
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The path of the first value nested deeper than `max` levels (null: none), found without
 *  recursion: the pages and `merge` stringify settings, which recurses once per level. */
function tooDeep(json: unknown, max: number): string | null {
  const stack: { v: unknown; depth: number; path: string }[] = [{ v: json, depth: 0, path: '' }];
  while (stack.length > 0) {
    const { v, depth, path } = stack.pop()!;
    if (typeof v !== 'object' || v === null) continue;
    if (depth >= max) return path;
    const keys = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
    for (const k of keys) {
      // the path shown is cut after a few levels: a deep one would fill the screen
      const step = typeof k === 'number' ? `[${k}]` : path ? `.${k}` : k;
      const shown = depth < 4 ? path + step : depth === 4 ? path + '...' : path;
      stack.push({ v: (v as Record<string | number, unknown>)[k], depth: depth + 1, path: shown });
    }
  }
  return null;
}

/** Which run a parsed JSON is, its shape checked; errors (FileFormatError) start with
 *  `source` (the file) and name the field. */
export function checkRunJson(json: unknown, source: string): RunKind {
  const fail = (path: string, what: string): never => {
    throw new FileFormatError(source, `${source}: ${path ? `${path}: ` : ''}${what}`);
  };
  const deep = tooDeep(json, RUN_LIMITS.depth);
  if (deep !== null)
    fail(deep, `nested more than ${RUN_LIMITS.depth} levels deep; expected the JSON a qcapsnets run writes`);
  const kinds = `'${SEARCH_TOOL}' (a search's <stem>_qcapsnets.json), '${SWEEP_TOOL}' (<stem>_sweep.json), '${SENSITIVITY_TOOL}' (<stem>_sensitivity.json) or '${FINETUNE_TOOL}' (<stem>_finetuned.json)`;
  if (!isObject(json)) fail('', `expected the JSON object of a qcapsnets run, got ${describe(json)}`);
  const tool = (json as Record<string, unknown>).tool;
  const toolKinds: Record<string, RunKind> = {
    [SEARCH_TOOL]: 'search',
    [SWEEP_TOOL]: 'sweep',
    [SENSITIVITY_TOOL]: 'sensitivity',
    [FINETUNE_TOOL]: 'finetune',
  };
  const kind: RunKind | null = typeof tool === 'string' && Object.hasOwn(toolKinds, tool) ? toolKinds[tool] : null;
  if (!kind)
    fail(
      '',
      `not a qcapsnets run: its "tool" field is ${tool === undefined ? 'missing' : describe(tool)}; expected ${kinds}`,
    );
  const shape = { search: SEARCH_SHAPE, sweep: SWEEP_SHAPE, sensitivity: SENSITIVITY_SHAPE, finetune: FINETUNE_SHAPE }[
    kind!
  ];
  check(json, shape, '', (path, what) => fail(path, `${what} (in a ${kind} result)`));
  // what the pages rely on beyond the field types
  const o = json as Record<string, unknown>;
  if (kind === 'search') {
    const r = o as unknown as SearchReport;
    const n = r.layers.length;
    const routes = r.layers.filter((l) => l.routes).length;
    const lists = [
      ...r.steps.map((s, i) => [`steps[${i}]`, s] as const),
      ...r.models.map((s, i) => [`models[${i}]`, s] as const),
      ...r.evaluations.map((s, i) => [`evaluations[${i}]`, s] as const),
    ];
    for (const [path, s] of lists)
      if (s.weightBits.length !== n || s.actBits.length !== n || s.routingBits.length !== routes)
        fail(
          path,
          `expected ${n} weight and activation bit counts and ${routes} routing (one per layer), got ${s.weightBits.length}, ${s.actBits.length} and ${s.routingBits.length}`,
        );
  } else if (kind === 'sweep') {
    const r = o as unknown as SweepResult;
    const { tolerances, memoryBudgetsMB, methods } = r.grid;
    const cells = tolerances.length * memoryBudgetsMB.length * methods.length;
    if (cells > RUN_LIMITS.gridCells)
      fail(
        'grid',
        `${tolerances.length} tolerances x ${memoryBudgetsMB.length} budgets x ${methods.length} methods = ${cells} cells; expected at most ${RUN_LIMITS.gridCells}`,
      );
    if (r.rows.length > cells) fail('rows', `${r.rows.length} rows for a grid of ${cells} cells`);
    r.pareto.forEach((p, i) => {
      if (!(Number.isInteger(p) && p >= 0 && p < r.evaluated.length))
        fail(`pareto[${i}]`, `expected an index into evaluated (0..${r.evaluated.length - 1}), got ${p}`);
    });
  } else if (kind === 'finetune') {
    const r = o as unknown as FinetuneReport;
    const n = r.layers.length;
    const routes = r.layers.filter((l) => l.routes).length;
    const b = r.bits;
    if (b.weightBits.length !== n || b.actBits.length !== n || b.routingBits.length !== routes)
      fail(
        'bits',
        `expected ${n} weight and activation bit counts and ${routes} routing (one per layer), got ${b.weightBits.length}, ${b.actBits.length} and ${b.routingBits.length}`,
      );
  } else {
    const r = o as unknown as SensitivityResult;
    r.curves.forEach((c, i) => {
      if (c.bits.length !== c.accuracy.length || c.bits.length === 0)
        fail(
          `curves[${i}]`,
          `expected as many accuracies as bit counts (at least one), got ${c.accuracy.length} for ${c.bits.length}`,
        );
    });
  }
  return kind!;
}

/** The largest run JSON read (a sweep's of 100,000 evaluated configurations is about 40 MB). */
export const MAX_RUN_JSON_BYTES = 256 * 2 ** 20;

/** Reads and checks a run's JSON file (checkRunJson): one FileFormatError naming the file and
 *  the field for a file that is missing, too large, not JSON or not a run. */
export function readRunJson(file: string): { kind: RunKind; json: unknown } {
  const st = statSync(file, { throwIfNoEntry: false });
  if (st === undefined || st.isDirectory())
    throw new FileFormatError(
      file,
      `${file}: no such file (expected a <stem>_qcapsnets.json, _sweep.json, _sensitivity.json or _finetuned.json)`,
    );
  if (!st.isFile()) throw new FileFormatError(file, `${file}: not a regular file (expected a qcapsnets run's .json)`);
  if (st.size > MAX_RUN_JSON_BYTES)
    throw new FileFormatError(
      file,
      `${file}: ${st.size} bytes; a run's JSON is at most ${MAX_RUN_JSON_BYTES / 2 ** 20} MiB (expected a qcapsnets run's .json)`,
    );
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new FileFormatError(file, `${file}: not JSON (${(err as Error).message}); expected a qcapsnets run's .json`, {
      cause: err,
    });
  }
  return { kind: checkRunJson(json, file), json };
}

/** The page of a run's parsed JSON; `source` (its file) titles the page and starts errors. */
export function renderReport(json: unknown, source: string): string {
  const kind = checkRunJson(json, source);
  if (kind === 'search') return searchPage(json as SearchReport, source);
  if (kind === 'sweep') return sweepPage(json as SweepResult, source);
  if (kind === 'finetune') return finetunePage(json as FinetuneReport, source);
  return sensitivityPage(json as SensitivityResult, source);
}

/** Writes a run's page (atomically: a temporary name, then renamed). */
export function writeReportHtml(file: string, json: unknown, source: string): void {
  const html = renderReport(json, source);
  writeFileAtomic(file, () => [Buffer.from(html)]);
}

/** The search's page, <stem>_qcapsnets.html. */
export function writeHtmlReport(file: string, report: SearchReport, source = file.replace(/\.html$/, '.json')): void {
  writeReportHtml(file, report, source);
}
