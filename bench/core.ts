// `npm run bench`: the numeric core's benchmark (W1, W2, W3, sgemm and conv GFLOP/s), with
// PyTorch run on the same workloads in the same bench run when /usr/bin/python3 has torch.
// Every measurement runs in a child process of its own (clean peak RSS), with
// OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset so that OpenBLAS picks its best kernels;
// PyTorch runs at its fastest setting here (the faster of 1 and 2 threads, malloc reusing
// memory) and at its default setting (2 threads, default malloc).
// In a build with OpenBLAS, gemm, W1, W2 and W3 also run on the built-in GEMM (QCAPS_GEMM=builtin,
// and QCAPS_SMALL_PATCH_CONV=0 as in a build without CBLAS), each right after its OpenBLAS run.
//   npm run bench [-- --json] [--runs N] [--threads 1,2] [--batch 100] [--no-torch]
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { backendInfo, kernels } from '../src/tensor/kernels.js';
import { blasInfo } from '../src/tensor/kernels-native.js';
import { conv2dForward, Tensor } from '../src/tensor/index.js';
import { deepCapsConvWorkload, shallowCapsNetWorkload, type Workload } from './workloads.js';
import { MALLOC_REUSE, arg, median, peakRssMb, runChild } from './common.js';

interface Measurement {
  name: string;
  threads: number;
  median_ms: number;
  runs_ms: number[];
  peak_rss_mb: number;
  gflops?: number;
  [k: string]: unknown;
}

function timeRuns(fn: () => void, runs: number): number[] {
  fn(); // warm-up: fills the buffer pool and the native workspaces
  const times: number[] = [];
  for (let r = 0; r < runs; r++) {
    const t0 = process.hrtime.bigint();
    fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  return times;
}

/** Child mode: one measurement, printed as a JSON line. */
function child(name: string, threads: number, runs: number, batch: number): void {
  kernels().setThreads(threads);
  let out: Measurement;
  if (name === 'gemm') {
    // sgemm on the GEMM shape of the conv 256->256 9x9 stride 2 (rows x 256 x 20736, the rows of
    // one im2col chunk), then the conv itself on the same data.
    const K = 256 * 81;
    const rowsTotal = batch * 36;
    const chunk = Math.min(rowsTotal, Math.max(1, Math.floor((64 << 20) / (K * 4))));
    const A = new Float32Array(chunk * K).map((_, i) => Math.sin(i));
    const W = new Float32Array(256 * K).map((_, i) => Math.cos(i) * 0.01);
    const C = new Float32Array(chunk * 256);
    const k = kernels();
    const gemmTimes = timeRuns(() => {
      for (let r0 = 0; r0 < rowsTotal; r0 += chunk)
        k.sgemm(false, true, Math.min(chunk, rowsTotal - r0), 256, K, 1, A, 0, K, W, 0, K, 0, C, 0, 256);
    }, runs);
    // check a few results against float64 (OpenBLAS' kernel choice must not cost correctness)
    let maxRel = 0;
    for (const [i, j] of [
      [0, 0],
      [chunk - 1, 255],
      [chunk >> 1, 77],
    ]) {
      let ref = 0;
      for (let kk = 0; kk < K; kk++) ref += A[i * K + kk] * W[j * K + kk];
      maxRel = Math.max(maxRel, Math.abs(C[i * 256 + j] - ref) / Math.max(1e-3, Math.abs(ref)));
    }
    const flops = 2 * rowsTotal * 256 * K;
    const x = new Tensor(
      new Float32Array(batch * 20 * 20 * 256).map((_, i) => Math.sin(i * 0.1)),
      [batch, 20, 20, 256],
    );
    const w = new Tensor(W, [256, 9, 9, 256]);
    const convTimes = timeRuns(() => conv2dForward(x, w, null, { stride: 2 }), runs);
    out = {
      name,
      threads,
      median_ms: median(gemmTimes),
      runs_ms: gemmTimes,
      peak_rss_mb: peakRssMb(),
      sgemm_gflops: flops / median(gemmTimes) / 1e6,
      conv_ms: median(convTimes),
      conv_gflops: flops / median(convTimes) / 1e6,
      gemm_check_max_rel_err: maxRel,
      gemm_rows_per_call: chunk,
      blas: backendInfo(),
    };
  } else {
    const w: Workload =
      name === 'W1'
        ? shallowCapsNetWorkload(batch, false)
        : name === 'W2'
          ? shallowCapsNetWorkload(batch, true)
          : deepCapsConvWorkload(batch);
    const times = timeRuns(() => w.run(), runs);
    out = {
      name,
      threads,
      median_ms: median(times),
      runs_ms: times,
      peak_rss_mb: peakRssMb(),
      gflops: w.flops / median(times) / 1e6,
    };
  }
  console.log(JSON.stringify(out));
}

function torchAvailable(): boolean {
  if (!existsSync('/usr/bin/python3')) return false;
  return spawnSync('/usr/bin/python3', ['-c', 'import torch'], { stdio: 'ignore' }).status === 0;
}

function main(): void {
  if (process.argv.includes('--child')) {
    child(arg('child', 'W1'), Number(arg('threads', '1')), Number(arg('runs', '10')), Number(arg('batch', '100')));
    return;
  }
  const json = process.argv.includes('--json');
  const runs = Math.max(1, Number(arg('runs', '10')));
  const batch = Number(arg('batch', '100'));
  const threadList = arg('threads', '1,2').split(',').map(Number);
  const env: NodeJS.ProcessEnv = { ...process.env, QCAPS_QUIET: '1' };
  const hadCore = env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const self = fileURLToPath(import.meta.url);
  const say = (s: string) => process.stdout.write(s + '\n');
  say(`qcapsnets bench: batch ${batch}, median of ${runs} runs after a warm-up, each workload in its own process`);
  say(`OPENBLAS_CORETYPE ${hadCore ? `was ${hadCore}, unset for the bench` : 'unset'}; OPENBLAS_L2_SIZE unset`);

  // In a build with CBLAS, each workload also runs on the built-in GEMM as a build without CBLAS
  // runs it (QCAPS_SMALL_PATCH_CONV=0: no OpenBLAS-order small-patch kernel there), right after
  // the same workload on CBLAS so that both see the same load of the machine. QCAPS_GEMM is
  // unset for the CBLAS runs.
  delete env.QCAPS_GEMM;
  const hasBlas = (() => {
    try {
      return !blasInfo().includes('no CBLAS');
    } catch {
      return false;
    }
  })();
  const configs: [string, NodeJS.ProcessEnv, Record<string, Measurement>][] = [['ours', env, {}]];
  if (hasBlas) configs.push(['built-in', { ...env, QCAPS_GEMM: 'builtin', QCAPS_SMALL_PATCH_CONV: '0' }, {}]);
  for (const name of ['gemm', 'W1', 'W2', 'W3']) {
    for (const t of threadList) {
      for (const [label, childEnv, best] of configs) {
        const m = runChild<Measurement>(
          'bench',
          process.execPath,
          [self, '--child', name, '--threads', String(t), '--runs', String(runs), '--batch', String(batch)],
          childEnv,
        );
        if (!m) continue;
        say(
          `  ${label.padEnd(8)} ${name.padEnd(4)} threads ${t}: ${m.median_ms.toFixed(1)} ms  peak RSS ${m.peak_rss_mb.toFixed(0)} MB`,
        );
        if (!best[name] || m.median_ms < best[name].median_ms) best[name] = m;
      }
    }
  }
  const ours = configs[0][2];
  // a build without CBLAS runs nothing but the built-in GEMM: its figures are the built-in ones
  const builtin = configs[1]?.[2] ?? ours;
  const gemm = ours.gemm;
  if (gemm)
    say(
      `  blas: ${gemm.blas}; sgemm check vs float64: max rel err ${(gemm.gemm_check_max_rel_err as number).toExponential(1)}`,
    );
  if (hasBlas && builtin.gemm) say(`  built-in: ${builtin.gemm.blas}`);

  const torch: Record<string, { fastest: Measurement | null; default: Measurement | null }> = {};
  const withTorch = !process.argv.includes('--no-torch') && torchAvailable();
  if (withTorch) {
    const script = fileURLToPath(new URL('../../bench/torch_core.py', import.meta.url));
    for (const name of ['W1', 'W2', 'W3']) {
      let fastest: Measurement | null = null;
      for (const t of threadList) {
        const m = runChild<Measurement>(
          'bench',
          '/usr/bin/python3',
          [script, name, String(t), String(runs), String(batch)],
          {
            ...env,
            ...MALLOC_REUSE,
          },
        );
        if (m)
          say(
            `  torch  ${name.padEnd(4)} threads ${t}, malloc reuse: ${m.median_ms.toFixed(1)} ms  peak RSS ${m.peak_rss_mb.toFixed(0)} MB`,
          );
        if (m && (!fastest || m.median_ms < fastest.median_ms)) fastest = m;
      }
      const def = runChild<Measurement>(
        'bench',
        '/usr/bin/python3',
        [script, name, '2', String(runs), String(batch)],
        env,
      );
      if (def) say(`  torch  ${name.padEnd(4)} default (2 threads, default malloc): ${def.median_ms.toFixed(1)} ms`);
      torch[name] = { fastest, default: def };
    }
  } else {
    say('  PyTorch not measured (no torch in /usr/bin/python3, or --no-torch): ratios are null');
  }

  const ratio = (name: string, which: 'fastest' | 'default') => {
    const t = torch[name]?.[which];
    return t && ours[name] ? ours[name].median_ms / t.median_ms : null;
  };
  const sgemmGflops = (gemm?.sgemm_gflops as number) ?? null;
  const vsBlas = (name: string) =>
    hasBlas && builtin[name] && ours[name] ? builtin[name].median_ms / ours[name].median_ms : null;
  const w1Flops = shallowCapsNetWorkload(1, false).flops * batch;
  const result = {
    batch,
    backend: gemm ? 'native' : null,
    W1_ms: ours.W1?.median_ms ?? null,
    W2_ms: ours.W2?.median_ms ?? null,
    W3_ms: ours.W3?.median_ms ?? null,
    W1_ratio: ratio('W1', 'fastest'),
    W2_ratio: ratio('W2', 'fastest'),
    W3_ratio: ratio('W3', 'fastest'),
    W1_ratio_default: ratio('W1', 'default'),
    W2_ratio_default: ratio('W2', 'default'),
    W3_ratio_default: ratio('W3', 'default'),
    torch_W1_ms: torch.W1?.fastest?.median_ms ?? null,
    torch_W2_ms: torch.W2?.fastest?.median_ms ?? null,
    torch_W3_ms: torch.W3?.fastest?.median_ms ?? null,
    torch_threads: torch.W1?.fastest?.threads ?? null,
    sgemm_gflops: sgemmGflops,
    conv_gflops: (gemm?.conv_gflops as number) ?? null,
    conv_vs_sgemm: gemm ? (gemm.conv_gflops as number) / sgemmGflops : null,
    W1_builtin_ms: builtin.W1?.median_ms ?? null,
    W2_builtin_ms: builtin.W2?.median_ms ?? null,
    W3_builtin_ms: builtin.W3?.median_ms ?? null,
    W1_builtin_vs_blas: vsBlas('W1'),
    W2_builtin_vs_blas: vsBlas('W2'),
    W3_builtin_vs_blas: vsBlas('W3'),
    sgemm_builtin_gflops: (builtin.gemm?.sgemm_gflops as number) ?? null,
    builtin_gemm: builtin.gemm ? String(builtin.gemm.blas) : null,
    W1_floor_ms: sgemmGflops ? w1Flops / sgemmGflops / 1e6 : null,
    W1_vs_floor: sgemmGflops && ours.W1 ? ours.W1.median_ms / (w1Flops / sgemmGflops / 1e6) : null,
    W2_peak_rss_mb: ours.W2?.peak_rss_mb ?? null,
    torch_W2_peak_rss_mb: torch.W2?.fastest?.peak_rss_mb ?? null,
    W2_rss_ratio: torch.W2?.fastest && ours.W2 ? ours.W2.peak_rss_mb / torch.W2.fastest.peak_rss_mb : null,
    threads: ours.W1?.threads ?? null,
    threads_W2: ours.W2?.threads ?? null,
    openblas_core: gemm ? (/core ([A-Za-z0-9_]+)/.exec(String(gemm.blas))?.[1] ?? null) : null,
    openblas_config: gemm ? String(gemm.blas) : null,
  };
  const fmt = (v: number | null, d = 2) => (v === null ? 'n/a' : v.toFixed(d));
  say('');
  say(
    `W1 ${fmt(result.W1_ms, 1)} ms (x${fmt(result.W1_ratio)} PyTorch fastest, x${fmt(result.W1_ratio_default)} default)`,
  );
  say(
    `W2 ${fmt(result.W2_ms, 1)} ms (x${fmt(result.W2_ratio)} PyTorch fastest, x${fmt(result.W2_ratio_default)} default), peak RSS x${fmt(result.W2_rss_ratio)}`,
  );
  say(
    `W3 ${fmt(result.W3_ms, 1)} ms (x${fmt(result.W3_ratio)} PyTorch fastest, x${fmt(result.W3_ratio_default)} default)`,
  );
  say(
    `sgemm ${fmt(sgemmGflops, 1)} GFLOP/s, conv 256->256 ${fmt(result.conv_gflops, 1)} GFLOP/s (direct-conv FLOPs / time; DFT path) (${fmt((result.conv_vs_sgemm ?? 0) * 100, 0)}% of sgemm); W1 is x${fmt(result.W1_vs_floor)} its sgemm floor of ${fmt(result.W1_floor_ms, 0)} ms`,
  );
  const builtinRow = (w: 'W1' | 'W2' | 'W3') => {
    const ms = result[`${w}_builtin_ms`];
    const r = result[`${w}_builtin_vs_blas`];
    say(`${w} (built-in GEMM) ${fmt(ms, 1)} ms (x${fmt(r)} OpenBLAS${hasBlas ? '' : ': no CBLAS in this build'})`);
  };
  builtinRow('W1');
  builtinRow('W2');
  builtinRow('W3');
  say(`sgemm (built-in GEMM) ${fmt(result.sgemm_builtin_gflops, 1)} GFLOP/s`);
  if (json) console.log(JSON.stringify(result));
}

main();
