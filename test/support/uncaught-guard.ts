/**
 * The official Node client (1.0.8) removes its stream listeners on shutdown, so a connection
 * reset that arrives afterwards is thrown as an uncaught exception. Tests using it collect
 * uncaught exceptions from construction to `release()`; `unexpected()` are those that came
 * before shutdown began, or that are not a connection reset (gRPC code 14).
 */
export class UncaughtGuard {
  readonly caught: { error: Error; afterShutdown: boolean }[] = [];
  private shuttingDown = false;
  private readonly onUncaught = (error: Error): void => { this.caught.push({ error, afterShutdown: this.shuttingDown }); };

  constructor() {
    process.on('uncaughtException', this.onUncaught);
  }

  shutdownBegins(): void {
    this.shuttingDown = true;
  }

  release(): void {
    process.off('uncaughtException', this.onUncaught);
  }

  unexpected(): string[] {
    return this.caught.filter((u) => !u.afterShutdown || !isConnectionReset(u.error)).map((u) => u.error.message);
  }
}

export const isConnectionReset = (error: Error): boolean => (error as { code?: number }).code === 14;
