// `qcapsnets report RUN.json [--output FILE]`: the HTML page of a search, sweep, sensitivity or
// fine-tuning run from its JSON (src/report/), written next to it (RUN.html) unless --output says where.
// A file that is not a run's JSON is one error naming it, before anything is written.
import { mkdirSync } from 'node:fs';
import { readRunJson, type RunKind, writeReportHtml } from '../report/index.js';
import { checkWritableFolder } from '../io/writable-folder.js';
import { dirname, resolve } from 'node:path';

export function runReportJob(
  positional: readonly string[],
  output: string | null,
  log: (line: string) => void,
): number {
  if (positional.length !== 1)
    throw new Error(
      `report: expected one run JSON (qcapsnets report RUN.json [--output FILE]), got ${positional.length ? positional.join(' ') : 'none'}`,
    );
  const file = positional[0];
  let kind: RunKind;
  let json: unknown;
  try {
    ({ kind, json } = readRunJson(file));
  } catch (err) {
    throw new Error(`report ${(err as Error).message}`, { cause: err });
  }
  const out = output ?? file.replace(/\.json$/i, '') + '.html';
  if (resolve(out) === resolve(file))
    throw new Error(`--output ${out}: that is the run's JSON itself; name an .html file`);
  checkWritableFolder(dirname(out), `--output ${dirname(out)}`);
  mkdirSync(dirname(out), { recursive: true });
  writeReportHtml(out, json, file);
  log(`${kind} report of ${file}: ${out}`);
  return 0;
}
