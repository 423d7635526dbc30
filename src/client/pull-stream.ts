/**
 * PullMessage calls of our PullConsumer: the same requests and leader-following as
 * MQConnection.stream, on channels of their own that decode the response frames with
 * pull-frames.ts (messages straight into ReceivedMessage) and open a wider HTTP/2 flow-control
 * window. With the default 64 KiB window, shared by every stream of a connection, a broker
 * answering eight queues' pulls of hundreds of 1 KiB messages stops every 64 KiB until this
 * process has read them and said so; the drain then runs at the pace of two event loops'
 * turns, not of their CPUs.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { clientChannelOptions, leaderHeader, messagingServiceDefinition } from '../util/rocketmq-v2.js';
import type { ReceivedMessage } from './messages.js';
import { MQClientError, type MQConnection } from './mq-connection.js';
import { decodePullFrame, type PullFrame } from './pull-frames.js';

/** Bytes a broker may send on one pull channel (and on each of its calls) before we read them. */
export const pullFlowControlWindowBytes = 8 * 1024 * 1024;

const method = messagingServiceDefinition.PullMessage as grpc.MethodDefinition<object, unknown>;

export interface PullAnswer {
  /** The call's status frame (OK, MESSAGE_NOT_FOUND or an error), when it sent one. */
  readonly status: { readonly code: string; readonly message: string } | undefined;
  readonly messages: ReceivedMessage[];
  readonly nextOffset: number | undefined;
}

export class PullStreams {
  private readonly clients = new Map<string, grpc.Client>();
  /** Leaders learnt from this path's answers and the NameServer. */
  private readonly leaders = new Map<string, string>();
  private closed = false;

  constructor(private readonly connection: MQConnection) {}

  close(): void {
    this.closed = true;
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  /**
   * One PullMessage to the leader of `group`, following not-leader answers and retrying
   * unreachable nodes until the connection's leader wait passes (as MQConnection.stream does).
   */
  async pull(group: string, request: object, timeoutMs: number): Promise<PullAnswer> {
    const until = Date.now() + (this.connection.options.leaderWaitMs ?? 5_000);
    let attempts = 0;
    for (;;) {
      if (this.closed) throw new MQClientError('CLIENT_CLOSED', 'the client was shut down', true);
      const address = await this.leaderOf(group).catch(() => undefined);
      if (address !== undefined) {
        try {
          const { answer, trailer } = await this.pullOnce(address, group, request, timeoutMs);
          if (answer.status?.code !== 'HA_NOT_AVAILABLE') return answer;
          this.followLeaderHint(group, address, trailer);
        } catch (error) {
          const serviceError = error as grpc.ServiceError;
          this.leaders.delete(group);
          if (serviceError.code !== grpc.status.UNAVAILABLE) throw new MQClientError(grpc.status[serviceError.code] ?? 'UNKNOWN', `PullMessage to ${address}: ${serviceError.message}`, false, { cause: error });
        }
      }
      attempts++;
      if (Date.now() >= until) throw new MQClientError('NO_LEADER', `broker group ${group} has no reachable leader after ${attempts} attempts`, true);
      await sleep(Math.min(20 * attempts, 200));
    }
  }

  private async leaderOf(group: string): Promise<string | undefined> {
    const known = this.leaders.get(group);
    if (known !== undefined) return known;
    const found = (await this.connection.routes('', true)).find((g) => g.group === group && g.leaderAddress !== '')?.leaderAddress;
    if (found !== undefined) this.leaders.set(group, found);
    return found;
  }

  private followLeaderHint(group: string, address: string, trailer: grpc.Metadata | undefined): void {
    const hinted = trailer?.get(leaderHeader)[0];
    if (hinted !== undefined && String(hinted) !== address) this.leaders.set(group, String(hinted));
    else this.leaders.delete(group);
  }

  private client(address: string): grpc.Client {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new grpc.Client(address, grpc.credentials.createInsecure(), { ...clientChannelOptions, 'grpc-node.flow_control_window': pullFlowControlWindowBytes });
      this.clients.set(address, client);
    }
    return client;
  }

  private pullOnce(address: string, group: string, request: object, timeoutMs: number): Promise<{ answer: PullAnswer; trailer: grpc.Metadata | undefined }> {
    return new Promise((resolve, reject) => {
      const messages: ReceivedMessage[] = [];
      let status: PullAnswer['status'];
      let nextOffset: number | undefined;
      let trailer: grpc.Metadata | undefined;
      const call = this.client(address).makeServerStreamRequest(
        method.path, method.requestSerialize, (bytes: Buffer) => decodePullFrame(bytes, group), request, this.connection.metadata(), { deadline: Date.now() + timeoutMs },
      );
      call.on('data', (frame: PullFrame) => {
        if (frame.content === 'message') messages.push(frame.message);
        else if (frame.content === 'status') status = frame.status;
        else nextOffset = frame.nextOffset;
      });
      call.on('status', (s: grpc.StatusObject) => { trailer = s.metadata; });
      call.on('error', reject);
      call.on('end', () => setImmediate(() => resolve({ answer: { status, messages, nextOffset }, trailer })));
    });
  }
}
