// The page of a fine-tuning (<stem>_finetuned.json, finetune-json.ts): the accuracies at full
// precision, quantized before and after fine-tuning; the quantized test accuracy and the
// training loss after each epoch; the bits per layer; the settings.
import type { FinetuneReport } from './finetune-json.js';
import { facts, figure, page, settingsTable, table } from './page.js';
import { BIT_COLORS } from './search-page.js';
import { bars, num, PALETTE, plot } from './svg.js';

export function finetunePage(r: FinetuneReport, source: string): string {
  const model = `${r.model.kind} ${r.model.args.join(' ')}`;
  const curve = [
    { x: 0, y: r.before.accuracy, tip: `before fine-tuning: ${num(r.before.accuracy)}%` },
    ...r.history.map((e) => ({
      x: e.epoch,
      y: e.testAccuracy,
      tip: `epoch ${e.epoch}: ${num(e.testAccuracy)}% (${e.testCorrect}/${e.testTotal}), training loss ${num(e.trainLoss)}`,
    })),
  ];
  let k = 0;
  const routing = r.layers.map((l) => (l.routes ? (r.bits.routingBits[k++] ?? null) : null));
  const unit = r.format === 'fixed' ? 'fractional bits' : 'bits';
  const epochs = `${r.epochs} epoch${r.epochs === 1 ? '' : 's'}`;
  return page(
    `Q-CapsNets fine-tuning: ${model}`,
    `${source} · ${r.method} · ${r.format}${r.weight_range === 'mse' ? ' (mse weight ranges)' : ''} · ${epochs}`,
    [
      facts([
        [`${num(r.fullPrecisionAccuracy, 2)}%`, 'full-precision accuracy'],
        [`${num(r.before.accuracy, 2)}%`, 'quantized, before fine-tuning'],
        [`${num(r.after.accuracy, 2)}%`, `quantized, after ${epochs}`],
        [`${num(r.weightMemoryMB, 4)} MB`, `weight memory (${num(r.weightReduction, 2)}x smaller than 32-bit)`],
        [`${num(r.seconds, 1)} s`, 'run time'],
      ]),
      figure(
        plot({
          title: 'quantized test accuracy after each epoch',
          x: { label: 'fine-tuning epochs', min: 0, max: Math.max(1, r.epochs) },
          y: { label: 'accuracy (%)' },
          series: [{ label: 'quantized', color: PALETTE[0], mode: 'line+markers', cls: 'epoch-point', points: curve }],
          refs: [
            {
              axis: 'y',
              value: r.fullPrecisionAccuracy,
              label: `full precision ${num(r.fullPrecisionAccuracy)}%`,
              color: '#2ca02c',
            },
          ],
        }),
        `Epoch 0 is the trained model quantized at these bits; each later point is the model after that epoch of fine-tuning through the quantized forward, quantized again.`,
      ),
      '<h2>Epochs</h2>',
      table(
        'epochs',
        [
          'epoch',
          'training loss',
          'training accuracy (%)',
          'quantized test accuracy (%)',
          'test loss',
          'last lr',
          'seconds',
        ],
        r.history.map((e) => [
          e.epoch,
          num(e.trainLoss),
          num(e.trainAccuracy, 2),
          `${num(e.testAccuracy, 2)} (${e.testCorrect}/${e.testTotal})`,
          num(e.testLoss),
          num(e.lastLr),
          num(e.seconds, 1),
        ]),
      ),
      '<h2>Bits per layer</h2>',
      bars({
        title: `${unit} per layer (${r.format})`,
        categories: r.layers.map((l) => l.name),
        yLabel: unit,
        series: [
          { label: 'weights', color: BIT_COLORS.weights, values: r.bits.weightBits },
          { label: 'activations', color: BIT_COLORS.activations, values: r.bits.actBits },
          { label: 'routing', color: BIT_COLORS.routing, values: routing },
        ],
      }),
      '<h2>Settings</h2>',
      settingsTable({
        ...r.settings,
        model,
        'model file': r.model.file,
        bits: r.bitsSource,
        'quantized state_dict': r.files.pt,
        'packed model': r.files.packed,
        checkpoint: r.files.checkpoint,
      }),
    ],
  );
}
