/**
 * The progress bar of long CLI jobs (produce, consume --count, dlq resend), on stderr. Shown
 * only when both stdout and stderr are a terminal: piped or redirected output (scripts, --json)
 * stays exactly the lines the job prints.
 */
import cliProgress from 'cli-progress';

/** Jobs shorter than this finish before a bar would tell anyone anything. */
export const progressTotalMin = 1000;

export interface ProgressStreams {
  readonly stdout: { readonly isTTY?: boolean; write(text: string): unknown };
  readonly stderr: NodeJS.WritableStream & { readonly isTTY?: boolean };
}

export class ProgressBar {
  private readonly started = performance.now();

  private constructor(private readonly bar: cliProgress.SingleBar, private readonly streams: ProgressStreams) {}

  /** A bar counting to `total`, or undefined when output is not a terminal or the job is short. */
  static start(total: number, label: string, streams: ProgressStreams = process, totalMin = progressTotalMin): ProgressBar | undefined {
    if (streams.stdout.isTTY !== true || streams.stderr.isTTY !== true || total < totalMin) return undefined;
    const bar = new cliProgress.SingleBar({ format: `${label} [{bar}] {value}/{total} {percentage}% | {rate}/s | eta {eta}s`, stream: streams.stderr, hideCursor: true }, cliProgress.Presets.shades_classic);
    bar.start(total, 0, { rate: 0 });
    return new ProgressBar(bar, streams);
  }

  update(done: number): void {
    this.bar.update(done, { rate: Math.round(done / ((performance.now() - this.started) / 1000)) });
  }

  /** Prints a line of the job's output above the bar: the bar's line is cleared first, and it is drawn again at the next update. */
  printLine(line: string): void {
    this.streams.stderr.write('\r\x1b[2K');
    this.streams.stdout.write(`${line}\n`);
  }

  stop(): void {
    this.bar.stop();
  }
}

/** `console.log(line)`, or above the bar while one is shown. */
export function printLine(bar: ProgressBar | undefined, line: string): void {
  if (bar === undefined) console.log(line);
  else bar.printLine(line);
}
