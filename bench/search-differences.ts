// bench:search's account of a difference from the reference's search (issue 20, part 5): the
// correct counts of every configuration both searches evaluated, and, for the first whose
// counts differ, the reference's own evaluation rerun in float32 and in float64
// (bench/torch_search.py --recheck: model.double(), the same quantizers). Our counts come from
// exact integer sums; when the reference's float64 count is ours while its float32 count is its
// search's, the difference is the reference's float32 rounding.
import { spawnSync } from 'node:child_process';
import type { Dataset } from '../src/data/dataset.js';
import type { CapsNet } from '../src/models/capsnet.js';
import { type BitLists, bitsFromLists } from '../src/quant/config.js';
import { QuantizedModel } from '../src/quant/quantized-model.js';
import type { QuantMethod } from '../src/tensor/backend.js';
import type { SearchReport } from '../src/report/search-json.js';

/** One evaluation of the reference's search, as torch_search.py records it. */
export interface ReferenceEvaluation {
  /** null where a layer's parameters were rounded to different bits (not seen in practice) */
  weightBits: (number | null)[];
  actBits: number[];
  routingBits: number[];
  correct: number;
  total: number;
}

interface Bits {
  weightBits: (number | null)[];
  actBits: number[];
  routingBits: number[];
}

/** A configuration both searches evaluated: the reference's count and ours (exact, or the
 *  range an early-stopped evaluation left). */
export interface ComparedCount extends Bits {
  reference: number;
  ours: number | null;
  oursLower: number;
  oursUpper: number;
  same: boolean;
}

export interface DifferenceEvidence {
  total: number;
  /** every configuration both evaluated, in the reference's order */
  compared: ComparedCount[];
  /** the first of them whose counts differ, rerun by the reference in float32 and float64 */
  first:
    | (Bits & {
        reference: number;
        ours: number;
        referenceFloat32Rerun: number | null;
        referenceFloat64Rerun: number | null;
      })
    | null;
  explained: boolean;
  verdict: string;
}

const key = (b: Bits) => JSON.stringify([b.weightBits, b.actBits, b.routingBits]);
const show = (b: Bits) =>
  `w=${JSON.stringify(b.weightBits)} a=${JSON.stringify(b.actBits)} r=${JSON.stringify(b.routingBits)}`;

/** Our count of each configuration: the exact one if any evaluation was exact, else the
 *  narrowest range of the early-stopped ones. */
function ourCounts(report: SearchReport, total: number): Map<string, { exact: number | null; lo: number; hi: number }> {
  const out = new Map<string, { exact: number | null; lo: number; hi: number }>();
  const count = (percent: number) => Math.round((percent * total) / 100);
  for (const e of report.evaluations) {
    const k = key(e);
    const prev = out.get(k);
    const cur = e.exact
      ? { exact: count(e.accuracy!), lo: count(e.accuracy!), hi: count(e.accuracy!) }
      : { exact: null, lo: count(e.lower), hi: count(e.upper) };
    if (!prev || (prev.exact === null && (cur.exact !== null || cur.hi - cur.lo < prev.hi - prev.lo))) out.set(k, cur);
  }
  return out;
}

/** Every configuration both evaluated with both counts, in the reference's order (each once). */
export function compareCounts(
  report: SearchReport,
  reference: readonly ReferenceEvaluation[],
  total: number,
): ComparedCount[] {
  const ours = ourCounts(report, total);
  const seen = new Set<string>();
  const out: ComparedCount[] = [];
  for (const r of reference) {
    const k = key(r);
    const o = ours.get(k);
    if (!o || seen.has(k)) continue;
    seen.add(k);
    out.push({
      weightBits: r.weightBits,
      actBits: r.actBits,
      routingBits: r.routingBits,
      reference: r.correct,
      ours: o.exact,
      oursLower: o.lo,
      oursUpper: o.hi,
      same: o.exact !== null ? o.exact === r.correct : r.correct >= o.lo && r.correct <= o.hi,
    });
  }
  return out;
}

export interface RecheckRun {
  python: string;
  script: string;
  refDir: string;
  modelFile: string;
  method: QuantMethod;
  modelKind: string;
  modelArgs: readonly number[];
  env: NodeJS.ProcessEnv;
}

/** The reference's evaluation of one configuration rerun in float32 and float64. */
function recheck(
  run: RecheckRun,
  total: number,
  bits: Bits,
): { correct_float32: number; correct_float64: number } | null {
  const r = spawnSync(
    run.python,
    [
      run.script,
      '--recheck',
      run.refDir,
      run.modelFile,
      String(total),
      run.method,
      '2',
      run.modelKind,
      run.modelArgs.join(','),
      JSON.stringify(bits),
    ],
    { env: run.env, encoding: 'utf8', maxBuffer: 1 << 24 },
  );
  try {
    return JSON.parse((r.stdout ?? '').trim().split('\n').pop() ?? '');
  } catch {
    console.error(`reference recheck failed (exit ${r.status}):\n${r.stderr}`);
    return null;
  }
}

/** Prints both counts of every configuration both searches evaluated, reruns the first that
 *  differs in the reference's float32 and float64, and says whether that explains it. */
export function explainDifferences(
  report: SearchReport,
  reference: readonly ReferenceEvaluation[],
  model: CapsNet,
  test: Dataset,
  run: RecheckRun,
): DifferenceEvidence {
  const total = test.count;
  const compared = compareCounts(report, reference, total);
  console.log(`correct counts of the ${compared.length} configurations both searches evaluated (of ${total} images):`);
  for (const c of compared) {
    const ours = c.ours !== null ? `${c.ours}` : `${c.oursLower}..${c.oursUpper} (decided early)`;
    console.log(`  ${show(c)}: reference ${c.reference}, ours ${ours}${c.same ? '' : '  DIFFERENT'}`);
  }
  const differing = compared.find((c) => !c.same);
  if (!differing) {
    const verdict =
      'every configuration both evaluated has the same correct count: the decisions differ for another reason';
    console.log(verdict);
    return { total, compared, first: null, explained: false, verdict };
  }
  const bits = { weightBits: differing.weightBits, actBits: differing.actBits, routingBits: differing.routingBits };
  // an early-stopped count is a range: count that configuration to the end
  const ours =
    differing.ours ??
    new QuantizedModel(model, bitsFromLists(model.quantLayers, bits as BitLists), {
      method: run.method,
      compat: 'dac2020',
      seed: 42,
    }).evaluate(test, {
      batchSize: 100,
    }).correct;
  console.log(`first configuration whose counts differ: ${show(bits)}; rerunning the reference's evaluation of it ...`);
  const rerun = recheck(run, total, bits);
  const f32 = rerun?.correct_float32 ?? null;
  const f64 = rerun?.correct_float64 ?? null;
  const explained = f64 === ours && f32 === differing.reference;
  const verdict =
    rerun === null
      ? 'the reference could not be rerun'
      : explained
        ? `the reference counts ${f32} in float32 (as in its search) and ${f64} in float64, ours ${ours}: the difference is the reference's float32 rounding`
        : f32 !== differing.reference
          ? `the reference's rerun counts ${f32} in float32, not its search's ${differing.reference} (${f64} in float64, ours ${ours}): not explained`
          : `the reference counts ${f32} in float32 (as in its search) and ${f64} in float64, ours ${ours}: not explained by float32 rounding`;
  console.log(`  ${verdict}`);
  return {
    total,
    compared,
    first: { ...bits, reference: differing.reference, ours, referenceFloat32Rerun: f32, referenceFloat64Rerun: f64 },
    explained,
    verdict,
  };
}
