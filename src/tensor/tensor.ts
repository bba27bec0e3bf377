// A float32 tensor: a flat row-major buffer plus its shape. Nothing more.
// Activations of 2-D layers are channels-last (NHWC) inside qcapsnets; see README "Layouts".

export type Shape = readonly number[];

export class Tensor {
  readonly data: Float32Array;
  readonly shape: Shape;

  constructor(data: Float32Array, shape: Shape) {
    if (!(data instanceof Float32Array)) {
      const got = (data as object | null)?.constructor?.name ?? typeof data;
      throw new TypeError(`Tensor: data must be a Float32Array (float32), got ${got}`);
    }
    if (!shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new Error(`Tensor: shape [${shape.join(', ')}] must hold non-negative integers`);
    }
    const n = numel(shape);
    if (data.length !== n) {
      throw new Error(`Tensor: buffer has ${data.length} elements but shape [${shape.join(', ')}] needs ${n}`);
    }
    this.data = data;
    this.shape = shape;
  }

  static zeros(shape: Shape): Tensor {
    return new Tensor(new Float32Array(numel(shape)), shape);
  }

  static from(values: ArrayLike<number>, shape: Shape): Tensor {
    return new Tensor(Float32Array.from(values), shape);
  }

  get size(): number {
    return this.data.length;
  }

  get rank(): number {
    return this.shape.length;
  }

  /** Same buffer, new shape (like torch.view on a contiguous tensor). */
  reshape(shape: Shape): Tensor {
    const resolved = resolveShape(shape, this.data.length, 'reshape');
    return new Tensor(this.data, resolved);
  }

  clone(): Tensor {
    return new Tensor(this.data.slice(), this.shape);
  }

  toString(): string {
    return `Tensor[${this.shape.join(', ')}]`;
  }
}

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function shapeStr(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

/** Resolves one -1 in a shape against a known element count. */
export function resolveShape(shape: Shape, count: number, op: string): number[] {
  const out = [...shape];
  const free = out.indexOf(-1);
  if (free >= 0) {
    const rest = numel(out.filter((_, i) => i !== free));
    if (rest === 0 || count % rest !== 0) {
      throw new Error(`${op}: cannot reshape ${count} elements into ${shapeStr(shape)}`);
    }
    out[free] = count / rest;
  }
  if (numel(out) !== count || out.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new Error(`${op}: cannot reshape ${count} elements into ${shapeStr(shape)}`);
  }
  return out;
}

/** Throws an error that names the op and the shapes when `ok` is false. */
export function check(ok: boolean, op: string, message: string): asserts ok {
  if (!ok) throw new Error(`${op}: ${message}`);
}

export function expectShape(t: Tensor, shape: Shape, op: string, name: string): void {
  const same = t.shape.length === shape.length && t.shape.every((d, i) => shape[i] < 0 || d === shape[i]);
  if (!same) {
    const want = shape.map((d) => (d < 0 ? '*' : String(d))).join(', ');
    throw new Error(`${op}: ${name} has shape ${shapeStr(t.shape)}, expected [${want}]`);
  }
}

/** A NaN or Infinity where an op needs finite values (a diverging training run, say). */
export class NonFiniteValueError extends Error {
  override name = 'NonFiniteValueError';
}

export function expectFinite(t: Tensor, op: string, name: string): void {
  const d = t.data;
  for (let i = 0; i < d.length; i++) {
    if (!Number.isFinite(d[i])) {
      throw new NonFiniteValueError(
        `${op}: ${name} ${shapeStr(t.shape)} has a non-finite value (${d[i]}) at flat index ${i}`,
      );
    }
  }
}
