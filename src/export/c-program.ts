// The model-specific part of qcaps_model.c as the layer lowerings (c-lowerings.ts) write it:
// the kernel macros, the float copies of parameters (in the order of first use), the static
// buffers, the local variables and the body of qcaps_infer, the runtime's optional parts, and
// the quantizers (read from the QuantizedModel's hooks) as C arguments.
import type { LayerDescription } from '../models/description.js';
import type { QuantizedModel } from '../quant/quantized-model.js';
import type { CRuntimeParts } from './c-export-runtime.js';
import { cName, type CFloatBuffer, type CTensor, floatLiteral } from './c-export-weights.js';
import { type ExportQuantizer, ExportQuantizers, type RoutingQuantizers, saturates } from './export-quantizers.js';

/** A value of qcaps_infer between layers:
 *  - image: the `image` argument, floats [side][side][channels];
 *  - map: floats [side][side][types][dim] (channels last) on the grid of 2^-frac (`fracArg`:
 *    frac as C writes it), and `ints`, its integers at frac bits, once written;
 *  - capsules: a capsule list, floats [count][dim]. */
export type CValue =
  | { form: 'image'; side: number; channels: number }
  | {
      form: 'map';
      float: string;
      ints: string | null;
      frac: number;
      fracArg: string;
      side: number;
      types: number;
      dim: number;
    }
  | { form: 'capsules'; float: string; count: number; dim: number };

export type CMap = Extract<CValue, { form: 'map' }>;

export type CImage = Extract<CValue, { form: 'image' }>;

/** What a layer reads: its sources (the image or earlier layers' outputs, by name), whether
 *  they are flattened into one capsule list, and whether the layer is the model's last. */
export interface CLayerInput {
  sources: readonly { name: string; value: CValue }[];
  flatten: boolean;
  last: boolean;
}

export type CLowering = (p: CProgram, layer: LayerDescription, input: CLayerInput) => CValue;

/** The one value a layer that does not flatten reads. */
export function singleInput(layer: LayerDescription, input: CLayerInput): CValue {
  if (input.flatten || input.sources.length !== 1)
    throw new Error(`C export: layer '${layer.name}' (${layer.kind}) reads one value, not flattened capsule lists`);
  return input.sources[0].value;
}

/** `v` as a map (or the image) of `channels` channels, or an error naming the layer. */
export function mapOf(layer: LayerDescription, v: CValue, channels: number): CMap | CImage {
  const got = v.form === 'image' ? v.channels : v.form === 'map' ? v.types * v.dim : null;
  if (got !== channels)
    throw new Error(
      `C export: layer '${layer.name}' (${layer.kind}) reads a map of ${channels} channels, got ${got === null ? 'a capsule list' : `${got} channels`}`,
    );
  return v as CMap;
}

/** `v` as a quantized map of `channels` channels (not the image), or an error naming the layer. */
export function quantizedMapOf(layer: LayerDescription, v: CValue, channels: number): CMap {
  const m = mapOf(layer, v, channels);
  if (m.form !== 'map')
    throw new Error(
      `C export: layer '${layer.name}' (${layer.kind}) reads a quantized map; its C does not take the image`,
    );
  return m;
}

/** The loop variables of qcaps_infer, in the order they are declared. */
const LOCALS = ['k', 'i', 'p', 'j', 'd'] as const;
type Local = (typeof LOCALS)[number];

/** 2^-n as a C float literal (exact). */
export const pow2 = (n: number): string => `0x1p${-n}f`;

/** A name as the start of a C identifier (not a digit first). */
const cIdentifier = (name: string) => (/^[0-9]/.test(name) ? `l${cName(name)}` : cName(name));

/** The first word of a camelCase name, as a C identifier. */
const firstWord = (name: string) => {
  const c = cIdentifier(name);
  return /^[a-z0-9_]+/.exec(c)?.[0] ?? c;
};

/** A camelCase name in snake_case: capsLayer -> caps_layer. */
export const snakeCase = (name: string): string =>
  cIdentifier(name)
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase();

/** A bound as a C float: the literal, or +-INFINITY. */
const boundText = (v: number) => (Number.isFinite(v) ? floatLiteral(v) : v < 0 ? '-INFINITY' : 'INFINITY');

export class CProgram {
  readonly quant: ExportQuantizers;
  private readonly macros: string[] = [];
  private readonly copies: { name: string; decl: string; load: string }[] = [];
  private readonly statics: string[] = [];
  private readonly declared = new Set<string>();
  private readonly body: string[] = [];
  private readonly locals = new Set<Local>();
  private readonly features = new Set<'BATCHNORM' | 'SQUASH_DOUBLE'>();
  private x16 = 0;
  private readonly stems: ReadonlyMap<string, string>;
  readonly parts: CRuntimeParts = { route: false, routeSaturating: false, saturate: false };

  constructor(
    private readonly q: QuantizedModel,
    private readonly tensors: readonly CTensor[],
    private readonly floats: readonly CFloatBuffer[],
  ) {
    this.quant = new ExportQuantizers(q, 'C export');
    const names = q.model.description.names;
    const words = names.map(firstWord);
    this.stems = new Map(
      names.map((n, i) => [n, words.indexOf(words[i]) === words.lastIndexOf(words[i]) ? words[i] : cIdentifier(n)]),
    );
  }

  /** The prefix of layer `name`'s C identifiers: its name's first word ('capsLayer' -> caps),
   *  or its whole name where two layers' first words are the same. */
  stem(name: string): string {
    const s = this.stems.get(name);
    if (s === undefined) throw new Error(`C export: no layer named '${name}'`);
    return s;
  }

  /** A parameter's integers. */
  tensor(name: string): CTensor {
    const t = this.tensors.find((x) => x.name === name);
    if (!t) throw new Error(`C export: the quantized model has no parameter '${name}'`);
    return t;
  }

  /** A float buffer (BatchNorm's running statistics). */
  buffer(name: string): CFloatBuffer {
    const f = this.floats.find((x) => x.name === name);
    if (!f) throw new Error(`C export: the model has no buffer '${name}'`);
    return f;
  }

  /** The static float copy of parameter `name` (exact: integers times a power of two), filled
   *  once by load_floats; declared in the order of first use. */
  copy(name: string): string {
    const t = this.tensor(name);
    const copy = `${t.array}_f`;
    if (!this.copies.some((c) => c.name === copy))
      this.copies.push({
        name: copy,
        decl: `static float ${copy}[${t.macro}_SIZE];`,
        load: `  for (i = 0; i < ${t.macro}_SIZE; i++) ${copy}[i] = (float)${t.array}[i] * ${pow2(t.fracBits)};`,
      });
    return copy;
  }

  macro(line: string): void {
    this.macros.push(line);
  }

  /** A static declaration, as written. */
  static(line: string): void {
    this.statics.push(line);
  }

  /** `static type name[n]; /* what *\/`; returns the name. */
  declare(type: string, name: string, n: number, what: string): string {
    this.statics.push(`static ${type} ${name}[${n}]; /* ${what} */`);
    return name;
  }

  /** Lines of qcaps_infer's body. */
  line(...lines: string[]): void {
    this.body.push(...lines);
  }

  /** qcaps_infer declares these loop variables. */
  use(...names: Local[]): void {
    for (const n of names) this.locals.add(n);
  }

  /** A runtime part under #ifdef QCAPS_USES_<feature>. */
  feature(name: 'BATCHNORM' | 'SQUASH_DOUBLE'): void {
    this.features.add(name);
  }

  /** The shared int16 scratch of the fixed-point convolutions (`x16`), of at least n values. */
  scratch16(n: number): string {
    this.x16 = Math.max(this.x16, n);
    return 'x16';
  }

  /** An int16 scratch of n values for the convolutions of the integers `ints` (`<ints>16`). */
  int16Copy(ints: string, n: number): string {
    const name = `${ints}16`;
    if (!this.declared.has(name)) this.static(`static int16_t ${name}[${n}];`);
    this.declared.add(name);
    return name;
  }

  /** The integers of map `v` at its frac bits: written once, where first needed. */
  integers(v: CMap): CMap & { ints: string } {
    if (v.ints === null) {
      const n = v.side * v.side * v.types * v.dim;
      v.ints = this.declare('int32_t', `${v.float}_int`, n, `${v.float} as integers`);
      this.line(`  to_integers(${v.float}, ${v.ints}, ${n}, ${v.fracArg});`);
    }
    return v as CMap & { ints: string };
  }

  /** frac as C writes it for the quantizers of module `path`: the layer's macro
   *  (QCAPS_<LAYER>_ACT_BITS or _ROUTING_BITS, qcaps_weights.h) where frac is that count of a
   *  fixed-format layer, else the number. */
  fracArg(path: string, frac: number, which: 'ACT' | 'ROUTING'): string {
    const bits = this.q.bitsOf(path);
    const count = which === 'ACT' ? bits.act : bits.routing;
    return bits.format === 'fixed' && count === frac
      ? `QCAPS_${cName(bits.name).toUpperCase()}_${which}_BITS`
      : `${frac}`;
  }

  /** The lines that quantize n floats of `buf` with `q` (frac as `arg`), saturating where q has
   *  bounds. */
  quantize(buf: string, n: number, q: ExportQuantizer, arg: string): string[] {
    const lines = [`  quantize_floats(${buf}, ${n}, ${arg});`];
    if (saturates(q)) {
      this.parts.saturate = true;
      lines.push(`  saturate_floats(${buf}, ${n}, ${boundText(q.lo)}, ${boundText(q.hi)});`);
    }
    return lines;
  }

  /** The routing of module `path`: the function to call (route, or route_saturating where a
   *  quantizer has bounds) and its quantizer arguments: [act, routing] fracs, then the bounds
   *  when saturating. */
  route(path: string): { quant: RoutingQuantizers; fn: string; act: string; routing: string; bounds: string } {
    const quant = this.quant.routing(path);
    const act = this.fracArg(path, quant.act.frac, 'ACT');
    const routing = this.fracArg(path, quant.routing.frac, 'ROUTING');
    if (!saturates(quant.act) && !saturates(quant.routing)) {
      this.parts.route = true;
      return { quant, fn: 'route', act, routing, bounds: '' };
    }
    this.parts.routeSaturating = true;
    this.parts.saturate = true;
    const b = [quant.act.lo, quant.act.hi, quant.routing.lo, quant.routing.hi].map(boundText).join(', ');
    return { quant, fn: 'route_saturating', act, routing, bounds: `${b}, ` };
  }

  /** The #define lines of the runtime parts used. */
  defines(): string {
    return ['BATCHNORM', 'SQUASH_DOUBLE']
      .filter((f) => this.features.has(f as 'BATCHNORM'))
      .map((f) => `#define QCAPS_USES_${f}\n`)
      .join('');
  }

  /** The text after the runtime: macros, float copies, statics, qcaps_infer. */
  text(): string {
    const statics = [...this.statics];
    if (this.x16 > 0) statics.push(`static int16_t x16[${this.x16}]; /* int16 copies of conv inputs */`);
    const locals: string[] = [];
    if (this.locals.has('k')) locals.push('  size_t k;');
    const ints = LOCALS.filter((n) => n !== 'k' && this.locals.has(n));
    if (ints.length) locals.push(`  int ${ints.join(', ')};`);
    return `
${this.macros.join('\n')}

/* the parameters read as floats (exact: integers times a power of two) */
${this.copies.map((f) => f.decl).join('\n')}

static void load_floats(void) {
  static int loaded = 0;
  size_t i;
  if (loaded) return;
${this.copies.map((f) => f.load).join('\n')}
  loaded = 1;
}

/* activations, one image at a time (static: qcaps_infer is not reentrant) */
${statics.join('\n')}

int qcaps_infer(const float *image, float *class_lengths) {
${[...locals, '  load_floats();', ...this.body].join('\n')}
}
`;
  }
}
