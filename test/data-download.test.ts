// downloadDataset against a local HTTP server on 127.0.0.1: files land verified and
// atomically, present files are not fetched again, a checksum mismatch or HTTP error
// leaves nothing behind, and the CIFAR-10 tarball is extracted by the small tar reader.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { downloadDataset, loadDataset, readTar, type Checksum } from '../src/data/index.js';

function idxBytes(dims: number[], payload: Uint8Array): Buffer {
  const header = Buffer.alloc(4 + 4 * dims.length);
  header[2] = 0x08;
  header[3] = dims.length;
  dims.forEach((d, i) => header.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([header, payload]);
}

/** One ustar header + data blocks. */
function tarEntry(name: string, data: Buffer): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 'utf8');
  header.write('0000644\0', 100);
  header.write('0000000\0', 108);
  header.write('0000000\0', 116);
  header.write(data.length.toString(8).padStart(11, '0') + '\0', 124);
  header.write('00000000000\0', 136);
  header.write('        ', 148);
  header.write('0', 156);
  header.write('ustar\0', 257);
  header.write('00', 263);
  let sum = 0;
  for (const b of header) sum += b;
  header.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
  return Buffer.concat([header, data, Buffer.alloc((512 - (data.length % 512)) % 512)]);
}

function cifarBatch(count: number): Buffer {
  const b = Buffer.alloc(count * 3073, 40);
  for (let i = 0; i < count; i++) b[i * 3073] = i % 10;
  return b;
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');

const served = new Map<string, Buffer>();
const requests: string[] = [];
let server: Server;
let baseUrl = '';
const root = mkdtempSync(join(tmpdir(), 'qcaps-download-'));

before(async () => {
  const images = (n: number): Buffer =>
    gzipSync(
      idxBytes(
        [n, 28, 28],
        Uint8Array.from({ length: n * 784 }, (_, i) => i % 256),
      ),
    );
  const labels = (n: number): Buffer =>
    gzipSync(
      idxBytes(
        [n],
        Uint8Array.from({ length: n }, (_, i) => i % 10),
      ),
    );
  served.set('/mnist/train-images-idx3-ubyte.gz', images(6));
  served.set('/mnist/train-labels-idx1-ubyte.gz', labels(6));
  served.set('/mnist/t10k-images-idx3-ubyte.gz', images(2));
  served.set('/mnist/t10k-labels-idx1-ubyte.gz', labels(2));
  const members = [
    ...[1, 2, 3, 4, 5].map((k) => tarEntry(`cifar-10-batches-bin/data_batch_${k}.bin`, cifarBatch(2))),
    tarEntry('cifar-10-batches-bin/test_batch.bin', cifarBatch(3)),
    tarEntry('cifar-10-batches-bin/batches.meta.txt', Buffer.from('airplane\nautomobile\n')),
    tarEntry('cifar-10-batches-bin/readme.html', Buffer.from('<p>not extracted</p>')),
  ];
  served.set('/cifar/cifar-10-binary.tar.gz', gzipSync(Buffer.concat([...members, Buffer.alloc(1024)])));
  server = createServer((req, res) => {
    requests.push(req.url ?? '');
    const body = served.get(req.url ?? '');
    if (!body) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream' }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(async () => {
  await new Promise((resolve) => server.close(resolve));
  rmSync(root, { recursive: true, force: true });
});

function mnistChecksums(kind: 'md5' | 'sha256'): Record<string, Checksum> {
  const table: Record<string, Checksum> = {};
  for (const [path, body] of served) {
    if (path.startsWith('/mnist/'))
      table[path.slice(7)] = kind === 'md5' ? { md5: md5(body) } : { sha256: sha256(body) };
  }
  return table;
}

describe('downloadDataset', () => {
  test('fetches, verifies and places the MNIST files; a second call fetches nothing', async () => {
    const dir = join(root, 'mnist');
    const paths = await downloadDataset('mnist', dir, {
      baseUrl: `${baseUrl}/mnist`,
      checksums: mnistChecksums('sha256'),
    });
    assert.equal(paths.length, 4);
    assert.deepEqual(readdirSync(dir).sort(), [
      't10k-images-idx3-ubyte.gz',
      't10k-labels-idx1-ubyte.gz',
      'train-images-idx3-ubyte.gz',
      'train-labels-idx1-ubyte.gz',
    ]);
    assert.equal(loadDataset('mnist', 'train', { dataDir: dir }).count, 6);
    const before = requests.length;
    await downloadDataset('mnist', dir, { baseUrl: `${baseUrl}/mnist/`, checksums: mnistChecksums('md5') });
    assert.equal(requests.length, before);
  });

  test('a checksum mismatch throws and leaves no file, not even a temporary one', async () => {
    const dir = join(root, 'mismatch');
    const checksums = mnistChecksums('md5');
    checksums['t10k-images-idx3-ubyte.gz'] = { md5: '0'.repeat(32) };
    await assert.rejects(downloadDataset('mnist', dir, { baseUrl: `${baseUrl}/mnist`, checksums }), (err: Error) => {
      assert.match(err.message, /t10k-images-idx3-ubyte\.gz: checksum mismatch \(md5 [0-9a-f]{32}, expected 0{32}\)/);
      assert.match(err.message, /not kept/);
      return true;
    });
    const left = readdirSync(dir);
    assert.ok(!left.includes('t10k-images-idx3-ubyte.gz'));
    assert.ok(
      left.every((f) => !f.startsWith('.')),
      `temporary files left: ${left}`,
    );
    assert.deepEqual(left.sort(), ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz']); // verified before the failure
  });

  test('the published checksums reject files that are not the real ones', async () => {
    const dir = join(root, 'published');
    await assert.rejects(
      downloadDataset('mnist', dir, { baseUrl: `${baseUrl}/mnist` }),
      /expected f68b3c2dcbeaaa9fbdd348bbdeb94873/,
    );
    assert.deepEqual(readdirSync(dir), []);
  });

  test('an HTTP error names the URL and leaves no file', async () => {
    const dir = join(root, 'http-error');
    await assert.rejects(
      downloadDataset('svhn', dir, {
        baseUrl: `${baseUrl}/nowhere`,
        checksums: { 'train_32x32.mat': { md5: '0'.repeat(32) } },
      }),
      /\/nowhere\/train_32x32\.mat: download failed with HTTP 404/,
    );
    assert.deepEqual(readdirSync(dir), []);
  });

  test('cifar10: the tarball is verified, its six batches (+ meta) extracted, and removed', async () => {
    const dir = join(root, 'cifar');
    const tarball = served.get('/cifar/cifar-10-binary.tar.gz')!;
    const paths = await downloadDataset('cifar10', dir, {
      baseUrl: `${baseUrl}/cifar`,
      checksums: { 'cifar-10-binary.tar.gz': { sha256: sha256(tarball) } },
    });
    assert.equal(paths.length, 7);
    assert.deepEqual(readdirSync(dir), ['cifar-10-batches-bin']);
    assert.ok(!existsSync(join(dir, 'cifar-10-batches-bin', 'readme.html')));
    const train = loadDataset('cifar10', 'train', { dataDir: dir });
    assert.deepEqual(train.shape, [10, 64, 64, 3]);
    assert.ok(train.pixels.every((p) => p === 40));
    assert.equal(loadDataset('cifar10', 'test', { dataDir: dir }).count, 3);
  });

  test('the tar reader rejects a corrupt header', () => {
    const entry = tarEntry('a.bin', Buffer.from('hello'));
    assert.equal(readTar(Buffer.concat([entry, Buffer.alloc(1024)]))[0].name, 'a.bin');
    entry[0] = 'b'.charCodeAt(0);
    assert.throws(() => readTar(entry, 'x.tar'), /x\.tar: corrupt tar header at byte 0: checksum/);
  });
});
