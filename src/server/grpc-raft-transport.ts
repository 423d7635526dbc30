import * as grpc from '@grpc/grpc-js';
import type { Logger, Transport } from '../raft/node/ports.js';
import {
  isEntryKind, type AppendRejectReason, type AppendRequest, type AppendResponse, type Entry, type Member,
  type NodeId, type RaftMessage, type VoteRejectReason, type VoteRequest, type VoteResponse,
} from '../raft/types.js';
import { loadProtoFile } from '../util/proto-files.js';

/* eslint-disable @typescript-eslint/no-explicit-any -- proto-loader objects are untyped at this edge */

const definition = loadProtoFile('raft.proto');
const raftPackage = (grpc.loadPackageDefinition(definition) as any).raftmq.raft.v1;
export const raftPeerService: grpc.ServiceDefinition = raftPackage.RaftPeer.service;
const RaftPeerClient = raftPackage.RaftPeer as grpc.ServiceClientConstructor;

/** Message size limit for peer traffic; appends are far smaller (appendBytesMax). */
export const peerMessageBytesMax = 64 * 1024 * 1024;

export const peerChannelOptions: grpc.ChannelOptions = {
  'grpc.max_receive_message_length': peerMessageBytesMax,
  'grpc.max_send_message_length': peerMessageBytesMax,
  'grpc.keepalive_time_ms': 10_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
};

export interface GrpcRaftTransportOptions {
  readonly groupId: string;
  readonly selfId: NodeId;
  /** Current members (with addresses); consulted on every send and receive. */
  readonly members: () => readonly Member[];
  readonly logger: Logger;
  /** Per-peer bound on bytes queued in the append stream; beyond it messages are dropped. */
  readonly streamBufferBytesMax?: number;
  readonly unaryDeadlineMs?: number;
  readonly credentials?: grpc.ChannelCredentials;
}

export interface TransportStats {
  sent: number;
  dropped: number;
  rejectedInbound: number;
}

class PeerLink {
  private appendStream: grpc.ClientDuplexStream<any, any> | undefined;

  constructor(readonly id: NodeId, readonly address: string, readonly client: grpc.Client, private readonly onResponse: (pb: any) => void, private readonly logger: Logger) {}

  appendStreamFor(): grpc.ClientDuplexStream<any, any> {
    if (this.appendStream !== undefined) return this.appendStream;
    const stream = (this.client as any).Append() as grpc.ClientDuplexStream<any, any>;
    stream.on('data', (pb: any) => this.onResponse(pb));
    const reset = (error?: Error): void => {
      if (this.appendStream === stream) this.appendStream = undefined;
      if (error !== undefined) this.logger.debug({ peer: this.id, err: error.message }, 'append stream closed');
    };
    stream.on('error', reset);
    stream.on('end', () => reset());
    this.appendStream = stream;
    return stream;
  }

  close(): void {
    this.appendStream?.cancel();
    this.appendStream = undefined;
    this.client.close();
  }
}

/**
 * Raft messages over gRPC. Appends travel on one long-lived bidirectional stream per
 * follower (pipelined, many entries per message); the follower answers on the same stream.
 * Votes, vote results and TimeoutNow are unary calls with a deadline. Every inbound message
 * must name this group, this node, and a sender that is a member: anything else is refused
 * with PERMISSION_DENIED and a message saying why.
 */
export class GrpcRaftTransport implements Transport {
  readonly stats: TransportStats = { sent: 0, dropped: 0, rejectedInbound: 0 };
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly inboundAppendStreams = new Map<NodeId, grpc.ServerDuplexStream<any, any>>();
  private receiver: ((message: RaftMessage) => void) | undefined;
  private closed = false;

  constructor(private readonly options: GrpcRaftTransportOptions) {}

  /** Where inbound messages go (the RaftNode), set once the node exists. */
  setReceiver(receiver: (message: RaftMessage) => void): void {
    this.receiver = receiver;
  }

  send(message: RaftMessage): void {
    if (this.closed) return;
    try {
      if (message.type === 'append-response') {
        this.sendOnInboundStream(message);
        return;
      }
      const link = this.linkTo(message.to);
      if (link === undefined) {
        this.stats.dropped++;
        return;
      }
      this.stats.sent++;
      switch (message.type) {
        case 'append-request': {
          const stream = link.appendStreamFor();
          if (stream.writableLength > (this.options.streamBufferBytesMax ?? 32 * 1024 * 1024)) {
            this.stats.dropped++;
            return;
          }
          stream.write(this.encodeAppendRequest(message));
          return;
        }
        case 'vote-request': this.unary(link, 'Vote', this.encodeVoteRequest(message)); return;
        case 'vote-response': this.unary(link, 'VoteResult', this.encodeVoteResponse(message)); return;
        case 'timeout-now': this.unary(link, 'TimeoutNow', { groupId: this.options.groupId, from: message.from, to: message.to, term: message.term }); return;
      }
    } catch (error) {
      this.stats.dropped++;
      this.options.logger.warn({ peer: message.to, err: (error as Error).message }, 'raft send failed');
    }
  }

  /** The server-side handlers for RaftPeer. */
  serviceImplementation(): grpc.UntypedServiceImplementation {
    return {
      Append: (call: grpc.ServerDuplexStream<any, any>) => {
        let peer: NodeId | undefined;
        call.on('data', (pb: any) => {
          const refusal = this.refusal(pb);
          if (refusal !== undefined) {
            this.stats.rejectedInbound++;
            call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: refusal }); // ends the call with this status
            return;
          }
          if (peer !== pb.from) {
            peer = pb.from as NodeId;
            this.inboundAppendStreams.set(peer, call);
          }
          const message = decodeSafely(() => this.decodeAppendRequest(pb));
          if (message === undefined) {
            this.stats.rejectedInbound++;
            return;
          }
          this.receiver?.(message);
        });
        const forget = (): void => {
          if (peer !== undefined && this.inboundAppendStreams.get(peer) === call) this.inboundAppendStreams.delete(peer);
        };
        call.on('end', () => { forget(); call.end(); });
        call.on('error', forget);
        call.on('cancelled', forget);
      },
      Vote: this.unaryHandler((pb) => this.decodeVoteRequest(pb)),
      VoteResult: this.unaryHandler((pb) => this.decodeVoteResponse(pb)),
      TimeoutNow: this.unaryHandler((pb) => ({ type: 'timeout-now', from: pb.from, to: pb.to, term: checkedNumber(pb.term) })),
    };
  }

  close(): void {
    this.closed = true;
    for (const link of this.links.values()) link.close();
    this.links.clear();
    for (const call of this.inboundAppendStreams.values()) call.end();
    this.inboundAppendStreams.clear();
  }

  private unaryHandler(decode: (pb: any) => RaftMessage | undefined): grpc.handleUnaryCall<any, any> {
    return (call, callback) => {
      const refusal = this.refusal(call.request);
      if (refusal !== undefined) {
        this.stats.rejectedInbound++;
        callback({ code: grpc.status.PERMISSION_DENIED, details: refusal });
        return;
      }
      const message = decodeSafely(() => decode(call.request));
      if (message === undefined) {
        callback({ code: grpc.status.INVALID_ARGUMENT, details: 'malformed raft message' });
        return;
      }
      this.receiver?.(message);
      callback(null, {});
    };
  }

  /** Why an inbound message must be refused, or undefined if it is acceptable. */
  private refusal(pb: { groupId?: string; from?: string; to?: string }): string | undefined {
    if (pb.groupId !== this.options.groupId) return `this node belongs to group ${this.options.groupId}, not ${pb.groupId}`;
    if (pb.to !== this.options.selfId) return `this is node ${this.options.selfId}, not ${pb.to} (check the member addresses)`;
    if (!this.options.members().some((m) => m.id === pb.from)) return `node ${pb.from} is not a member of group ${this.options.groupId}`;
    return undefined;
  }

  private linkTo(id: NodeId): PeerLink | undefined {
    const member = this.options.members().find((m) => m.id === id);
    if (member === undefined) return undefined;
    let link = this.links.get(id);
    if (link !== undefined && link.address !== member.address) {
      link.close();
      link = undefined;
    }
    if (link === undefined) {
      const client = new RaftPeerClient(member.address, this.options.credentials ?? grpc.credentials.createInsecure(), peerChannelOptions);
      link = new PeerLink(id, member.address, client, (pb) => {
        const message = decodeSafely(() => this.decodeAppendResponse(pb));
        if (message !== undefined && this.refusal(pb) === undefined) this.receiver?.(message);
      }, this.options.logger);
      this.links.set(id, link);
    }
    return link;
  }

  private unary(link: PeerLink, method: 'Vote' | 'VoteResult' | 'TimeoutNow', request: object): void {
    const deadline = new Date(Date.now() + (this.options.unaryDeadlineMs ?? 1_000));
    (link.client as any)[method](request, { deadline }, (error: grpc.ServiceError | null) => {
      if (error !== null) {
        this.stats.dropped++;
        this.options.logger.debug({ peer: link.id, method, err: error.details }, 'raft call failed');
      }
    });
  }

  private sendOnInboundStream(message: AppendResponse): void {
    const call = this.inboundAppendStreams.get(message.to);
    if (call === undefined) {
      this.stats.dropped++;
      return;
    }
    this.stats.sent++;
    call.write({
      groupId: this.options.groupId, from: message.from, to: message.to, term: message.term, success: message.success,
      matchIndex: message.matchIndex, reason: message.reason ?? '', conflictIndex: message.conflictIndex,
      conflictTerm: message.conflictTerm, lastIndex: message.lastIndex, rejectedPrevIndex: message.rejectedPrevIndex,
    });
  }

  private encodeAppendRequest(message: AppendRequest): object {
    return {
      groupId: this.options.groupId, from: message.from, to: message.to, term: message.term, prevIndex: message.prevIndex,
      prevTerm: message.prevTerm, commitIndex: message.commitIndex,
      entries: message.entries, // an Entry already has exactly the wire fields: no per-entry copy
    };
  }

  private decodeAppendRequest(pb: any): AppendRequest | undefined {
    const entries: Entry[] = [];
    for (const e of pb.entries as any[]) {
      const kind = Number(e.kind);
      if (!isEntryKind(kind)) return undefined;
      entries.push({ index: checkedNumber(e.index), term: checkedNumber(e.term), kind, payload: e.payload as Uint8Array });
    }
    return {
      type: 'append-request', from: pb.from, to: pb.to, term: checkedNumber(pb.term), prevIndex: checkedNumber(pb.prevIndex),
      prevTerm: checkedNumber(pb.prevTerm), commitIndex: checkedNumber(pb.commitIndex), entryCount: entries.length, entries,
    };
  }

  private decodeAppendResponse(pb: any): AppendResponse | undefined {
    return {
      type: 'append-response', from: pb.from, to: pb.to, term: checkedNumber(pb.term), success: Boolean(pb.success),
      matchIndex: checkedNumber(pb.matchIndex), reason: pb.reason === '' ? undefined : (pb.reason as AppendRejectReason),
      conflictIndex: checkedNumber(pb.conflictIndex), conflictTerm: checkedNumber(pb.conflictTerm),
      lastIndex: checkedNumber(pb.lastIndex), rejectedPrevIndex: checkedNumber(pb.rejectedPrevIndex),
    };
  }

  private encodeVoteRequest(message: VoteRequest): object {
    return { groupId: this.options.groupId, from: message.from, to: message.to, term: message.term, preVote: message.preVote, transfer: message.transfer, lastIndex: message.lastIndex, lastTerm: message.lastTerm };
  }

  private decodeVoteRequest(pb: any): VoteRequest {
    return { type: 'vote-request', from: pb.from, to: pb.to, term: checkedNumber(pb.term), preVote: Boolean(pb.preVote), transfer: Boolean(pb.transfer), lastIndex: checkedNumber(pb.lastIndex), lastTerm: checkedNumber(pb.lastTerm) };
  }

  private encodeVoteResponse(message: VoteResponse): object {
    return { groupId: this.options.groupId, from: message.from, to: message.to, term: message.term, preVote: message.preVote, granted: message.granted, reason: message.reason ?? '' };
  }

  private decodeVoteResponse(pb: any): VoteResponse {
    return { type: 'vote-response', from: pb.from, to: pb.to, term: checkedNumber(pb.term), preVote: Boolean(pb.preVote), granted: Boolean(pb.granted), reason: pb.reason === '' ? undefined : (pb.reason as VoteRejectReason) };
  }
}

/** proto-loader turns uint64 into a JS number; beyond 2^53 that would silently lose bits. */
export function checkedNumber(value: unknown): number {
  const number = Number(value);
  if (!Number.isSafeInteger(number) || number < 0) throw new RangeError(`uint64 value ${String(value)} is not a safe integer`);
  return number;
}

/** Malformed input from the network is refused, never allowed to throw out of a handler. */
function decodeSafely<T>(decode: () => T | undefined): T | undefined {
  try {
    return decode();
  } catch {
    return undefined;
  }
}
