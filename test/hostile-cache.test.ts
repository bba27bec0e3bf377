// The evaluation cache (--eval-cache) against hostile files: a file that is not a cache is
// refused with its bytes unchanged (a model, a text file, binary bytes without a line end); a
// device, FIFO or folder is refused without being opened for writing; every line is checked
// against the header and the model (counts within the images, per-batch counts that sum,
// bits valid for the model) and a bad line is an error naming the file and the line; a torn
// last line is cut off only once the rest is accepted, measured in bytes; a file larger than
// the longest string is read line by line.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { writeStateDict } from '../src/io/pt.js';
import { buildModel } from '../src/models/factory.js';
import type { QuantLayerInfo } from '../src/quant/config.js';
import {
  EVAL_CACHE_TOOL,
  EVAL_CACHE_VERSION,
  EvalCache,
  readEvalCacheFile,
  type EvalCacheHeader,
} from '../src/search/eval-cache.js';
import { cli } from './small-trained-model.js';

const HEADER: EvalCacheHeader = {
  tool: EVAL_CACHE_TOOL,
  version: EVAL_CACHE_VERSION,
  model: 'ShallowCapsNet 28 1 10 16',
  modelSha256: 'ab'.repeat(32),
  images: 'crc32:00000001:00000002:100',
  compat: 'none',
  seed: 42,
  batchSize: 25,
  earlyStop: true,
  approximateMarginImages: 0,
};
const LAYERS: QuantLayerInfo[] = [
  { name: 'conv1', paramCount: 20992, routes: false, iterations: 0, capsule: false },
  { name: 'primary', paramCount: 5308672, routes: true, iterations: 1, capsule: true },
  { name: 'digit', paramCount: 1474560, routes: true, iterations: 3, capsule: true },
];
const MODEL = { layers: LAYERS, images: 100 };

/** An evaluation line as the cache writes it: percentages from the counts. */
function line(o: { correct: number; batchCorrect: number[]; seen?: number; w?: number[]; extra?: object }): string {
  const seen = o.seen ?? 100;
  const lower = (o.correct * 100.0) / 100;
  return JSON.stringify({
    method: 'round_to_nearest',
    w: o.w ?? [6, 6, 6],
    a: [6, 6, 6],
    r: [6, 6],
    accuracy: lower,
    lower,
    upper: ((o.correct + 100 - seen) * 100.0) / 100,
    exact: seen === 100,
    seen,
    total: 100,
    correct: o.correct,
    batchCorrect: o.batchCorrect,
    ...o.extra,
  });
}
const GOOD = [
  line({ correct: 80, batchCorrect: [20, 20, 20, 20] }),
  line({ correct: 30, seen: 50, batchCorrect: [15, 15], w: [4, 4, 4] }),
];
const cacheText = (lines: string[]) => [JSON.stringify(HEADER), ...lines].map((l) => l + '\n').join('');

let dir = '';
before(() => (dir = mkdtempSync(join(tmpdir(), 'qcaps-hostile-cache-'))));
after(() => rmSync(dir, { recursive: true, force: true }));

const file = (name: string, bytes: string | Uint8Array) => {
  const f = join(dir, name);
  writeFileSync(f, bytes);
  return f;
};

test('a valid cache is read; a torn last line is cut off in bytes, after the lines are accepted', () => {
  const f = file('good.jsonl', cacheText(GOOD));
  const c = EvalCache.open(f, HEADER, MODEL);
  c.close();
  assert.equal(c.loaded, 2);
  assert.equal(
    c.get('round_to_nearest', { weightBits: [6, 6, 6], actBits: [6, 6, 6], routingBits: [6, 6] })?.correct,
    80,
  );

  // a torn line with multi-byte characters: the file keeps exactly its whole lines
  const whole = cacheText(GOOD);
  const torn = file('torn.jsonl', whole + '{"method":"round_to_nearest","w":[6,6,"ééé€€');
  const t = EvalCache.open(torn, HEADER, MODEL);
  t.close();
  assert.match(t.note, /a torn last line \(\d+ bytes, from a run stopped mid-write\) dropped/);
  assert.equal(readFileSync(torn, 'utf8'), whole);

  // a whole evaluation that only lacks its line end is kept, and the line end added
  const unended = file('unended.jsonl', whole + line({ correct: 10, seen: 25, batchCorrect: [10] }));
  const u = EvalCache.open(unended, HEADER, MODEL);
  u.close();
  assert.equal(u.loaded, 3);
  assert.equal(readFileSync(unended, 'utf8'), whole + line({ correct: 10, seen: 25, batchCorrect: [10] }) + '\n');

  // a torn line behind a bad line: the error, and the file unchanged
  const both = whole.replace('"correct":80', '"correct":81') + '{"meth';
  const b = file('bad-and-torn.jsonl', both);
  assert.throws(() => EvalCache.open(b, HEADER, MODEL), /line 2: batchCorrect sums to 80, correct is 81/);
  assert.equal(readFileSync(b, 'utf8'), both);
});

test('a file that is not a cache is refused and left byte for byte as it was', () => {
  const model = join(dir, 'model.pt');
  writeStateDict(model, buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 1 }).stateDict());
  const text = file('notes.txt', 'first line\nsecond line\nlast line without end');
  const binary = file(
    'blob.bin',
    Uint8Array.from({ length: 4096 }, (_, i) => (i * 131 + 7) & 0xff).filter((b) => b !== 10),
  );
  const json = file('array.json', '[1, 2]\n{"a":1}\ntail');
  const nul = file('null.json', 'null\n');
  for (const f of [model, text, binary, json, nul]) {
    const before = readFileSync(f);
    assert.throws(
      () => EvalCache.open(f, HEADER, MODEL),
      (e: Error) => (
        assert.ok(e.message.startsWith(`eval cache ${f}: not an evaluation cache`), e.message),
        assert.match(e.message, /nothing was changed/),
        true
      ),
    );
    assert.deepEqual(readFileSync(f), before, f);
  }
});

test('devices, FIFOs and folders are refused; an empty regular file gets the header in place', () => {
  const fifo = join(dir, 'pipe');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
  const folder = join(dir, 'folder');
  mkdirSync(folder);
  const cases: [string, RegExp][] = [
    ['/dev/null', /is a character device; expected a regular file/],
    [fifo, /is a FIFO \(named pipe\); expected a regular file/],
    [folder, /is a folder; expected a regular file/],
  ];
  for (const [f, re] of cases) {
    assert.throws(() => EvalCache.open(f, HEADER, MODEL), re);
    assert.throws(() => readEvalCacheFile(f, HEADER, MODEL), re);
  }
  assert.ok(statSync(fifo).isFIFO(), 'the FIFO is still a FIFO');
  assert.ok(statSync('/dev/null').isCharacterDevice());
  const empty = file('empty.jsonl', '');
  const ino = statSync(empty).ino;
  const c = EvalCache.open(empty, HEADER, MODEL);
  c.close();
  assert.equal(readFileSync(empty, 'utf8'), JSON.stringify(HEADER) + '\n');
  assert.equal(statSync(empty).ino, ino, 'written in place, not replaced');
});

test('every line is checked against the header and the model; a bad one names the file and line', () => {
  const lineOf = (edit: (o: Record<string, unknown>) => void) => {
    const o = JSON.parse(GOOD[0]) as Record<string, unknown>;
    edit(o);
    return JSON.stringify(o);
  };
  const cases: [string, RegExp][] = [
    // the issue's edited line: 400 correct of 300
    [
      lineOf((o) => Object.assign(o, { correct: 400, total: 300, seen: 300 })),
      /total 300: this cache's evaluations run on 100 images/,
    ],
    [lineOf((o) => Object.assign(o, { correct: 120 })), /correct 120: expected 0\.\.100/],
    [
      lineOf((o) => Object.assign(o, { total: 5, seen: 5, correct: 5, batchCorrect: [10, -5] })),
      /total 5: this cache's evaluations run on 100 images/,
    ],
    [lineOf((o) => (o.batchCorrect = [25, 25, -10, 40])), /batchCorrect\[2\] -10: expected 0\.\.25/],
    [lineOf((o) => (o.batchCorrect = [20, 20, 20, 19])), /batchCorrect sums to 79, correct is 80/],
    [lineOf((o) => (o.batchCorrect = [40, 40])), /batchCorrect has 2 batches of 25 images \(50 images\), seen is 100/],
    [
      lineOf((o) => Object.assign(o, { accuracy: 99, lower: 99 })),
      /accuracy 99, lower 99, upper 80: expected 0 <= lower/,
    ],
    [lineOf((o) => Object.assign(o, { accuracy: 81, lower: 81, upper: 81 })), /81 correct|80 correct of 100 seen/],
    [lineOf((o) => Object.assign(o, { seen: 75 })), /exact with seen 75/],
    [lineOf((o) => (o.w = [6, 6])), /bits\.weightBits: expected 3 bit counts \(conv1, primary, digit\), got 2/],
    [
      lineOf((o) => (o.a = [6, 99, 6])),
      /bits\.actBits\[1\] \(primary\): expected an integer number of fractional bits/,
    ],
    [lineOf((o) => (o.r = [6, 6.5])), /bits\.routingBits\[1\] \(digit\)/],
    [lineOf((o) => (o.method = 'rounding')), /method "rounding": expected one of truncation, round_to_nearest/],
    [lineOf((o) => (o.correct = 'many')), /expected method, w, a, r/],
    [lineOf((o) => (o.accuracy = null)), /expected method, w, a, r/],
    [lineOf((o) => Object.assign(o, { approximate: true })), /approximate and exact/],
    ['[1,2,3]', /not a JSON object/],
    ['{"method": "trunc', /not JSON; expected one evaluation per line/],
  ];
  for (const [bad, re] of cases) {
    const text = cacheText([GOOD[1], bad, GOOD[0]]);
    const f = file('edited.jsonl', text);
    assert.throws(
      () => EvalCache.open(f, HEADER, MODEL),
      (e: Error) => (
        assert.ok(e.message.startsWith(`eval cache ${f}: line 3: `), e.message),
        assert.match(e.message, re, bad),
        true
      ),
    );
    assert.equal(readFileSync(f, 'utf8'), text, 'nothing written');
  }
  // what this tool writes passes: an early-stopped, a resumed and a fast-convolution evaluation
  const ok = [
    line({ correct: 12, seen: 50, batchCorrect: [5, 7], extra: { resumedAfter: 25 } }),
    line({ correct: 0, seen: 0, batchCorrect: [] }),
    JSON.stringify({
      ...JSON.parse(line({ correct: 40, seen: 50, batchCorrect: [20, 20] })),
      lower: 39,
      upper: 91,
      correct: 39,
      approximate: true,
    }),
  ];
  const c = EvalCache.open(file('ok.jsonl', cacheText(ok)), HEADER, MODEL);
  c.close();
  assert.equal(c.loaded, 3);
});

test('a cache larger than the longest string is read line by line', { timeout: 300_000 }, () => {
  // 600 MB (more bytes than one string can hold, 2^29 - 24 characters) of 200 kB lines: one
  // image per batch, 100,000 images
  const header = { ...HEADER, images: 'crc32:00000001:00000002:100000', batchSize: 1 };
  const model = { layers: LAYERS, images: 100_000 };
  const counts = new Array<number>(100_000).fill(0);
  counts[7] = 1;
  const one = JSON.stringify({
    method: 'truncation',
    w: [5, 5, 5],
    a: [5, 5, 5],
    r: [5, 5],
    accuracy: 0.001,
    lower: 0.001,
    upper: 0.001,
    exact: true,
    seen: 100_000,
    total: 100_000,
    correct: 1,
    batchCorrect: counts,
  });
  const f = join(dir, 'big.jsonl');
  writeFileSync(f, JSON.stringify(header) + '\n');
  const block = Buffer.from((one + '\n').repeat(40));
  while (statSync(f).size <= 600 * 2 ** 20) appendFileSync(f, block);
  const c = EvalCache.open(f, header, model);
  c.close();
  assert.ok(c.loaded * (one.length + 1) > 2 ** 29, `${c.loaded} evaluations read`);
  assert.equal(c.get('truncation', { weightBits: [5, 5, 5], actBits: [5, 5, 5], routingBits: [5, 5] })?.correct, 1);
  rmSync(f);
  // a line of 17 MiB is refused with the file's name
  const long = file('long.jsonl', cacheText([]) + 'x'.repeat(17 * 2 ** 20) + '\n');
  assert.throws(
    () => EvalCache.open(long, HEADER, MODEL),
    (e: Error) => e.message.startsWith(`eval cache ${long}: line 2 is longer than 16 MiB`),
  );
});

test('qcapsnets search --eval-cache refuses a model file, a FIFO and /dev/null: exit 2, nothing changed', () => {
  const model = join(dir, 'net.pt');
  writeStateDict(model, buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 2 }).stateDict());
  const before = readFileSync(model);
  const fifo = join(dir, 'pipe2');
  assert.equal(spawnSync('mkfifo', [fifo]).status, 0, 'mkfifo');
  const search = (cache: string) =>
    spawnSync(
      process.execPath,
      [cli, 'search', '--dataset', 'mnist', '--trained-weights-path', model, '--test-limit', '25'].concat([
        '--eval-cache',
        cache,
        '--output-dir',
        join(dir, 'out'),
      ]),
      { encoding: 'utf8', timeout: 120_000 },
    );
  const cases: [string, RegExp][] = [
    [model, /--eval-cache .*net\.pt: not an evaluation cache: its first line is not the JSON header/],
    [fifo, /--eval-cache .*pipe2: is a FIFO \(named pipe\); expected a regular file/],
    ['/dev/null', /--eval-cache \/dev\/null: is a character device; expected a regular file/],
  ];
  for (const [cache, re] of cases) {
    const r = search(cache);
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  }
  assert.deepEqual(readFileSync(model), before, 'the model file is unchanged');
  assert.ok(statSync(fifo).isFIFO());
});
