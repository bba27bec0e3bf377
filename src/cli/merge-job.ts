// `qcapsnets merge A.json B.json ...`: the shards of one sweep (`qcapsnets sweep --shard i/n`)
// combined into the unsharded result: the same model file (sha256), grid and settings, every
// cell exactly once; rows in grid order, the evaluated configurations united (one per method
// and bits), the Pareto front recomputed, the evaluations summed.
import { existsSync, realpathSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { configKey } from '../quant/config.js';
import { gridCells, middleCell, paretoFront, sortPoints } from '../search/sweep.js';
import { SWEEP_TOOL, SWEEP_VERSION, type SweepPoint, type SweepResult } from '../search/sweep-result.js';
import { readRunJson } from '../report/index.js';
import { sweepFileName, sweepPageFile, sweepTable, writeSweepResult } from './sweep-job.js';

/** A shard's result, checked as `report` checks it (readRunJson: every field the merge and the
 *  page use, ranges, sizes, nesting); errors name the file and the field. */
function readSweep(file: string): SweepResult {
  let run: { kind: string; json: unknown };
  try {
    run = readRunJson(file);
  } catch (err) {
    throw new Error(`merge: ${(err as Error).message}`, { cause: err });
  }
  if (run.kind !== 'sweep')
    throw new Error(`merge: ${file}: a ${run.kind} result; expected a ${SWEEP_TOOL} result (version ${SWEEP_VERSION})`);
  return run.json as SweepResult;
}

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

export function mergeSweeps(files: readonly string[]): SweepResult {
  if (files.length === 0) throw new Error('merge: expected the result files of the shards (A.json B.json ...)');
  const results = files.map(readSweep);
  const [first] = results;
  results.forEach((r, k) => {
    const f = files[k];
    if (r.model.sha256 !== first.model.sha256)
      throw new Error(
        `merge: ${f} is a sweep of another model (sha256 ${r.model.sha256.slice(0, 12)}…, ${files[0]} has ${first.model.sha256.slice(0, 12)}…)`,
      );
    if (!same(r.grid, first.grid))
      throw new Error(
        `merge: ${f} is a sweep of another grid (${JSON.stringify(r.grid)}, ${files[0]} has ${JSON.stringify(first.grid)})`,
      );
    for (const key of new Set([...Object.keys(r.settings), ...Object.keys(first.settings)]))
      if (!same(r.settings[key], first.settings[key]))
        throw new Error(
          `merge: ${f} was run with ${key} ${JSON.stringify(r.settings[key])}, ${files[0]} with ${JSON.stringify(first.settings[key])}`,
        );
    if (r.fullPrecisionAccuracy !== first.fullPrecisionAccuracy)
      throw new Error(
        `merge: ${f} measured another full-precision accuracy (${r.fullPrecisionAccuracy}%, ${files[0]}: ${first.fullPrecisionAccuracy}%)`,
      );
  });
  // every cell exactly once
  const cells = gridCells(first.grid);
  const cellKey = (c: { method: string; tolerance: number; memoryBudgetMB: number }) =>
    `${c.method} tolerance ${c.tolerance} budget ${c.memoryBudgetMB}`;
  const index = new Map(cells.map((c) => [cellKey(c), c.index]));
  const from = new Map<number, number>(); // cell index -> file
  const rows: SweepResult['rows'] = new Array(cells.length);
  results.forEach((r, k) => {
    for (const row of r.rows) {
      const i = index.get(cellKey(row));
      if (i === undefined) throw new Error(`merge: ${files[k]} has a row (${cellKey(row)}) outside the grid`);
      if (from.has(i))
        throw new Error(`merge: the cell ${cellKey(row)} is in both ${files[from.get(i)!]} and ${files[k]}`);
      from.set(i, k);
      rows[i] = row;
    }
  });
  const missing = cells.filter((c) => !from.has(c.index));
  if (missing.length) {
    const n = first.shard?.count;
    const shards = n ? [...new Set(missing.map((c) => (c.index % n) + 1))].map((i) => `${i}/${n}`).join(', ') : '';
    throw new Error(
      `merge: ${missing.length} of ${cells.length} cells are in none of the files (${cellKey(missing[0])}${missing.length > 1 ? ', ...' : ''})` +
        (shards ? `; add the result of --shard ${shards}` : ''),
    );
  }
  // the evaluated configurations: one per method and bits; an exact accuracy beats a lower
  // bound, a higher lower bound (more images seen) a lower one
  const points = new Map<string, { p: SweepPoint; file: number }>();
  results.forEach((r, k) => {
    for (const p of r.evaluated) {
      const key = `${p.method}|${configKey(p.bits)}`;
      const had = points.get(key);
      if (!had) {
        points.set(key, { p, file: k });
        continue;
      }
      const q = had.p;
      const conflict =
        (p.exact && q.exact && p.accuracy !== q.accuracy) ||
        (p.exact && !q.exact && q.accuracy > p.accuracy) ||
        (!p.exact && q.exact && p.accuracy > q.accuracy);
      if (conflict)
        throw new Error(
          `merge: ${key}: ${files[had.file]} has accuracy ${q.accuracy}%${q.exact ? '' : ' (lower bound)'}, ` +
            `${files[k]} ${p.accuracy}%${p.exact ? '' : ' (lower bound)'}; the shards did not evaluate alike`,
        );
      if ((p.exact && !q.exact) || (!p.exact && !q.exact && p.accuracy > q.accuracy)) points.set(key, { p, file: k });
    }
  });
  const evaluated = sortPoints(
    [...points.values()].map((v) => v.p),
    first.grid.methods,
  );
  const mid = rows[middleCell(first.grid).index];
  return {
    ...first,
    shard: null,
    rows,
    evaluated,
    pareto: paretoFront(evaluated),
    evaluations: results.reduce((a, r) => a + r.evaluations, 0),
    middleCellEvaluations: mid.evaluations,
    ...(results.every((r) => r.imagesEvaluated !== undefined)
      ? { imagesEvaluated: results.reduce((a, r) => a + r.imagesEvaluated!, 0), middleCellImages: mid.imagesEvaluated }
      : {}),
    // the shards' compute time together
    seconds: results.reduce((a, r) => a + r.seconds, 0),
  };
}

/**
 * The command: merge, then write the JSON and its page atomically (default <stem>_sweep.json
 * beside the first file, its page the same name with .html). Everything is checked and the
 * page rendered before anything is written; the outputs may not be one of the inputs, and
 * --output names the JSON (an .html name is refused: the page's name follows from it).
 */
export function runMerge(files: readonly string[], output: string | null, log: (line: string) => void): string {
  if (output !== null && /\.html?$/i.test(output))
    throw new Error(
      `--output ${output}: names the merged JSON; expected a .json name (its page is written beside it, the same name with .html)`,
    );
  const merged = mergeSweeps(files);
  const out = resolve(output ?? join(dirname(resolve(files[0])), sweepFileName(merged.model.file, null)));
  const page = sweepPageFile(out);
  const same = (a: string, b: string) =>
    a === b || (existsSync(a) && existsSync(b) && realpathSync(a) === realpathSync(b));
  for (const f of files)
    for (const o of [out, page])
      if (same(resolve(f), o))
        throw new Error(
          `merge: ${f} is one of the files to merge and would be overwritten by ${o === out ? 'the merged JSON' : 'its page'}; name another --output`,
        );
  writeSweepResult(out, merged);
  for (const line of sweepTable(merged)) log(line);
  log(`merged ${files.length} files (${merged.rows.length} cells, ${merged.evaluations} evaluations) into ${out}`);
  return out;
}
