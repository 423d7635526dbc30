import type { PeerCertificate } from 'node:tls';
import { crc32 } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import type { Logger, SnapshotReceiver, SnapshotStore, StoredSnapshot, Transport } from '../raft/node/ports.js';
import {
  isEntryKind, type AppendRejectReason, type AppendRequest, type AppendResponse, type Entry, type InstallSnapshot, type Member,
  type NodeId, type RaftMessage, type SnapshotMeta, type Term, type VoteRejectReason, type VoteRequest, type VoteResponse,
} from '../raft/types.js';
import { loadProtoFile } from '../util/proto-files.js';
import { PeerLane, type LaneAddress, type LaneStats, type PeerLaneSettings } from './peer-lane.js';
import { RefusalLog } from './refusal-log.js';
import { callCertificate, certificateRefusal, type TlsMaterial } from './tls.js';

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
  // grpc-js backs off up to 120 s between connection attempts; a restarted peer would sit
  // unreplicated for seconds after it is back. Peers are few and on a LAN: retry quickly.
  'grpc.initial_reconnect_backoff_ms': 100,
  'grpc.max_reconnect_backoff_ms': 1_000,
};

/**
 * For every gRPC server of ours: grpc-js turns the socket timeout off, so without an idle
 * limit a connection that sends nothing, stops inside the HTTP/2 preface, or was sent a GOAWAY
 * stays open for good (found by the hostile-input test) — an unbounded drain of file
 * descriptors. A connection without a call for a minute is closed; clients reconnect on their
 * next call, and long-lived streams (appends, Telemetry) are calls.
 */
export const serverConnectionOptions: grpc.ServerOptions = {
  'grpc.max_connection_idle_ms': 60_000,
  // Streams one connection may have open at once (HTTP/2 SETTINGS; a client queues beyond it).
  'grpc.max_concurrent_streams': 4_096,
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
  /**
   * Mutual TLS between members: links to a peer verify that its certificate names it, and
   * every inbound Raft call and lane connection must present a certificate naming the member
   * it claims to be (tls.ts). Without it, plaintext and the claim alone.
   */
  readonly tls?: TlsMaterial;
  /**
   * Where snapshots come from (leader: `newest()`, `readFileChunk`) and go to (follower:
   * `receive`). Without it install-snapshot messages fail at once and inbound snapshot
   * streams are refused.
   */
  readonly snapshots?: SnapshotStore;
  /** Leader: streaming a snapshot to `peer` ended; `ok` only if the follower made it durable. Called once per stream started. */
  readonly onSnapshotSent?: (peer: NodeId, ok: boolean) => void;
  /**
   * Follower: a leader's snapshot is durable in `snapshots` (its file checksum verified);
   * `message.snapshot` is the meta the chunks carried and `data` the state machine state.
   */
  readonly onSnapshotReceived?: (message: InstallSnapshot, data: Uint8Array) => void;
  /**
   * The file to send for a stored snapshot, when it is not the stored file itself (the
   * broker's own snapshots leave out the queue records its files hold; a peer needs them).
   */
  readonly snapshotFileForPeer?: (stored: StoredSnapshot) => Promise<Uint8Array>;
  /** Bytes of snapshot file per chunk (default 1 MiB). */
  readonly snapshotChunkBytes?: number;
  /**
   * Appends and their answers over the peer lane (peer-lane.ts) when the peer has one, gRPC
   * otherwise. Without this option they always use gRPC. Listening is separate: `listenLane`.
   */
  readonly lane?: PeerLaneSettings;
  /** Whole-transfer deadline of one snapshot stream (default 10 minutes). */
  readonly snapshotDeadlineMs?: number;
  /** A snapshot stream that makes no progress (no chunk written) for this long is cancelled (default 60 s). */
  readonly snapshotStallMs?: number;
}

export interface TransportStats extends LaneStats {
  sent: number;
  dropped: number;
  rejectedInbound: number;
  snapshotsSent: number;
  snapshotsSendFailed: number;
  snapshotsReceived: number;
}

/** SnapshotChunk as proto-loader reads and writes it (camelCase, uint64 as number). */
interface SnapshotChunkWire {
  readonly groupId: string;
  readonly from: string;
  readonly to: string;
  readonly term: number;
  readonly snapshot: { readonly index: number; readonly term: number; readonly configIndex: number; readonly members: readonly Member[] };
  readonly fileBytes: number;
  readonly offset: number;
  readonly data: Uint8Array;
  readonly crc32: number;
  readonly done: boolean;
}

interface SnapshotResultWire {
  readonly ok: boolean;
  readonly error: string;
}

/** A chunk after decoding: numbers checked, meta in the core's shape. */
interface SnapshotChunk {
  readonly from: NodeId;
  readonly term: Term;
  readonly meta: SnapshotMeta;
  readonly fileBytes: number;
  readonly offset: number;
  readonly data: Uint8Array;
  readonly crc32: number;
  readonly done: boolean;
}

/** The inbound snapshot stream in progress (at most one: a new one supersedes it). */
interface InboundSnapshot {
  readonly from: NodeId;
  readonly term: Term;
  /** Stops taking chunks and aborts the receiver; `answer` undefined: the call is gone, no answer. */
  stop(answer: string | undefined): void;
}

export const snapshotChunkBytesDefault = 1024 * 1024;
/** How long an inbound snapshot stream that ended without its last chunk waits to see whether the sender cancelled it. */
const cancelGraceMs = 100;

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
 * Votes, vote results and TimeoutNow are unary calls with a deadline. InstallSnapshot is a
 * client stream of checksummed chunks of the leader's newest snapshot file, one per follower
 * at a time, answered once the follower has it durable. Every inbound message
 * must name this group, this node, and a sender that is a member: anything else is refused
 * with PERMISSION_DENIED and a message saying why (InstallSnapshot answers `{ ok: false, error }`
 * instead).
 */
export class GrpcRaftTransport implements Transport {
  readonly stats: TransportStats = {
    sent: 0, dropped: 0, rejectedInbound: 0, snapshotsSent: 0, snapshotsSendFailed: 0, snapshotsReceived: 0,
    laneFramesSent: 0, laneFramesReceived: 0, laneConnections: 0,
  };
  private readonly links = new Map<NodeId, PeerLink>();
  private readonly inboundAppendStreams = new Map<NodeId, grpc.ServerDuplexStream<any, any>>();
  /** Leader side: the snapshot stream running to each peer (at most one each). */
  private readonly snapshotSends = new Map<NodeId, AbortController>();
  /** Follower side: the snapshot being received. */
  private inboundSnapshot: InboundSnapshot | undefined;
  /** Follower side: which way the last append from each leader came, so the answer goes back that way. */
  private readonly appendArrivedOn = new Map<NodeId, 'lane' | 'grpc'>();
  private readonly lane: PeerLane | undefined;
  private receiver: ((message: RaftMessage) => void) | undefined;
  private closed = false;
  private readonly refusals: RefusalLog;
  private readonly snapshotChunkBytes: number;

  constructor(private readonly options: GrpcRaftTransportOptions) {
    this.snapshotChunkBytes = options.snapshotChunkBytes ?? snapshotChunkBytesDefault;
    // Room for the chunk's other fields under the message size limit.
    if (!Number.isSafeInteger(this.snapshotChunkBytes) || this.snapshotChunkBytes < 1 || this.snapshotChunkBytes > peerMessageBytesMax / 2) {
      throw new RangeError(`snapshotChunkBytes must be an integer from 1 to ${peerMessageBytesMax / 2}, not ${this.snapshotChunkBytes}`);
    }
    this.refusals = new RefusalLog(options.logger);
    if (options.lane !== undefined) {
      const sockets = options.lane.sockets ?? options.tls?.laneSockets(options.groupId, options.lane.handshakeTimeoutMs ?? 5_000);
      this.lane = new PeerLane({
        ...options.lane, ...(sockets === undefined ? {} : { sockets }), groupId: options.groupId, selfId: options.selfId, logger: options.logger, counters: this.stats,
        frameBytesMax: options.lane.frameBytesMax ?? peerMessageBytesMax,
        refusal: (claim) => this.refusal(claim),
        isMember: (id) => options.members().some((m) => m.id === id),
        receive: (message) => {
          if (message.type === 'append-request') this.appendArrivedOn.set(message.from, 'lane');
          this.receiver?.(message);
        },
      });
    }
  }

  /**
   * Accepts peer lane connections (needs the `lane` option). Listens on `address`, by default
   * this node's lane address (its raft port + 1000); resolves with the address bound.
   */
  async listenLane(address?: LaneAddress): Promise<LaneAddress> {
    if (this.lane === undefined) throw new Error('this transport has no peer lane (the lane option is not set)');
    const self = this.options.members().find((m) => m.id === this.options.selfId);
    const target = address ?? (self === undefined ? undefined : this.lane.addressOf(self));
    if (target === undefined) throw new Error(`node ${this.options.selfId} has no lane address (its raft port + 1000 is not a port)`);
    return this.lane.listen(target);
  }

  /** Where inbound messages go (the RaftNode), set once the node exists. */
  setReceiver(receiver: (message: RaftMessage) => void): void {
    this.receiver = receiver;
  }

  send(message: RaftMessage): void {
    if (this.closed) return;
    try {
      if (message.type === 'append-response') {
        this.sendAppendResponse(message);
        return;
      }
      const link = this.linkTo(message.to);
      if (link === undefined) {
        this.stats.dropped++;
        if (message.type === 'install-snapshot') setImmediate(() => this.options.onSnapshotSent?.(message.to, false)); // never from inside send()
        return;
      }
      this.stats.sent++;
      switch (message.type) {
        case 'append-request': {
          if (this.sendOnLane(link, message)) return;
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
        case 'install-snapshot': this.sendSnapshot(link, message); return;
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
        const certificate = this.options.tls === undefined ? undefined : callCertificate(call);
        call.on('data', (pb: any) => {
          const refusal = this.callRefusal(pb, certificate);
          if (refusal !== undefined) {
            this.stats.rejectedInbound++;
            this.refusals.warn({ peer: pb?.from, err: refusal }, 'raft append refused');
            call.emit('error', { code: grpc.status.PERMISSION_DENIED, details: refusal }); // ends the call with this status
            return;
          }
          if (peer !== pb.from) {
            peer = pb.from as NodeId;
            this.inboundAppendStreams.set(peer, call);
          }
          this.appendArrivedOn.set(pb.from as NodeId, 'grpc');
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
      InstallSnapshot: (call: grpc.ServerReadableStream<any, SnapshotResultWire>, callback: grpc.sendUnaryData<SnapshotResultWire>) => this.receiveSnapshot(call, callback),
    };
  }

  close(): void {
    this.closed = true;
    this.lane?.close();
    for (const send of this.snapshotSends.values()) send.abort();
    this.inboundSnapshot?.stop('the follower is shutting down');
    for (const link of this.links.values()) link.close();
    this.links.clear();
    for (const call of this.inboundAppendStreams.values()) call.end();
    this.inboundAppendStreams.clear();
  }

  private unaryHandler(decode: (pb: any) => RaftMessage | undefined): grpc.handleUnaryCall<any, any> {
    return (call, callback) => {
      const refusal = this.callRefusal(call.request, this.options.tls === undefined ? undefined : callCertificate(call));
      if (refusal !== undefined) {
        this.stats.rejectedInbound++;
        this.refusals.warn({ peer: call.request?.from, err: refusal }, 'raft message refused');
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

  /** `refusal`, and with TLS: the call's certificate must name the sender. */
  private callRefusal(pb: { groupId?: string; from?: string; to?: string }, certificate: PeerCertificate | undefined): string | undefined {
    const refusal = this.refusal(pb);
    if (refusal !== undefined || this.options.tls === undefined) return refusal;
    return certificateRefusal(certificate, this.options.groupId, pb.from as NodeId);
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
      this.snapshotSends.get(id)?.abort();
      link.close();
      link = undefined;
    }
    if (link === undefined) {
      const credentials = this.options.tls?.channelCredentials({ groupId: this.options.groupId, nodeId: id }) ?? grpc.credentials.createInsecure();
      const client = new RaftPeerClient(member.address, credentials, peerChannelOptions);
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

  /**
   * Leader side of InstallSnapshot: streams the newest stored snapshot to the peer (at most
   * one stream per peer; a request while one runs is ignored) and reports the outcome once
   * through `onSnapshotSent`.
   */
  private sendSnapshot(link: PeerLink, message: InstallSnapshot): void {
    const { logger } = this.options;
    const peer = message.to;
    if (this.snapshotSends.has(peer)) {
      logger.debug({ peer, index: message.snapshot.index }, 'snapshot stream to this peer already running; request ignored');
      return;
    }
    const abort = new AbortController();
    this.snapshotSends.set(peer, abort);
    const startedMs = Date.now();
    const report = (ok: boolean): void => {
      if (this.snapshotSends.get(peer) === abort) this.snapshotSends.delete(peer);
      if (ok) this.stats.snapshotsSent++;
      else this.stats.snapshotsSendFailed++;
      try {
        this.options.onSnapshotSent?.(peer, ok);
      } catch (error) {
        logger.error({ peer, err: (error as Error).message }, 'onSnapshotSent threw');
      }
    };
    this.streamSnapshot(link, message, abort.signal).then(
      ({ stored, result }) => {
        if (result.ok) {
          logger.info({ peer, index: stored.meta.index, term: stored.meta.term, bytes: stored.fileBytes, ms: Date.now() - startedMs }, 'snapshot sent');
        } else {
          logger.warn({ peer, index: stored.meta.index, term: stored.meta.term, err: result.error }, 'snapshot refused by the follower');
        }
        report(result.ok);
      },
      (error: unknown) => {
        logger.warn({ peer, index: message.snapshot.index, err: (error as Error).message, ms: Date.now() - startedMs }, 'snapshot stream failed');
        report(false);
      },
    );
  }

  /** What streamSnapshot sends for `stored`: its file, or what snapshotFileForPeer makes of it. */
  private async fileToSend(store: SnapshotStore, stored: StoredSnapshot): Promise<{ fileName: string; fileBytes: number; read: (offset: number, length: number) => Promise<Uint8Array> }> {
    const transform = this.options.snapshotFileForPeer;
    if (transform === undefined) return { fileName: stored.fileName, fileBytes: stored.fileBytes, read: (offset, length) => store.readFileChunk(stored, offset, length) };
    const bytes = await transform(stored);
    return { fileName: `${stored.fileName} (as sent)`, fileBytes: bytes.length, read: (offset, length) => Promise.resolve(bytes.subarray(offset, offset + length)) };
  }

  /** One InstallSnapshot call: the file in order, chunk by chunk, each read only when the previous one is on its way. */
  private async streamSnapshot(link: PeerLink, message: InstallSnapshot, signal: AbortSignal): Promise<{ stored: StoredSnapshot; result: SnapshotResultWire }> {
    const store = this.options.snapshots;
    if (store === undefined) throw new Error('this node has no snapshot store to send from');
    const stored = store.newest();
    if (stored === undefined) throw new Error(`no snapshot stored (asked to send the one at index ${message.snapshot.index})`);
    if (stored.meta.index < message.snapshot.index) {
      throw new Error(`the newest stored snapshot ${stored.fileName} ends at index ${stored.meta.index}, before the requested ${message.snapshot.index}`);
    }
    if (stored.meta.index !== message.snapshot.index) {
      this.options.logger.debug({ peer: message.to, requested: message.snapshot.index, index: stored.meta.index }, 'sending the newer stored snapshot');
    }
    const sent = await this.fileToSend(store, stored);
    const meta = stored.meta;
    const header = {
      groupId: this.options.groupId, from: message.from, to: message.to, term: message.term,
      snapshot: { index: meta.index, term: meta.term, configIndex: meta.configIndex, members: meta.members.map((m) => ({ id: m.id, address: m.address })) },
      fileBytes: sent.fileBytes,
    };
    const deadline = new Date(Date.now() + (this.options.snapshotDeadlineMs ?? 10 * 60_000));
    let call!: grpc.ClientWritableStream<SnapshotChunkWire>;
    const outcome = new Promise<SnapshotResultWire>((resolve, reject) => {
      call = (link.client as any).InstallSnapshot({ deadline }, (error: grpc.ServiceError | null, response: SnapshotResultWire | undefined) => {
        if (error !== null) reject(new Error(`${grpc.status[error.code] ?? error.code}: ${error.details}`));
        else resolve({ ok: Boolean(response?.ok), error: String(response?.error ?? '') });
      });
    });
    // Settles when the call is over, whichever way: every wait below also ends then.
    let over = false;
    const ended = outcome.then(() => { over = true; }, () => { over = true; });

    let failure: Error | undefined;
    const cancel = (reason: string): void => {
      failure ??= new Error(reason);
      call.cancel();
    };
    const onAbort = (): void => cancel('cancelled (the transport closed or the peer moved)');
    signal.addEventListener('abort', onAbort);
    if (signal.aborted) onAbort();
    const stallMs = this.options.snapshotStallMs ?? 60_000;
    let stall: NodeJS.Timeout | undefined;
    const progressed = (): void => {
      clearTimeout(stall);
      stall = setTimeout(() => cancel(`stalled: no chunk written for ${stallMs} ms`), stallMs);
    };
    try {
      progressed();
      let offset = 0;
      let previousWrite: Promise<void> = Promise.resolve();
      do {
        const length = Math.min(this.snapshotChunkBytes, sent.fileBytes - offset);
        const read = sent.read(offset, length);
        read.catch(() => undefined); // awaited below, unless the call ends first
        const data = await Promise.race([read, ended]);
        if (data === undefined || over) break; // the follower answered early, or the call failed
        if (data.length !== length) throw new Error(`reading ${sent.fileName} at offset ${offset} returned ${data.length} bytes, expected ${length}`);
        // Memory stays at about two chunks: the next one is read while the previous one is written out.
        await Promise.race([previousWrite, ended]);
        if (over) break;
        const chunk: SnapshotChunkWire = { ...header, offset, data, crc32: crc32(data), done: offset + length === sent.fileBytes };
        let writable = true;
        previousWrite = new Promise<void>((resolve) => {
          writable = call.write(chunk, () => { progressed(); resolve(); });
        });
        offset += length;
        if (!writable) await drained(call, ended);
      } while (offset < sent.fileBytes && !over);
      if (!over) {
        call.end();
        clearTimeout(stall); // the follower now verifies and syncs the whole file: only the deadline applies
        stall = undefined;
      }
      const result = await outcome;
      if (failure !== undefined) throw failure;
      return { stored, result };
    } catch (error) {
      if (!over) call.cancel();
      throw failure ?? error;
    } finally {
      clearTimeout(stall);
      signal.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Follower side of InstallSnapshot. Every chunk must name this group and node, come from a
   * member (the same refusal as every other message), keep the sender, meta and file size of
   * the first chunk, never lower the term, continue exactly where the previous chunk ended,
   * match its crc32 and stay within the file size. Anything else aborts the receive and is
   * answered `{ ok: false, error }` naming the problem; nothing is delivered. The last chunk
   * finishes the receive (file checksum, durability) and delivers it via `onSnapshotReceived`.
   * A new stream (at the same or a higher term) supersedes one in progress, which is aborted
   * and answered as superseded; a sender's cancel aborts the receive.
   */
  private receiveSnapshot(call: grpc.ServerReadableStream<any, SnapshotResultWire>, callback: grpc.sendUnaryData<SnapshotResultWire>): void {
    const { logger } = this.options;
    let stream: { readonly from: NodeId; term: Term; readonly meta: SnapshotMeta; readonly fileBytes: number } | undefined;
    let receiver: SnapshotReceiver | undefined;
    let received = 0;
    /** No more chunks are taken (refused, cancelled, superseded or finishing). */
    let stopped = false;
    let answered = false;
    // Chunks are handled one at a time (the call is paused meanwhile, which is the sender's back-pressure).
    let queue: Promise<void> = Promise.resolve();

    const answer = (result: SnapshotResultWire): void => {
      if (answered) return;
      answered = true;
      callback(null, result);
    };
    const discard = async (): Promise<void> => {
      const partial = receiver;
      receiver = undefined;
      if (partial === undefined) return;
      try {
        await partial.abort();
      } catch (error) {
        logger.warn({ peer: stream?.from, err: (error as Error).message }, 'aborting a partial snapshot receive failed');
      }
    };
    const self: InboundSnapshot = {
      get from() { return stream?.from ?? ''; },
      get term() { return stream?.term ?? 0; },
      stop: (error) => {
        if (stopped) return;
        stopped = true;
        if (this.inboundSnapshot === self) this.inboundSnapshot = undefined;
        queue = queue.then(async () => {
          await discard();
          if (error !== undefined) answer({ ok: false, error });
        });
      },
    };
    const refuse = (error: string, peer: string | undefined): void => {
      if (stopped) return;
      this.stats.rejectedInbound++;
      logger.warn({ peer, index: stream?.meta.index, err: error }, 'snapshot refused');
      self.stop(error);
    };

    const certificate = this.options.tls === undefined ? undefined : callCertificate(call);
    const handle = async (pb: any): Promise<void> => {
      if (stopped) return;
      const refusal = this.callRefusal(pb, certificate);
      if (refusal !== undefined) return refuse(`snapshot chunk refused: ${refusal}`, pb.from);
      let chunk: SnapshotChunk;
      try {
        chunk = decodeSnapshotChunk(pb);
      } catch (error) {
        return refuse(`malformed snapshot chunk: ${(error as Error).message}`, pb.from);
      }
      const problem = this.snapshotChunkProblem(chunk, stream, received);
      if (problem !== undefined) return refuse(problem, chunk.from);
      if (stream === undefined) {
        const store = this.options.snapshots;
        if (store === undefined || this.options.onSnapshotReceived === undefined) return refuse(`node ${this.options.selfId} cannot receive snapshots (no snapshot store configured)`, chunk.from);
        const previous = this.inboundSnapshot;
        if (previous !== undefined && chunk.term < previous.term) {
          return refuse(`a snapshot stream from ${previous.from} at term ${previous.term} is in progress; this one is from the older term ${chunk.term}`, chunk.from);
        }
        stream = { from: chunk.from, term: chunk.term, meta: chunk.meta, fileBytes: chunk.fileBytes };
        this.inboundSnapshot = self;
        if (previous !== undefined) {
          logger.info({ peer: previous.from, by: chunk.from }, 'snapshot receive superseded by a new stream');
          previous.stop(`superseded by a snapshot stream from ${chunk.from} (index ${chunk.meta.index}, term ${chunk.meta.term})`);
        }
        try {
          receiver = store.receive(chunk.meta, chunk.fileBytes);
        } catch (error) {
          return refuse(`cannot receive snapshot ${chunk.meta.index}/t${chunk.meta.term}: ${(error as Error).message}`, chunk.from);
        }
      }
      stream.term = chunk.term;
      const current = receiver as SnapshotReceiver;
      try {
        await current.write(chunk.offset, chunk.data);
      } catch (error) {
        return refuse(`writing the snapshot chunk at offset ${chunk.offset} failed: ${(error as Error).message}`, chunk.from);
      }
      if (stopped) return; // cancelled or superseded meanwhile: the stop aborts it
      received += chunk.data.length;
      if (!chunk.done) return;

      stopped = true; // the file is complete: nothing more is taken, and nobody supersedes a finishing receive
      if (this.inboundSnapshot === self) this.inboundSnapshot = undefined;
      let data: Uint8Array;
      try {
        ({ data } = await current.finish());
      } catch (error) {
        this.stats.rejectedInbound++;
        const message = `snapshot ${stream.meta.index}/t${stream.meta.term} rejected: ${(error as Error).message}`;
        logger.warn({ peer: stream.from, err: message }, 'snapshot refused');
        await discard();
        answer({ ok: false, error: message });
        return;
      }
      receiver = undefined; // durable and recorded: nothing left to abort
      if (this.closed) {
        answer({ ok: false, error: 'the follower is shutting down' }); // stored; it restores from it at restart
        return;
      }
      this.stats.snapshotsReceived++;
      logger.info({ peer: stream.from, index: stream.meta.index, term: stream.meta.term, bytes: stream.fileBytes }, 'snapshot received');
      const message: InstallSnapshot = { type: 'install-snapshot', from: stream.from, to: this.options.selfId, term: stream.term, snapshot: stream.meta };
      try {
        this.options.onSnapshotReceived?.(message, data);
      } catch (error) {
        logger.error({ peer: stream.from, err: (error as Error).message }, 'onSnapshotReceived threw');
        answer({ ok: false, error: `the snapshot is stored but the node did not take it: ${(error as Error).message}` });
        return;
      }
      answer({ ok: true, error: '' });
    };

    call.on('data', (pb: any) => {
      if (stopped) return;
      call.pause();
      queue = queue.then(() => handle(pb)).catch((error: unknown) => {
        refuse(`internal error handling a snapshot chunk: ${(error as Error).message}`, pb?.from);
      }).then(() => {
        if (!stopped) call.resume();
      });
    });
    call.on('end', () => {
      // A sender's cancel ends the readable side a moment before 'cancelled' arrives (the RST_STREAM
      // closes the HTTP/2 stream's read side first): give it a moment before calling it a short stream.
      const settled = (): Promise<void> => new Promise<void>((resolve) => {
        if (stopped || call.cancelled) return resolve();
        const timer = setTimeout(resolve, cancelGraceMs);
        call.once('cancelled', () => { clearTimeout(timer); resolve(); });
      });
      queue = queue.then(settled).then(() => {
        if (call.cancelled) gone();
        else refuse(`the stream ended before the last chunk (received ${received} of ${stream?.fileBytes ?? 'unknown'} bytes)`, stream?.from);
      });
    });
    const gone = (): void => {
      if (!stopped && stream !== undefined) logger.warn({ peer: stream.from, index: stream.meta.index, received }, 'snapshot stream cancelled by the sender; partial receive discarded');
      self.stop(undefined);
    };
    call.on('cancelled', gone);
    call.on('error', gone);
  }

  /** Why a chunk does not continue the stream, or undefined if it does. */
  private snapshotChunkProblem(chunk: SnapshotChunk, stream: { readonly from: NodeId; readonly term: Term; readonly meta: SnapshotMeta; readonly fileBytes: number } | undefined, received: number): string | undefined {
    const at = `the chunk at offset ${chunk.offset}`;
    if (stream !== undefined) {
      if (chunk.from !== stream.from) return `sender changed mid-stream: ${at} is from ${chunk.from}, the stream began from ${stream.from}`;
      if (chunk.term < stream.term) return `term went backwards within the stream: ${at} has term ${chunk.term} after term ${stream.term}`;
      if (!sameSnapshotMeta(chunk.meta, stream.meta)) return `snapshot meta changed mid-stream: ${at} describes ${describeMeta(chunk.meta)}, the stream began with ${describeMeta(stream.meta)}`;
      if (chunk.fileBytes !== stream.fileBytes) return `file size changed mid-stream: ${at} says ${chunk.fileBytes} bytes, the stream began with ${stream.fileBytes}`;
    }
    if (chunk.offset !== received) return `chunk out of order: ${at}, expected offset ${received} (the bytes received so far)`;
    const actual = crc32(chunk.data);
    if (actual !== chunk.crc32) return `crc32 mismatch in ${at}: its ${chunk.data.length} bytes have crc32 ${actual}, the chunk says ${chunk.crc32}`;
    const end = received + chunk.data.length;
    if (end > chunk.fileBytes) return `chunks exceed the snapshot file size: ${at} ends at byte ${end}, the file has ${chunk.fileBytes}`;
    if (chunk.done && end !== chunk.fileBytes) return `the last chunk ends at byte ${end} but the snapshot file has ${chunk.fileBytes}`;
    return undefined;
  }

  /** Leader side: the append on the lane if it is open to that peer (true: sent or dropped there); false: use gRPC. */
  private sendOnLane(link: PeerLink, message: AppendRequest): boolean {
    if (this.lane === undefined) return false;
    const result = this.lane.sendAppendRequest(message, { id: link.id, address: link.address });
    if (result === 'dropped') this.stats.dropped++;
    return result !== 'unavailable';
  }

  /** Follower side: answers the way the leader's last append came (lane or gRPC), else the other way. */
  private sendAppendResponse(message: AppendResponse): void {
    const lane = this.lane;
    const laneFirst = lane !== undefined && this.appendArrivedOn.get(message.to) !== 'grpc';
    if (laneFirst && this.answerOnLane(lane, message)) return;
    if (this.sendOnInboundStream(message)) return;
    if (!laneFirst && lane !== undefined && this.answerOnLane(lane, message)) return;
    this.stats.dropped++;
  }

  private answerOnLane(lane: PeerLane, message: AppendResponse): boolean {
    const result = lane.sendAppendResponse(message);
    if (result === 'sent') this.stats.sent++;
    if (result === 'dropped') this.stats.dropped++;
    return result !== 'unavailable';
  }

  /** False if there is no inbound append stream from `message.to`. */
  private sendOnInboundStream(message: AppendResponse): boolean {
    const call = this.inboundAppendStreams.get(message.to);
    if (call === undefined) return false;
    this.stats.sent++;
    call.write({
      groupId: this.options.groupId, from: message.from, to: message.to, term: message.term, success: message.success,
      matchIndex: message.matchIndex, reason: message.reason ?? '', conflictIndex: message.conflictIndex,
      conflictTerm: message.conflictTerm, lastIndex: message.lastIndex, rejectedPrevIndex: message.rejectedPrevIndex,
    });
    return true;
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

function decodeSnapshotChunk(pb: any): SnapshotChunk {
  const snapshot = pb.snapshot;
  if (snapshot === null || snapshot === undefined) throw new Error('no snapshot meta');
  const data = pb.data as Uint8Array | undefined;
  if (!(data instanceof Uint8Array)) throw new Error('no data');
  const members: Member[] = [];
  for (const m of snapshot.members as any[]) {
    if (typeof m.id !== 'string' || m.id === '' || typeof m.address !== 'string') throw new Error('a member without id or address');
    members.push({ id: m.id, address: m.address });
  }
  return {
    from: pb.from, term: checkedNumber(pb.term),
    meta: { index: checkedNumber(snapshot.index), term: checkedNumber(snapshot.term), members, configIndex: checkedNumber(snapshot.configIndex) },
    fileBytes: checkedNumber(pb.fileBytes), offset: checkedNumber(pb.offset), data, crc32: Number(pb.crc32), done: Boolean(pb.done),
  };
}

function sameSnapshotMeta(a: SnapshotMeta, b: SnapshotMeta): boolean {
  return a.index === b.index && a.term === b.term && a.configIndex === b.configIndex && a.members.length === b.members.length
    && a.members.every((m, i) => m.id === b.members[i]?.id && m.address === b.members[i]?.address);
}

function describeMeta(meta: SnapshotMeta): string {
  return `index ${meta.index} term ${meta.term} config ${meta.configIndex} members [${meta.members.map((m) => `${m.id}@${m.address}`).join(', ')}]`;
}

/** Resolves at the stream's next 'drain', or when `ended` settles (the call is over). */
function drained(stream: NodeJS.EventEmitter, ended: Promise<void>): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      stream.off('drain', done);
      resolve();
    };
    stream.on('drain', done);
    void ended.then(done);
  });
}

/** Malformed input from the network is refused, never allowed to throw out of a handler. */
function decodeSafely<T>(decode: () => T | undefined): T | undefined {
  try {
    return decode();
  } catch {
    return undefined;
  }
}
