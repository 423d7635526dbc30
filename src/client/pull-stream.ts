/**
 * PullMessage calls of our PullConsumer: the same requests and leader-following as
 * every MQConnection call, on channels of their own that decode the response frames with
 * pull-frames.ts (messages straight into ReceivedMessage) and open a wider HTTP/2 flow-control
 * window. With the default 64 KiB window, shared by every stream of a connection, a broker
 * answering eight queues' pulls of hundreds of 1 KiB messages stops every 64 KiB until this
 * process has read them and said so; the drain then runs at the pace of two event loops'
 * turns, not of their CPUs.
 */
import * as grpc from '@grpc/grpc-js';
import { clientChannelOptions, messagingServiceDefinition } from '../util/rocketmq-v2.js';
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
  private closed = false;

  constructor(private readonly connection: MQConnection) {}

  close(): void {
    this.closed = true;
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }

  /** One PullMessage to the leader of `group`, found and followed as for every other call (MQConnection.onLeader). */
  pull(group: string, request: object, timeoutMs: number): Promise<PullAnswer> {
    return this.connection.onLeader(group, 'PullMessage', async (address) => {
      if (this.closed) throw new MQClientError('CLIENT_CLOSED', 'the client was shut down', true);
      const { answer, trailer } = await this.pullOnce(address, group, request, timeoutMs);
      return { value: answer, notLeader: answer.status?.code === 'HA_NOT_AVAILABLE', trailer };
    });
  }

  private client(address: string): grpc.Client {
    let client = this.clients.get(address);
    if (client === undefined) {
      client = new grpc.Client(address, this.connection.credentials, { ...clientChannelOptions, 'grpc-node.flow_control_window': pullFlowControlWindowBytes });
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
