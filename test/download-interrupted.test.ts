// An interrupted download: a connection that drops mid-file is an error naming the URL and leaves
// no file (nor a temporary one); a file cut short by an earlier interrupted copy is noticed by
// its checksum and fetched again, so loadDataset then reads the whole file; the temporary file
// of a download killed outright is removed by the next download into the folder.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { type Checksum, downloadDataset, loadDataset } from '../src/data/index.js';

/** A gzip IDX file of `dims` (uint8 values i % 256). */
function idx(dims: number[]): Buffer {
  const head = Buffer.alloc(4 + 4 * dims.length);
  head[2] = 0x08;
  head[3] = dims.length;
  dims.forEach((d, i) => head.writeUInt32BE(d, 4 + 4 * i));
  const n = dims.reduce((a, b) => a * b, 1);
  return gzipSync(Buffer.concat([head, Buffer.from(Array.from({ length: n }, (_, i) => i % 10))]));
}

const files = new Map<string, Buffer>([
  ['train-images-idx3-ubyte.gz', idx([30, 28, 28])],
  ['train-labels-idx1-ubyte.gz', idx([30])],
  ['t10k-images-idx3-ubyte.gz', idx([10, 28, 28])],
  ['t10k-labels-idx1-ubyte.gz', idx([10])],
]);
const checksums: Record<string, Checksum> = Object.fromEntries(
  [...files].map(([name, body]) => [name, { sha256: createHash('sha256').update(body).digest('hex') }]),
);

test('a dropped connection names the URL and leaves nothing; a truncated file is fetched again', async () => {
  let drop = true;
  // announces the whole length, then (while `drop`) sends half of the training images and hangs up
  const server = createServer((req, res) => {
    const body = files.get((req.url ?? '').slice(1));
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': body.length });
    if (drop && req.url === '/train-images-idx3-ubyte.gz') {
      res.write(body.subarray(0, body.length >> 1), () => res.destroy());
    } else res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-download-cut-'));
  try {
    await assert.rejects(downloadDataset('mnist', dir, { baseUrl, checksums }), (err: Error) => {
      assert.match(err.message, /download interrupted after \d+ bytes/);
      return err.message.startsWith(`${baseUrl}train-images-idx3-ubyte.gz: `);
    });
    assert.deepEqual(readdirSync(dir), [], 'no partial or temporary file');

    // what an interrupted copy leaves: the first half of the file under its own name
    const cut = files.get('train-images-idx3-ubyte.gz')!;
    writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), cut.subarray(0, cut.length >> 1));
    writeFileSync(join(dir, 'train-labels-idx1-ubyte.gz'), files.get('train-labels-idx1-ubyte.gz')!);
    assert.throws(
      () => loadDataset('mnist', 'train', { dataDir: dir, packageFallback: false }),
      /train-images-idx3-ubyte\.gz: gzip data is truncated or corrupt/,
    );
    // and what a download killed outright leaves (SIGKILL: no cleanup), from a process now gone
    const gone = spawnSync(process.execPath, ['-e', '']).pid!;
    writeFileSync(join(dir, `.t10k-images-idx3-ubyte.gz.part-${gone}-0123abcd`), 'partial');
    drop = false;
    await downloadDataset('mnist', dir, { baseUrl, checksums });
    assert.deepEqual(readdirSync(dir).sort(), [...files.keys()].sort());
    assert.equal(loadDataset('mnist', 'train', { dataDir: dir }).count, 30);
  } finally {
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  }
});
