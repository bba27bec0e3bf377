// Training stops at the first non-finite loss, output or gradient (SPEC 3's losses diverged),
// before the update reaches the weights.

/** Training met a non-finite loss or gradient (SPEC 3's losses diverged: usually a learning
 *  rate too large). Nothing was written after the last good state. */
export class NonFiniteTrainingError extends Error {
  constructor(
    /** 'loss', 'output (...)' (the model's capsules), or the gradient's parameter name */
    readonly what: string,
    readonly epoch: number,
    /** 1-based batch of the epoch, and optimizer step */
    readonly batch: number,
    readonly step: number,
    /** the last checkpoint written (null: none yet) and the best model so far (null: none;
     *  undefined: the run keeps no best model, as fine-tuning) */
    readonly checkpointFile: string | null,
    readonly bestModelFile: string | null | undefined,
  ) {
    super(
      `non-finite ${what === 'loss' || what.startsWith('output') ? what : `gradient of ${what}`} at epoch ${epoch}, batch ${batch} (step ${step}); ` +
        `training stopped before the update. ` +
        (checkpointFile ? `The last good checkpoint is ${checkpointFile}` : 'No checkpoint was written yet') +
        (bestModelFile
          ? `, the best model ${bestModelFile}`
          : bestModelFile === null
            ? ', and there is no best model yet'
            : '') +
        `; resume${checkpointFile ? ' from that checkpoint' : ''} with a smaller learning rate.`,
    );
    this.name = 'NonFiniteTrainingError';
  }
}

/** The name of the first parameter whose gradient holds NaN or Infinity, or null. */
export function firstNonFinite(
  params: readonly { name: string }[],
  grads: readonly { data: Float32Array }[],
): string | null {
  for (let k = 0; k < grads.length; k++) {
    const g = grads[k].data;
    let sum = 0;
    for (let i = 0; i < g.length; i++) sum += g[i] * 0; // NaN * 0 and Infinity * 0 are NaN
    if (sum !== 0) return params[k].name;
  }
  return null;
}
