// The library as a user gets it: `npm pack`, `npm install <tarball>` into an empty project (the
// package's install script builds its native addon there), then the README's example program,
// compiled with tsc against the installed type declarations and run with node.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

/** The TypeScript block after `<!-- library-example -->` in README.md. */
function readmeExample(): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const m = /<!-- library-example -->\s*```ts\n([\s\S]*?)```/.exec(readme);
  assert.ok(m, 'README.md has a ```ts block after <!-- library-example -->');
  return m[1];
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', env: { ...process.env, ...env }, timeout: 600_000 });
  assert.equal(
    r.status,
    0,
    `${cmd} ${args.join(' ')} (in ${cwd}) exited with ${r.status ?? r.signal}:\n${r.stdout}\n${r.stderr}`,
  );
  return r.stdout;
}

test('the README example runs against the packed and installed package', { timeout: 900_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcapsnets-package-'));
  try {
    // dist/ is built by `npm test` already: pack it as it is
    run(npm, ['pack', '--ignore-scripts', '--pack-destination', dir, '--silent'], root);
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'));
    assert.ok(tarball, 'npm pack wrote a tarball');
    const app = join(dir, 'app');
    execFileSync('mkdir', ['-p', app]);
    writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
    run(npm, ['install', '--no-audit', '--no-fund', '--prefer-offline', join(dir, tarball)], app);

    // the installed package is importable by name, with its native kernels where they must be
    const info = run(
      process.execPath,
      ['--input-type=module', '-e', "import('qcapsnets').then((q) => console.log(q.backendInfo()))"],
      app,
      {
        QCAPS_QUIET: '1',
      },
    );
    if (process.env.QCAPS_REQUIRE_NATIVE === '1') assert.match(info, /^native kernels/, 'the install built the addon');

    writeFileSync(join(app, 'example.ts'), readmeExample());
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          skipLibCheck: true,
          types: ['node'],
          typeRoots: [join(root, 'node_modules', '@types')],
        },
        files: ['example.ts'],
      }),
    );
    run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json'], app);
    const out = run(process.execPath, ['example.js'], app, { QCAPS_QUIET: '1' });

    const fp = /^full precision: ([\d.]+)%$/m.exec(out);
    assert.ok(fp, `the example printed its full-precision accuracy:\n${out}`);
    assert.ok(Number(fp[1]) > 10, `a trained model beats chance (${fp[1]}%)`);
    assert.match(out, /^6 bits: [\d.]+%, [\d.]+ MB of weights$/m);
    assert.match(out, /^phases: full-precision step1 step2 (step3A step4A|step3B)$/m);
    assert.match(out, /^(satisfied|memory|accuracy): weight bits \[\d+,\d+,\d+\], [\d.]+%, [\d.]+ MB$/m);
    assert.ok(readdirSync(join(app, 'out')).includes('model.pt'), 'the example saved its model');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
