// A packed quantized file's metadata, edited by hand or forged: a tensor format's number given
// as a string says what was expected, and the 'search' record (which `evaluate` prints beside
// its own count) must hold counts of its images, or the error names the file and the field.
// The C export's build hint is one POSIX shell command whatever its folder is called.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { shellWord } from '../src/cli/export-job.js';
import { type QuantizedSearchRecord, readQuantizedModel, writeQuantizedModel } from '../src/export/quantized-file.js';
import { readSafetensorsRaw, writeSafetensorsRaw } from '../src/io/safetensors.js';
import { buildModel } from '../src/models/factory.js';
import { quantize } from '../src/quant/quantized-model.js';
import { bitsFromLists } from '../src/quant/config.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'qcaps-packed-md-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const SEARCH: QuantizedSearchRecord = {
  kind: 'memory',
  dataset: 'mnist',
  images: 200,
  correct: 150,
  accuracy: 75,
  batchSize: 100,
  order: 'hardest-first',
};

/** A small packed model at `file` with its metadata changed by `edit`. */
function packed(file: string, edit: (md: Record<string, string>) => void = () => {}): string {
  const model = buildModel('ShallowCapsNet', [18, 1, 2, 2], { seed: 3 });
  const bits = {
    weightBits: model.quantLayers.map(() => 4),
    actBits: model.quantLayers.map(() => 6),
    routingBits: model.routingLayerNames.map(() => 6),
  };
  writeQuantizedModel(
    file,
    quantize(model, bitsFromLists(model.quantLayers, bits), { method: 'round_to_nearest', seed: 1 }),
    { search: SEARCH },
  );
  const raw = readSafetensorsRaw(file);
  edit(raw.metadata);
  writeSafetensorsRaw(file, raw.tensors, raw.metadata);
  return file;
}

test('a number given as a string: the message says it is a string and what was expected', () => {
  const file = packed(join(dir, 'string.safetensors'), (md) => {
    const formats = JSON.parse(md.tensors) as Record<string, Record<string, unknown>>;
    formats['conv.conv.weight'].frac_bits = String(formats['conv.conv.weight'].frac_bits);
    md.tensors = JSON.stringify(formats);
  });
  assert.throws(
    () => readQuantizedModel(file),
    /string\.safetensors: tensor 'conv\.conv\.weight': frac_bits "4" \(a string\): expected the integer 4 \(layer conv's weight bits\)/,
  );
  const bits = packed(join(dir, 'bits.safetensors'), (md) => {
    const formats = JSON.parse(md.tensors) as Record<string, Record<string, unknown>>;
    formats['digit.weight'].bits = '5';
    md.tensors = JSON.stringify(formats);
  });
  assert.throws(() => readQuantizedModel(bits), /tensor 'digit\.weight': bits "5" \(a string\): expected an integer/);
});

test("the 'search' record: counts of its images and their accuracy, or the file and the field", () => {
  // the record as written reads back
  assert.deepEqual(readQuantizedModel(packed(join(dir, 'good.safetensors'))).info.search, SEARCH);
  const cases: [string, Record<string, unknown> | unknown, RegExp][] = [
    ['negative', { ...SEARCH, images: -5, correct: 1e9 }, /'images' is -5, expected an integer >= 1/],
    [
      'more-correct',
      { ...SEARCH, correct: 1e9 },
      /'correct' is 1000000000, expected an integer from 0 to 'images' \(200\)/,
    ],
    ['fraction', { ...SEARCH, correct: 1.5 }, /'correct' is 1\.5, expected an integer/],
    ['string', { ...SEARCH, images: '200' }, /'images' is "200" \(a string\)/],
    ['accuracy', { ...SEARCH, accuracy: 133.33 }, /'accuracy' is 133\.33, expected 150\/200 in percent/],
    ['batch', { ...SEARCH, batchSize: 0 }, /'batchSize' is 0, expected an integer >= 1/],
    ['kind', { ...SEARCH, kind: 3 }, /'kind' is 3, expected a string/],
    ['fingerprint', { ...SEARCH, fingerprint: {} }, /'fingerprint' is an object, expected a string/],
    ['list', [1, 2], /__metadata__ 'search': expected an object/],
  ];
  for (const [name, record, message] of cases) {
    const file = packed(join(dir, `${name}.safetensors`), (md) => (md.search = JSON.stringify(record)));
    assert.throws(
      () => readQuantizedModel(file),
      (err: Error) => {
        assert.match(err.message, new RegExp(`${name}\\.safetensors.*__metadata__ 'search': `));
        assert.match(err.message, message);
        return true;
      },
      name,
    );
  }
});

test("the C export's build hint quotes its folder for a POSIX shell", () => {
  assert.equal(shellWord('/tmp/out/m_c'), '/tmp/out/m_c', 'a plain path as it is');
  assert.equal(shellWord("/tmp/it's here/m_c"), `'/tmp/it'\\''s here/m_c'`);
  assert.equal(shellWord('-x/m_c'), './-x/m_c');
  // through the command line: the printed `cd` lands in the export, whatever the folder's name
  const out = join(dir, `a "b" $(echo c) 'd' & e;`);
  mkdirSync(out);
  const file = packed(join(out, 'm_quantized_memory.safetensors'));
  const r = spawnSync(process.execPath, [cli, 'export', '--format', 'c', '--trained-weights-path', file], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const hint = /build: (cd .*) && cc /.exec(r.stdout + r.stderr);
  assert.ok(hint, r.stdout + r.stderr);
  const sh = spawnSync('sh', ['-c', `${hint[1]} && pwd`], { encoding: 'utf8' });
  assert.equal(sh.status, 0, sh.stderr);
  assert.equal(sh.stdout.trim(), join(out, 'm_quantized_memory_c'));
});
