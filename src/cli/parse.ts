// The command line parsed: the command, its typed options and the file names it takes
// (`report RUN.json`, `merge A.json B.json ...`). Node's util.parseArgs splits the words into
// flags and values (--flag value, --flag=value, -h); each flag is then taken by the table in
// flags.ts: its kind, the reference's spellings (--quantization_method), and whether this
// command takes it. `--model-args 28 1 10 16` takes the words that follow, as argparse's
// nargs="+" does. Every mistake is one error naming the flag.
import { parseArgs as splitWords } from 'node:util';
import {
  COMMANDS,
  type CommandName,
  type CommandSpec,
  defaultValue,
  FLAG_NAMES,
  type FlagName,
  FLAGS,
  optionName,
  type Options,
  SUBCOMMANDS,
  takes,
} from './flags.js';

export type ParsedCommandLine = {
  [C in CommandName]: {
    command: C;
    options: Options<C>;
    /** the files of `report` and `merge` */
    positional: string[];
    /** the flags given (not left at their defaults), by their own names */
    given: ReadonlySet<FlagName>;
  };
}[CommandName];

/** Every spelling of every flag -> the flag. */
const SPELLINGS = new Map<string, FlagName>();
for (const f of FLAG_NAMES)
  for (const s of [f, ...((FLAGS[f] as { aliases?: readonly string[] }).aliases ?? [])]) SPELLINGS.set(s, f);

/** How util.parseArgs splits each spelling: a value follows a string or number flag; the
 *  integers of an `ints` flag follow as words of their own (taken below). */
const WORDS: NonNullable<Parameters<typeof splitWords>[0]>['options'] = {};
for (const [spelling, f] of SPELLINGS) {
  if (spelling.length === 1) continue; // -h: a short spelling of --help, below
  const { kind } = FLAGS[f];
  WORDS[spelling] = { type: kind === 'bool' || kind === 'ints' ? 'boolean' : 'string' };
}
WORDS.help = { type: 'boolean', short: 'h' };

/** A number flag's value; errors name the flag. */
export function parseNumber(flag: string, kind: 'int' | 'float', raw: string): number {
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v) || (kind === 'int' && !Number.isInteger(v))) {
    throw new Error(`--${flag}: expected ${kind === 'int' ? 'an integer' : 'a number'}, got '${raw}'`);
  }
  return v;
}

/** 'a, b and the default command' */
function commandList(commands: readonly CommandName[]): string {
  return commands
    .map((c) => (c === 'all' ? 'the default command' : c))
    .join(', ')
    .replace(/, ([^,]+)$/, ' and $1');
}

/** The error for a flag that `command` does not take: the commands that do. */
function notTakenError(flag: FlagName): Error {
  const by = (Object.keys(COMMANDS) as CommandName[]).filter((c) => takes(c, flag));
  return new Error(`--${flag} applies to ${commandList(by)} only`);
}

export function parseCommandLine(argv: readonly string[]): ParsedCommandLine {
  let command: CommandName = 'all';
  let args = [...argv];
  if (args[0] !== undefined && !args[0].startsWith('-')) {
    if (!(SUBCOMMANDS as readonly string[]).includes(args[0]))
      throw new Error(
        `unknown command '${args[0]}': expected one of ${SUBCOMMANDS.join(', ')} (or none for the whole job)`,
      );
    command = args[0] as CommandName;
    args = args.slice(1);
  }
  const values: Record<string, unknown> = {};
  for (const f of COMMANDS[command].flags) values[optionName(f)] = defaultValue(f);
  const given = new Set<FlagName>();
  const positional: string[] = [];
  const takesFiles = command === 'report' || command === 'merge';
  const { tokens } = splitWords({ args, options: WORDS, strict: false, allowPositionals: true, tokens: true });
  let takenUpTo = -1; // the words an `ints` flag took as its values
  for (const t of tokens) {
    if (t.index <= takenUpTo) continue;
    if (t.kind === 'positional') {
      if (!takesFiles) throw new Error(`unexpected argument '${t.value}' (flags start with --; see --help)`);
      positional.push(t.value);
      continue;
    }
    const word = args[t.index];
    // ('-model' comes split into -m -o -d -e -l: only a whole word names a flag; '--' none)
    const split = t.kind === 'option' && !t.rawName.startsWith('--') && word.length > 2 && !word.includes('=');
    const f = t.kind === 'option' && !split ? SPELLINGS.get(t.name) : undefined;
    if (t.kind !== 'option' || !f)
      throw new Error(`unknown flag --${word.replace(/^--?/, '').split('=')[0]} (see --help)`);
    if (!takes(command, f)) throw notTakenError(f);
    given.add(f);
    const kind = FLAGS[f].kind;
    const key = optionName(f);
    if (kind === 'bool') {
      if (t.inlineValue) throw new Error(`--${f} takes no value`);
      values[key] = true;
    } else if (kind === 'ints') {
      const words: string[] = t.inlineValue ? t.value!.split(',') : [];
      if (!t.inlineValue) {
        for (let i = t.index + 1; i < args.length && !/^--?[a-zA-Z]/.test(args[i]); i++) words.push(args[i]);
        takenUpTo = t.index + words.length;
      }
      if (words.length === 0) throw new Error(`--${f}: expected one or more integers`);
      values[key] = words.map((v) => parseNumber(f, 'int', v));
    } else {
      if (t.value === undefined) throw new Error(`--${f}: missing value`);
      values[key] = kind === 'string' ? t.value : parseNumber(f, kind, t.value);
    }
  }
  if (!values.help)
    for (const f of (COMMANDS[command] as CommandSpec).required ?? [])
      if (!given.has(f)) throw new Error(`${command}: --${f} is required (see --help)`);
  return { command, options: values, positional, given } as unknown as ParsedCommandLine;
}

// ---- help

function flagLine(command: CommandName, f: FlagName): string {
  const spec = FLAGS[f] as (typeof FLAGS)[FlagName] & { aliases?: readonly string[] };
  const help = (COMMANDS[command] as CommandSpec).help?.[f] ?? spec.help;
  const names = [f, ...(spec.aliases ?? [])].map((n) => (n.length === 1 ? `-${n}` : `--${n}`)).join(', ');
  const kind = spec.kind as string;
  const value = kind === 'bool' ? '' : kind === 'ints' ? ' N [N ...]' : kind === 'string' ? ' S' : ' X';
  const d = spec.default as unknown;
  const required = (COMMANDS[command] as CommandSpec).required?.includes(f) ?? false;
  const dflt =
    d === null || kind === 'bool' || required ? '' : ` (default: ${Array.isArray(d) ? d.join(' ') : String(d)})`;
  return `  ${(names + value).padEnd(38)} ${help}${dflt}`;
}

/** `qcapsnets [command] --help`: what the command does and only its flags, with their defaults;
 *  without a command, every command's usage too. */
export function helpText(command: CommandName): string {
  const c = COMMANDS[command];
  const lines: string[] = [];
  if (command === 'all') {
    lines.push('usage:');
    for (const name of ['all', ...SUBCOMMANDS] as CommandName[]) lines.push(`  ${COMMANDS[name].usage}`);
    lines.push('', "'qcapsnets <command> --help' lists a command's own flags.", '');
  } else lines.push(`usage: ${c.usage}`, '');
  lines.push(...c.summary, '', command === 'all' ? 'flags (no command):' : 'flags:');
  for (const f of FLAG_NAMES) if (takes(command, f)) lines.push(flagLine(command, f));
  return lines.join('\n');
}
