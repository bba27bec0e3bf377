// `npm run bench:train`: seconds per training step (batch 100) and per full test pass (10,000
// images), images/s and peak RSS, for ShallowCapsNet (+FCDecoder 16 784) and DeepCaps (28 1 10 32,
// +ConvDecoder28 32 1) on Fashion-MNIST, ours and, when /usr/bin/python3 has torch, the
// reference implementation's (bench/torch_train.py, with its model classes from a temporary
// extraction of the reference: QCAPS_REFERENCE_DIR, else `git archive` of the mirror).
// Like bench/core.ts: every measurement in a child process of its own (clean peak RSS),
// OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE unset, threads 1 and 2 measured and the faster kept,
// PyTorch at its fastest setting (the faster of 1 and 2 threads, malloc reusing memory).
// A training step is zero_grad + forward + decoder + loss + backward + Adam step + lr update,
// the batch (augmented) prepared beforehand; a test pass is evaluateModel / the reference's test
// loop in eval mode (PyTorch under no_grad), after a warm-up batch.
//   npm run bench:train [-- --json] [--runs 10] [--deep-runs 5] [--torch-deep-runs 3]
//                       [--test-runs 1] [--threads 1,2] [--no-torch] [--data DIR]
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DataLoader, DEFAULT_DATA_DIRS, loadDataset } from '../src/data/index.js';
import { buildDecoder, buildModel, trainingStep } from '../src/models/index.js';
import { kernels } from '../src/tensor/kernels.js';
import { Adam } from '../src/tensor/ops/adam.js';
import { give } from '../src/tensor/pool.js';
import { countCorrect, evaluateModel, learningRate } from '../src/train/index.js';
import { MALLOC_REUSE, arg, median, peakRssMb, runChild } from './common.js';

const MIRROR = '/work/.mirror/bbussolino+Q-CapsNets/repo';

const CONFIGS = {
  shallow: { model: 'ShallowCapsNet', modelArgs: [28, 1, 10, 16], decoder: 'FCDecoder', decoderArgs: [16, 784] },
  deepcaps: { model: 'DeepCaps', modelArgs: [28, 1, 10, 32], decoder: 'ConvDecoder28', decoderArgs: [32, 1] },
} as const;
type ConfigName = keyof typeof CONFIGS;
type Mode = 'train' | 'test';

interface Measurement {
  name: string;
  threads: number;
  runs: number;
  /** train: median ms per step; test: median seconds per pass */
  median_ms?: number;
  median_s?: number;
  images_per_s: number;
  peak_rss_mb: number;
  [k: string]: unknown;
}

/** Child mode: one measurement, printed as a JSON line. */
async function child(config: ConfigName, mode: Mode, threads: number, runs: number, dataDir: string): Promise<void> {
  kernels().setThreads(threads);
  const c = CONFIGS[config];
  const model = buildModel(c.model, c.modelArgs, { seed: 42 });
  const batch = 100;
  let out: Measurement;
  if (mode === 'train') {
    const decoder = buildDecoder(c.decoder, c.decoderArgs, { seed: 42 });
    const train = loadDataset('fashion-mnist', 'train', { dataDir });
    const loader = new DataLoader(train, { batchSize: batch, seed: 42, prefetch: false, reuseBuffers: false });
    const params = [...model.parameters(), ...decoder.parameters()];
    const adam = new Adam(
      params.map((p) => p.param),
      { lr: 0.001 },
    );
    const grads = params.map((p) => p.grad);
    const times: number[] = [];
    for (let r = 0; r <= runs; r++) {
      const b = loader.batchAt(0, r);
      const t0 = process.hrtime.bigint();
      model.zeroGrad();
      decoder.zeroGrad();
      adam.lr = learningRate(r, 0.001, 0.96, 2000);
      const res = trainingStep(model, decoder, b.images, b.labels, { regularizationScale: 0.0005 });
      adam.update(grads);
      countCorrect(res.caps, b.labels);
      give(res.caps.data);
      if (r > 0) times.push(Number(process.hrtime.bigint() - t0) / 1e6); // r = 0 is the warm-up
    }
    const ms = median(times);
    out = {
      name: `${config}-train`,
      threads,
      runs,
      median_ms: ms,
      runs_ms: times,
      images_per_s: batch / (ms / 1000),
      peak_rss_mb: peakRssMb(),
    };
  } else {
    const test = loadDataset('fashion-mnist', 'test', { dataDir });
    model.eval();
    const warm = new DataLoader(test, { batchSize: batch, shuffle: false, augment: null }).batchAt(0, 0);
    give(model.forward(warm.images, false).data);
    const times: number[] = [];
    let accuracy = 0;
    for (let r = 0; r < runs; r++) {
      const t0 = process.hrtime.bigint();
      accuracy = (await evaluateModel(model, test, batch)).accuracy;
      times.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    const s = median(times);
    out = {
      name: `${config}-test`,
      threads,
      runs,
      median_s: s,
      runs_s: times,
      images_per_s: test.count / s,
      peak_rss_mb: peakRssMb(),
      accuracy,
    };
  }
  console.log(JSON.stringify(out));
}

function torchAvailable(): boolean {
  if (!existsSync('/usr/bin/python3')) return false;
  return spawnSync('/usr/bin/python3', ['-c', 'import torch, numpy'], { stdio: 'ignore' }).status === 0;
}

/** The reference's model classes: QCAPS_REFERENCE_DIR, else the mirror extracted to a temp dir. */
function referenceDir(): { dir: string; cleanup: () => void; from: string } | null {
  const given = process.env.QCAPS_REFERENCE_DIR;
  if (given) {
    return existsSync(join(given, 'full_precision_models.py'))
      ? { dir: given, cleanup: () => undefined, from: `QCAPS_REFERENCE_DIR=${given}` }
      : null;
  }
  if (!existsSync(MIRROR)) return null;
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-reference-'));
  const r = spawnSync('sh', ['-c', `git -C "${MIRROR}" archive HEAD | tar -x -C "${dir}"`], { encoding: 'utf8' });
  if (r.status !== 0 || !existsSync(join(dir, 'full_precision_models.py'))) {
    rmSync(dir, { recursive: true, force: true });
    process.stderr.write(`bench:train: could not extract the reference from ${MIRROR}: ${r.stderr}\n`);
    return null;
  }
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }), from: `${MIRROR} (git archive HEAD)` };
}

const value = (m: Measurement | null | undefined, mode: Mode): number | null =>
  m ? ((mode === 'train' ? m.median_ms : m.median_s) ?? null) : null;

async function main(): Promise<void> {
  if (process.argv.includes('--child')) {
    const [config, mode] = arg('child', 'shallow-train').split('-') as [ConfigName, Mode];
    await child(config, mode, Number(arg('threads', '1')), Number(arg('runs', '10')), arg('data', ''));
    return;
  }
  const json = process.argv.includes('--json');
  const runs = Math.max(1, Number(arg('runs', '10')));
  const deepRuns = Math.max(1, Number(arg('deep-runs', '5')));
  const torchDeepRuns = Math.max(1, Number(arg('torch-deep-runs', '3')));
  const testRuns = Math.max(1, Number(arg('test-runs', '1')));
  const dataDir = arg('data', DEFAULT_DATA_DIRS['fashion-mnist']);
  const threadList = arg('threads', '1,2').split(',').map(Number);
  const env: NodeJS.ProcessEnv = { ...process.env, QCAPS_QUIET: '1' };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const self = fileURLToPath(import.meta.url);
  const say = (s: string) => process.stdout.write(s + '\n');
  if (!existsSync(dataDir)) throw new Error(`bench:train: Fashion-MNIST not found in ${dataDir} (--data DIR)`);
  say(`qcapsnets bench:train: Fashion-MNIST from ${dataDir}, batch 100, each measurement in its own process`);
  say(
    `  train step: median of ${runs} (ShallowCapsNet) / ${deepRuns} (DeepCaps; PyTorch ${torchDeepRuns}) steps after a warm-up; test pass: median of ${testRuns} full pass(es) of 10,000 images after a warm-up batch`,
  );

  const jobs: [ConfigName, Mode][] = [
    ['shallow', 'train'],
    ['shallow', 'test'],
    ['deepcaps', 'train'],
    ['deepcaps', 'test'],
  ];
  const runsFor = (c: ConfigName, m: Mode, torch: boolean) =>
    m === 'test' ? testRuns : c === 'shallow' ? runs : torch ? torchDeepRuns : deepRuns;
  const fmt = (m: Measurement, mode: Mode) =>
    mode === 'train' ? `${m.median_ms!.toFixed(0)} ms/step` : `${m.median_s!.toFixed(1)} s/pass`;

  const ours: Partial<Record<string, Measurement>> = {};
  for (const [c, m] of jobs) {
    for (const t of threadList) {
      const r = runChild<Measurement>(
        'bench:train',
        process.execPath,
        [
          self,
          '--child',
          `${c}-${m}`,
          '--threads',
          String(t),
          '--runs',
          String(runsFor(c, m, false)),
          '--data',
          dataDir,
        ],
        env,
      );
      if (!r) continue;
      say(
        `  ours   ${`${c} ${m}`.padEnd(15)} threads ${t}: ${fmt(r, m)}  ${r.images_per_s.toFixed(0)} img/s  peak RSS ${r.peak_rss_mb.toFixed(0)} MB`,
      );
      const key = `${c}-${m}`;
      if (!ours[key] || value(r, m)! < value(ours[key], m)!) ours[key] = r;
    }
  }

  const torch: Partial<Record<string, Measurement>> = {};
  const ref = !process.argv.includes('--no-torch') && torchAvailable() ? referenceDir() : null;
  if (ref) {
    say(`  PyTorch: reference classes from ${ref.from}`);
    try {
      const script = fileURLToPath(new URL('../../bench/torch_train.py', import.meta.url));
      for (const [c, m] of jobs) {
        for (const t of threadList) {
          const r = runChild<Measurement>(
            'bench:train',
            '/usr/bin/python3',
            [script, c, m, String(t), String(runsFor(c, m, true)), dataDir, ref.dir],
            { ...env, ...MALLOC_REUSE },
          );
          if (!r) continue;
          say(
            `  torch  ${`${c} ${m}`.padEnd(15)} threads ${t}: ${fmt(r, m)}  ${r.images_per_s.toFixed(0)} img/s  peak RSS ${r.peak_rss_mb.toFixed(0)} MB`,
          );
          const key = `${c}-${m}`;
          if (!torch[key] || value(r, m)! < value(torch[key], m)!) torch[key] = r;
        }
      }
    } finally {
      ref.cleanup();
    }
  } else {
    say('  PyTorch not measured (no torch in /usr/bin/python3, no reference checkout, or --no-torch): ratios are null');
  }

  const result: Record<string, number | string | null> = {};
  for (const [c, m] of jobs) {
    const key = `${c}-${m}`;
    const name = m === 'train' ? `${c}_train_step_ms` : `${c}_test_pass_s`;
    const o = value(ours[key], m);
    const p = value(torch[key], m);
    result[name] = o;
    result[name.replace(/_(ms|s)$/, '_ratio')] = o !== null && p !== null ? o / p : null;
  }
  for (const [c, m] of jobs) {
    const key = `${c}-${m}`;
    const prefix = m === 'train' ? `${c}_train` : `${c}_test`;
    result[`${prefix}_images_per_s`] = ours[key]?.images_per_s ?? null;
    result[`${prefix}_peak_rss_mb`] = ours[key]?.peak_rss_mb ?? null;
    result[`${prefix}_threads`] = ours[key]?.threads ?? null;
    result[`torch_${m === 'train' ? `${c}_train_step_ms` : `${c}_test_pass_s`}`] = value(torch[key], m);
    result[`torch_${prefix}_images_per_s`] = torch[key]?.images_per_s ?? null;
    result[`torch_${prefix}_peak_rss_mb`] = torch[key]?.peak_rss_mb ?? null;
    result[`torch_${prefix}_threads`] = torch[key]?.threads ?? null;
  }
  result.threads = ours['shallow-train']?.threads ?? null;
  result.torch_deepcaps_train_runs = ref ? torchDeepRuns : null;
  result.test_runs = testRuns;

  const f = (v: number | string | null, d = 2) => (typeof v === 'number' ? v.toFixed(d) : 'n/a');
  say('');
  say('                       ours          PyTorch       ours / PyTorch   target');
  const row = (label: string, key: string, unit: string, target: string, d: number) =>
    say(
      `${label.padEnd(22)} ${`${f(result[key], d)} ${unit}`.padEnd(13)} ${`${f(result[`torch_${key}`], d)} ${unit}`.padEnd(13)} ${f(result[key.replace(/_(ms|s)$/, '_ratio')]).padEnd(16)} ${target}`,
    );
  row('ShallowCapsNet step', 'shallow_train_step_ms', 'ms', '<= 0.6', 0);
  row('ShallowCapsNet test', 'shallow_test_pass_s', 's', '<= 0.5', 1);
  row('DeepCaps step', 'deepcaps_train_step_ms', 'ms', '<= 0.5', 0);
  row('DeepCaps test', 'deepcaps_test_pass_s', 's', '<= 0.5', 1);
  say(`DeepCaps training peak RSS ${f(result.deepcaps_train_peak_rss_mb, 0)} MB (target < 4000 MB)`);
  if (json) console.log(JSON.stringify(result));
}

await main();
