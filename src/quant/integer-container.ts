// The one rule for the integer type that holds a two's-complement width: the smallest of 8, 16,
// 32 and 64 bits that is at least as wide (C's int8_t..int64_t, ONNX's int8..int64,
// IntegerParameter's Int32Array or BigInt64Array).
export type ContainerBits = 8 | 16 | 32 | 64;

export function integerContainer(width: number): ContainerBits {
  if (!(Number.isInteger(width) && width >= 1 && width <= 64))
    throw new Error(`integer container: a width of ${width} bits: expected an integer in [1, 64]`);
  return width <= 8 ? 8 : width <= 16 ? 16 : width <= 32 ? 32 : 64;
}
