// A set of output files that a reader can trust to be whole: every file is first written into
// a temporary folder beside the outputs, `.<stem>.<pid>.<hex>.tmp/`, and only when all are
// written are they renamed into place (rename is atomic within one file system), the `last`
// file last; the set's earlier `last` file is removed before the first rename. So the `last`
// file (a search's JSON, which lists the others) is there only when the whole set is: a run
// killed or stopped by a full disk while writing leaves the temporary folder and no new
// outputs, and one killed while renaming leaves no `last` file. Temporary folders of killed
// runs (their pid no longer runs) are removed when the next set of the same stem is written.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { staleTempNames } from './atomic-write.js';

export class OutputSet {
  /** the temporary folder */
  readonly temp: string;
  private readonly files: { temp: string; final: string }[] = [];

  /** `dir`: the outputs' folder (created); `stem`: names the temporary folder. */
  constructor(
    readonly dir: string,
    stem: string,
  ) {
    fs.mkdirSync(dir, { recursive: true });
    removeStaleTempFolders(dir, stem);
    this.temp = path.join(dir, `.${stem}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
    fs.mkdirSync(this.temp);
  }

  /** Runs `write` with the temporary path of the output `final` (a file in `dir`); an error
   *  that names the temporary path names `final` instead. */
  write<T>(final: string, write: (file: string) => T): T {
    if (path.resolve(path.dirname(final)) !== path.resolve(this.dir))
      throw new Error(`internal: output ${final} is not in ${this.dir}`);
    const temp = path.join(this.temp, path.basename(final));
    this.files.push({ temp, final });
    try {
      return write(temp);
    } catch (err) {
      if (err instanceof Error) err.message = err.message.split(temp).join(final);
      throw err;
    }
  }

  /** Moves the files into place, `last` (one of them) last, and removes the temporary folder. */
  commit(last: string): void {
    const end = this.files.findIndex((f) => f.final === last);
    if (end < 0) throw new Error(`internal: ${last} is not an output of this set`);
    const order = [...this.files.slice(0, end), ...this.files.slice(end + 1), this.files[end]];
    fs.rmSync(last, { force: true });
    for (const f of order) fs.renameSync(f.temp, f.final);
    fs.rmSync(this.temp, { recursive: true, force: true });
  }

  /** Removes the temporary folder and what was written into it. */
  abort(): void {
    fs.rmSync(this.temp, { recursive: true, force: true });
  }
}

/** Removes the folders `.<stem>.<pid>.<hex>.tmp` (and `.tmp.old`) in `dir` whose process no
 *  longer runs: what a killed OutputSet or C export left. Only real folders of that exact
 *  pattern are removed, never a file or a link. */
export function removeStaleTempFolders(dir: string, stem: string): void {
  for (const name of staleTempNames(dir, stem, /^\.tmp(\.old)?$/)) {
    const folder = path.join(dir, name);
    if (fs.lstatSync(folder, { throwIfNoEntry: false })?.isDirectory())
      fs.rmSync(folder, { recursive: true, force: true });
  }
}
