// The optional Debian packages a few tests need: on a machine without one the test skips with
// the package to install; under its QCAPS_REQUIRE_* variable (CI) the test runs and fails with
// that reason instead of skipping.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CHROMIUM, FASHION_MNIST, PYTORCH, type Requirement, requirePackages, skipUnless } from './requirements.js';

const absent = (env: string): Requirement => ({
  what: 'the thing',
  apt: 'thing-package',
  env,
  present: () => false,
});

test('a missing package is a skip naming its apt package, unless its QCAPS_REQUIRE_* is set', () => {
  const env = 'QCAPS_REQUIRE_TEST_THING';
  delete process.env[env];
  assert.equal(skipUnless(absent(env)), 'needs the thing: apt-get install thing-package');
  assert.throws(
    () => requirePackages(absent(env)),
    /QCAPS_REQUIRE_TEST_THING=1 but this machine lacks the thing: apt-get install thing-package/,
  );
  process.env[env] = '1';
  try {
    assert.equal(skipUnless(absent(env)), false, 'the test runs, and requirePackages fails it');
  } finally {
    delete process.env[env];
  }
  assert.equal(skipUnless({ ...absent(env), present: () => true }), false);
});

test('each optional package has its own variable, and .ci/run demands each one', async () => {
  const { readFileSync } = await import('node:fs');
  const ci = readFileSync(new URL('../../.ci/run', import.meta.url), 'utf8');
  for (const r of [FASHION_MNIST, CHROMIUM, PYTORCH]) {
    assert.match(ci, new RegExp(`\\b${r.apt}\\b`), `.ci/run installs ${r.apt}`);
    assert.match(ci, new RegExp(`\\b${r.env}=1\\b`), `.ci/run sets ${r.env}=1`);
  }
});
