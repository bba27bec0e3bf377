// What some tests need from the machine beyond Node and a C++ compiler: a Debian package. On a
// bare machine such a test skips, saying which package to install; where its QCAPS_REQUIRE_*
// variable is 1 (CI, .ci/run) a missing package fails the test instead, as
// QCAPS_REQUIRE_NATIVE=1 does for the native addon. Nothing here runs at module load beyond
// existence checks, so a test file never dies before its tests are reported.
import { existsSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

export interface Requirement {
  /** what the tests need, in words */
  what: string;
  /** the Debian package that provides it */
  apt: string;
  /** the variable under which its absence is a failure */
  env: string;
  /** whether this machine has it (checked once, lazily) */
  present(): boolean;
}

function once(check: () => boolean): () => boolean {
  let known: boolean | null = null;
  return () => (known ??= check());
}

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

export const FASHION_MNIST: Requirement = {
  what: `Fashion-MNIST in ${FASHION_MNIST_DIR}`,
  apt: 'dataset-fashion-mnist',
  env: 'QCAPS_REQUIRE_FASHION_MNIST',
  present: once(() =>
    [
      'train-images-idx3-ubyte.gz',
      't10k-images-idx3-ubyte.gz',
      'train-labels-idx1-ubyte.gz',
      't10k-labels-idx1-ubyte.gz',
    ].every((f) => existsSync(`${FASHION_MNIST_DIR}/${f}`)),
  ),
};

export const CHROMIUM_PATH = '/usr/bin/chromium';

export const CHROMIUM: Requirement = {
  what: `headless Chromium at ${CHROMIUM_PATH}`,
  apt: 'chromium',
  env: 'QCAPS_REQUIRE_CHROMIUM',
  // the path alone is not enough: Debian's /usr/bin/chromium is a script that runs /usr/lib/chromium
  present: once(
    () =>
      existsSync(CHROMIUM_PATH) &&
      spawnSync(CHROMIUM_PATH, ['--version'], { stdio: 'ignore', timeout: 60_000 }).status === 0,
  ),
};

export const SYSTEM_PYTHON = '/usr/bin/python3';

export const PYTORCH: Requirement = {
  what: `PyTorch for ${SYSTEM_PYTHON}`,
  apt: 'python3-torch',
  env: 'QCAPS_REQUIRE_PYTORCH',
  present: once(
    () =>
      existsSync(SYSTEM_PYTHON) && spawnSync(SYSTEM_PYTHON, ['-c', 'import torch'], { stdio: 'ignore' }).status === 0,
  ),
};

/** The reason a test needing `reqs` skips here, or false when it runs: the machine has them
 *  all, or a missing one's QCAPS_REQUIRE_* is set (then the test runs and requirePackages fails
 *  it with the reason). For node:test's `{ skip }` option of a test or a describe block. */
export function skipUnless(...reqs: Requirement[]): string | false {
  const missing = reqs.filter((r) => !r.present());
  if (missing.length === 0 || missing.some((r) => process.env[r.env] === '1')) return false;
  return missing.map((r) => `needs ${r.what}: apt-get install ${r.apt}`).join('; ');
}

/** Throws, naming the package and the variable, when one of `reqs` is missing: the first line of
 *  a test that runs under its QCAPS_REQUIRE_* variable (see skipUnless). */
export function requirePackages(...reqs: Requirement[]): void {
  for (const r of reqs)
    if (!r.present())
      throw new Error(`${r.env}=1 but this machine lacks ${r.what}: apt-get install ${r.apt} (as .ci/run does)`);
}
