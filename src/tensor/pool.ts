// A pool of float32 buffers keyed by length. Fresh memory costs about 3 ms per MB on
// the machines this runs on (page faults), so the big activations, gradients and
// workspaces are taken from here and given back once used.

const free = new Map<number, Float32Array[]>();
let pooledBytes = 0;
const maxPooledBytes = 2 ** 31; // bound on memory held by buffers nobody uses

/** A buffer of exactly n floats; its contents are arbitrary unless `zero`. */
export function take(n: number, zero = false): Float32Array {
  const list = free.get(n);
  const buf = list?.pop();
  if (buf) {
    pooledBytes -= buf.byteLength;
    if (zero) buf.fill(0);
    return buf;
  }
  return new Float32Array(n);
}

/** Gives a buffer back; the caller must not touch it afterwards. */
export function give(buf: Float32Array): void {
  if (buf.byteOffset !== 0 || buf.length * 4 !== buf.buffer.byteLength) return; // views are not pooled
  if (pooledBytes + buf.byteLength > maxPooledBytes) return;
  let list = free.get(buf.length);
  if (!list) {
    list = [];
    free.set(buf.length, list);
  }
  list.push(buf);
  pooledBytes += buf.byteLength;
}

export function poolStats(): { buffers: number; bytes: number } {
  let buffers = 0;
  for (const l of free.values()) buffers += l.length;
  return { buffers, bytes: pooledBytes };
}

export function clearPool(): void {
  free.clear();
  pooledBytes = 0;
}
