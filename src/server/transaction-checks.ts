/**
 * Transaction check-backs on a broker node (F9): the producers whose Telemetry streams this
 * node holds, and the RecoverOrphanedTransactionCommand each applied check-back round sends
 * them. Every node applies the same `txn.check` entries, so whichever node a producer's
 * stream landed on (the leader, a follower, or the node an access point piped it to) asks it;
 * a transaction no live producer of its topic can answer is simply asked again next round,
 * and rolled back after the last.
 *
 * A producer is asked about a transaction of a topic it publishes (its settings name its
 * topics; as in Apache RocketMQ 5, the topic stands for the producer group). With several such
 * producers on this node, the rounds take turns. Rounds replayed at start-up (their entry time
 * is older than `staleAfterMs`) ask no one: those checks were made when they were applied.
 */
import type * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { BrokerService } from '../broker/broker-service.js';
import type { TransactionCheck } from '../broker/core/broker-state.js';
import { formatTransactionId } from '../broker/core/transaction-id.js';
import { okStatus } from '../util/rocketmq-v2.js';
import { messageToV2 } from './v2-messages.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

const staleAfterMs = 30_000;

interface ProducerStream {
  readonly call: grpc.ServerDuplexStream<any, any>;
  topics: ReadonlySet<string>;
}

export class TransactionChecks {
  /** By client id: the latest stream of each producer. */
  private readonly producers = new Map<string, ProducerStream>();
  private readonly unsubscribe: () => void;
  private turn = 0;

  constructor(
    private readonly service: BrokerService,
    private readonly brokerGroup: string,
    private readonly storeHost: string,
    private readonly logger: Logger,
  ) {
    this.unsubscribe = service.onTransactionChecks((round, entryTimeMs) => {
      if (Date.now() - entryTimeMs > staleAfterMs) return;
      for (const expired of round.expired) {
        this.logger.warn({ topic: expired.topic, messageId: expired.messageId, checks: expired.checks }, 'transaction rolled back: no answer to its last check-back');
      }
      for (const check of round.checks) void this.ask(check);
    });
  }

  /** A Telemetry stream sent settings: a producer's (with its topics) is registered, anything else is not. */
  noteSettings(clientId: string, call: grpc.ServerDuplexStream<any, any>, settings: any): void {
    if (clientId === '') return;
    if (settings?.publishing === null || settings?.publishing === undefined) return;
    const topics = new Set<string>((settings.publishing.topics ?? []).map((t: any) => String(t?.name ?? '')));
    this.producers.set(clientId, { call, topics });
  }

  /** The stream ended or broke: its producer is asked no more through it. */
  streamClosed(clientId: string, call: grpc.ServerDuplexStream<any, any>): void {
    if (this.producers.get(clientId)?.call === call) this.producers.delete(clientId);
  }

  close(): void {
    this.unsubscribe();
    this.producers.clear();
  }

  private async ask(check: TransactionCheck): Promise<void> {
    const candidates = [...this.producers.values()].filter((p) => p.topics.has(check.topic) && !p.call.writableEnded && !p.call.destroyed);
    if (candidates.length === 0) return;
    const producer = candidates[this.turn++ % candidates.length] as ProducerStream;
    try {
      const message = await this.service.messageAt(check.logIndex, check.position);
      // A round replayed at start-up (or one overtaken by an end while the message was read)
      // asks about a transaction that may have ended in an entry applied since: not again.
      if (!this.service.state.transactionOpen(check.logIndex, check.position)) return;
      const transactionId = formatTransactionId({ brokerGroup: this.brokerGroup, logIndex: check.logIndex, position: check.position });
      const view = messageToV2({ message, transactionId, topic: check.topic, queueId: 0, offset: 0, storeTimeMs: check.storeTimeMs }, this.storeHost);
      if (!producer.call.writableEnded && !producer.call.destroyed) {
        producer.call.write({ status: okStatus, recoverOrphanedTransactionCommand: { message: view, transactionId } });
      }
    } catch (error) {
      // The message could not be read (the node is shutting down): the next round asks again.
      this.logger.warn({ err: error, topic: check.topic, messageId: check.messageId }, 'transaction check-back not sent');
    }
  }
}
