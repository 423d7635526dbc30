import { setImmediate as nextMacrotask } from 'node:timers/promises';

interface ScheduledEvent {
  readonly timeMs: number;
  readonly seq: number;
  readonly run: () => void;
  cancelled: boolean;
}

/**
 * Discrete-event time for the simulator: a binary heap of `(timeMs, seq)` events. After each
 * event every promise continuation it caused runs to completion (one macrotask boundary)
 * before the next event fires, so a run is a pure function of the seed: no real timers, no
 * real I/O, and ties broken by insertion order.
 */
export class SimScheduler {
  private heap: ScheduledEvent[] = [];
  private seq = 0;
  private now = 0;
  eventsRun = 0;
  /** Called after each event settles; returns true if it woke a waiter (scripted scenarios). */
  afterEvent: (() => boolean) | undefined;

  get nowMs(): number { return this.now; }

  at(timeMs: number, run: () => void): { cancel(): void } {
    const event: ScheduledEvent = { timeMs: Math.max(timeMs, this.now), seq: this.seq++, run, cancelled: false };
    this.push(event);
    return { cancel: () => { event.cancelled = true; } };
  }

  after(delayMs: number, run: () => void): { cancel(): void } {
    return this.at(this.now + delayMs, run);
  }

  /** A promise that settles at a later simulated time. */
  sleep(delayMs: number): Promise<void> {
    return new Promise((resolve) => this.after(delayMs, resolve));
  }

  /** Runs events until simulated time passes `untilMs` or `stop()` returns true. */
  async runUntil(untilMs: number, stop: () => boolean = () => false): Promise<void> {
    await nextMacrotask();
    while (this.heap.length > 0 && (this.heap[0] as ScheduledEvent).timeMs <= untilMs) {
      const event = this.pop();
      if (event.cancelled) continue;
      this.now = event.timeMs;
      this.eventsRun++;
      event.run();
      await nextMacrotask();
      if (this.afterEvent?.() === true) await nextMacrotask(); // let woken scripts act now
      if (stop()) return;
    }
    this.now = Math.max(this.now, untilMs);
  }

  private push(event: ScheduledEvent): void {
    const heap = this.heap;
    heap.push(event);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!before(heap[i] as ScheduledEvent, heap[parent] as ScheduledEvent)) break;
      [heap[i], heap[parent]] = [heap[parent] as ScheduledEvent, heap[i] as ScheduledEvent];
      i = parent;
    }
  }

  private pop(): ScheduledEvent {
    const heap = this.heap;
    const top = heap[0] as ScheduledEvent;
    const last = heap.pop() as ScheduledEvent;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < heap.length && before(heap[left] as ScheduledEvent, heap[smallest] as ScheduledEvent)) smallest = left;
        if (right < heap.length && before(heap[right] as ScheduledEvent, heap[smallest] as ScheduledEvent)) smallest = right;
        if (smallest === i) break;
        [heap[i], heap[smallest]] = [heap[smallest] as ScheduledEvent, heap[i] as ScheduledEvent];
        i = smallest;
      }
    }
    return top;
  }
}

function before(a: ScheduledEvent, b: ScheduledEvent): boolean {
  return a.timeMs < b.timeMs || (a.timeMs === b.timeMs && a.seq < b.seq);
}
