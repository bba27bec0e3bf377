// A small ONNX graph builder on the onnx-proto schema (protobufjs): nodes with fresh output
// names, constants and initializers as raw little-endian bytes, and the encoded ModelProto.
import onnxProto, { type onnx as proto } from 'onnx-proto';

const { onnx } = onnxProto; // a CommonJS module: its namespace is the default export

/** ONNX TensorProto.DataType codes used here. */
export const DT = { float: 1, int8: 3, int16: 5, int32: 6, int64: 7, double: 11 } as const;
export type DataType = (typeof DT)[keyof typeof DT];

export type Attr = number | number[] | string;

/** The opset the graph is written for: the first with int16 DequantizeLinear (ONNX 1.16). */
export const OPSET = 21;
const IR_VERSION = 10;

export class OnnxGraph {
  readonly nodes: proto.INodeProto[] = [];
  readonly initializers: proto.ITensorProto[] = [];
  private count = 0;
  private readonly scalars = new Map<string, string>();

  /** A new value name with a readable prefix. */
  fresh(prefix: string): string {
    return `${prefix}_${this.count++}`;
  }

  /** One node with a single output; returns the output's name. Integer attributes are INT(S),
   *  others FLOAT(S), strings STRING. */
  op(type: string, inputs: string[], attrs: Record<string, Attr> = {}, out?: string): string {
    const output = out ?? this.fresh(type.toLowerCase());
    const attribute = Object.entries(attrs).map(([name, v]) => attribute1(name, v));
    this.nodes.push({ opType: type, input: inputs, output: [output], name: output, attribute });
    return output;
  }

  /** An initializer from raw values. */
  tensor(name: string, dataType: DataType, dims: readonly number[], raw: Uint8Array): string {
    this.initializers.push({ name, dataType, dims: [...dims], rawData: raw });
    return name;
  }

  floats(values: ArrayLike<number>, dims: readonly number[], prefix = 'const'): string {
    return this.tensor(this.fresh(prefix), DT.float, dims, bytesOf(Float32Array.from(values)));
  }

  doubles(values: ArrayLike<number>, dims: readonly number[], prefix = 'const'): string {
    return this.tensor(this.fresh(prefix), DT.double, dims, bytesOf(Float64Array.from(values)));
  }

  int64s(values: readonly number[], prefix = 'shape'): string {
    return this.tensor(this.fresh(prefix), DT.int64, [values.length], bytesOf(BigInt64Array.from(values, BigInt)));
  }

  /** A float32 (or float64) scalar constant, shared by every use of the same value. */
  scalar(v: number, type: 'float' | 'double' = 'float'): string {
    const key = `${type}:${Object.is(v, -0) ? '-0' : v}`;
    let name = this.scalars.get(key);
    if (!name) {
      name = type === 'float' ? this.floats([v], [], 'scalar') : this.doubles([v], [], 'scalar');
      this.scalars.set(key, name);
    }
    return name;
  }

  reshape(x: string, shape: readonly number[]): string {
    return this.op('Reshape', [x, this.int64s([...shape])]);
  }

  transpose(x: string, perm: readonly number[]): string {
    return this.op('Transpose', [x], { perm: [...perm] });
  }

  /** ReduceSum/ReduceMax over `axes` (opset 18+: the axes are an input). */
  reduce(type: 'ReduceSum' | 'ReduceMax', x: string, axes: readonly number[], keepdims: boolean): string {
    return this.op(type, [x, this.int64s([...axes], 'axes')], { keepdims: keepdims ? 1 : 0 });
  }

  /** The model: one float input and the named float outputs, each with its dims ('batch' is
   *  the dynamic batch size). */
  encode(
    name: string,
    inputs: { name: string; dims: (number | string)[] }[],
    outputs: { name: string; dims: (number | string)[] }[],
    docString: string,
  ): Uint8Array {
    const info = (v: { name: string; dims: (number | string)[] }): proto.IValueInfoProto => ({
      name: v.name,
      type: {
        tensorType: {
          elemType: DT.float,
          shape: { dim: v.dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
        },
      },
    });
    const model = onnx.ModelProto.create({
      irVersion: IR_VERSION,
      opsetImport: [{ domain: '', version: OPSET }],
      producerName: 'qcapsnets',
      docString,
      graph: {
        name,
        node: this.nodes,
        initializer: this.initializers,
        input: inputs.map(info),
        output: outputs.map(info),
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function attribute1(name: string, v: Attr): proto.IAttributeProto {
  const A = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return { name, type: A.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v))
    return v.every(Number.isInteger) ? { name, type: A.INTS, ints: v } : { name, type: A.FLOATS, floats: v };
  return Number.isInteger(v) ? { name, type: A.INT, i: v } : { name, type: A.FLOAT, f: v };
}

/** The bytes of a typed array, little-endian as on every platform Node runs on here. */
export function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength).slice();
}
