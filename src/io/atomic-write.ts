// Atomic file replacement: write to a temporary file in the destination's folder, fsync it,
// then rename it over the destination (rename is atomic within one file system). Readers see
// either the old file or the complete new one, and a failure part-way leaves no partial file
// (the temporary file is removed and the error rethrown).

import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

/** Writes the chunks produced by `produce` (called lazily, in order) to `target` atomically. */
export function writeFileAtomic(target: string, produce: () => Iterable<Uint8Array>): void {
  const dir = path.dirname(path.resolve(target));
  const temp = path.join(dir, `.${path.basename(target)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  let fd: number | undefined = fs.openSync(temp, 'wx');
  try {
    for (const chunk of produce()) writeAll(fd, chunk);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(temp, target);
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(temp, { force: true });
    throw err;
  }
}

function writeAll(fd: number, chunk: Uint8Array): void {
  let done = 0;
  while (done < chunk.length) done += fs.writeSync(fd, chunk, done, chunk.length - done);
}
