/**
 * SimpleConsumer: pop-style consumption. `receive` hides messages from the rest of the group
 * for `invisibleMs`; `ack` settles one; `changeInvisibleDuration` extends or shortens the
 * hiding (0 returns it at once). Unacknowledged messages come back with a higher delivery
 * attempt; after the group's max attempts the broker moves them to %DLQ%<group>. All of this
 * state is replicated, so receipt handles stay valid across a leader change.
 */
import { filterExpressionToV2, fromV2, type FilterExpression, type ReceivedMessage } from './messages.js';
import { MQClientError, MQConnection, statusError, type ConnectionOptions } from './mq-connection.js';
import { checkGroupName, checkTopicName } from './name-checks.js';

export interface SimpleConsumerOptions extends ConnectionOptions {
  readonly group: string;
  /** How long `receive` waits on an empty topic (default 5 s). */
  readonly awaitMs?: number;
}

export class SimpleConsumer {
  readonly connection: MQConnection;
  private readonly subscriptions = new Map<string, FilterExpression>();
  private cursor = 0;

  constructor(readonly options: SimpleConsumerOptions) {
    checkGroupName(options.group);
    this.connection = new MQConnection(options);
  }

  subscribe(topic: string, filter: FilterExpression = '*'): this {
    checkTopicName(topic);
    this.subscriptions.set(topic, filter);
    return this;
  }

  async receive(max = 16, invisibleMs = 30_000): Promise<ReceivedMessage[]> {
    const topics = [...this.subscriptions];
    if (topics.length === 0) throw new MQClientError('BAD_REQUEST', 'subscribe to at least one topic first', true);
    const [topic, filter] = topics[this.cursor++ % topics.length] as [string, FilterExpression];
    const groups = await this.connection.requireRoutes(topic);
    const group = groups[this.cursor % groups.length]?.group as string;
    const awaitMs = this.options.awaitMs ?? 5_000;
    const frames = await this.connection.stream(group, 'ReceiveMessage', {
      group: { name: this.options.group, resourceNamespace: '' },
      messageQueue: { topic: { name: topic, resourceNamespace: '' }, id: -1, broker: { name: group, id: 0 } },
      filterExpression: filterExpressionToV2(filter), batchSize: max, autoRenew: false,
      invisibleDuration: { seconds: Math.floor(invisibleMs / 1000), nanos: (invisibleMs % 1000) * 1e6 },
      longPollingTimeout: { seconds: Math.floor(awaitMs / 1000), nanos: (awaitMs % 1000) * 1e6 },
    }, awaitMs + this.connection.requestTimeoutMs);
    const status = frames.find((f) => f.content === 'status')?.status;
    if (status !== undefined && status.code !== 'OK' && status.code !== 'MESSAGE_NOT_FOUND') throw statusError('receive', status);
    return frames.filter((f) => f.content === 'message').map((f) => fromV2(f.message, group));
  }

  async ack(message: ReceivedMessage): Promise<void> {
    const response = await this.connection.unary(message.brokerGroup, 'AckMessage', {
      group: { name: this.options.group, resourceNamespace: '' }, topic: { name: message.topic, resourceNamespace: '' },
      entries: [{ messageId: message.messageId, receiptHandle: message.receiptHandle }],
    });
    if (response.status?.code !== 'OK') throw statusError('ack', response.status);
  }

  /** Returns the message with its new receipt handle (the old one is no longer valid). */
  async changeInvisibleDuration(message: ReceivedMessage, invisibleMs: number): Promise<ReceivedMessage> {
    const response = await this.connection.unary(message.brokerGroup, 'ChangeInvisibleDuration', {
      group: { name: this.options.group, resourceNamespace: '' }, topic: { name: message.topic, resourceNamespace: '' },
      receiptHandle: message.receiptHandle, messageId: message.messageId,
      invisibleDuration: { seconds: Math.floor(invisibleMs / 1000), nanos: (invisibleMs % 1000) * 1e6 },
    });
    if (response.status?.code !== 'OK') throw statusError('change invisible duration', response.status);
    return { ...message, receiptHandle: String(response.receiptHandle) };
  }

  shutdown(): void {
    this.connection.close();
  }
}
