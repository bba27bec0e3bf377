// Builds the native addon with node-gyp. A failed build never fails `npm install`:
// the library then runs on its TypeScript kernels and says so once at start-up.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

if (process.env.QCAPS_SKIP_NATIVE_BUILD === '1') {
  console.log('qcapsnets: QCAPS_SKIP_NATIVE_BUILD=1, native addon not built');
  process.exit(0);
}
const require = createRequire(import.meta.url);
let gyp;
try {
  gyp = require.resolve('node-gyp/bin/node-gyp.js');
} catch {
  gyp = null;
}
// Build against the headers of the running Node when they are installed beside it, so
// that node-gyp needs no download (npm's `nodedir` setting, when present, wins).
const extra = [];
const nodeRoot = join(dirname(process.execPath), '..');
if (!process.env.npm_config_nodedir && existsSync(join(nodeRoot, 'include', 'node', 'node_api.h'))) {
  extra.push(`--nodedir=${nodeRoot}`);
}
const args = gyp ? [gyp, 'rebuild', ...extra] : null;
const result = args
  ? spawnSync(process.execPath, args, { stdio: 'inherit' })
  : spawnSync('node-gyp', ['rebuild', ...extra], { stdio: 'inherit', shell: true });
if (result.status !== 0 || !existsSync('build/Release/qcaps_native.node')) {
  console.warn(
    'qcapsnets: WARNING: the native addon did not build; the TypeScript kernels will be used ' +
      '(slow). Install a C++ compiler and OpenBLAS (Debian: apt-get install -y g++ libopenblas-dev) ' +
      'and run `npm rebuild qcapsnets` to get the fast kernels.',
  );
}
process.exit(0);
