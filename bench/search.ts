// `npm run bench:search`: the whole Q-CapsNets search on ShallowCapsNet (the first 2,000
// Fashion-MNIST test images, budget 3 MB) or, with --model-kind DeepCaps, on DeepCaps 28 1 10 32
// (the first 1,000, a budget of 32% of its 32-bit weight memory, which step 2 meets above the
// minimum accuracy: branch A), tolerance 0.5, round_to_nearest (or --method truncation) with the
// reference's arithmetic (--rounding-compat dac2020), against the reference implementation's own
// search on the same model file and images when PyTorch is installed and QCAPS_REFERENCE_DIR
// points at a checkout of it (never committed here). When the decisions differ, it prints the
// correct counts of every configuration both searches evaluated and reruns the reference's
// evaluation of the first that differs in float32 and float64 (bench/search-differences.ts):
// the JSON's differences_explained is true when float64 gives our count. The model: --model FILE, or
// QCAPS_BENCH_MODEL, or one trained once by `qcapsnets train` and kept in .bench-cache/.
//   npm run bench:search [-- --json] [--model-kind ShallowCapsNet|DeepCaps] [--test-size N]
//                        [--model FILE] [--threads N] [--budget MB | --budget-fraction F]
//                        [--method round_to_nearest|truncation] (the deterministic methods)
//                        [--isa avx512vnni|avx512|avx2|portable] (forces the exact kernels' level,
//                        as QCAPS_ISA does; the JSON's `isa` names the level that ran)
//   npm run bench:search -- --model-kind DeepCaps --input-size 64 --memory-only (bench/memory.ts)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadDataset } from '../src/data/load.js';
import { buildModel } from '../src/models/factory.js';
import { readStateDict } from '../src/io/pt.js';
import { activeIsa, kernels } from '../src/tensor/kernels.js';
import { setIsa } from '../src/tensor/kernels-native.js';
import { ISA_LEVELS, type IsaLevel } from '../src/settings.js';
import { runSearchJob } from '../src/cli/search-job.js';
import { MALLOC_REUSE, arg, peakRssMb } from './common.js';
import { fullPrecisionMemoryMB } from '../src/quant/memory.js';
import { runMemoryBench } from './memory.js';
import { benchModel, KINDS } from './bench-model.js';
import {
  compareCounts,
  type DifferenceEvidence,
  explainDifferences,
  type ReferenceEvaluation,
} from './search-differences.js';

const root = fileURLToPath(new URL('../../', import.meta.url));

interface ReferenceStep {
  weightBits?: number[];
  actBits?: number[];
  routingBits?: number[];
  accuracy?: number;
}

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const modelKind = arg('model-kind', 'ShallowCapsNet');
  const kind = KINDS[modelKind];
  if (!kind) throw new Error(`--model-kind ${modelKind}: expected ${Object.keys(KINDS).join(' or ')}`);
  if (process.argv.includes('--memory-only')) {
    await runMemoryBench(modelKind, Number(arg('input-size', '64')), json);
    return;
  }
  const testSize = Number(arg('test-size', String(kind.testSize)));
  const tolerance = Number(arg('tolerance', '0.5'));
  const method = arg('method', 'round_to_nearest');
  if (method !== 'round_to_nearest' && method !== 'truncation')
    throw new Error(
      `--method ${method}: expected round_to_nearest or truncation (the deterministic methods, whose bits the reference's can be compared with)`,
    );
  const threads = Number(arg('threads', String(kernels().getThreads())));
  kernels().setThreads(threads);
  if (process.argv.includes('--isa')) {
    const isa = arg('isa', '') as IsaLevel;
    if (!ISA_LEVELS.includes(isa)) throw new Error(`--isa ${isa}: expected one of ${ISA_LEVELS.join(', ')}`);
    if (kernels().name !== 'native') throw new Error(`--isa ${isa}: the native kernels are not loaded`);
    setIsa(isa);
  }
  const modelFile = benchModel(kind);
  const model = buildModel(modelKind, kind.modelArgs);
  model.loadStateDict(readStateDict(modelFile), modelFile);
  const params = model.quantLayers.map((l) => l.paramCount);
  const fp32MB = fullPrecisionMemoryMB(params);
  const fraction = process.argv.includes('--budget-fraction')
    ? Number(arg('budget-fraction', ''))
    : 'fraction' in kind.budget && !process.argv.includes('--budget')
      ? kind.budget.fraction
      : null;
  const budget =
    fraction !== null ? fraction * fp32MB : Number(arg('budget', String('mb' in kind.budget ? kind.budget.mb : 0)));
  console.log(
    `${modelKind} ${kind.modelArgs.join(' ')}: 32-bit weight memory ${fp32MB.toFixed(3)} MB; budget ${budget.toFixed(4)} MB${fraction !== null ? ` (${fraction} of it)` : ''}`,
  );
  const test = loadDataset('fashion-mnist', 'test', { limit: testSize });
  const out = mkdtempSync(join(tmpdir(), 'qcaps-bench-search-'));
  const lines: string[] = [];
  const t0 = performance.now();
  const cpu0 = process.cpuUsage();
  let result;
  try {
    result = await runSearchJob({
      model,
      modelFile,
      test,
      method,
      compat: 'dac2020',
      tolerance,
      memoryBudgetMB: budget,
      seed: 42,
      testBatchSize: 100,
      cacheMB: 1024,
      earlyStop: true,
      outputDir: out,
      settings: { bench: 'search', modelKind, testSize, tolerance, budget, method },
      log: (l) => lines.push(l),
    });
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
  const jobS = (performance.now() - t0) / 1000;
  // CPU seconds of the whole job (the full-precision pass included): steadier than wall time
  // on a shared machine, for comparing runs (e.g. --isa levels) at --threads 1
  const cpu = process.cpuUsage(cpu0);
  const jobCpuS = (cpu.user + cpu.system) / 1e6;
  // the reference's timing covers its qcapsnets() call (the search and its file writes), not
  // the full-precision test before it: time the same part here
  const searchS = result.searchSeconds;
  for (const l of lines) console.log(l);
  console.log(
    `ours: ${searchS.toFixed(1)} s, ${result.evaluations} evaluations, ${result.fullPassEquivalents.toFixed(2)} full-pass equivalents (layer runs / layers per pass), ${threads} threads, isa ${activeIsa()}`,
  );

  const peakRss = peakRssMb();
  console.log(`ours: peak RSS ${peakRss.toFixed(0)} MB`);
  let reference: {
    fp_accuracy: number;
    search_s: number;
    peak_rss_mb: number;
    steps: Record<string, ReferenceStep>;
    evaluations?: ReferenceEvaluation[];
  } | null = null;
  const refDir = process.env.QCAPS_REFERENCE_DIR;
  const torchOk =
    existsSync('/usr/bin/python3') &&
    spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
  const env: NodeJS.ProcessEnv = { ...process.env, ...MALLOC_REUSE };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  if (refDir && torchOk) {
    console.log(`reference search (PyTorch, 2 threads, malloc reuse) from ${refDir} ...`);
    const r = spawnSync(
      '/usr/bin/python3',
      [
        join(root, 'bench/torch_search.py'),
        refDir,
        modelFile,
        String(testSize),
        String(tolerance),
        String(budget),
        method,
        '2',
        modelKind,
        kind.modelArgs.join(','),
      ],
      { env, encoding: 'utf8', maxBuffer: 1 << 26 },
    );
    const last = (r.stdout ?? '').trim().split('\n').pop() ?? '';
    try {
      reference = JSON.parse(last);
    } catch {
      console.error(`reference search failed (exit ${r.status}):\n${r.stderr}`);
    }
  } else {
    console.log(
      'reference not run: set QCAPS_REFERENCE_DIR to a checkout of the reference implementation (PyTorch needed)',
    );
  }

  const ours = Object.fromEntries(result.report.steps.map((s) => [s.step, s]));
  let identical: boolean | null = null;
  if (reference) {
    identical = true;
    for (const [step, r] of Object.entries(reference.steps)) {
      const o = ours[step];
      const same =
        o !== undefined &&
        JSON.stringify(o.weightBits) === JSON.stringify(r.weightBits) &&
        JSON.stringify(o.actBits) === JSON.stringify(r.actBits) &&
        JSON.stringify(o.routingBits) === JSON.stringify(r.routingBits);
      console.log(
        `  ${step}: reference w=${JSON.stringify(r.weightBits)} a=${JSON.stringify(r.actBits)} r=${JSON.stringify(r.routingBits)} ${r.accuracy}% | ours ${o ? `w=${JSON.stringify(o.weightBits)} a=${JSON.stringify(o.actBits)} r=${JSON.stringify(o.routingBits)} ${o.accuracy}%` : 'missing'} ${same ? 'same' : 'DIFFERENT'}`,
      );
      if (!same) identical = false;
    }
    if (Object.keys(reference.steps).length !== result.report.steps.length) identical = false;
    console.log(
      `reference: ${reference.search_s.toFixed(1)} s, peak RSS ${reference.peak_rss_mb.toFixed(0)} MB; ours / reference = ${(searchS / reference.search_s).toFixed(3)}`,
    );
  }
  // where the decisions differ: both counts of every configuration both searches evaluated,
  // and the reference's first differing evaluation rerun in float32 and float64
  const counts = reference?.evaluations ? compareCounts(result.report, reference.evaluations, testSize) : null;
  let differences: DifferenceEvidence | null = null;
  if (identical === false && reference?.evaluations && refDir)
    differences = explainDifferences(result.report, reference.evaluations, model, test, {
      python: '/usr/bin/python3',
      script: join(root, 'bench/torch_search.py'),
      refDir,
      modelFile,
      method,
      modelKind,
      modelArgs: kind.modelArgs,
      env,
    });
  if (json) {
    console.log(
      JSON.stringify({
        model_kind: modelKind,
        search_s: searchS,
        job_s: jobS,
        job_cpu_s: jobCpuS,
        evaluations: result.evaluations,
        full_pass_equivalents: result.fullPassEquivalents,
        reference_search_s: reference?.search_s ?? null,
        ratio: reference ? searchS / reference.search_s : null,
        decisions_identical: identical,
        differences_explained: differences ? differences.explained : null,
        differences,
        evaluations_compared: counts?.length ?? null,
        counts_differing: counts ? counts.filter((c) => !c.same).length : null,
        fp_accuracy: result.report.fullPrecisionAccuracy,
        reference_fp_accuracy: reference?.fp_accuracy ?? null,
        steps: result.report.steps,
        threads,
        isa: activeIsa(),
        test_images: testSize,
        budget_mb: budget,
        peak_rss_mb: peakRss,
        reference_peak_rss_mb: reference?.peak_rss_mb ?? null,
      }),
    );
  }
}

main().catch((err: Error) => {
  console.error(`bench:search: ${err.message}`);
  process.exit(2);
});
