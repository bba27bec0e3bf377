// Checkpoints move both ways between qcapsnets and the reference implementation (PyTorch):
// a state_dict we write loads with torch.load(weights_only=True) + load_state_dict(strict) into
// the reference's ShallowCapsNet and predicts what we predict; one the reference writes with
// torch.save loads here and predicts what it predicts. Needs /usr/bin/python3 with torch and
// the reference (QCAPS_REFERENCE_DIR, or the mirror at /work/.mirror): skipped otherwise.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { readStateDict, writeStateDict } from '../src/io/pt.js';
import { buildModel } from '../src/models/factory.js';
import { capsuleLengths, Tensor } from '../src/tensor/index.js';
import { PYTORCH, requirePackages, skipUnless } from './requirements.js';

const MIRROR = '/work/.mirror/bbussolino+Q-CapsNets/repo';
const script = fileURLToPath(new URL('../../tools/check-checkpoint.py', import.meta.url));

function referenceDir(work: string): string | null {
  if (process.env.QCAPS_REFERENCE_DIR) return process.env.QCAPS_REFERENCE_DIR;
  if (!existsSync(MIRROR)) return null;
  const archive = spawnSync('git', ['-C', MIRROR, 'archive', 'HEAD'], { maxBuffer: 1 << 26 });
  if (archive.status !== 0) return null;
  const dir = join(work, 'ref');
  spawnSync('mkdir', ['-p', dir]);
  return spawnSync('tar', ['-x', '-C', dir], { input: archive.stdout }).status === 0 ? dir : null;
}

const torchSkip = skipUnless(PYTORCH);

test('state_dicts move both ways between qcapsnets and the reference ShallowCapsNet', (t) => {
  if (torchSkip) return t.skip(torchSkip);
  requirePackages(PYTORCH);
  const work = mkdtempSync(join(tmpdir(), 'qcaps-ckpt-'));
  try {
    const ref = referenceDir(work);
    if (!ref) return t.skip('no reference implementation (set QCAPS_REFERENCE_DIR)');
    const n = 4;
    const x = Tensor.from(
      Array.from({ length: n * 784 }, (_, i) => (Math.sin(i * 0.61) + 1) / 2),
      [n, 28, 28, 1],
    );
    const images = join(work, 'x.f32');
    writeFileSync(images, Buffer.from(x.data.buffer)); // [n,28,28,1] is also NCHW for one channel
    const lengthsOf = (model: ReturnType<typeof buildModel>) => {
      model.eval();
      return capsuleLengths(model.forward(x, false));
    };
    const python = (mode: string, file: string) => {
      const r = spawnSync('/usr/bin/python3', [script, ref, mode, file, images, String(n)], { encoding: 'utf8' });
      assert.equal(r.status, 0, r.stderr);
      return Float32Array.from((JSON.parse(r.stdout.trim().split('\n').pop()!) as number[][]).flat());
    };
    // ours -> PyTorch
    const ours = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 9 });
    const file = join(work, 'ours.pt');
    writeStateDict(file, ours.stateDict());
    const theirs = python('load', file);
    const mine = lengthsOf(ours);
    for (let i = 0; i < mine.size; i++)
      assert.ok(Math.abs(mine.data[i] - theirs[i]) <= 1e-4 * Math.abs(theirs[i]) + 1e-6, `capsule ${i}`);
    // PyTorch -> ours
    const refFile = join(work, 'reference.pt');
    const expected = python('write', refFile);
    const loaded = buildModel('ShallowCapsNet', [28, 1, 10, 16], { seed: 1 });
    loaded.loadStateDict(readStateDict(refFile), refFile);
    const got = lengthsOf(loaded);
    for (let i = 0; i < got.size; i++)
      assert.ok(Math.abs(got.data[i] - expected[i]) <= 1e-4 * Math.abs(expected[i]) + 1e-6, `capsule ${i}`);
    // and a checkpoint of the other model is refused with the keys that differ
    const deep = buildModel('DeepCaps', [28, 1, 10, 32]);
    assert.throws(() => deep.loadStateDict(readStateDict(refFile), refFile), /conv1\.conv\.weight/);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
