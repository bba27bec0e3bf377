// downloadDataset(name, dir): fetches a dataset's canonical files (DATASET_SOURCES) over
// HTTP(S) with node's fetch, verifies each against its published MD5 / SHA-256, and only
// then renames it into place, so `dir` never holds a partial or unverified file: bytes go
// to a hidden temporary file that is deleted on any failure. The CIFAR-10 tarball is
// extracted (only its known members, each written the same way) and then removed.
// Files already present with the right checksum are not fetched again; temporary files left by a
// download that was killed outright are removed by the next one into the same folder.

import { createHash, randomBytes } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { DATASET_SOURCES, type Checksum, type DatasetName, type RemoteFile } from './sources.js';
import { readTar } from './tar.js';

export interface DownloadOptions {
  /** Replaces the dataset's base URL (a mirror, or a local server in tests); file names are appended. */
  baseUrl?: string;
  /** Checksums by file name, replacing the published ones (tests serve their own files). */
  checksums?: Record<string, Checksum>;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

/** Downloads `name` into `dir` (created if needed); returns the paths of the dataset files now in place. */
export async function downloadDataset(
  name: DatasetName,
  dir: string,
  options: DownloadOptions = {},
): Promise<string[]> {
  const source = DATASET_SOURCES[name];
  if (!source)
    throw new Error(
      `downloadDataset: unknown dataset "${String(name)}"; expected one of ${Object.keys(DATASET_SOURCES).join(', ')}`,
    );
  const baseUrl = withSlash(options.baseUrl ?? source.baseUrl);
  const log = options.log ?? (() => undefined);
  await mkdir(dir, { recursive: true });
  await removeStaleParts(dir);
  const written: string[] = [];
  for (const file of source.files) {
    const checksum = options.checksums?.[file.name] ?? file.checksum;
    if (!checksum.md5 && !checksum.sha256)
      throw new Error(`downloadDataset: no checksum for ${file.name}; expected md5 or sha256`);
    if (file.extract) {
      written.push(...(await downloadArchive(baseUrl + file.name, dir, file, checksum, log)));
      continue;
    }
    const target = join(dir, file.name);
    if (existsSync(target) && (await fileMatches(target, checksum))) {
      log(`${target}: present, checksum ok`);
    } else {
      const temp = await fetchVerified(baseUrl + file.name, dir, checksum, log);
      await rename(temp, target);
      log(`${target}: downloaded and verified`);
    }
    written.push(target);
  }
  return written;
}

function withSlash(url: string): string {
  return url.endsWith('/') ? url : `${url}/`;
}

/** Removes `.<name>.part-<pid>-<hex>` files of downloads whose process no longer runs (one
 *  killed outright leaves its temporary file behind). */
async function removeStaleParts(dir: string): Promise<void> {
  for (const name of await readdir(dir)) {
    const m = /^\..+\.part-(\d+)-[0-9a-f]{8}$/.exec(name);
    if (m && Number(m[1]) !== process.pid && !running(Number(m[1]))) await rm(join(dir, name), { force: true });
  }
}

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // exists, another user's
  }
}

function tempPath(dir: string, name: string): string {
  return join(dir, `.${name}.part-${process.pid}-${randomBytes(4).toString('hex')}`);
}

function hashers(checksum: Checksum): { md5?: ReturnType<typeof createHash>; sha256?: ReturnType<typeof createHash> } {
  return {
    md5: checksum.md5 ? createHash('md5') : undefined,
    sha256: checksum.sha256 ? createHash('sha256') : undefined,
  };
}

/** Empty when the digests match, else a description of the mismatch. */
function mismatch(h: ReturnType<typeof hashers>, checksum: Checksum): string {
  const problems: string[] = [];
  for (const algo of ['md5', 'sha256'] as const) {
    const want = checksum[algo];
    const hash = h[algo];
    if (want && hash) {
      const got = hash.digest('hex');
      if (got !== want.toLowerCase()) problems.push(`${algo} ${got}, expected ${want.toLowerCase()}`);
    }
  }
  return problems.join('; ');
}

async function fileMatches(path: string, checksum: Checksum): Promise<boolean> {
  const h = hashers(checksum);
  for await (const chunk of createReadStream(path)) {
    h.md5?.update(chunk as Buffer);
    h.sha256?.update(chunk as Buffer);
  }
  return mismatch(h, checksum) === '';
}

/** Streams `url` into a temporary file in `dir`, verifies it, and returns its path; deletes it on any failure. */
async function fetchVerified(
  url: string,
  dir: string,
  checksum: Checksum,
  log: (line: string) => void,
): Promise<string> {
  const temp = tempPath(dir, basename(new URL(url).pathname));
  log(`fetching ${url}`);
  try {
    let response: Response;
    try {
      response = await fetch(url);
    } catch (err) {
      const cause = (err as { cause?: { message?: string } }).cause?.message;
      throw new Error(`${url}: download failed (${(err as Error).message}${cause ? `: ${cause}` : ''})`, {
        cause: err,
      });
    }
    if (!response.ok || !response.body) {
      throw new Error(`${url}: download failed with HTTP ${response.status} ${response.statusText}; expected 200`);
    }
    const h = hashers(checksum);
    const handle = await open(temp, 'wx');
    let bytes = 0;
    try {
      const reader = response.body.getReader();
      for (;;) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (err) {
          // the connection dropped mid-file (fetch says only 'terminated')
          const cause = (err as { cause?: { message?: string } }).cause?.message;
          throw new Error(
            `${url}: download interrupted after ${bytes} bytes (${(err as Error).message}${cause ? `: ${cause}` : ''}); nothing was kept, run it again`,
            { cause: err },
          );
        }
        const { done, value } = chunk;
        if (done) break;
        h.md5?.update(value);
        h.sha256?.update(value);
        await handle.write(value);
        bytes += value.length;
      }
      await handle.sync();
    } finally {
      await handle.close();
    }
    const problem = mismatch(h, checksum);
    if (problem) throw new Error(`${url}: checksum mismatch (${problem}) after ${bytes} bytes; the file was not kept`);
    return temp;
  } catch (err) {
    await rm(temp, { force: true });
    throw err;
  }
}

/** Downloads a .tar.gz, verifies it, extracts its known members into dir/<into>, and deletes it. */
async function downloadArchive(
  url: string,
  dir: string,
  file: RemoteFile,
  checksum: Checksum,
  log: (line: string) => void,
): Promise<string[]> {
  const { members, into } = file.extract!;
  const outDir = join(dir, into);
  const targets = members.map((m) => join(outDir, m));
  if (targets.every((t) => existsSync(t))) {
    log(`${outDir}: all ${members.length} files present`);
    return targets;
  }
  const archive = await fetchVerified(url, dir, checksum, log);
  const temps: string[] = [];
  try {
    let tar: Uint8Array;
    try {
      tar = gunzipSync(await readFile(archive));
    } catch (err) {
      throw new Error(`${url}: gzip data is corrupt (${(err as Error).message}); expected a .tar.gz archive`, {
        cause: err,
      });
    }
    const entries = readTar(tar, file.name);
    const found = new Map(entries.filter((e) => e.type === '0').map((e) => [basename(e.name), e.data]));
    const missing = members.filter((m) => !found.has(m));
    if (missing.length > 0)
      throw new Error(`${file.name}: archive lacks ${missing.join(', ')}; expected members ${members.join(', ')}`);
    await mkdir(outDir, { recursive: true });
    for (const m of members) {
      const temp = tempPath(outDir, m);
      temps.push(temp);
      await writeFile(temp, found.get(m)!, { flag: 'wx' });
    }
    for (let i = 0; i < members.length; i++) await rename(temps[i], targets[i]);
    log(`${outDir}: extracted ${members.join(', ')}`);
    return targets;
  } finally {
    await Promise.all([archive, ...temps].map((p) => rm(p, { force: true })));
  }
}
