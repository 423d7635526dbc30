/**
 * Transactions in our client (F9), the official client's model: `producer.beginTransaction()`
 * gives a Transaction; its `send` stores half messages, invisible to consumers, and `commit`
 * makes them visible (or `rollback` discards them). A producer built with a
 * `transactionChecker` answers the broker's check-backs for transactions it left open (the
 * application crashed between send and commit, or the commit's answer was lost): the broker
 * asks on a Telemetry stream the producer keeps open to every broker group of its topics,
 * and the checker's COMMIT or ROLLBACK ends the transaction (undefined: ask again later).
 *
 * A transaction of several messages ends each of them in turn; they are not atomic across
 * broker groups (a commit that fails part way leaves the rest to the check-backs).
 */
import type * as grpc from '@grpc/grpc-js';
import { fromV2, type ReceivedMessage } from './messages.js';
import { MQClientError, statusError, type MQConnection } from './mq-connection.js';
import type { Message, SendReceipt } from './producer.js';

/** How long a refused check-back stream waits before it is opened again. */
const refusedRetryMs = 5_000;

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

export type TransactionResolution = 'COMMIT' | 'ROLLBACK';

/** Decides an open transaction the broker asks about; undefined (or a throw): not known yet, ask again. */
export type TransactionChecker = (message: ReceivedMessage) => Promise<TransactionResolution | undefined> | TransactionResolution | undefined;

export interface TransactionalReceipt extends SendReceipt {
  /** What EndTransaction and the broker's check-backs name the transaction by. */
  readonly transactionId: string;
}

/** The broker group a transaction id names (t1~<group>~…, src/broker/core/transaction-id.ts). */
function groupOfTransaction(transactionId: string): string {
  const group = transactionId.startsWith('t1~') ? transactionId.split('~')[1] : undefined;
  if (group === undefined || group === '') throw new MQClientError('INVALID_TRANSACTION_ID', `${JSON.stringify(transactionId.slice(0, 80))} is not a transaction id`, true);
  return group;
}

/** EndTransaction for one message; resolves once the broker has ended it (a repeat of the same end is OK). */
export async function endTransaction(
  connection: MQConnection, ended: { topic: string; messageId: string; transactionId: string }, resolution: TransactionResolution,
  source: 'SOURCE_CLIENT' | 'SOURCE_SERVER_CHECK', timeoutMs: number,
): Promise<void> {
  const request = { topic: { name: ended.topic, resourceNamespace: '' }, messageId: ended.messageId, transactionId: ended.transactionId, resolution, source };
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const response = await connection.unary(groupOfTransaction(ended.transactionId), 'EndTransaction', request, { timeoutMs: Math.max(100, deadline - Date.now()) });
      if (response.status?.code === 'OK') return;
      throw statusError('end transaction', response.status);
    } catch (error) {
      // Ending is idempotent (the broker answers a repeat alike), so an unknown outcome is retried.
      const failure = error instanceof MQClientError ? error : new MQClientError('UNKNOWN', String(error), false);
      if (failure.definite && failure.code !== 'HA_NOT_AVAILABLE') throw failure;
      if (Date.now() >= deadline) throw failure;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** One transaction: its half messages, then one commit or rollback. */
export class Transaction {
  private readonly receipts: TransactionalReceipt[] = [];
  private state: 'open' | 'ending' | 'ended' = 'open';

  constructor(
    private readonly sendHalf: (message: Message) => Promise<TransactionalReceipt>,
    private readonly end: (receipt: TransactionalReceipt, resolution: TransactionResolution) => Promise<void>,
  ) {}

  /** Stores `message` as a half message of this transaction (not visible until commit). */
  async send(message: Message): Promise<TransactionalReceipt> {
    if (this.state !== 'open') throw new MQClientError('BAD_REQUEST', 'this transaction is already being ended', true);
    const receipt = await this.sendHalf(message);
    this.receipts.push(receipt);
    return receipt;
  }

  get messages(): readonly TransactionalReceipt[] {
    return this.receipts;
  }

  commit(): Promise<void> {
    return this.finish('COMMIT');
  }

  rollback(): Promise<void> {
    return this.finish('ROLLBACK');
  }

  private async finish(resolution: TransactionResolution): Promise<void> {
    if (this.state !== 'open') throw new MQClientError('BAD_REQUEST', 'this transaction was already ended', true);
    if (this.receipts.length === 0) throw new MQClientError('BAD_REQUEST', 'this transaction has no message to end', true);
    this.state = 'ending';
    try {
      for (const receipt of this.receipts) await this.end(receipt, resolution);
      this.state = 'ended';
    } catch (error) {
      this.state = 'open'; // ending again is safe: the broker answers a repeat alike
      throw error;
    }
  }
}

/**
 * The check-back side: a Telemetry stream to one node of every broker group hosting the
 * producer's topics, announcing them (Settings.publishing), re-opened when it breaks.
 */
export class TransactionCheckStreams {
  private readonly streams = new Map<string, grpc.ClientDuplexStream<any, any>>();
  /** A group whose node refused the stream (e.g. FORBIDDEN) is tried again after this time. */
  private readonly refusedUntilMs = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Where each group's stream starts among its nodes: random, so that producers do not all pick the same node. */
  private turn = Math.floor(Math.random() * 1_000);

  constructor(
    private readonly connection: MQConnection,
    private readonly topics: readonly string[],
    private readonly checker: TransactionChecker,
    private readonly onError: (error: Error) => void,
  ) {}

  /** Opens the streams now and keeps them open (checked every second). */
  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => { this.refresh().catch(this.onError); }, 1_000);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer !== undefined) clearInterval(this.timer);
    for (const stream of this.streams.values()) stream.end();
    this.streams.clear();
  }

  private async refresh(): Promise<void> {
    const groups = new Map<string, readonly string[]>();
    for (const topic of this.topics) {
      for (const group of await this.connection.routes(topic)) groups.set(group.group, group.addresses.length > 0 ? group.addresses : [group.leaderAddress]);
    }
    for (const [group, addresses] of groups) {
      if (this.closed || this.streams.has(group) || (this.refusedUntilMs.get(group) ?? 0) > Date.now()) continue;
      const address = addresses[this.turn++ % addresses.length];
      if (address === undefined || address === '') continue;
      this.open(group, address);
    }
  }

  private open(group: string, address: string): void {
    const stream = this.connection.telemetry(address);
    this.streams.set(group, stream);
    const drop = (): void => {
      if (this.streams.get(group) === stream) this.streams.delete(group);
    };
    stream.on('data', (command: any) => {
      const recover = command?.recoverOrphanedTransactionCommand;
      if (recover !== null && recover !== undefined) {
        void this.answer(recover);
        return;
      }
      // A status-only refusal of the settings (UNAUTHORIZED, FORBIDDEN): no check-back would ever come on this stream; say so, try again later.
      const code = String(command?.status?.code ?? 'OK');
      if ((command?.settings === null || command?.settings === undefined) && code !== 'OK') {
        drop();
        stream.cancel();
        this.refusedUntilMs.set(group, Date.now() + refusedRetryMs);
        this.onError(new MQClientError(code, `transaction check-back stream to broker group ${group} refused: ${String(command?.status?.message ?? '')}`, true));
      }
    });
    stream.on('error', drop);
    stream.on('end', drop);
    stream.write({
      settings: {
        clientType: 'PRODUCER', requestTimeout: { seconds: Math.ceil(this.connection.requestTimeoutMs / 1000), nanos: 0 },
        publishing: { topics: this.topics.map((name) => ({ name, resourceNamespace: '' })), validateMessageType: true }, userAgent: { language: 'NODE_JS', version: 'raftmq' },
      },
    });
  }

  private async answer(recover: any): Promise<void> {
    const transactionId = String(recover.transactionId ?? '');
    let message: ReceivedMessage;
    let resolution: TransactionResolution | undefined;
    try {
      message = fromV2(recover.message ?? {}, groupOfTransaction(transactionId));
      resolution = await this.checker(message);
    } catch (error) {
      this.onError(error as Error);
      return; // asked again later
    }
    if (resolution !== 'COMMIT' && resolution !== 'ROLLBACK') return;
    try {
      await endTransaction(this.connection, { topic: message.topic, messageId: message.messageId, transactionId }, resolution, 'SOURCE_SERVER_CHECK', this.connection.requestTimeoutMs);
    } catch (error) {
      this.onError(error as Error);
    }
  }
}
