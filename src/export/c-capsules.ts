// The C lowering of a fully connected capsule layer (Capsules, c-lowerings.ts): its input
// capsule list (capsule maps flattened in the order (type, y, x), concatenated in the order the
// layer names them), the votes W_i x_i of the integers' float values, quantized, and the routing
// over its output capsules.
//
// The same C is written in one of two layouts, so that the exports stay byte for byte what they
// were (fixtures/export-golden): a layer that reads one capsule map (ShallowCapsNet's class
// capsules) in the compact one (shared declarations, aligned comments), a layer that reads
// several (DeepCaps') in the listed one (a declaration per buffer, each source's offset).
import type { LayerDescription } from '../models/description.js';
import { Capsules } from '../nn/capsules.js';
import { type CLayerInput, type CProgram, type CValue, pow2, snakeCase } from './c-program.js';
import { moduleAs } from './lowering.js';

/** The capsule list a layer reads: a flattened map, several concatenated, or a list as it is. */
interface Gather {
  /** the buffer of the list, [count][dim] */
  list: string;
  /** the loops that write it (none for a list read as it is) */
  sources: { float: string; positions: number; types: number; dim: number; offset: number }[];
}

function gather(p: CProgram, layer: LayerDescription, input: CLayerInput, l: Capsules, buffer: string): Gather {
  const bad = (what: string) =>
    new Error(`C export: layer '${layer.name}' (Capsules) reads a capsule list [${l.I}, ${l.Din}], ${what}`);
  if (!input.flatten) {
    const v = input.sources.length === 1 ? input.sources[0].value : null;
    if (v?.form !== 'capsules' || v.count !== l.I || v.dim !== l.Din) throw bad('not this value');
    return { list: v.float, sources: [] };
  }
  let offset = 0;
  const sources = input.sources.map(({ name, value: v }) => {
    if (v.form !== 'map') throw bad(`and '${name}' is not a capsule map`);
    const s = { float: v.float, positions: v.side * v.side, types: v.types, dim: v.dim, offset };
    offset += v.types * s.positions;
    return s;
  });
  if (offset !== l.I || sources.some((s) => s.dim !== l.Din))
    throw bad(`got ${sources.map((s) => `[${s.types * s.positions}, ${s.dim}]`).join(' + ')}`);
  p.use('p', 'j', 'd');
  return { list: buffer, sources };
}

/** The loops that copy each source map [P][T][D] into the list at its offset, capsule
 *  (t, p) at offset + t * P + p; `offsets`: written even where 0 (the listed layout). */
function gatherLines(g: Gather, offsets: boolean): string[] {
  return g.sources.flatMap((s) => [
    `  for (p = 0; p < ${s.positions}; p++)`,
    `    for (j = 0; j < ${s.types}; j++)`,
    `      for (d = 0; d < ${s.dim}; d++) ${g.list}[(${offsets ? `${s.offset} + ` : ''}(size_t)j * ${s.positions} + p) * ${s.dim} + d] = ${s.float}[((size_t)p * ${s.types} + j) * ${s.dim} + d];`,
  ]);
}

/** Capsules: gather, votes, quantized, routing -> the output capsules [J][D]. */
export function capsulesC(p: CProgram, layer: LayerDescription, input: CLayerInput): CValue {
  const l = moduleAs(layer.module, Capsules);
  const s = p.stem(layer.name);
  const { I, Din, J, D } = l;
  const w = p.tensor(`${l.path}.weight`);
  const fn = `${snakeCase(layer.name)}_votes`;
  const votes = `${s}_votes` === fn ? `${s}_votes_buf` : `${s}_votes`;
  const vq = p.quant.activation(l.path, 'votes');
  const vArg = p.fracArg(l.path, vq.frac, 'ACT');
  const r = p.route(l.path);
  const compact = input.sources.length === 1;
  const g = gather(p, layer, input, l, `${s}_in`);
  const its = `${l.iterations} routing iteration${l.iterations === 1 ? '' : 's'}`;
  if (compact) {
    if (g.sources.length)
      p.static(`static float ${s}_in[${I * Din}];          /* [${I}][${Din}], capsules in the order (type, y, x) */`);
    p.static(`static float ${votes}[${I * J * D}]; /* [${I}][${J}][${D}] */`);
    p.static(`static float ${s}_logits[${I * J}], ${s}_c[${I * J}], ${s}_s[${J * D}];`);
    p.static(`static float ${s}_v[${J * D}];`);
  } else {
    p.declare('float', `${s}_in`, I * Din, `[${I}][${Din}]`);
    p.declare('float', votes, I * J * D, `[${I}][${J}][${D}]`);
    p.declare('float', `${s}_logits`, I * J, 'routing logits');
    p.declare('float', `${s}_c`, I * J, 'routing couplings');
    p.declare('float', `${s}_s`, J * D, 'routing s');
    p.declare('float', `${s}_v`, J * D, input.last ? 'class capsules' : 'output capsules');
  }
  p.macro(`QCAPS_CAPSULE_VOTES(${fn}, ${w.array})`);
  if (compact && g.sources.length) {
    const [src] = g.sources;
    p.line(
      `  /* [P][${src.types}][${src.dim}] -> [${src.types} * P][${src.dim}]: the capsule list in the order (type, y, x) */`,
    );
  }
  p.line(
    ...gatherLines(g, !compact),
    compact
      ? `  /* ${layer.name}: votes W_i x_i quantized (${vq.frac} bits), ${its} */`
      : `  /* ${layer.name}: votes quantized, ${its} */`,
    `  ${fn}(${g.list}, ${I}, ${Din}, ${J * D}, ${pow2(w.fracBits)}, ${votes});`,
    ...p.quantize(votes, I * J * D, vq, vArg),
  );
  const head = `  ${r.fn}(${votes}, ${p.copy(`${l.path}.bias`)}, ${I}, 1, ${J}, ${D}, ${l.iterations}, 0, ${r.act},`;
  const rest = `${r.routing}, ${r.bounds}${s}_v, ${s}_logits, ${s}_c, ${s}_s);`;
  p.line(...(compact ? [head, `        ${rest}`] : [`${head} ${rest}`]));
  return { form: 'capsules', float: `${s}_v`, count: J, dim: D };
}
