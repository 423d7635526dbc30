import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ProgressBar } from './progress.js';

/** A stream that records what is written, a terminal or not. */
class RecordingStream extends Writable {
  text = '';
  constructor(readonly isTTY: boolean) {
    super();
  }
  override _write(chunk: Buffer | string, _encoding: BufferEncoding, done: () => void): void {
    this.text += chunk.toString();
    done();
  }
}

const streams = (stdoutTTY: boolean, stderrTTY: boolean) => ({ stdout: new RecordingStream(stdoutTTY), stderr: new RecordingStream(stderrTTY) });

describe('ProgressBar', () => {
  it('is not shown when stdout or stderr is piped, or the job is short', () => {
    expect(ProgressBar.start(5_000, 'resend', streams(false, true))).toBeUndefined(); // raftmq dlq resend ... | tee log
    expect(ProgressBar.start(5_000, 'resend', streams(true, false))).toBeUndefined(); // 2> errors.log
    expect(ProgressBar.start(999, 'resend', streams(true, true))).toBeUndefined();
  });

  it('draws on stderr on a terminal and prints job lines to stdout above it', async () => {
    const terminal = streams(true, true);
    const bar = ProgressBar.start(2_000, 'resend', terminal);
    expect(bar).toBeDefined();
    bar?.update(500);
    bar?.printLine('g1 %DLQ%billing@0 A → B to orders');
    bar?.stop();
    await new Promise((resolve) => setImmediate(resolve));
    expect(terminal.stderr.text).toMatch(/resend \[.*\] \d+\/2000/);
    expect(terminal.stderr.text).toContain('\r\x1b[2K');
    expect(terminal.stdout.text).toBe('g1 %DLQ%billing@0 A → B to orders\n');
  });
});
