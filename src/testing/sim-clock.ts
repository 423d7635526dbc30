import type { Disposable, ServiceClock } from '../util/clock.js';
import type { SimScheduler } from './sim-scheduler.js';

/**
 * One incarnation of a simulated node's clock: simulated time, and timers that stop firing
 * once the incarnation has crashed (`isCurrent`) and skip their ticks while the node is paused.
 * Every timer is recorded in `timers`, so a crash can dispose of them.
 */
export function simNodeClock(options: {
  readonly scheduler: SimScheduler;
  readonly isCurrent: () => boolean;
  readonly isPaused: () => boolean;
  readonly timers: Disposable[];
  /** Wall time = this + simulated time (a per-node skew included). */
  readonly wallOffsetMs: number;
}): ServiceClock {
  const { scheduler, isCurrent, isPaused, timers } = options;
  const track = (handle: { cancel(): void }): Disposable => {
    const disposable = { dispose: () => handle.cancel() };
    timers.push(disposable);
    return disposable;
  };
  return {
    nowMs: () => scheduler.nowMs,
    wallNowMs: () => options.wallOffsetMs + scheduler.nowMs,
    every: (intervalMs, callback) => {
      let handle = { cancel: () => {} };
      const schedule = (): void => {
        handle = scheduler.after(intervalMs, () => {
          if (!isCurrent()) return;
          if (!isPaused()) callback();
          schedule();
        });
      };
      schedule();
      return track({ cancel: () => handle.cancel() });
    },
    after: (delayMs, callback) => track(scheduler.after(delayMs, () => { if (isCurrent()) callback(); })),
    soon: (callback) => { scheduler.after(0, () => { if (isCurrent()) callback(); }); },
  };
}

/** A run's trace: an FNV-1a hash of every line (same seed, same hash) and a bounded tail for failure output. */
export class SimTrace {
  private hashValue = 0x811c9dc5;
  private readonly lines: string[] = [];

  constructor(private readonly keepAll: boolean) {}

  add(line: string): void {
    for (let i = 0; i < line.length; i++) this.hashValue = Math.imul(this.hashValue ^ line.charCodeAt(i), 0x01000193) >>> 0;
    this.lines.push(line);
    if (!this.keepAll && this.lines.length > 400) this.lines.splice(0, 200);
  }

  get hash(): string {
    return this.hashValue.toString(16).padStart(8, '0');
  }

  tail(): readonly string[] {
    return this.keepAll ? this.lines : this.lines.slice(-120);
  }
}
