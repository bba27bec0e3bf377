// Training schedule (SPEC 3, the reference's LambdaLR and hard_list): the learning rate decays
// continuously per step from lr0 (step 0) and the hard margins start after ceil(epochs / 2)
// epochs; progress output degrades from a bar to plain lines off a terminal.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  firstHardEpoch,
  formatDuration,
  isHardEpoch,
  learningRate,
  ProgressReporter,
  type StepReport,
} from '../src/train/index.js';

test('learning rate: lr0 * rate^(step / decay_steps), not staircase, lr0 at step 0', () => {
  assert.equal(learningRate(0, 0.001, 0.96, 2000), 0.001);
  assert.ok(Math.abs(learningRate(2000, 0.001, 0.96, 2000) - 0.00096) < 1e-15);
  assert.ok(Math.abs(learningRate(1000, 0.001, 0.96, 2000) - 0.001 * Math.sqrt(0.96)) < 1e-15);
  assert.ok(Math.abs(learningRate(1, 0.001, 0.96, 2000) - 0.001 * 0.96 ** (1 / 2000)) < 1e-18);
  assert.ok(Math.abs(learningRate(6000, 0.01, 0.5, 2000) - 0.00125) < 1e-15);
  // strictly decreasing every step
  assert.ok(learningRate(1999, 0.001, 0.96, 2000) > learningRate(2000, 0.001, 0.96, 2000));
});

test('hard training: the last floor(epochs / 2) epochs, only with --hard-training', () => {
  const hardOf = (epochs: number, on = true) =>
    Array.from({ length: epochs }, (_, i) => isHardEpoch(i + 1, epochs, on));
  assert.deepEqual(hardOf(10), [false, false, false, false, false, true, true, true, true, true]);
  assert.deepEqual(hardOf(3), [false, false, true]);
  assert.deepEqual(hardOf(2), [false, true]);
  assert.deepEqual(hardOf(1), [false]);
  assert.deepEqual(hardOf(10, false), new Array(10).fill(false));
  assert.equal(firstHardEpoch(10, true), 6);
  assert.equal(firstHardEpoch(5, true), 4);
  assert.equal(firstHardEpoch(1, true), null);
  assert.equal(firstHardEpoch(10, false), null);
});

function report(batch: number): StepReport {
  return {
    epoch: 1,
    epochs: 2,
    batch,
    batches: 25,
    globalStep: batch - 1,
    totalSteps: 50,
    loss: 0.5,
    marginLoss: 0.45,
    reconLoss: 100,
    batchAccuracy: 0.5,
    epochAccuracy: 0.4,
    imagesPerSecond: 150,
    etaSeconds: 75,
    lr: 0.001,
  };
}

test('progress: plain lines every --log-interval batches off a terminal, a bar with carriage returns on one', () => {
  const written: string[] = [];
  const logged: string[] = [];
  const pipe = { write: (s: string) => written.push(s), isTTY: false };
  const lines = new ProgressReporter('auto', pipe, 10, (l) => logged.push(l));
  assert.equal(lines.mode, 'lines');
  for (let b = 1; b <= 25; b++) lines.step(report(b));
  // batch_idx 0, 10, 20 as in the reference
  assert.equal(written.length, 3);
  assert.match(written[0], /^Epoch 1\/2, Step 0\/50: \[Total loss: 0\.500000,\tMargin loss: 0\.450000/);
  assert.match(written[0], /Accuracy: 0\.400000\] 150 img\/s, ETA 1:15\n$/);
  assert.ok(written.every((s) => !s.includes('\r')));

  const tty: string[] = [];
  const terminal = { write: (s: string) => tty.push(s), isTTY: true, columns: 120 };
  const bar = new ProgressReporter('auto', terminal, 10, (l) => logged.push(l));
  assert.equal(bar.mode, 'bar');
  bar.step(report(1));
  bar.step(report(25));
  assert.ok(tty.length >= 2 && tty.every((s) => s.startsWith('\r')));
  assert.match(
    tty[tty.length - 1],
    /epoch 1\/2 \[#+\] 25\/25 loss 0\.5000 \(margin 0\.4500, recon 100\.00\) acc 40\.00% 150 img\/s ETA 1:15/,
  );
  assert.ok(tty.every((s) => s.length <= 121));
  bar.log('Test Accuracy: 1/2 (50.00%)');
  assert.match(tty[tty.length - 1], /^\r +\r$/); // the bar is cleared before a log line
  assert.equal(logged[logged.length - 1], 'Test Accuracy: 1/2 (50.00%)');

  const none = new ProgressReporter('none', pipe, 1, () => undefined);
  const before = written.length;
  none.step(report(1));
  assert.equal(written.length, before);
  assert.equal(formatDuration(3725), '1:02:05');
  assert.equal(formatDuration(59.6), '1:00');
});
