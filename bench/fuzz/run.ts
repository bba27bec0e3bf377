// A fuzzing campaign: inputs made from the seeds by mutate.ts, run in a small pool of
// worker_threads (worker.ts) with a time limit each; a worker that hangs is terminated and
// replaced, one that dies (out of memory, a native crash) counts as a crash and is replaced.
// Input k of reader r is mutated by Rng(seed, r, k), so a campaign is reproducible and any
// slice of it can be rerun.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { Rng } from '../../src/data/rng.js';
import { writeFileAtomic } from '../../src/io/atomic-write.js';
import { mutateJson, mutateMany, mutatePickle } from './mutate.js';
import { READER_NAMES, READERS } from './readers.js';
import { seedsFor, type Seed } from './seeds.js';
import type { WorkerResult, WorkerTask } from './worker.js';

export type FailureKind = 'hang' | 'crash' | 'uncaught' | 'oversized';

export interface ReaderFigures {
  inputs: number;
  ok: number;
  typed: number;
  hangs: number;
  crashes: number;
  uncaught: number;
  oversized: number;
}

export interface Failure {
  readonly reader: string;
  readonly index: number;
  readonly kind: FailureKind;
  readonly message: string;
  /** Where the input was saved (null without a save folder). */
  readonly file: string | null;
}

export interface FuzzReport {
  inputs: number;
  hangs: number;
  crashes: number;
  uncaught: number;
  oversized: number;
  readers: Record<string, ReaderFigures>;
  seconds: number;
  failures: Failure[];
}

export interface FuzzOptions {
  readonly seed: number;
  /** Inputs per reader. */
  readonly inputs: Readonly<Record<string, number>>;
  readonly workers?: number;
  /** Failing inputs are written here as <reader>-<sha256 prefix><ext>; null: not saved. */
  readonly saveDir?: string | null;
  /** Heap limit of each worker (MiB); above it the worker dies and the input is a crash. */
  readonly heapLimitMb?: number;
  readonly onProgress?: (done: number, total: number, report: FuzzReport) => void;
  /** Stops the campaign after the inputs in flight; the report then covers what ran. */
  readonly signal?: AbortSignal;
}

/** The default share of each reader, scaled so the total is `total` (at least 1 each). */
export function scaledInputs(total: number, readers: readonly string[] = READER_NAMES): Record<string, number> {
  const sum = readers.reduce((a, r) => a + READERS[r].defaultInputs, 0);
  return Object.fromEntries(readers.map((r) => [r, Math.max(1, Math.round((total * READERS[r].defaultInputs) / sum))]));
}

/** Input `index` of a reader: one seed, mutated as a whole or through one of its parts. */
export function makeInput(seeds: readonly Seed[], seed: number, readerIndex: number, index: number): Uint8Array {
  const rng = new Rng(seed, readerIndex, index);
  const s = seeds[rng.int(seeds.length)];
  if (s.parts.length === 0 || rng.int(3) === 0) return mutateMany(s.bytes, rng, s.fields);
  const part = s.parts[rng.int(s.parts.length)];
  if (part.kind === 'pickle') return part.wrap(mutatePickle(part.inner, rng));
  if (part.kind === 'json' && rng.int(4) !== 0) {
    const text = new TextDecoder().decode(part.inner);
    return part.wrap(new TextEncoder().encode(mutateJson(text, rng)));
  }
  return part.wrap(mutateMany(part.inner, rng, part.fields));
}

export type InputOutcome = FailureKind | 'ok' | 'typed';

/** One worker (worker.ts) that runs inputs one at a time, each under its reader's time limit;
 *  after a hang or a crash it is replaced by a fresh one. */
export class FuzzSlot {
  private worker!: Worker;
  private ready!: Promise<void>;
  private readonly dir = mkdtempSync(join(tmpdir(), 'qcaps-fuzz-'));

  /** `readersModule`: a module URL with readers.ts's exports, for testing the harness itself. */
  constructor(
    private readonly heapLimitMb = 1024,
    private readonly readersModule?: string,
  ) {
    this.spawn();
  }

  private spawn(): void {
    const worker = new Worker(new URL('./worker.js', import.meta.url), {
      workerData: { dir: this.dir, readersModule: this.readersModule },
      resourceLimits: { maxOldGenerationSizeMb: this.heapLimitMb, stackSizeMb: 4 },
      stdout: true,
      stderr: true,
    });
    worker.stdout.resume();
    worker.stderr.resume();
    this.ready = new Promise<void>((resolve, reject) => {
      worker.once('message', () => resolve());
      worker.once('error', reject);
    });
    this.worker = worker;
  }

  async run(
    reader: string,
    id: number,
    bytes: Uint8Array,
    timeoutMs = READERS[reader].timeoutMs,
  ): Promise<{ kind: InputOutcome; message: string }> {
    await this.ready;
    const worker = this.worker;
    return new Promise((resolve) => {
      let settled = false;
      const done = (kind: InputOutcome, message: string, replace: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        worker.off('message', onMessage);
        worker.off('error', onError);
        worker.off('exit', onExit);
        if (replace) {
          void worker.terminate();
          this.spawn();
        }
        resolve({ kind, message });
      };
      const onMessage = (m: WorkerResult) => done(m.outcome, m.message, false);
      const onError = (err: Error) => done('crash', `${err.name}: ${err.message}`.split('\n')[0], true);
      const onExit = (code: number) => done('crash', `worker exited with code ${code}`, true);
      const timer = setTimeout(() => done('hang', `no result within ${timeoutMs} ms`, true), timeoutMs);
      worker.on('message', onMessage);
      worker.on('error', onError);
      worker.on('exit', onExit);
      const task: WorkerTask = { id, reader, bytes };
      worker.postMessage(task);
    });
  }

  async close(): Promise<void> {
    await this.worker.terminate();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const started = performance.now();
  const readers = Object.keys(options.inputs);
  for (const r of readers)
    if (!READERS[r]) throw new Error(`fuzz: unknown reader '${r}' (expected ${READER_NAMES.join(', ')})`);
  const report: FuzzReport = {
    inputs: 0,
    hangs: 0,
    crashes: 0,
    uncaught: 0,
    oversized: 0,
    readers: {},
    seconds: 0,
    failures: [],
  };
  for (const r of readers)
    report.readers[r] = { inputs: 0, ok: 0, typed: 0, hangs: 0, crashes: 0, uncaught: 0, oversized: 0 };
  const seeds = new Map(readers.map((r) => [r, seedsFor(r)]));
  const tasks: { reader: string; index: number }[] = [];
  // interleaved, so a short run (or the progress line) covers every reader
  const longest = Math.max(0, ...readers.map((r) => options.inputs[r]));
  for (let k = 0; k < longest; k++)
    for (const r of readers) if (k < options.inputs[r]) tasks.push({ reader: r, index: k });

  const record = (reader: string, index: number, bytes: Uint8Array, kind: InputOutcome, message: string) => {
    const figures = report.readers[reader];
    figures.inputs++;
    report.inputs++;
    if (kind === 'ok' || kind === 'typed') {
      figures[kind]++;
      return;
    }
    const key = kind === 'hang' ? 'hangs' : kind === 'crash' ? 'crashes' : kind;
    figures[key]++;
    report[key]++;
    let file: string | null = null;
    if (options.saveDir) {
      mkdirSync(options.saveDir, { recursive: true });
      const hash = createHash('sha256').update(bytes).digest('hex').slice(0, 16);
      file = join(options.saveDir, `${reader}-${hash}${READERS[reader].ext}`);
      writeFileAtomic(file, () => [bytes]);
    }
    report.failures.push({ reader, index, kind, message, file });
  };

  // (before the workers start: they inherit what a preparation leaves in the environment)
  const undo: (() => void)[] = [];
  for (const r of readers) {
    const prepare = READERS[r].prepare;
    if (prepare && options.inputs[r] > 0) undo.push(prepare());
  }
  const slots = Array.from({ length: Math.max(1, options.workers ?? 1) }, () => new FuzzSlot(options.heapLimitMb));
  let next = 0;
  const loop = async (slot: FuzzSlot) => {
    while (next < tasks.length && !options.signal?.aborted) {
      const { reader, index } = tasks[next++];
      const bytes = makeInput(seeds.get(reader)!, options.seed, READER_NAMES.indexOf(reader), index);
      let { kind, message } = await slot.run(reader, index, bytes);
      if (kind === 'hang') {
        // a loaded machine can stall a worker for seconds: a hang is one that a fresh worker,
        // given four times as long, does not finish either
        const limit = 4 * READERS[reader].timeoutMs;
        const again = await slot.run(reader, index, bytes, limit);
        ({ kind, message } = again.kind === 'hang' ? { kind, message: `${message}, nor within ${limit} ms` } : again);
      }
      record(reader, index, bytes, kind, message);
      options.onProgress?.(report.inputs, tasks.length, report);
    }
  };
  try {
    await Promise.all(slots.map(loop));
  } finally {
    await Promise.all(slots.map((s) => s.close()));
    for (const u of undo.reverse()) u();
  }
  report.seconds = Math.round((performance.now() - started) / 100) / 10;
  return report;
}
