// The quantizers an export writes, read from the QuantizedModel itself: the QuantSpecs that its
// own quantized forward applies (QuantizedModel.hooks(): activationSpec(path, point) at each
// activation point, routing(path) inside each routing module), so that whatever number format
// made them (the fixed format's bits, per-tensor fractional lengths), the ONNX graph and the C
// code quantize as the forward does. A quantizer with finite bounds saturates; one with
// infinite bounds (the fixed format's activations) does not.
import type { QuantHooks } from '../nn/module.js';
import type { QuantizedModel } from '../quant/quantized-model.js';
import type { QuantMethod, QuantSpec } from '../tensor/backend.js';

/** One deterministic quantizer: method, fractional bits, the arithmetic (compat: the DAC 2020
 *  code's), and the saturation bounds (-Infinity and Infinity where it does not saturate). */
export interface ExportQuantizer {
  method: Exclude<QuantMethod, 'stochastic_rounding'>;
  frac: number;
  compat: boolean;
  lo: number;
  hi: number;
}

/** The quantizers inside one routing module: `act` for c and v, `routing` for s and the logits. */
export interface RoutingQuantizers {
  act: ExportQuantizer;
  routing: ExportQuantizer;
}

/** Whether `q` saturates at all (a finite bound). */
export const saturates = (q: ExportQuantizer): boolean => Number.isFinite(q.lo) || Number.isFinite(q.hi);

/** The quantizers of a QuantizedModel as an exporter reads them. `exporter` starts the errors
 *  ('ONNX export'); `stochasticAs`: the method a stochastic rounding quantizer is written with
 *  (ONNX's --onnx-rounding), or null where stochastic rounding cannot be exported. */
export class ExportQuantizers {
  private readonly hooks: QuantHooks;

  constructor(
    q: QuantizedModel,
    private readonly exporter: string,
    private readonly stochasticAs: ExportQuantizer['method'] | null = null,
  ) {
    this.hooks = q.hooks(0);
  }

  /** The quantizer at activation point `point` of module `path`. */
  activation(path: string, point: string): ExportQuantizer {
    const spec = this.hooks.activationSpec?.(path, point) ?? null;
    return this.of(spec, `${path} '${point}'`);
  }

  /** The quantizers inside routing module `path`. */
  routing(path: string): RoutingQuantizers {
    const r = this.hooks.routing(path);
    return {
      act: this.of(r?.act ?? null, `${path} routing (c, v)`),
      routing: this.of(r?.routing ?? null, `${path} routing (s, logits)`),
    };
  }

  private of(spec: QuantSpec | null, where: string): ExportQuantizer {
    if (!spec) throw new Error(`${this.exporter}: ${where} is not quantized, so it has no integer format to export`);
    let method = spec.method;
    if (method === 'stochastic_rounding') {
      if (!this.stochasticAs)
        throw new Error(`${this.exporter}: ${where} uses stochastic rounding, which has no deterministic export`);
      method = this.stochasticAs;
    }
    return { method, frac: spec.frac, compat: spec.compat, lo: spec.lo, hi: spec.hi };
  }
}
