// `finetune --bits FILE`: a JSON object with one entry per layer of the model, by the layer's
// name, each {"weight": W, "activation": A} and, for a layer that routes, "routing": R, e.g.
//   {"conv": {"weight": 8, "activation": 8},
//    "primary": {"weight": 6, "activation": 6, "routing": 6},
//    "digit": {"weight": 5, "activation": 6, "routing": 4}}
// (counts in --number-format: fractional bits under fixed). Read into the model's per-layer
// records, in its layer order; any mismatch is one error naming the file and the layer.
import { readFileSync, statSync } from 'node:fs';
import type { QuantLayerInfo } from '../models/capsnet.js';
import { type BitConfig, checkBitConfig, MAX_FRACTIONAL_BITS, type NumberFormat } from '../quant/config.js';

/** The most a --bits file may hold (a DeepCaps has 6 layers; a few hundred bytes). */
const MAX_BYTES = 1 << 20;

const KEYS = ['weight', 'activation', 'routing'] as const;

/** The per-layer records of `file` for a model of `layers` (see the top). */
export function readBitsFile(file: string, layers: readonly QuantLayerInfo[], format: NumberFormat): BitConfig {
  const where = `--bits ${file}`;
  const names = layers.map((l) => l.name).join(', ');
  const st = statSync(file, { throwIfNoEntry: false });
  if (!st?.isFile()) throw new Error(`${where}: no such file (expected a JSON file of bits per layer: ${names})`);
  if (st.size > MAX_BYTES) throw new Error(`${where}: ${st.size} bytes; a bits file is a small JSON object`);
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new Error(`${where}: not JSON (${(err as Error).message})`, { cause: err });
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json))
    throw new Error(`${where}: expected an object with one entry per layer (${names}), got ${kindOf(json)}`);
  const entries = json as Record<string, unknown>;
  for (const name of Object.keys(entries))
    if (!layers.some((l) => l.name === name))
      throw new Error(`${where}: '${name}' is not a layer of the model (its layers: ${names})`);
  const bits = layers.map((l) => {
    const e = entries[l.name];
    if (e === undefined)
      throw new Error(`${where}: no entry for layer '${l.name}' (the model's ${layers.length} layers: ${names})`);
    if (typeof e !== 'object' || e === null || Array.isArray(e))
      throw new Error(
        `${where}: layer '${l.name}': expected an object with weight, activation${l.routes ? ', routing' : ''}, got ${kindOf(e)}`,
      );
    const r = e as Record<string, unknown>;
    for (const key of Object.keys(r))
      if (!(KEYS as readonly string[]).includes(key))
        throw new Error(
          `${where}: layer '${l.name}': unknown key '${key}' (expected weight, activation${l.routes ? ', routing' : ''})`,
        );
    for (const key of ['weight', 'activation'] as const)
      if (r[key] === undefined) throw new Error(`${where}: layer '${l.name}': no '${key}' bits`);
    if (l.routes && r.routing === undefined)
      throw new Error(`${where}: layer '${l.name}' routes: it needs 'routing' bits too`);
    if (!l.routes && r.routing !== undefined)
      throw new Error(`${where}: layer '${l.name}' does not route: it takes no 'routing' bits`);
    for (const key of KEYS) {
      const v = r[key];
      if (v !== undefined && !(Number.isInteger(v) && (v as number) >= 0 && (v as number) <= MAX_FRACTIONAL_BITS))
        throw new Error(
          `${where}: layer '${l.name}' ${key}: expected an integer number of bits in [0, ${MAX_FRACTIONAL_BITS}], got ${JSON.stringify(v)}`,
        );
    }
    return {
      name: l.name,
      format,
      weight: r.weight as number,
      act: r.activation as number,
      routing: l.routes ? (r.routing as number) : null,
    };
  });
  checkBitConfig(layers, bits, where);
  return bits;
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}
