/**
 * Logs refused connections and messages without letting a flood of them flood the log: the
 * first refusal in an interval is logged, the rest counted and reported with the next one.
 */
import type { Logger } from '../raft/node/ports.js';

export class RefusalLog {
  private loggedAtMs = -Infinity;
  private suppressed = 0;

  constructor(private readonly logger: Logger, private readonly intervalMs = 1_000) {}

  warn(fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    if (now - this.loggedAtMs < this.intervalMs) {
      this.suppressed++;
      return;
    }
    this.loggedAtMs = now;
    this.logger.warn(this.suppressed === 0 ? fields : { ...fields, refusedSinceLastLog: this.suppressed }, message);
    this.suppressed = 0;
  }
}
