// `qcapsnets sensitivity`: accuracy against bits for each layer's weights, activations and
// routing alone, everything else at full precision (src/search/sensitivity.ts), written as
// <stem>_sensitivity.json and its page <stem>_sensitivity.html; one progress line on stderr.
import { mkdirSync } from 'node:fs';
import { basename, dirname, extname, join, resolve } from 'node:path';
import type { Dataset } from '../data/dataset.js';
import { writeFileAtomic } from '../io/atomic-write.js';
import type { CapsNet } from '../models/capsnet.js';
import type { RoundingCompat } from '../quant/methods.js';
import type { NumberFormat } from '../quant/config.js';
import type { WeightRange } from '../quant/dynamic.js';
import { writeReportHtml } from '../report/index.js';
import {
  sensitivityAnalysis,
  SENSITIVITY_TOOL,
  SENSITIVITY_VERSION,
  type SensitivityResult,
} from '../search/sensitivity.js';
import type { QuantMethod } from '../tensor/backend.js';

export interface SensitivityJobOptions {
  model: CapsNet;
  modelFile: string;
  test: Dataset;
  method: QuantMethod;
  compat: RoundingCompat;
  /** default 'fixed' */
  numberFormat?: NumberFormat;
  /** 'dynamic': the first N test images calibrate the ranges (all when fewer; default 500) */
  calibrationImages?: number;
  /** 'dynamic': the weight range rule (default 'max') */
  weightRange?: WeightRange;
  seed: number;
  bits: number[];
  testBatchSize: number;
  cacheMB: number;
  outputDir: string | null;
  settings: Record<string, unknown>;
  log: (line: string) => void;
}

export async function runSensitivityJob(
  o: SensitivityJobOptions,
): Promise<{ result: SensitivityResult; files: string[] }> {
  const t0 = performance.now();
  const tty = process.stderr.isTTY;
  const a = await sensitivityAnalysis(o.model, o.test, {
    method: o.method,
    compat: o.compat,
    numberFormat: o.numberFormat,
    calibrationImages: o.calibrationImages,
    weightRange: o.weightRange,
    seed: o.seed,
    bits: o.bits,
    batchSize: o.testBatchSize,
    cacheMB: o.cacheMB,
    log: o.log,
    onEvaluation: (p) => {
      const line = `sensitivity ${p.done}/${p.total}: ${p.layer} ${p.kind} at ${p.bits} bits: ${p.accuracy}%`;
      process.stderr.write(tty ? `\r\x1b[K${line}${p.done === p.total ? '\n' : ''}` : `${line}\n`);
    },
  });
  o.log(
    `full-precision accuracy ${a.fullPrecisionAccuracy}%; ${a.evaluations} evaluations, ` +
      `${a.stagesReused} of ${a.stagesReused + a.stagesRun} stage runs reused from earlier layers' outputs`,
  );
  const result: SensitivityResult = {
    tool: SENSITIVITY_TOOL,
    version: SENSITIVITY_VERSION,
    model: { kind: o.model.kind, args: [...o.model.args], file: o.modelFile },
    settings: {
      ...o.settings,
      dataset: o.test.name,
      testImages: o.test.count,
      method: o.method,
      compat: o.compat,
      seed: o.seed,
      batchSize: o.testBatchSize,
      bits: o.bits,
      ...(o.numberFormat === 'dynamic' ? { numberFormat: 'dynamic' } : {}),
      ...(o.weightRange === 'mse' ? { weightRange: 'mse' } : {}),
    },
    layers: o.model.quantLayers.map(({ name, paramCount, routes }) => ({ name, paramCount, routes })),
    fullPrecisionAccuracy: a.fullPrecisionAccuracy,
    curves: a.curves,
    evaluations: a.evaluations,
    seconds: (performance.now() - t0) / 1000,
  };
  const outDir = resolve(o.outputDir ?? dirname(o.modelFile));
  mkdirSync(outDir, { recursive: true });
  const stem = basename(o.modelFile, extname(o.modelFile));
  const jsonFile = join(outDir, `${stem}_sensitivity.json`);
  const htmlFile = join(outDir, `${stem}_sensitivity.html`);
  writeFileAtomic(jsonFile, () => [Buffer.from(JSON.stringify(result, null, 2) + '\n')]);
  writeReportHtml(htmlFile, result, jsonFile);
  o.log(`results: ${jsonFile} and ${htmlFile}`);
  return { result, files: [jsonFile, htmlFile] };
}
