/** A SimpleConsumer loop for integration tests: every message received, with this host's clock at its first receive. */
import type { ReceivedMessage } from '../../src/client/messages.js';
import { MQClientError } from '../../src/client/mq-connection.js';
import type { SimpleConsumer } from '../../src/client/simple-consumer.js';

/** The consumer side: every message received, with this host's clock at its first receive. */
export class Receiver {
  readonly firstSeen = new Map<string, { atMs: number; message: ReceivedMessage }>();
  /** Message id → the (queue, offset) places it was received at: more than one is a message stored twice. */
  readonly places = new Map<string, Set<string>>();
  private running = true;
  private readonly loop: Promise<void>;

  constructor(private readonly consumer: SimpleConsumer) {
    this.loop = this.run();
  }

  private async run(): Promise<void> {
    while (this.running) {
      const received = await this.consumer.receive(32, 10_000).catch(() => [] as ReceivedMessage[]);
      const atMs = Date.now();
      for (const message of received) {
        if (!this.firstSeen.has(message.messageId)) this.firstSeen.set(message.messageId, { atMs, message });
        const places = this.places.get(message.messageId) ?? new Set<string>();
        places.add(`${message.brokerGroup}/${message.queueId}/${message.offset}`);
        this.places.set(message.messageId, places);
        await this.consumer.ack(message).catch(() => undefined);
      }
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }
}

export const percentile = (values: readonly number[], p: number): number => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
};

/** The error code a client call ends with ('OK' when it succeeds). */
export async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
    return 'OK';
  } catch (error) {
    return error instanceof MQClientError ? error.code : (error as Error).message;
  }
}
