// Report pages for people: one self-contained HTML file per run (a search, a sweep or a
// sensitivity analysis), rendered from the run's JSON. This folder sits at the end of the
// data path (data -> models -> train | quant -> search -> io -> report): it reads the
// results' types from search/ and io/ and nothing reads it but the command line, so the
// JSON formats stay in io/ and search/ while the pages can grow their plots here.
// renderReport checks the JSON's shape first: a foreign or damaged file is one error naming
// the file and the field, before anything is drawn.
import { writeFileAtomic } from '../io/atomic-write.js';
import type { SearchReport } from './search-json.js';
import { SENSITIVITY_TOOL, SENSITIVITY_VERSION, type SensitivityResult } from '../search/sensitivity.js';
import { SWEEP_TOOL, SWEEP_VERSION, type SweepResult } from '../search/sweep-result.js';
import { searchPage } from './search-page.js';
import { sensitivityPage } from './sensitivity-page.js';
import { sweepPage } from './sweep-page.js';

export { paretoFront, type ParetoPoint } from './pareto.js';

/** The `tool` of a search's JSON (src/cli/search-job.ts). */
export const SEARCH_TOOL = 'qcapsnets';

export type RunKind = 'search' | 'sweep' | 'sensitivity';

// ---- shape checks: each names the field's path and what it should hold

type Shape =
  | 'number'
  | 'string'
  | 'boolean'
  | 'object'
  | { array: Shape }
  | { fields: Record<string, Shape> }
  | { optional: Shape }
  | { nullable: Shape }
  | { oneOf: readonly (string | number)[] };

const bits: Shape = { array: 'number' };
const bitConfig = { weightBits: bits, actBits: bits, routingBits: bits };
const layer: Shape = { fields: { name: 'string', paramCount: 'number', routes: 'boolean' } };
const stepFields = {
  step: 'string',
  ...bitConfig,
  accuracy: 'number',
  memoryMB: 'number',
  reduction: 'number',
  activationKB: { optional: { nullable: 'number' } },
  activationReduction: { optional: { nullable: 'number' } },
} satisfies Record<string, Shape>;

const SEARCH_SHAPE: Shape = {
  fields: {
    settings: 'object',
    layers: { array: layer },
    fullPrecisionAccuracy: 'number',
    minimumAccuracy: 'number',
    branch: { oneOf: ['A', 'B'] },
    steps: { array: { fields: stepFields } },
    models: {
      array: {
        fields: {
          ...stepFields,
          kind: 'string',
          file: 'string',
          testAccuracy: { optional: 'number' },
          testCorrect: { optional: 'number' },
          testTotal: { optional: 'number' },
        },
      },
    },
    selection: {
      optional: { fields: { images: 'number', source: 'string', fullPrecisionTestAccuracy: 'number' } },
    },
    evaluations: {
      array: {
        fields: {
          step: 'string',
          ...bitConfig,
          accuracy: { nullable: 'number' },
          lower: 'number',
          upper: 'number',
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
      fields: { tolerances: { array: 'number' }, memoryBudgetsMB: { array: 'number' }, methods: { array: 'string' } },
    },
    shard: { nullable: { fields: { index: 'number', count: 'number' } } },
    fullPrecisionAccuracy: 'number',
    fullPrecisionMemoryMB: 'number',
    fullPrecisionActivationKB: 'number',
    rows: {
      array: {
        fields: {
          tolerance: 'number',
          memoryBudgetMB: 'number',
          method: 'string',
          branch: { oneOf: ['A', 'B'] },
          models: {
            array: {
              fields: {
                kind: { oneOf: ['satisfied', 'memory', 'accuracy'] },
                bits: sweepBits,
                accuracy: 'number',
                testAccuracy: { nullable: 'number' },
                weightMemoryMB: 'number',
                weightReduction: 'number',
                activationKB: 'number',
                activationReduction: 'number',
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
          accuracy: 'number',
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
    layers: { array: layer },
    fullPrecisionAccuracy: 'number',
    curves: {
      array: {
        fields: {
          layer: 'string',
          kind: { oneOf: ['weights', 'activations', 'routing'] },
          bits: { array: 'number' },
          accuracy: { array: 'number' },
        },
      },
    },
    evaluations: 'number',
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
  if (typeof s === 'string') return s === 'object' ? 'an object' : `a ${s}`;
  if ('array' in s) return 'an array';
  if ('fields' in s) return 'an object';
  if ('optional' in s) return expected(s.optional);
  if ('nullable' in s) return `${expected(s.nullable)} or null`;
  return `one of ${s.oneOf.map((v) => JSON.stringify(v)).join(', ')}`;
}

function check(v: unknown, s: Shape, path: string, fail: (path: string, what: string) => never): void {
  const bad = () => fail(path, `expected ${expected(s)}, got ${describe(v)}`);
  if (typeof s === 'string') {
    if (
      s === 'number' ? !(typeof v === 'number' && Number.isFinite(v)) : s === 'object' ? !isObject(v) : typeof v !== s
    )
      bad();
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

/** Which run a parsed JSON is, its shape checked; errors start with `source` (the file). */
export function checkRunJson(json: unknown, source: string): RunKind {
  const fail = (path: string, what: string): never => {
    throw new Error(`${source}: ${path ? `${path}: ` : ''}${what}`);
  };
  const kinds = `'${SEARCH_TOOL}' (a search's <stem>_qcapsnets.json), '${SWEEP_TOOL}' (<stem>_sweep.json) or '${SENSITIVITY_TOOL}' (<stem>_sensitivity.json)`;
  if (!isObject(json)) fail('', `expected the JSON object of a qcapsnets run, got ${describe(json)}`);
  const tool = (json as Record<string, unknown>).tool;
  const kind: RunKind | null =
    tool === SEARCH_TOOL ? 'search' : tool === SWEEP_TOOL ? 'sweep' : tool === SENSITIVITY_TOOL ? 'sensitivity' : null;
  if (!kind)
    fail(
      '',
      `not a qcapsnets run: its "tool" field is ${tool === undefined ? 'missing' : describe(tool)}; expected ${kinds}`,
    );
  const shape = kind === 'search' ? SEARCH_SHAPE : kind === 'sweep' ? SWEEP_SHAPE : SENSITIVITY_SHAPE;
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
    r.pareto.forEach((p, i) => {
      if (!(Number.isInteger(p) && p >= 0 && p < r.evaluated.length))
        fail(`pareto[${i}]`, `expected an index into evaluated (0..${r.evaluated.length - 1}), got ${p}`);
    });
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

/** The page of a run's parsed JSON; `source` (its file) titles the page and starts errors. */
export function renderReport(json: unknown, source: string): string {
  const kind = checkRunJson(json, source);
  if (kind === 'search') return searchPage(json as SearchReport, source);
  if (kind === 'sweep') return sweepPage(json as SweepResult, source);
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
