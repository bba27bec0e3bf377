// A fuzz worker: writes each input it is sent to a file, runs the reader on it and reports
// the outcome. It runs in a worker_thread so that a hang can be ended (terminate) and a
// runaway heap ends this thread (resourceLimits), not the fuzzer.
//
// Allocations driven by a size field: before the readers are loaded, the typed-array,
// ArrayBuffer, Array and Buffer.alloc constructors of this thread are wrapped so that every
// allocation's byte size is checked against the input's length. A reader may expand what it
// reads (int8 -> float32 is 4x; the quantized file's 1-bit codes become float64 values, 64x,
// and its model's weights are float32 next to 2-bit codes, 16x), so the budget is
// ALLOCATION_FACTOR x the input length + ALLOCATION_SLACK bytes; a single allocation above
// it can only come from a size or count field that claims more data than the file holds. The
// allocation is refused (a RangeError is thrown in its place, so the machine never pays for
// it) and the input is reported 'oversized', whatever the reader makes of the refusal.
// Allocations inside Node's own code (zlib output, fs buffers) do not go through the globals
// and are bounded by resourceLimits and the readers' own limits instead.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';

export const ALLOCATION_FACTOR = 64;
export const ALLOCATION_SLACK = 32 * 1024 * 1024;

export interface WorkerTask {
  readonly id: number;
  readonly reader: string;
  readonly bytes: Uint8Array;
}

export interface WorkerResult {
  readonly id: number;
  readonly outcome: 'ok' | 'typed' | 'uncaught' | 'oversized';
  readonly message: string;
}

let budget = Infinity;
let oversized: string | null = null;

function checkAllocation(what: string, bytes: number): void {
  if (bytes > budget) {
    oversized ??= `${what} of ${bytes} bytes for an input of ${(budget - ALLOCATION_SLACK) / ALLOCATION_FACTOR} bytes`;
    throw new RangeError(`fuzz: refused ${what} of ${bytes} bytes (more than the input could hold)`);
  }
}

type Ctor = new (...args: never[]) => unknown;

/** globalThis[name] replaced by a Proxy that checks `new name(n)`'s byte size first. */
function guard(name: string, bytesPerElement: number): void {
  const g = globalThis as unknown as Record<string, Ctor>;
  const target = g[name];
  g[name] = new Proxy(target, {
    construct(t, args, newTarget) {
      if (typeof args[0] === 'number') checkAllocation(`new ${name}(${args[0]})`, args[0] * bytesPerElement);
      return Reflect.construct(t, args, newTarget === g[name] ? t : newTarget) as object;
    },
    apply(t, thisArg, args) {
      if (name === 'Array' && args.length === 1 && typeof args[0] === 'number')
        checkAllocation(`Array(${args[0]})`, args[0] * 8);
      return Reflect.apply(t as unknown as (...a: unknown[]) => unknown, thisArg, args);
    },
  });
}

for (const [name, size] of [
  ['ArrayBuffer', 1],
  ['SharedArrayBuffer', 1],
  ['Uint8Array', 1],
  ['Int8Array', 1],
  ['Uint8ClampedArray', 1],
  ['Int16Array', 2],
  ['Uint16Array', 2],
  ['Int32Array', 4],
  ['Uint32Array', 4],
  ['Float32Array', 4],
  ['Float64Array', 8],
  ['BigInt64Array', 8],
  ['BigUint64Array', 8],
  ['Array', 8],
] as const)
  guard(name, size);
for (const fn of ['alloc', 'allocUnsafe', 'allocUnsafeSlow'] as const) {
  const original = Buffer[fn].bind(Buffer) as (n: number, ...rest: unknown[]) => Buffer;
  (Buffer as unknown as Record<string, unknown>)[fn] = (n: number, ...rest: unknown[]) => {
    checkAllocation(`Buffer.${fn}(${n})`, n);
    return original(n, ...rest);
  };
}

const { dir, readersModule } = workerData as { dir: string; readersModule?: string };
// the readers are loaded only now, so they see the guarded globals (a test of the harness may
// name a module of its own, with the same exports as readers.ts)
const { READERS, runReader } = (await import(readersModule ?? './readers.js')) as typeof import('./readers.js');

mkdirSync(dir, { recursive: true });
parentPort!.on('message', (task: WorkerTask) => {
  const file = join(dir, `${task.reader}-${task.id}${READERS[task.reader].ext}`);
  writeFileSync(file, task.bytes);
  budget = ALLOCATION_FACTOR * task.bytes.length + ALLOCATION_SLACK;
  oversized = null;
  const { outcome, message } = runReader(task.reader, file);
  budget = Infinity;
  rmSync(file, { force: true });
  const result: WorkerResult =
    oversized === null ? { id: task.id, outcome, message } : { id: task.id, outcome: 'oversized', message: oversized };
  parentPort!.postMessage(result);
});
parentPort!.postMessage({ ready: true });
