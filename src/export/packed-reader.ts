// Reading a packed safetensors file back into a QuantizedModel, every field checked against
// the file's own model (the layout at the top of quantized-file.ts).
import { basename } from 'node:path';
import type { CapsNet } from '../models/capsnet.js';
import { buildModel, isModelName, leastParameterCount, moduleArgsProblem, orList } from '../models/factory.js';
import { modelKindNames } from '../models/registry.js';
import { type BitConfig, type BitLists, bitsFromLists } from '../quant/config.js';
import { type Calibration, checkCalibration, pointKey } from '../quant/calibration.js';
import { type NumberFormat } from '../quant/config.js';
import { DYNAMIC_MAX_FRAC, DYNAMIC_MIN_FRAC, dynamicFracBits, type WeightRange } from '../quant/dynamic.js';
import { configMemoryBits } from '../quant/memory.js';
import { parseQuantMethod, parseRoundingCompat, type RoundingCompat } from '../quant/methods.js';
import { QuantizedModel, quantize } from '../quant/quantized-model.js';
import type { QuantMethod } from '../tensor/backend.js';
import { fileError } from '../io/byte-source.js';
import { decodeElements } from '../io/dtypes.js';
import { type RawTensor, readSafetensorsRaw } from '../io/safetensors.js';
import { type NamedTensor, type StateDict } from '../io/tensor-data.js';
import {
  EVAL_ORDER_TENSOR,
  EvaluationOrder,
  MAX_CODE_BITS,
  QUANTIZED_FORMAT,
  QUANTIZED_FORMAT_VERSION,
  QWEIGHT,
  QuantizedFileInfo,
  QuantizedSearchRecord,
  TensorFormat,
} from './packed-format.js';
import { unpackBits } from './packed-bits.js';
import { dac2020LogPreimage, decodeFixed, decodeLog } from './packed-codecs.js';
export function jsonField<T>(
  file: string,
  metadata: Record<string, string>,
  key: string,
  required: boolean,
): T | undefined {
  const raw = metadata[key];
  if (raw === undefined) {
    if (required) throw fileError(file, `__metadata__ has no '${key}'`);
    return undefined;
  }
  try {
    return JSON.parse(raw) as T;
  } catch (err) {
    throw fileError(file, `__metadata__ '${key}' is not valid JSON (${(err as Error).message})`);
  }
}

export const isInt = (v: unknown): v is number => Number.isSafeInteger(v);

/** A value from the file's JSON for an error message, as a template string would show it, but
 *  a list of lists by its kind only (a tampered header may nest lists 100,000 deep, and
 *  Array.prototype.toString recurses). */
export function brief(v: unknown): string {
  if (Array.isArray(v) && v.some((x) => typeof x === 'object' && x !== null)) return `a nested list of ${v.length}`;
  return String(v);
}

/** A metadata value for a message about its type: a string in quotes, said to be one. */
export function typed(v: unknown): string {
  if (typeof v === 'string') return `${JSON.stringify(v)} (a string)`;
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? 'an object' : brief(v);
}

/** The metadata's 'search' record (what the search measured; `evaluate` prints it beside its
 *  own count), or null when there is none: its counts must be counts of its images and its
 *  accuracy theirs, or the error names the file and the field. */
export function checkSearchRecord(file: string, v: unknown): QuantizedSearchRecord | null {
  if (v === undefined) return null;
  const bad = (what: string) => fileError(file, `__metadata__ 'search': ${what}`);
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('expected an object');
  const r = v as Record<string, unknown>;
  const int = (key: string, min: number, max: number, what: string) => {
    const x = r[key];
    if (!(isInt(x) && x >= min && x <= max)) throw bad(`'${key}' is ${typed(x)}, expected ${what}`);
    return x;
  };
  const images = int('images', 1, Number.MAX_SAFE_INTEGER, 'an integer >= 1 (the images evaluated)');
  const correct = int('correct', 0, images, `an integer from 0 to 'images' (${images})`);
  int('batchSize', 1, Number.MAX_SAFE_INTEGER, 'an integer >= 1');
  const accuracy = r.accuracy;
  if (!(typeof accuracy === 'number' && Math.round((accuracy * images) / 100) === correct))
    throw bad(`'accuracy' is ${typed(accuracy)}, expected ${correct}/${images} in percent`);
  for (const key of ['kind', 'order'])
    if (typeof r[key] !== 'string') throw bad(`'${key}' is ${typed(r[key])}, expected a string`);
  for (const key of ['dataset', 'fingerprint'])
    if (r[key] !== undefined && typeof r[key] !== 'string')
      throw bad(`'${key}' is ${typed(r[key])}, expected a string`);
  return v as QuantizedSearchRecord;
}

/** A value checked by the library's own check, its error made this file's (naming the file). */
export function asFileError<T>(file: string, check: () => T): T {
  try {
    return check();
  } catch (err) {
    throw fileError(file, (err as Error).message, { cause: err });
  }
}

/** Reads a file written by writeQuantizedModel: the QuantizedModel it holds (rebuilt from the
 *  metadata alone) and what the metadata says. Any disagreement is an error naming the file. */
export function readQuantizedModel(file: string): { quantized: QuantizedModel; info: QuantizedFileInfo } {
  const raw = readSafetensorsRaw(file);
  const md = raw.metadata;
  checkFormatTag(file, md);
  const { name, args, model, decoder } = modelOfMetadata(file, md, raw.fileBytes);
  const { method, compat, seed } = roundingOfMetadata(file, md);
  const numberFormat = numberFormatOfMetadata(file, md, compat);
  const bits = layerBits(file, model, jsonField<unknown>(file, md, 'layers', true), numberFormat);
  const calibration = numberFormat === 'dynamic' ? calibrationOfMetadata(file, md, model, bits) : null;
  const weightRange = weightRangeOfMetadata(file, md, numberFormat);
  const { sd, formats, evaluationOrder, packedBytes, weightBytes, weightFracBits } = decodeTensors(
    file,
    raw,
    model,
    bits,
    method,
    compat,
  );
  const quantized = quantizeOnGrid(file, model, sd, bits, {
    method,
    compat,
    seed,
    calibration,
    weightRange,
    weightFracBits: numberFormat === 'dynamic' ? weightFracBits : null,
  });
  const search = checkSearchRecord(file, jsonField<unknown>(file, md, 'search', false));
  const memoryBits = configMemoryBits(model.quantLayers, bits);
  return {
    quantized,
    info: {
      file,
      model: name,
      modelArgs: args,
      decoder,
      method,
      compat,
      seed,
      numberFormat,
      calibration,
      weightRange,
      bits,
      tensors: formats,
      search,
      evaluationOrder,
      metadata: md,
      packedBytes,
      weightBytes,
      memoryBytes: memoryBits / 8,
      fileBytes: raw.fileBytes,
    },
  };
}

/** The format tag and version, with a hint when the file is a training checkpoint. */
export function checkFormatTag(file: string, md: Record<string, string>): void {
  if (md.format !== QUANTIZED_FORMAT) {
    const what =
      md.format === undefined ? 'its __metadata__ has no format tag' : `its __metadata__ format is '${md.format}'`;
    const hint =
      md.format === 'qcapsnets-training-checkpoint' || basename(file).endsWith('.ckpt.safetensors')
        ? ' (a training checkpoint holds full-precision weights: evaluate the model file that training wrote instead)'
        : '';
    throw fileError(
      file,
      `not a qcapsnets quantized model: ${what}, expected format '${QUANTIZED_FORMAT}' (the <stem>_quantized_<kind>.safetensors files the search writes)${hint}`,
    );
  }
  if (md.format_version !== QUANTIZED_FORMAT_VERSION)
    throw fileError(
      file,
      `quantized model format version '${md.format_version}', this qcapsnets reads version ${QUANTIZED_FORMAT_VERSION}`,
    );
}

/** The model the metadata names, built from its model_args (refused before building when the
 *  file could not hold its parameters), and the decoder it names. */
export function modelOfMetadata(
  file: string,
  md: Record<string, string>,
  fileBytes: number,
): { name: string; args: number[]; model: CapsNet; decoder: QuantizedFileInfo['decoder'] } {
  const name = md.model;
  if (typeof name !== 'string' || !isModelName(name))
    throw fileError(file, `__metadata__ model '${name}' is not a model: expected ${orList(modelKindNames())}`);
  const args = jsonField<unknown>(file, md, 'model_args', true);
  if (!Array.isArray(args) || !args.every(isInt))
    throw fileError(file, `__metadata__ model_args ${md.model_args}: expected an array of integers`);
  const problem = moduleArgsProblem(name, args);
  if (problem) throw fileError(file, `__metadata__ model ${name} model_args [${args.join(', ')}]: ${problem}`);
  // every parameter takes at least one bit of the file: refuse model_args whose model could
  // not fit before building it (its weights are allocated from model_args alone)
  const least = leastParameterCount(name, args);
  if (least > 8 * fileBytes)
    throw fileError(
      file,
      `__metadata__ model ${name} model_args [${args.join(', ')}] describe at least ${least} parameters, more than a file of ${fileBytes} bytes holds`,
    );
  let model: CapsNet;
  try {
    model = buildModel(name, args);
  } catch (err) {
    throw fileError(
      file,
      `__metadata__ model ${name} model_args [${args.join(', ')}] do not build: ${(err as Error).message}`,
    );
  }
  let decoder: QuantizedFileInfo['decoder'] = null;
  if (md.decoder !== undefined) {
    const dargs = jsonField<unknown>(file, md, 'decoder_args', false) ?? [];
    if (!Array.isArray(dargs) || !dargs.every(isInt))
      throw fileError(file, `__metadata__ decoder_args ${md.decoder_args}: expected an array of integers`);
    decoder = { name: md.decoder, args: dargs };
  }
  return { name, args, model, decoder };
}

/** The metadata's method, arithmetic and seed. */
export function roundingOfMetadata(
  file: string,
  md: Record<string, string>,
): { method: QuantMethod; compat: RoundingCompat; seed: number } {
  const method = asFileError(file, () => parseQuantMethod(md.method, '__metadata__ method'));
  const compat = asFileError(file, () => parseRoundingCompat(md.compat, '__metadata__ compat'));
  const seed = Number(md.seed);
  if (md.seed === undefined || !/^\d+$/.test(md.seed) || !Number.isSafeInteger(seed))
    throw fileError(file, `__metadata__ seed '${md.seed}': expected a non-negative integer`);
  return { method, compat, seed };
}

/** The metadata's weight range rule: absent 'max' (every file before the rule), or 'mse' (of a
 *  'dynamic' file only). It records how the stored fractional lengths were chosen; the reader
 *  takes those as stored. */
export function weightRangeOfMetadata(file: string, md: Record<string, string>, format: NumberFormat): WeightRange {
  const r = md.weight_range;
  if (r === undefined) return 'max';
  if (r !== 'mse')
    throw fileError(file, `__metadata__ weight_range '${r}': expected 'mse' (or no weight_range: 'max')`);
  if (format !== 'dynamic')
    throw fileError(
      file,
      "__metadata__ weight_range 'mse' without number_format 'dynamic': the rule chooses 'dynamic' tensors' fractional lengths",
    );
  return 'mse';
}

/** The metadata's number format: absent 'fixed' (every file before the format), or 'dynamic'
 *  (not with dac2020). */
export function numberFormatOfMetadata(file: string, md: Record<string, string>, compat: RoundingCompat): NumberFormat {
  const f = md.number_format;
  if (f === undefined) return 'fixed';
  if (f !== 'dynamic')
    throw fileError(file, `__metadata__ number_format '${f}': expected 'dynamic' (or no number_format: 'fixed')`);
  if (compat === 'dac2020')
    throw fileError(
      file,
      "__metadata__ number_format 'dynamic' with compat 'dac2020': dac2020 applies to 'fixed' only",
    );
  return f;
}

/** A 'dynamic' file's calibration, checked against the model, and the fractional lengths it
 *  stores for every activation and routing point against those the calibration and the bits
 *  give. */
export function calibrationOfMetadata(
  file: string,
  md: Record<string, string>,
  model: CapsNet,
  bits: BitConfig,
): Calibration {
  const c = asFileError(file, () =>
    checkCalibration(model, jsonField<unknown>(file, md, 'calibration', true), '__metadata__ calibration'),
  );
  const act = jsonField<Record<string, unknown>>(file, md, 'activation_frac_bits', true);
  const routing = jsonField<Record<string, Record<string, unknown> | undefined>>(file, md, 'routing_frac_bits', true);
  const isObj = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObj(act) || !isObj(routing))
    throw fileError(file, '__metadata__ activation_frac_bits and routing_frac_bits: expected JSON objects');
  const d = model.description;
  const layerOf = (path: string) => bits[d.index(d.layerOf(path).name)];
  const agree = (key: string, where: string, stored: unknown, width: number, range: number) => {
    const want = dynamicFracBits(width, range);
    if (stored !== want)
      throw fileError(
        file,
        `__metadata__ ${where}['${key}'] is ${brief(stored)}, but the calibration's range ${range} at ${width} bits gives ${want}`,
      );
  };
  for (const p of d.quantPoints().flat()) {
    const key = pointKey(p.path, p.point);
    agree(key, 'activation_frac_bits', act![key], layerOf(p.path).act, c.activations[key]);
  }
  for (const path of d.routingPaths().flat()) {
    const r = routing![path];
    const b = layerOf(path);
    agree(path, 'routing_frac_bits', isObj(r) ? r!.act : r, b.act, c.routing[path].act);
    agree(path, 'routing_frac_bits', isObj(r) ? r!.routing : r, b.routing!, c.routing[path].routing);
  }
  const extra = [
    ...Object.keys(act!).filter((k) => !(k in c.activations)),
    ...Object.keys(routing!).filter((k) => !(k in c.routing)),
  ];
  if (extra.length) throw fileError(file, `__metadata__ frac bits of '${extra[0]}', which ${model.kind} does not have`);
  return c;
}

/** Every tensor against its format, the model and the data: the state_dict the file holds,
 *  the evaluation order when it has one, the bytes of its tensors, and ('dynamic') each
 *  parameter's fractional length. */
export function decodeTensors(
  file: string,
  raw: ReturnType<typeof readSafetensorsRaw>,
  model: CapsNet,
  bits: BitConfig,
  method: QuantMethod,
  compat: RoundingCompat,
): {
  sd: StateDict;
  formats: Record<string, TensorFormat>;
  evaluationOrder: EvaluationOrder | null;
  packedBytes: number;
  weightBytes: number;
  weightFracBits: Map<string, number>;
} {
  const md = raw.metadata;
  const weightFracBits = new Map<string, number>();
  const name = model.kind;
  const args = model.args;
  // every tensor's format against the model and the data
  const formats = jsonField<Record<string, TensorFormat>>(file, md, 'tensors', true);
  if (typeof formats !== 'object' || formats === null || Array.isArray(formats))
    throw fileError(file, `__metadata__ tensors: expected an object of tensor formats`);
  const paramNames = new Set(model.parameters().map((p) => p.name));
  const layerBitsOf = (tensor: string) => bits[model.description.index(model.description.layerOf(tensor).name)];
  const sd: StateDict = new Map();
  const used = new Set<string>();
  let weightBytes = 0;
  let packedBytes = 0;
  const saturated = compat !== 'dac2020';
  for (const [tname, t] of model.stateDict()) {
    const f = formats[tname];
    const bad = (what: string) => fileError(file, `tensor '${tname}': ${what}`);
    if (!f || typeof f !== 'object') throw bad('missing from __metadata__ tensors');
    if (!Array.isArray(f.shape) || f.shape.some(Array.isArray) || f.shape.join(',') !== t.shape.join(','))
      throw bad(
        `__metadata__ shape [${brief(f.shape)}] but ${name} [${args.join(' ')}] has [${t.shape.join(', ')}] (model_args that do not fit the tensors?)`,
      );
    const numel = t.data.length;
    if (!paramNames.has(tname)) {
      // a buffer
      const stored = raw.tensors.get(tname);
      if (!stored) throw bad('buffer missing from the file');
      used.add(tname);
      const want = t.dtype === 'int64' ? 'I64' : 'F32';
      if (stored.dtype !== want || stored.shape.join(',') !== t.shape.join(','))
        throw bad(`stored as ${stored.dtype} [${stored.shape.join(', ')}], expected ${want} [${t.shape.join(', ')}]`);
      const dec = decodeElements(stored.bytes, t.dtype === 'int64' ? 'int64' : 'float32', numel);
      const nt: NamedTensor = { shape: [...t.shape], dtype: t.dtype, data: dec.floats };
      if (dec.integers) nt.integers = dec.integers;
      sd.set(tname, nt);
      packedBytes += stored.bytes.length;
      continue;
    }
    const stored = raw.tensors.get(tname + QWEIGHT);
    if (!stored) throw bad(`the file has no '${tname}${QWEIGHT}'`);
    used.add(tname + QWEIGHT);
    if (stored.dtype !== 'U8' || stored.shape.length !== 1)
      throw bad(`'${tname}${QWEIGHT}' is ${stored.dtype} [${stored.shape.join(', ')}], expected U8 [bytes]`);
    const { name: layer, weight, format } = layerBitsOf(tname);
    const dynamic = format === 'dynamic';
    let F = weight;
    if (dynamic) {
      // a tensor's own fractional length, within the format's range
      if (!(isInt(f.frac_bits) && f.frac_bits >= DYNAMIC_MIN_FRAC && f.frac_bits <= DYNAMIC_MAX_FRAC))
        throw bad(
          `frac_bits ${typed(f.frac_bits)}: expected an integer in [${DYNAMIC_MIN_FRAC}, ${DYNAMIC_MAX_FRAC}] (a 'dynamic' tensor's fractional length)`,
        );
      F = f.frac_bits;
      weightFracBits.set(tname, F);
    } else {
      if (!isInt(f.frac_bits))
        throw bad(`frac_bits ${typed(f.frac_bits)}: expected the integer ${F} (layer ${layer}'s weight bits)`);
      if (f.frac_bits !== F) throw bad(`frac_bits ${brief(f.frac_bits)} but layer ${layer} has ${F} weight bits`);
    }
    const b = f.bits;
    if (!(isInt(b) && b >= 1 && b <= MAX_CODE_BITS))
      throw bad(`bits ${typed(b)}: expected an integer from 1 to ${MAX_CODE_BITS}`);
    const need = Math.ceil((numel * b) / 8);
    if (stored.bytes.length !== need)
      throw bad(
        `${numel} values of ${b} bits need ${need} bytes, '${tname}${QWEIGHT}' has ${stored.bytes.length} (bits disagree with the data)`,
      );
    const codes = unpackBits(stored.bytes, numel, b);
    let values: Float32Array;
    if (method === 'logarithmic') {
      if (f.encoding !== 'log2') throw bad(`encoding '${brief(f.encoding)}', the logarithmic method stores 'log2'`);
      if (!isInt(f.exp_min)) throw bad(`exp_min ${typed(f.exp_min)}: expected an integer`);
      values = decodeLog(bad, codes, b, f.exp_min, F, saturated, dynamic ? weight : null);
    } else {
      if (f.encoding !== 'fixed') throw bad(`encoding '${brief(f.encoding)}', method ${method} stores 'fixed'`);
      if (dynamic && b !== weight) throw bad(`bits ${b}: layer ${layer}'s 'dynamic' width is ${weight}`);
      if (!dynamic && saturated && b !== F + 1)
        throw bad(`bits ${b}: the default arithmetic's format of ${F} fractional bits has ${F + 1}`);
      values = decodeFixed(bad, codes, b, F);
    }
    sd.set(tname, { shape: [...t.shape], dtype: 'float32', data: values });
    weightBytes += stored.bytes.length;
  }
  let evaluationOrder: EvaluationOrder | null = null;
  if (md.eval_order !== undefined) {
    evaluationOrder = readOrder(file, raw.tensors.get(EVAL_ORDER_TENSOR), jsonField(file, md, 'eval_order', true));
    used.add(EVAL_ORDER_TENSOR);
  }
  const extra = [...raw.tensors.keys()].filter((k) => !used.has(k));
  if (extra.length)
    throw fileError(
      file,
      `tensors ${extra.map((k) => `'${k}'`).join(', ')} are not part of ${name} [${args.join(' ')}]`,
    );
  packedBytes += weightBytes + (evaluationOrder ? raw.tensors.get(EVAL_ORDER_TENSOR)!.bytes.length : 0);

  return { sd, formats, evaluationOrder, packedBytes, weightBytes, weightFracBits };
}

/** The model at the file's values, quantized again: every value must be on the quantizer's
 *  grid, so that quantizing leaves it as it is. */
export function quantizeOnGrid(
  file: string,
  model: CapsNet,
  sd: StateDict,
  bits: BitConfig,
  options: {
    method: QuantMethod;
    compat: RoundingCompat;
    seed: number;
    calibration: Calibration | null;
    weightRange?: WeightRange;
    weightFracBits: ReadonlyMap<string, number> | null;
  },
): QuantizedModel {
  const { method, compat } = options;
  const paramNames = new Set(model.parameters().map((p) => p.name));
  const layerBitsOf = (tensor: string) => bits[model.description.index(model.description.layerOf(tensor).name)];
  // the model at those values, quantized again: on-grid values stay as they are
  const exact = new Map<string, Float32Array>();
  for (const [k, v] of sd) if (paramNames.has(k)) exact.set(k, v.data);
  if (method === 'logarithmic' && compat === 'dac2020')
    for (const [k, v] of sd) if (paramNames.has(k)) v.data = dac2020LogPreimage(v.data);
  try {
    model.loadStateDict(sd, file);
  } catch (err) {
    throw fileError(file, (err as Error).message);
  }
  const quantized = asFileError(file, () => quantize(model, bits, options));
  for (const [k, t] of quantized.stateDict()) {
    const want = exact.get(k);
    if (!want) continue;
    for (let i = 0; i < want.length; i++)
      if (!Object.is(t.data[i], want[i]) && !(t.data[i] === 0 && want[i] === 0))
        throw fileError(
          file,
          `tensor '${k}' element ${i}: the file holds ${want[i]}, which ${method} (${compat}) at ${layerBitsOf(k).weight} bits quantizes to ${t.data[i]}: not a value of this quantizer`,
        );
  }
  return quantized;
}

export function layerBits(file: string, model: CapsNet, layers: unknown, format: NumberFormat): BitConfig {
  const names = model.layerNames;
  if (!Array.isArray(layers) || layers.length !== names.length)
    throw fileError(
      file,
      `__metadata__ layers: expected ${names.length} layers (${names.join(', ')}) of ${model.kind}, got ${Array.isArray(layers) ? layers.length : typeof layers}`,
    );
  const bits: BitLists = { weightBits: [], actBits: [], routingBits: [] };
  const routing = new Set(model.routingLayerNames);
  layers.forEach((l: Record<string, unknown>, i) => {
    if (l?.name !== names[i])
      throw fileError(
        file,
        `__metadata__ layers[${i}] is '${brief(l?.name)}', ${model.kind}'s layer ${i} is '${names[i]}'`,
      );
    for (const key of ['weight_bits', 'act_bits', 'routing_bits', 'param_count'])
      if (typeof l[key] === 'object' && l[key] !== null)
        throw fileError(
          file,
          `__metadata__ layers[${i}] (${names[i]}) ${key} is ${brief(l[key])}, expected an integer`,
        );
    bits.weightBits.push(l.weight_bits as number);
    bits.actBits.push(l.act_bits as number);
    if (routing.has(names[i])) bits.routingBits.push(l.routing_bits as number);
    else if (l.routing_bits !== null && l.routing_bits !== undefined)
      throw fileError(file, `__metadata__ layers[${i}] (${names[i]}) has routing bits but does not route`);
    if (l.param_count !== undefined && l.param_count !== model.quantLayers[i].paramCount)
      throw fileError(
        file,
        `__metadata__ layers[${i}] (${names[i]}) has ${l.param_count} parameters, but ${model.kind} [${model.args.join(' ')}] has ${model.quantLayers[i].paramCount} (model_args that do not fit the tensors?)`,
      );
  });
  try {
    return bitsFromLists(model.quantLayers, bits, 'bits', format);
  } catch (err) {
    throw fileError(file, `__metadata__ layers: ${(err as Error).message}`);
  }
}

export function shortJson(v: unknown): string {
  try {
    return String(JSON.stringify(v));
  } catch {
    return Array.isArray(v) ? 'a nested list' : 'a nested object';
  }
}

export function readOrder(file: string, stored: RawTensor | undefined, meta: unknown): EvaluationOrder {
  const m = (meta ?? {}) as Record<string, unknown>;
  const bad = (what: string) => fileError(file, `evaluation order ('${EVAL_ORDER_TENSOR}'): ${what}`);
  if (!stored) throw bad('__metadata__ eval_order is set but the tensor is missing');
  const { images, bits, batch_size: batchSize, fingerprint } = m;
  if (!(isInt(images) && images >= 1 && isInt(bits) && bits >= 1 && bits <= 31 && isInt(batchSize) && batchSize >= 1))
    throw bad(`__metadata__ eval_order ${shortJson(meta)}: expected images, bits (1..31), batch_size`);
  if (typeof fingerprint !== 'string') throw bad('__metadata__ eval_order has no fingerprint');
  if (stored.dtype !== 'U8' || stored.bytes.length !== Math.ceil((images * bits) / 8))
    throw bad(
      `${images} indices of ${bits} bits need ${Math.ceil((images * bits) / 8)} bytes, the tensor has ${stored.bytes.length}`,
    );
  const order = Int32Array.from(unpackBits(stored.bytes, images, bits));
  const seen = new Uint8Array(images);
  for (const i of order) {
    if (i >= images || seen[i]) throw bad(`not a permutation of 0..${images - 1}`);
    seen[i] = 1;
  }
  return { order, batchSize, fingerprint };
}
