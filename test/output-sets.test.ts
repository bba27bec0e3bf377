// A search's outputs (<stem>_quantized_<kind>.pt/.safetensors, <stem>_qcapsnets.json/.html)
// appear as a whole set or not at all: a search SIGKILLed while it writes them, or stopped by
// a full disk, leaves none of them (its temporary folder, which the next run removes, at
// most), and the JSON, renamed into place last, marks a complete set. A C export that was
// SIGKILLed leaves `.X_c.<pid>.<hex>.tmp` folders that the next export of that name removes:
// only folders of that exact pattern whose process is gone, nothing else.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeQuantizedModel } from '../src/export/quantized-file.js';
import { OutputSet } from '../src/io/output-set.js';
import { writeStateDict } from '../src/io/pt.js';
import { buildModel } from '../src/models/factory.js';
import { quantize } from '../src/quant/quantized-model.js';
import { nativeRequired } from './helpers.js';
import { bitsFromLists } from '../src/quant/config.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

const TEMP = /^\.net_qcapsnets\.(\d+)\.[0-9a-f]{8}\.tmp$/;

// the search decides on 30 held-out training images, then evaluates each model it writes on
// 500 test images: seconds between the first model's file and the last
const searchFlags = (net: string, out: string, testLimit = 500) =>
  ['search', '--dataset', 'mnist', '--trained-weights-path', net, '--output-dir', out].concat([
    '--train-limit',
    '100',
    '--selection-split',
    '30',
    '--test-limit',
    String(testLimit),
    '--quantization-method',
    'round_to_nearest',
    '--accuracy-tolerance',
    '50',
    '--memory-budget',
    '3',
    '--threads',
    '1',
  ]);

/** The search's outputs in `out` (temporary folders aside). */
const outputs = (out: string) => readdirSync(out).filter((n) => !n.startsWith('.'));

test('a search SIGKILLed after writing its first model leaves no output; the next run removes its folder', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-set-kill-'));
  try {
    const net = join(dir, 'net.pt');
    writeStateDict(net, buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 1 }).stateDict());
    const out = join(dir, 'out');
    const child = spawn(process.execPath, [cli, ...searchFlags(net, out)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on('exit', (_code, signal) => resolve(signal)),
    );
    // kill as soon as the first model file is in the temporary folder
    let killedAfter: string[] = [];
    const started = Date.now();
    while (child.exitCode === null && Date.now() - started < 240_000) {
      const temp = existsSync(out) ? readdirSync(out).find((n) => TEMP.test(n)) : undefined;
      const inside = temp ? readdirSync(join(out, temp)).filter((n) => !n.startsWith('.')) : [];
      if (inside.some((n) => n.endsWith('.pt'))) {
        child.kill('SIGKILL');
        killedAfter = inside;
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    const signal = await exited;
    assert.equal(signal, 'SIGKILL', `killed while writing (it exited by itself otherwise)\n${output}`);
    assert.ok(killedAfter.length >= 1);
    assert.deepEqual(outputs(out), [], 'no output of an unfinished set');
    assert.doesNotMatch(output, /stored in|results:/, 'no line claims a file that is not there');
    const left = readdirSync(out).filter((n) => TEMP.test(n));
    assert.equal(left.length, 1);
    assert.equal(Number(TEMP.exec(left[0])![1]), child.pid);

    // the same search again: a complete set, and the killed run's folder gone
    const again = run(searchFlags(net, out));
    assert.equal(again.status, 0, again.stderr);
    assert.deepEqual(
      readdirSync(out).filter((n) => n.startsWith('.')),
      [],
      'no temporary folder left',
    );
    const json = JSON.parse(readFileSync(join(out, 'net_qcapsnets.json'), 'utf8')) as {
      models: { file: string; packedFile: string }[];
    };
    const listed = new Set(['net_qcapsnets.json', 'net_qcapsnets.html']);
    for (const m of json.models) {
      listed.add(m.file.replace(/^.*\//, ''));
      listed.add(m.packedFile.replace(/^.*\//, ''));
      assert.ok(existsSync(m.file) && existsSync(m.packedFile));
    }
    assert.deepEqual(outputs(out).sort(), [...listed].sort(), 'the JSON lists the whole set');
    assert.match(again.stdout + again.stderr, /model-\w+ stored in .*net_quantized_\w+\.pt/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a search on a full disk leaves no output of the set and no temporary folder', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-set-full-'));
  const mount = join(dir, 'full');
  mkdirSync(mount);
  // room for the model's .pt (27.2 MB) but not for its .safetensors beside it (2.4 MB)
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=28m', 'tmpfs', mount], { encoding: 'utf8' });
  if (r.status !== 0) {
    rmSync(dir, { recursive: true, force: true });
    const why = `cannot mount a tmpfs here (${(r.stderr || r.error?.message || '').trim()}): needs root`;
    if (nativeRequired()) assert.fail(why);
    return t.skip(why);
  }
  try {
    const net = join(dir, 'net.pt');
    writeStateDict(net, buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 1 }).stateDict());
    const failed = run(searchFlags(net, mount, 20));
    assert.equal(failed.status, 2, failed.stderr);
    assert.match(
      failed.stderr,
      new RegExp(`qcapsnets: error: ${mount}/net_quantized_\\w+\\.\\w+: cannot write it: ENOSPC`),
    );
    assert.deepEqual(readdirSync(mount), [], 'nothing left: no output, no temporary folder');
  } finally {
    spawnSync('umount', [mount]);
    rmSync(dir, { recursive: true, force: true });
  }
});

test('OutputSet: files appear only at commit, the last one last; abort leaves nothing', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-set-'));
  try {
    writeFileSync(join(dir, 'a.json'), 'the old set\n');
    const set = new OutputSet(dir, 'a');
    set.write(join(dir, 'a.pt'), (f) => writeFileSync(f, 'model'));
    set.write(join(dir, 'a.json'), (f) => writeFileSync(f, 'new'));
    set.write(join(dir, 'a.html'), (f) => writeFileSync(f, 'page'));
    assert.deepEqual(
      readdirSync(dir).filter((n) => !n.startsWith('.')),
      ['a.json'],
    );
    assert.equal(readFileSync(join(dir, 'a.json'), 'utf8'), 'the old set\n');
    set.commit(join(dir, 'a.json'));
    assert.deepEqual(readdirSync(dir).sort(), ['a.html', 'a.json', 'a.pt']);
    assert.equal(readFileSync(join(dir, 'a.json'), 'utf8'), 'new');

    // an error names the output, not the temporary path; abort removes what was written
    const failing = new OutputSet(dir, 'a');
    assert.throws(
      () =>
        failing.write(join(dir, 'b.pt'), (f) => {
          throw new Error(`${f}: cannot write it: ENOSPC`);
        }),
      (err: Error) => err.message === `${join(dir, 'b.pt')}: cannot write it: ENOSPC`,
    );
    failing.abort();
    assert.deepEqual(readdirSync(dir).sort(), ['a.html', 'a.json', 'a.pt']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** The pid of a process that has exited. */
function deadPid(): number {
  const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
  return Number(r.stdout);
}

test("export --format c removes a killed export's temporary folders, and nothing else", () => {
  const dir = mkdtempSync(join(tmpdir(), 'qcaps-c-stale-'));
  try {
    const model = buildModel('ShallowCapsNet', [18, 1, 2, 2], { seed: 3 });
    const bits = {
      weightBits: model.quantLayers.map(() => 4),
      actBits: model.quantLayers.map(() => 6),
      routingBits: model.routingLayerNames.map(() => 6),
    };
    const packed = join(dir, 'm_quantized_memory.safetensors');
    writeQuantizedModel(
      packed,
      quantize(model, bitsFromLists(model.quantLayers, bits), { method: 'round_to_nearest', seed: 1 }),
    );
    const dead = deadPid();
    const stale = [`.m_quantized_memory_c.${dead}.0123abcd.tmp`, `.m_quantized_memory_c.${dead}.89abcdef.tmp.old`];
    const kept = [
      `.m_quantized_memory_c.${process.pid}.0123abcd.tmp`, // a live process's export in progress
      `.other_c.${dead}.0123abcd.tmp`, // another export's name
      `.m_quantized_memory_c.${dead}.0123abcd.tmp.bak`, // not the pattern
      `.m_quantized_memory_c.${dead}.xyz.tmp`, // not the pattern
      'm_quantized_memory_c.tmp',
    ];
    for (const name of [...stale, ...kept]) {
      mkdirSync(join(dir, name));
      writeFileSync(join(dir, name, 'qcaps_weights.h'), 'partial');
    }
    // a file and a link of the pattern are not folders of an export: kept
    const file = `.m_quantized_memory_c.${dead}.00000000.tmp`;
    writeFileSync(join(dir, file), 'a file');
    const link = `.m_quantized_memory_c.${dead}.11111111.tmp`;
    const target = join(dir, 'target');
    mkdirSync(target);
    writeFileSync(join(target, 'keep'), 'kept');
    symlinkSync(target, join(dir, link));

    const r = run(['export', '--format', 'c', '--trained-weights-path', packed]);
    assert.equal(r.status, 0, r.stderr);
    const names = readdirSync(dir);
    for (const s of stale) assert.ok(!names.includes(s), `${s} removed`);
    for (const k of [...kept, file, link]) assert.ok(names.includes(k), `${k} kept`);
    assert.ok(existsSync(join(target, 'keep')), "the link's target untouched");
    assert.ok(existsSync(join(dir, 'm_quantized_memory_c', 'main.c')));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
