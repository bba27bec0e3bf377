// Training progress: on a terminal, a bar per epoch redrawn in place (carriage returns) with
// the losses, running accuracy, images/s and ETA; elsewhere (a file or a pipe), one plain line
// every logInterval batches in the reference's format. Log lines pass through here so they
// never land in the middle of a bar.

export type ProgressMode = 'auto' | 'bar' | 'lines' | 'none';

export interface ProgressStream {
  write(text: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

export interface StepReport {
  epoch: number;
  epochs: number;
  /** batches done in this epoch, and their number */
  batch: number;
  batches: number;
  /** 0-based global step of this batch and the run's total */
  globalStep: number;
  totalSteps: number;
  loss: number;
  marginLoss: number;
  reconLoss: number;
  /** this batch's accuracy and the epoch's running mean, as fractions */
  batchAccuracy: number;
  epochAccuracy: number;
  imagesPerSecond: number;
  etaSeconds: number;
  lr: number;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '--:--';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

export class ProgressReporter {
  readonly mode: 'bar' | 'lines' | 'none';
  private barShown = false;
  private lastDraw = 0;

  constructor(
    mode: ProgressMode,
    private readonly stream: ProgressStream,
    private readonly logInterval: number,
    private readonly sink: (line: string) => void,
  ) {
    this.mode = mode === 'auto' ? (stream.isTTY ? 'bar' : 'lines') : mode;
  }

  /** A log line (not part of the bar). */
  log(line: string): void {
    this.clearBar();
    this.sink(line);
  }

  /** After each training batch. */
  step(r: StepReport): void {
    if (this.mode === 'lines') {
      // the reference logs when batch_idx % log_interval == 0 (batch_idx 0-based)
      if ((r.batch - 1) % this.logInterval === 0) this.stream.write(referenceLine(r) + '\n');
    } else if (this.mode === 'bar') {
      const now = Date.now();
      if (r.batch === r.batches || now - this.lastDraw >= 100) {
        this.lastDraw = now;
        this.draw(barLine(r, this.stream.columns ?? 100));
      }
    }
  }

  /** During a test pass. */
  testing(done: number, total: number, epoch: number): void {
    if (this.mode !== 'bar') return;
    const now = Date.now();
    if (done === total || now - this.lastDraw >= 100) {
      this.lastDraw = now;
      this.draw(`epoch ${epoch} test ${done}/${total}`);
    }
  }

  /** Ends the bar's line so that the next output starts on a fresh line. */
  finishEpoch(): void {
    this.clearBar();
  }

  private draw(text: string): void {
    const width = Math.max(20, (this.stream.columns ?? 100) - 1);
    this.stream.write(`\r${text.slice(0, width).padEnd(width)}`);
    this.barShown = true;
  }

  private clearBar(): void {
    if (!this.barShown) return;
    const width = Math.max(20, (this.stream.columns ?? 100) - 1);
    this.stream.write(`\r${' '.repeat(width)}\r`);
    this.barShown = false;
  }
}

/** 'Epoch 1/10, Step 0/6000: [Total loss: ..., ...]' as the reference's tqdm.write, plus speed. */
export function referenceLine(r: StepReport): string {
  return (
    `Epoch ${r.epoch}/${r.epochs}, Step ${r.globalStep}/${r.totalSteps}: ` +
    `[Total loss: ${r.loss.toFixed(6)},\tMargin loss: ${r.marginLoss.toFixed(6)},\t` +
    `Reconstruction loss: ${r.reconLoss.toFixed(6)},\tBatch accuracy: ${r.batchAccuracy.toFixed(6)},\t` +
    `Accuracy: ${r.epochAccuracy.toFixed(6)}] ${r.imagesPerSecond.toFixed(0)} img/s, ETA ${formatDuration(r.etaSeconds)}`
  );
}

function barLine(r: StepReport, columns: number): string {
  const tail =
    ` ${r.batch}/${r.batches} loss ${r.loss.toFixed(4)} (margin ${r.marginLoss.toFixed(4)}, recon ${r.reconLoss.toFixed(2)})` +
    ` acc ${(r.epochAccuracy * 100).toFixed(2)}% ${r.imagesPerSecond.toFixed(0)} img/s ETA ${formatDuration(r.etaSeconds)}`;
  const head = `epoch ${r.epoch}/${r.epochs} `;
  const room = Math.max(10, Math.min(30, columns - 1 - head.length - tail.length - 2));
  const filled = Math.round((room * r.batch) / r.batches);
  return `${head}[${'#'.repeat(filled)}${'.'.repeat(room - filled)}]${tail}`;
}
