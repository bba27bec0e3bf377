// Where a run will write: a folder it can write into, or one it can create (its nearest existing
// parent is a writable folder). Checked before long work starts, so that a bad output folder is
// one error at once rather than a failure after the work.
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';

/** Throws unless `dir` is, or can be created as, a writable folder. `what` names the folder as
 *  the caller knows it (a flag and its value, an export's output folder). */
export function checkWritableFolder(dir: string, what: string): void {
  let at = resolve(dir);
  while (!existsSync(at)) {
    const up = dirname(at);
    if (up === at) return;
    at = up;
  }
  if (!statSync(at).isDirectory()) throw new Error(`${what}: ${at} is a file, not a folder`);
  try {
    accessSync(at, constants.W_OK);
  } catch (err) {
    const readOnly = (err as NodeJS.ErrnoException).code === 'EROFS' ? ' (a read-only file system)' : '';
    throw new Error(`${what}: the folder ${at} is not writable${readOnly}`, { cause: err });
  }
}
