// Atomic file replacement: write to a temporary file in the destination's folder, fsync it,
// then rename it over the destination (rename is atomic within one file system). Readers see
// either the old file or the complete new one, and a failure part-way leaves no partial file
// (the temporary file is removed and the error rethrown; a file-system error names the
// destination). Temporary files of the same destination left by a process that was killed
// mid-write (SIGKILL leaves no chance to clean up) are removed by the next write.

import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

/** Writes the chunks produced by `produce` (called lazily, in order) to `target` atomically. */
export function writeFileAtomic(target: string, produce: () => Iterable<Uint8Array>): void {
  const dir = path.dirname(path.resolve(target));
  const base = path.basename(target);
  removeStaleTemps(dir, base);
  const temp = path.join(dir, `.${base}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = fs.openSync(temp, 'wx');
    for (const chunk of produce()) writeAll(fd, chunk);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(temp, target);
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(temp, { force: true });
    throw namedError(target, err);
  }
}

/** A file-system error (ENOSPC, EROFS, EACCES, ...) says which file it was writing; other
 *  errors (the producer's own) pass unchanged. */
function namedError(target: string, err: unknown): unknown {
  const e = err as NodeJS.ErrnoException;
  if (!(e instanceof Error) || typeof e.code !== 'string') return err;
  return Object.assign(new Error(`${target}: cannot write it: ${e.message}`, { cause: e }), { code: e.code });
}

/** Removes `.<base>.<pid>.<hex>.tmp` files whose writing process no longer runs. */
function removeStaleTemps(dir: string, base: string): void {
  for (const name of staleTempNames(dir, base, /^\.tmp$/)) {
    const file = path.join(dir, name);
    if (fs.lstatSync(file, { throwIfNoEntry: false })?.isFile()) fs.rmSync(file, { force: true });
  }
}

/** The names in `dir` of the form `.<base>.<pid>.<8 hex digits><tail>` (`tail` matched by
 *  `tail`) whose pid is not this process and runs no more: temporaries of this tool that a
 *  killed process (SIGKILL leaves no chance to clean up) left behind. */
export function staleTempNames(dir: string, base: string, tail: RegExp): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return []; // the write itself reports a missing folder
  }
  const prefix = `.${base}.`;
  return names.filter((name) => {
    if (!name.startsWith(prefix)) return false;
    const m = /^(\d+)\.[0-9a-f]{8}(.*)$/.exec(name.slice(prefix.length));
    if (!m || !tail.test(m[2])) return false;
    const pid = Number(m[1]);
    return pid !== process.pid && !alive(pid);
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, another user's
  }
}

function writeAll(fd: number, chunk: Uint8Array): void {
  let done = 0;
  while (done < chunk.length) done += fs.writeSync(fd, chunk, done, chunk.length - done);
}
