// A command line per command: `qcapsnets <command> --help` lists only that command's flags with
// their defaults, a flag of another command is one error line naming the commands that take
// it, and the reference's spellings (--quantization_method, --model-args 28 1 10 16) still parse.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseCommandLine } from '../src/cli/parse.js';

const cli = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));
const run = (args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

/** The flags a --help lists (the first spelling of each line). */
function listed(help: string): string[] {
  return help
    .split('\n')
    .filter((l) => /^ {2}--/.test(l))
    .map((l) => l.trim().split(/[ ,]/)[0]);
}

test('each command --help lists its own flags only, with their defaults', () => {
  const help = (command: string) => {
    const r = run([command, '--help']);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^usage: qcapsnets ${command}`));
    return { text: r.stdout, flags: listed(r.stdout) };
  };
  const exp = help('export');
  for (const f of ['--format', '--onnx-rounding', '--images', '--trained-weights-path', '--output-dir'])
    assert.ok(exp.flags.includes(f), `export lists ${f}`);
  for (const f of ['--epochs', '--tolerances', '--memory-budget', '--quantization-method', '--resume'])
    assert.ok(!exp.flags.includes(f), `export does not list ${f}`);
  assert.ok(exp.flags.length < 20, `export lists ${exp.flags.length} flags`);
  assert.match(exp.text, /--images X +how many test images \(the first N\) \(default: 10\)/);
  assert.match(exp.text, /--trained-weights-path S +the packed quantized model/);

  const train = help('train');
  for (const f of ['--epochs', '--lr', '--resume', '--decoder-args', '--checkpoint-every', '--selection-split'])
    assert.ok(train.flags.includes(f), `train lists ${f}`);
  for (const f of ['--quantization-method', '--format', '--memory-budget', '--eval-cache', '--output'])
    assert.ok(!train.flags.includes(f), `train does not list ${f}`);
  assert.match(
    train.text,
    /--model-args N \[N \.\.\.\] +input_wh input_ch num_classes caps_dim \(default: 28 1 10 16\)/,
  );

  const sweep = help('sweep');
  for (const f of ['--tolerances', '--memory-budgets', '--budget-divisors', '--methods', '--shard', '--eval-cache'])
    assert.ok(sweep.flags.includes(f), `sweep lists ${f}`);
  assert.ok(!sweep.flags.includes('--epochs'), 'sweep does not list --epochs');
  assert.ok(!help('search').flags.includes('--shard'), 'search does not list --shard');
  assert.deepEqual(help('report').flags, ['--output', '--verbose', '--help']);
  assert.deepEqual(help('merge').flags, ['--output', '--verbose', '--help']);

  // without a command: every command's usage, then the default command's flags
  const all = run(['--help']);
  assert.equal(all.status, 0);
  for (const c of ['train', 'evaluate', 'search', 'sweep', 'sensitivity', 'export', 'finetune', 'merge', 'report'])
    assert.match(all.stdout, new RegExp(`^ {2}qcapsnets ${c}`, 'm'));
  assert.ok(!listed(all.stdout).includes('--format') && listed(all.stdout).includes('--epochs'));
});

test('a flag of another command is one error line naming the commands that take it, before any work', () => {
  const cases: [string[], string][] = [
    [['export', '--epochs', '3'], '--epochs applies to train, finetune and the default command only'],
    [['train', '--format', 'onnx'], '--format applies to export only'],
    [
      ['train', '--quantization_method', 'truncation'],
      '--quantization-method applies to evaluate, sweep, search, sensitivity, finetune and the default command only',
    ],
    [
      ['report', 'run.json', '--dataset', 'mnist'],
      '--dataset applies to train, evaluate, sweep, search, sensitivity, export, finetune and the default command only',
    ],
    [['--sensitivity-bits', '2,4'], '--sensitivity-bits applies to sensitivity only'],
    [
      ['merge', 'a.json', '--json'],
      '--json applies to train, evaluate, sweep, search, sensitivity, finetune and the default command only',
    ],
  ];
  for (const [args, message] of cases) {
    const r = run(args);
    assert.equal(r.status, 2, args.join(' '));
    assert.equal(r.stderr, `qcapsnets: error: ${message}\n`, args.join(' '));
    assert.equal(r.stdout, '', `${args.join(' ')}: nothing ran`);
  }
});

test("the reference's spellings parse: --quantization_method, --model-args N N ..., negative values, -h", () => {
  const s = parseCommandLine(['search', '--quantization_method', 'truncation', '--model-args', '28', '1', '10', '8']);
  assert.equal(s.command, 'search');
  if (s.command !== 'search') return;
  assert.equal(s.options.quantizationMethod, 'truncation');
  assert.deepEqual(s.options.modelArgs, [28, 1, 10, 8]);
  assert.deepEqual([...s.given].sort(), ['model-args', 'quantization-method']);
  // the defaults of the flags not given
  assert.equal(s.options.memoryBudget, 200);
  assert.equal(s.options.seed, 42);
  assert.equal(s.options.evalCache, null);

  const t = parseCommandLine(['--model-args=64,3,10,16', '--lr', '-1', '--seed=7', '--no-training', '-h']);
  assert.equal(t.command, 'all');
  if (t.command !== 'all') return;
  assert.deepEqual(t.options.modelArgs, [64, 3, 10, 16]);
  assert.equal(t.options.lr, -1, 'a value may start with a dash (the check of its range comes after)');
  assert.equal(t.options.seed, 7);
  assert.equal(t.options.noTraining, true);
  assert.equal(t.options.help, true);

  // the files of merge and report
  const m = parseCommandLine(['merge', 'a.json', 'b.json', '--output', 'm.json']);
  assert.deepEqual(m.positional, ['a.json', 'b.json']);

  for (const [args, message] of [
    [['--quantization_method'], /: --quantization-method: missing value$/],
    [['--json=yes'], /: --json takes no value$/],
    [['--model-args', '--seed', '3'], /: --model-args: expected one or more integers$/],
    [['--epochs', '2.5'], /: --epochs: expected an integer, got '2\.5'$/],
    [['-model', 'DeepCaps'], /: unknown flag --model \(see --help\)$/],
    [['search', 'extra'], /: unexpected argument 'extra'/],
  ] as [string[], RegExp][])
    assert.throws(() => parseCommandLine(args), message, args.join(' '));
  // through the command line, the underscore spelling is checked under the flag's name
  const r = run(['--quantization_method', 'rounding']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--quantization-method: unknown quantization method 'rounding'; expected one of/);
});
