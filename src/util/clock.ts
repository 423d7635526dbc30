/**
 * Time and timers as ports, so that the layers above the pure cores (the Raft node driver,
 * the broker's service layer) reach the clock only through an object that `src/server`
 * chooses (`systemClock`) and the simulator replaces with simulated time.
 */

export interface Disposable {
  dispose(): void;
}

/** Monotonic time and a repeating timer: all the Raft node driver needs (the core sees ticks). */
export interface Clock {
  /** Monotonic milliseconds (never jumps backwards), for deadlines and intervals. */
  nowMs(): number;
  every(intervalMs: number, callback: () => void): Disposable;
}

/** What a service layer needs besides: wall time, one-shot timers and a next-turn callback. */
export interface ServiceClock extends Clock {
  /**
   * Wall-clock milliseconds since the epoch, for the timestamps a leader writes into entries
   * and for comparing with them (visibility deadlines). It may jump; apply makes it monotone.
   */
  wallNowMs(): number;
  /** Calls `callback` once after `delayMs`, unless disposed first. */
  after(delayMs: number, callback: () => void): Disposable;
  /** Calls `callback` on a later turn of the event loop, once pending I/O has run (setImmediate). */
  soon(callback: () => void): void;
}

/** The process's clock. `every` timers do not keep the process alive; `after` timers do. */
export const systemClock: ServiceClock = {
  nowMs: () => performance.now(),
  wallNowMs: () => Date.now(),
  every: (intervalMs, callback) => {
    const timer = setInterval(callback, intervalMs);
    timer.unref();
    return { dispose: () => clearInterval(timer) };
  },
  after: (delayMs, callback) => {
    const timer = setTimeout(callback, delayMs);
    return { dispose: () => clearTimeout(timer) };
  },
  soon: (callback) => { setImmediate(callback); },
};
