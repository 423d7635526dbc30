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

/**
 * The end of a test that uses the official client: runs `closers` newest first (each given at
 * most `closeWaitMs`: the official PushConsumer's shutdown waits out its long polls), then
 * `stop` (the cluster), and returns the uncaught exceptions that were not tolerated.
 */
export async function shutDownGuarded(uncaught: UncaughtGuard, closers: (() => unknown)[], stop: () => Promise<unknown>, closeWaitMs = 10_000): Promise<string[]> {
  uncaught.shutdownBegins();
  for (const close of closers.reverse()) await Promise.race([Promise.resolve().then(close).catch(() => undefined), new Promise((resolve) => setTimeout(resolve, closeWaitMs))]);
  await stop();
  await new Promise((resolve) => setTimeout(resolve, 500));
  uncaught.release();
  return uncaught.unexpected();
}
