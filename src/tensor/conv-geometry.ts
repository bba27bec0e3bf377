// The output side of a convolution, the one formula every layer, model and export uses:
//   out = floor((in + 2*pad - kernel) / stride) + 1
export interface ConvGeometry {
  kernel: number;
  stride: number;
  pad: number;
}

/** Side of a convolution's output along one axis of `side` pixels (< 1: the input is smaller
 *  than the kernel). */
export function convOutputSide(side: number, g: ConvGeometry): number {
  return Math.floor((side + 2 * g.pad - g.kernel) / g.stride) + 1;
}
