// The command line: the flags and defaults of the reference implementation's main.py
// (SPEC 6) plus qcapsnets' own (--data-dir, --output-dir, --json, ...). Parsed by hand: a
// bad flag or value is one clear error that names it.

export interface FlagSpec {
  name: string;
  kind: 'string' | 'int' | 'float' | 'bool' | 'ints';
  default: string | number | boolean | number[] | null;
  help: string;
  aliases?: string[];
}

export const FLAGS: FlagSpec[] = [
  { name: 'model', kind: 'string', default: 'ShallowCapsNet', help: 'ShallowCapsNet or DeepCaps' },
  { name: 'model-args', kind: 'ints', default: [28, 1, 10, 16], help: 'input_wh input_ch num_classes caps_dim' },
  { name: 'decoder', kind: 'string', default: 'FCDecoder', help: 'FCDecoder, ConvDecoder28 or ConvDecoder64' },
  {
    name: 'decoder-args',
    kind: 'ints',
    default: [16, 784],
    help: 'FCDecoder: in_dim out_dim; ConvDecoder*: in_dim out_ch',
  },
  { name: 'dataset', kind: 'string', default: 'mnist', help: 'mnist, fashion-mnist, cifar10 or svhn' },
  { name: 'no-training', kind: 'bool', default: false, help: 'skip training: load --trained-weights-path' },
  {
    name: 'full-precision-filename',
    kind: 'string',
    default: './model.pt',
    help: 'where training saves the best model',
  },
  {
    name: 'trained-weights-path',
    kind: 'string',
    default: './',
    help: 'a trained state_dict (.pt) to start from with --no-training',
  },
  { name: 'epochs', kind: 'int', default: 10, help: 'training epochs' },
  { name: 'lr', kind: 'float', default: 0.001, help: 'initial learning rate (Adam)' },
  { name: 'batch-size', kind: 'int', default: 100, help: 'training batch size' },
  {
    name: 'log-interval',
    kind: 'int',
    default: 10,
    help: 'batches between log lines when the output is not a terminal',
  },
  { name: 'regularization-scale', kind: 'float', default: 0.0005, help: 'weight of the reconstruction loss' },
  { name: 'decay-steps', kind: 'int', default: 2000, help: 'learning-rate decay steps' },
  {
    name: 'decay-rate',
    kind: 'float',
    default: 0.96,
    help: 'learning-rate decay rate: lr * rate^(step / decay_steps)',
  },
  {
    name: 'hard-training',
    kind: 'bool',
    default: false,
    help: 'hard margins (0.95/0.05/0.8) for the last floor(epochs/2) epochs',
  },
  { name: 'test-batch-size', kind: 'int', default: 100, help: 'batch size of test passes' },
  { name: 'visible-gpus', kind: 'string', default: '-1', help: '-1: CPU (this build has no GPU backend)' },
  {
    name: 'threads',
    kind: 'int',
    default: null,
    help: 'compute threads (default: every core; the benchmark measures 1 vs 2)',
  },
  {
    name: 'seed',
    kind: 'int',
    default: 42,
    help: 'seed of initialisation, shuffling, augmentation and stochastic rounding',
  },
  {
    name: 'accuracy-tolerance',
    kind: 'float',
    default: 2,
    help: 'tolerated accuracy loss, percent of the full-precision accuracy',
  },
  {
    name: 'quantization-method',
    kind: 'string',
    default: 'stochastic_rounding',
    help: 'truncation, round_to_nearest, stochastic_rounding or logarithmic',
    aliases: ['quantization_method'],
  },
  { name: 'memory-budget', kind: 'float', default: 200, help: 'weight memory budget in MB (1 MB = 8,000,000 bits)' },
  {
    name: 'rounding-compat',
    kind: 'string',
    default: 'none',
    help: "'dac2020': the reference code's rounding arithmetic and step-3A routing mapping",
  },
  {
    name: 'data-dir',
    kind: 'string',
    default: null,
    help: 'folder with the dataset files (default: built-in locations)',
  },
  {
    name: 'download',
    kind: 'bool',
    default: false,
    help: 'download a missing dataset into --data-dir (checksums verified)',
  },
  {
    name: 'output-dir',
    kind: 'string',
    default: null,
    help: 'where quantized models and results go (default: next to the model)',
  },
  { name: 'json', kind: 'bool', default: false, help: 'print one JSON object with the results as the last line' },
  { name: 'test-limit', kind: 'int', default: null, help: 'use only the first N test images (quick runs)' },
  { name: 'train-limit', kind: 'int', default: null, help: 'use only the first N training images (quick runs)' },
  {
    name: 'cache-mb',
    kind: 'int',
    default: 1024,
    help: 'memory for intermediate results reused across search evaluations',
  },
  { name: 'no-early-stop', kind: 'bool', default: false, help: 'always evaluate the whole test set during the search' },
  {
    name: 'approximate-margin',
    kind: 'int',
    default: 0,
    help: 'dac2020 only: decide with the fast convolutions when a pass clears its threshold by this many images (0: always exact)',
  },
  {
    name: 'resume',
    kind: 'string',
    default: null,
    help: 'continue training from a checkpoint written by an earlier run',
  },
  { name: 'help', kind: 'bool', default: false, help: 'show this help', aliases: ['h'] },
];

export type Options = Record<string, string | number | boolean | number[] | null>;

export const SUBCOMMANDS = ['train', 'evaluate', 'search'] as const;
export type Subcommand = (typeof SUBCOMMANDS)[number] | 'all';

function parseNumber(flag: string, kind: 'int' | 'float', raw: string): number {
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v) || (kind === 'int' && !Number.isInteger(v))) {
    throw new Error(`--${flag}: expected ${kind === 'int' ? 'an integer' : 'a number'}, got '${raw}'`);
  }
  return v;
}

export function parseArgs(argv: string[]): { command: Subcommand; options: Options } {
  const options: Options = {};
  for (const f of FLAGS) options[f.name] = Array.isArray(f.default) ? [...f.default] : f.default;
  let command: Subcommand = 'all';
  const byName = new Map<string, FlagSpec>();
  for (const f of FLAGS) {
    byName.set(f.name, f);
    for (const a of f.aliases ?? []) byName.set(a, f);
  }
  let i = 0;
  if (argv[0] && !argv[0].startsWith('-')) {
    if (!(SUBCOMMANDS as readonly string[]).includes(argv[0])) {
      throw new Error(
        `unknown command '${argv[0]}': expected one of ${SUBCOMMANDS.join(', ')} (or none for the whole job)`,
      );
    }
    command = argv[0] as Subcommand;
    i = 1;
  }
  for (; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('-')) throw new Error(`unexpected argument '${arg}' (flags start with --; see --help)`);
    let name = arg.replace(/^--?/, '');
    let inline: string | undefined;
    const eq = name.indexOf('=');
    if (eq >= 0) {
      inline = name.slice(eq + 1);
      name = name.slice(0, eq);
    }
    const spec = byName.get(name);
    if (!spec) throw new Error(`unknown flag --${name} (see --help)`);
    if (spec.kind === 'bool') {
      if (inline !== undefined) throw new Error(`--${spec.name} takes no value`);
      options[spec.name] = true;
      continue;
    }
    if (spec.kind === 'ints') {
      const values: string[] = inline !== undefined ? inline.split(',') : [];
      while (inline === undefined && i + 1 < argv.length && !/^--?[a-zA-Z]/.test(argv[i + 1])) values.push(argv[++i]);
      if (values.length === 0) throw new Error(`--${spec.name}: expected one or more integers`);
      options[spec.name] = values.map((v) => parseNumber(spec.name, 'int', v));
      continue;
    }
    const raw = inline ?? argv[++i];
    if (raw === undefined) throw new Error(`--${spec.name}: missing value`);
    options[spec.name] = spec.kind === 'string' ? raw : parseNumber(spec.name, spec.kind, raw);
  }
  return { command, options };
}

export function helpText(): string {
  const lines = [
    'usage: qcapsnets [train|evaluate|search] [flags]',
    '',
    'With no command: train (or load with --no-training), then run the Q-CapsNets search, as the',
    "reference's main.py does. train: training only. evaluate: the full-precision accuracy of",
    '--trained-weights-path. search: the search on --trained-weights-path.',
    '',
    'flags:',
  ];
  for (const f of FLAGS) {
    const names = [f.name, ...(f.aliases ?? [])].map((n) => (n.length === 1 ? `-${n}` : `--${n}`)).join(', ');
    const value = f.kind === 'bool' ? '' : f.kind === 'ints' ? ' N [N ...]' : f.kind === 'string' ? ' S' : ' X';
    const dflt =
      f.default === null || f.kind === 'bool'
        ? ''
        : ` (default: ${Array.isArray(f.default) ? f.default.join(' ') : f.default})`;
    lines.push(`  ${(names + value).padEnd(38)} ${f.help}${dflt}`);
  }
  return lines.join('\n');
}
