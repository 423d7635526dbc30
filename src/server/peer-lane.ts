/**
 * The peer lane: append-request and append-response between the members of a group over one
 * plain TCP connection per leader → follower pair, in the binary frames of peer-frame-codec.ts.
 * gRPC (grpc-raft-transport.ts) keeps everything else and carries appends whenever the lane
 * is not open, so a peer without a lane (an older node during a rolling upgrade) still works.
 *
 * The dialer (the side that sends append-requests) opens the connection on demand and sends
 * a hello naming the group, itself and the node it means to reach; the listener checks that
 * claim exactly as the gRPC transport checks every message (`refusal`), answers with a welcome
 * or a refusal (then closes), and from then on every append frame is checked again against the
 * current members. The listener answers on the same connection.
 *
 * Bounds: a connection that has not said hello may send one small frame and is closed after
 * `handshakeTimeoutMs`; at most `inboundUnverifiedMax` such connections at a time; one
 * verified inbound connection per peer (a new one replaces the old). Frames are limited to
 * `frameBytesMax`; anything malformed closes the connection (counted in `rejectedInbound`),
 * never the process. Outbound bytes queued on one connection stay within `bufferBytesMax`
 * once the socket has asked for a drain; beyond that frames are dropped and counted (Raft
 * retries). Writes in one tick go out together (cork, uncork on the next tick).
 */
import * as net from 'node:net';
import type { Logger } from '../raft/node/ports.js';
import type { AppendRequest, AppendResponse, Member, NodeId } from '../raft/types.js';
import {
  FrameReader, FrameType, LaneProtocolError, decodeAppendRequest, decodeAppendResponse, decodeHello, decodeRefused,
  decodeWelcome, encodeAppendRequest, encodeAppendResponse, encodeHello, encodeRefused, encodeWelcome, laneProtocolVersion,
  appendRequestFixedBytes, ownedCopy, type FrameHandler,
} from './peer-frame-codec.js';
import { RefusalLog } from './refusal-log.js';

/** The one place lane sockets are made: plain TCP, or mutual TLS (tls.ts). */
export interface LaneSockets {
  /** A connection to `peer`'s lane at `address`. */
  connect(address: LaneAddress, peer: NodeId): net.Socket;
  createServer(onConnection: (socket: net.Socket) => void): net.Server;
  /** Why the peer at the other end of an accepted `socket` may not make `claim` (its certificate), if it may not. */
  refusal?(socket: net.Socket, claim: { readonly groupId: string; readonly from: NodeId }): string | undefined;
}

export const plainLaneSockets: LaneSockets = {
  connect: (address) => net.connect({ host: address.host, port: address.port }),
  createServer: (onConnection) => net.createServer(onConnection),
};

export interface LaneAddress {
  readonly host: string;
  readonly port: number;
}

/** The lane listens on the member's raft port plus this (RocketMQ derives its HA port the same way). */
export const lanePortOffset = 1000;

/** A member's lane address: same host, raft port + 1000; undefined if that is not a port. */
export function laneAddressOf(member: Member): LaneAddress | undefined {
  const colon = member.address.lastIndexOf(':');
  const port = Number(member.address.slice(colon + 1)) + lanePortOffset;
  if (colon <= 0 || !Number.isInteger(port) || port > 65_535) return undefined;
  return { host: member.address.slice(0, colon), port };
}

export interface LaneStats {
  /** Frames written to a lane (appends and answers). */
  laneFramesSent: number;
  laneFramesReceived: number;
  /** Handshakes completed, either side. */
  laneConnections: number;
}

/** The counters the lane shares with its transport. */
export interface LaneCounters extends LaneStats {
  dropped: number;
  rejectedInbound: number;
}

export interface PeerLaneSettings {
  /** Where a member's lane listens (default laneAddressOf). */
  readonly addressOf?: (member: Member) => LaneAddress | undefined;
  readonly sockets?: LaneSockets;
  /** Per connection: bytes queued beyond which frames are dropped (default 32 MiB). */
  readonly bufferBytesMax?: number;
  /** Largest frame accepted (default: the gRPC peer message limit). */
  readonly frameBytesMax?: number;
  /** How long a connection may take to complete its handshake (default 5 s). */
  readonly handshakeTimeoutMs?: number;
  /** Delay before redialing a peer after a failure: doubles from `initial` up to `max`, jittered. */
  readonly reconnectBackoffMs?: { readonly initial: number; readonly max: number };
}

export interface PeerLaneOptions extends PeerLaneSettings {
  readonly groupId: string;
  readonly selfId: NodeId;
  readonly logger: Logger;
  /** Why a message claiming these ends must be refused (the gRPC transport's check), or undefined. */
  readonly refusal: (claim: { readonly groupId: string; readonly from: NodeId; readonly to: NodeId }) => string | undefined;
  readonly isMember: (id: NodeId) => boolean;
  readonly receive: (message: AppendRequest | AppendResponse) => void;
  readonly counters: LaneCounters;
  readonly frameBytesMax: number;
}

export type LaneSendResult = 'sent' | 'dropped' | 'unavailable';

const handshakeFrameBytesMax = 4 * 1024;
const inboundUnverifiedMax = 16;
const keepAliveMs = 10_000;
/** A refused or superseded connection is destroyed if the other side has not closed it by then. */
const lingerMs = 1_000;

/** A socket with a FrameReader on its input and corked, bounded writes on its output. */
class FramedSocket {
  readonly reader: FrameReader;
  private corked = false;
  private needDrain = false;
  private ending = false;
  private lastError: string | undefined;

  constructor(
    readonly socket: net.Socket,
    frameBytesMax: number,
    private readonly bufferBytesMax: number,
    handlers: { readonly frame: FrameHandler; readonly malformed: (why: string) => void; readonly closed: (error: string | undefined) => void },
  ) {
    this.reader = new FrameReader(frameBytesMax);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, keepAliveMs);
    socket.on('error', (error) => { this.lastError = error.message; }); // 'close' follows
    socket.on('close', () => {
      this.reader.stop();
      handlers.closed(this.lastError);
    });
    socket.on('drain', () => { this.needDrain = false; });
    socket.on('data', (chunk: Buffer) => {
      const problem = this.reader.push(chunk, handlers.frame);
      if (problem === undefined) return;
      handlers.malformed(problem);
      this.destroy();
    });
  }

  get usable(): boolean {
    return !this.ending && !this.socket.destroyed;
  }

  /**
   * Queues `frame`; false if it was dropped. Once write() has said the socket buffer is full,
   * frames are taken only while the queued bytes stay within bufferBytesMax (an empty buffer
   * always takes one frame, however large, so a big entry is never stuck behind the limit).
   */
  write(frame: Buffer): boolean {
    if (!this.usable) return false;
    if (this.needDrain && this.socket.writableLength > 0 && this.socket.writableLength + frame.length > this.bufferBytesMax) return false;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      process.nextTick(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    if (!this.socket.write(frame)) this.needDrain = true;
    return true;
  }

  /** Sends a refusal, then closes. */
  refuse(reason: string): void {
    if (!this.usable) return;
    this.ending = true;
    this.reader.stop();
    this.socket.end(encodeRefused(reason));
    setTimeout(() => this.socket.destroy(), lingerMs).unref();
  }

  destroy(): void {
    this.ending = true;
    this.reader.stop();
    this.socket.destroy();
  }
}

/** The dialer's side of one peer: connects on demand, redials with backoff after a failure. */
class OutboundLane {
  private connection: FramedSocket | undefined;
  private open = false;
  private retryAtMs = 0;
  private backoffMs: number;
  private closed = false;

  constructor(readonly peer: NodeId, readonly address: LaneAddress, private readonly lane: PeerLaneContext) {
    this.backoffMs = lane.backoff.initial;
  }

  get isOpen(): boolean {
    return this.open && this.connection?.usable === true;
  }

  write(frame: Buffer): boolean {
    return this.connection?.write(frame) ?? false;
  }

  /** Starts a connection attempt, unless one is under way or the backoff has not passed. */
  maybeDial(): void {
    if (this.closed || this.connection !== undefined || Date.now() < this.retryAtMs) return;
    const { options } = this.lane;
    const socket = this.lane.sockets.connect(this.address, this.peer);
    const timer = setTimeout(() => {
      if (this.open) return;
      options.logger.debug({ peer: this.peer, address: `${this.address.host}:${this.address.port}` }, 'peer lane: no welcome in time');
      connection.destroy();
    }, this.lane.handshakeTimeoutMs).unref();
    const connection: FramedSocket = new FramedSocket(socket, handshakeFrameBytesMax, this.lane.bufferBytesMax, {
      frame: (type, body): boolean => this.onFrame(connection, type, body, timer),
      malformed: (why) => {
        options.counters.rejectedInbound++;
        options.logger.warn({ peer: this.peer, err: why }, 'peer lane: malformed frame from the peer; connection closed');
      },
      closed: (error) => {
        clearTimeout(timer);
        this.onClosed(connection, error);
      },
    });
    this.connection = connection;
    connection.write(encodeHello({ version: laneProtocolVersion, groupId: options.groupId, from: options.selfId, to: this.peer }));
  }

  close(): void {
    this.closed = true;
    this.open = false;
    this.connection?.destroy();
  }

  private onFrame(connection: FramedSocket, type: number, body: Buffer, timer: NodeJS.Timeout): boolean {
    const { options } = this.lane;
    if (type === FrameType.refused) {
      // The same refusal gRPC would answer with PERMISSION_DENIED; logged as gRPC's closed stream is.
      options.logger.debug({ peer: this.peer, err: decodeRefused(body) }, 'peer lane refused');
      this.backoffMs = this.lane.backoff.max;
      connection.destroy();
      return false;
    }
    if (!this.open) {
      if (type !== FrameType.welcome) throw new LaneProtocolError(`expected a welcome, got a frame of type ${type}`);
      const welcome = decodeWelcome(body);
      if (welcome.groupId !== options.groupId || welcome.nodeId !== this.peer) {
        throw new LaneProtocolError(`answered by node ${welcome.nodeId} of group ${welcome.groupId}, expected node ${this.peer} of group ${options.groupId}`);
      }
      clearTimeout(timer);
      this.open = true;
      this.backoffMs = this.lane.backoff.initial;
      connection.reader.frameBytesMax = options.frameBytesMax;
      options.counters.laneConnections++;
      options.logger.info({ peer: this.peer, address: `${this.address.host}:${this.address.port}` }, 'peer lane open');
      return true;
    }
    if (type !== FrameType.appendResponse) throw new LaneProtocolError(`expected an append answer, got a frame of type ${type}`);
    const message = decodeAppendResponse(body, this.peer, options.selfId);
    if (!options.isMember(this.peer)) return true; // as gRPC: an answer from a non-member is ignored
    options.counters.laneFramesReceived++;
    options.receive(message);
    return true;
  }

  private onClosed(connection: FramedSocket, error: string | undefined): void {
    if (this.connection !== connection) return;
    const wasOpen = this.open;
    this.connection = undefined;
    this.open = false;
    if (this.closed) return;
    const delayMs = this.backoffMs * (0.5 + Math.random() / 2);
    this.retryAtMs = Date.now() + delayMs;
    this.backoffMs = Math.min(this.backoffMs * 2, this.lane.backoff.max);
    const fields = { peer: this.peer, err: error, retryInMs: Math.round(delayMs) };
    if (wasOpen) this.lane.options.logger.info(fields, 'peer lane closed; appends use gRPC until it reopens');
    else this.lane.options.logger.debug(fields, 'peer lane connection failed');
  }
}

/** What the outbound lanes share with their PeerLane. */
interface PeerLaneContext {
  readonly options: PeerLaneOptions;
  readonly sockets: LaneSockets;
  readonly bufferBytesMax: number;
  readonly handshakeTimeoutMs: number;
  readonly backoff: { readonly initial: number; readonly max: number };
}

/** The last append frame encoded: a leader sends the same range to every follower in one go. */
interface EncodedAppend {
  readonly message: AppendRequest;
  readonly frame: Buffer;
}

export class PeerLane {
  private readonly context: PeerLaneContext;
  private readonly outbound = new Map<NodeId, OutboundLane>();
  /** Verified inbound connections, one per peer. */
  private readonly inbound = new Map<NodeId, FramedSocket>();
  private readonly unverified = new Set<FramedSocket>();
  private server: net.Server | undefined;
  private lastEncoded: EncodedAppend | undefined;
  private prunedAtMs = 0;
  private closed = false;
  private readonly refusals: RefusalLog;

  constructor(private readonly options: PeerLaneOptions) {
    this.refusals = new RefusalLog(options.logger);
    this.context = {
      options,
      sockets: options.sockets ?? plainLaneSockets,
      bufferBytesMax: options.bufferBytesMax ?? 32 * 1024 * 1024,
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 5_000,
      backoff: options.reconnectBackoffMs ?? { initial: 100, max: 1_000 },
    };
  }

  /** Where a member's lane is (undefined: it has none this node can reach). */
  addressOf(member: Member): LaneAddress | undefined {
    return (this.options.addressOf ?? laneAddressOf)(member);
  }

  /** Accepts lane connections on `address`; resolves with the address bound (port 0 picks one). */
  async listen(address: LaneAddress): Promise<LaneAddress> {
    if (this.closed) throw new Error('the peer lane is closed');
    const server = this.context.sockets.createServer((socket) => this.accept(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host: address.host, port: address.port }, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', (error) => this.options.logger.warn({ err: error.message }, 'peer lane listener error'));
    this.server = server;
    const bound = server.address() as net.AddressInfo;
    return { host: address.host, port: bound.port };
  }

  /** Sends a leader's append on the lane to `member`, dialing it if needed. */
  sendAppendRequest(message: AppendRequest, member: Member): LaneSendResult {
    if (this.closed) return 'unavailable';
    this.pruneRemovedPeers();
    const address = this.addressOf(member);
    if (address === undefined) return 'unavailable';
    let lane = this.outbound.get(member.id);
    if (lane !== undefined && (lane.address.host !== address.host || lane.address.port !== address.port)) {
      lane.close();
      lane = undefined;
    }
    if (lane === undefined) {
      lane = new OutboundLane(member.id, address, this.context);
      this.outbound.set(member.id, lane);
    }
    if (!lane.isOpen) {
      lane.maybeDial();
      return 'unavailable';
    }
    const frame = this.encode(message);
    if (frame.length - 4 > this.options.frameBytesMax) return 'unavailable'; // the peer would refuse it
    if (!lane.write(frame)) return 'dropped';
    this.options.counters.laneFramesSent++;
    return 'sent';
  }

  /** Answers an append on the lane the leader `message.to` connected, if it has one. */
  sendAppendResponse(message: AppendResponse): LaneSendResult {
    const connection = this.inbound.get(message.to);
    if (this.closed || connection === undefined || !connection.usable) return 'unavailable';
    if (!connection.write(encodeAppendResponse(message))) return 'dropped';
    this.options.counters.laneFramesSent++;
    return 'sent';
  }

  /** Stops listening and closes every lane connection; idempotent. */
  close(): void {
    this.closed = true;
    this.server?.close();
    this.server = undefined;
    for (const lane of this.outbound.values()) lane.close();
    this.outbound.clear();
    for (const connection of [...this.inbound.values(), ...this.unverified]) connection.destroy();
    this.inbound.clear();
    this.unverified.clear();
  }

  /** Closes lanes to nodes that are no longer members (at most once a second; a leader never sends to them again). */
  private pruneRemovedPeers(): void {
    const now = Date.now();
    if (now - this.prunedAtMs < 1_000) return;
    this.prunedAtMs = now;
    for (const [peer, lane] of this.outbound) {
      if (this.options.isMember(peer)) continue;
      lane.close();
      this.outbound.delete(peer);
    }
  }

  private encode(message: AppendRequest): Buffer {
    const last = this.lastEncoded;
    if (last !== undefined && last.message.entries === message.entries && last.message.term === message.term
      && last.message.prevIndex === message.prevIndex && last.message.prevTerm === message.prevTerm
      && last.message.commitIndex === message.commitIndex) return last.frame;
    const frame = encodeAppendRequest(message);
    if (message.entries.length > 0) {
      if (this.lastEncoded === undefined) process.nextTick(() => { this.lastEncoded = undefined; }); // kept for this tick only
      this.lastEncoded = { message, frame };
    }
    return frame;
  }

  /** The listener's side of one connection: hello first, then append frames from that peer. */
  private accept(socket: net.Socket): void {
    const { counters, logger } = this.options;
    if (this.closed || this.unverified.size >= inboundUnverifiedMax) {
      counters.rejectedInbound++;
      socket.on('error', () => undefined);
      socket.destroy();
      return;
    }
    let claim: { readonly groupId: string; readonly from: NodeId; readonly to: NodeId } | undefined;
    const timer = setTimeout(() => {
      if (claim === undefined) connection.destroy();
    }, this.context.handshakeTimeoutMs).unref();
    const connection: FramedSocket = new FramedSocket(socket, handshakeFrameBytesMax, this.context.bufferBytesMax, {
      frame: (type, body, shared): boolean => {
        if (claim === undefined) {
          claim = this.verifyHello(connection, type, body);
          if (claim !== undefined) clearTimeout(timer);
          return claim !== undefined;
        }
        return this.deliverAppend(connection, claim, type, body, shared);
      },
      malformed: (why) => {
        counters.rejectedInbound++;
        logger.warn({ peer: claim?.from, remote: socket.remoteAddress, err: why }, 'peer lane: malformed frame; connection closed');
      },
      closed: () => {
        clearTimeout(timer);
        this.unverified.delete(connection);
        if (claim !== undefined && this.inbound.get(claim.from) === connection) this.inbound.delete(claim.from);
      },
    });
    this.unverified.add(connection);
  }

  /** The claim of a hello that passes the transport's check (the connection now belongs to that peer), or undefined. */
  private verifyHello(connection: FramedSocket, type: number, body: Buffer): { groupId: string; from: NodeId; to: NodeId } | undefined {
    const { counters } = this.options;
    if (type !== FrameType.hello) throw new LaneProtocolError(`expected a hello, got a frame of type ${type}`);
    const hello = decodeHello(body);
    if (hello.version !== laneProtocolVersion) {
      counters.rejectedInbound++;
      connection.refuse(`lane protocol version ${hello.version} is not supported (this node speaks ${laneProtocolVersion})`);
      return undefined;
    }
    const claim = { groupId: hello.groupId, from: hello.from, to: hello.to };
    const refusal = this.options.refusal(claim) ?? this.context.sockets.refusal?.(connection.socket, claim);
    if (refusal !== undefined) {
      counters.rejectedInbound++;
      this.refusals.warn({ peer: claim.from, remote: connection.socket.remoteAddress, err: refusal }, 'peer lane: connection refused');
      connection.refuse(refusal);
      return undefined;
    }
    this.unverified.delete(connection);
    const previous = this.inbound.get(claim.from);
    this.inbound.set(claim.from, connection);
    previous?.destroy();
    connection.reader.frameBytesMax = this.options.frameBytesMax;
    connection.write(encodeWelcome({ version: laneProtocolVersion, groupId: this.options.groupId, nodeId: this.options.selfId }));
    counters.laneConnections++;
    this.options.logger.debug({ peer: claim.from }, 'peer lane accepted');
    return claim;
  }

  /** `shared`: the body sits in a buffer mostly holding other frames; its payloads are copied rather than pin that buffer. */
  private deliverAppend(connection: FramedSocket, claim: { readonly groupId: string; readonly from: NodeId; readonly to: NodeId }, type: number, body: Buffer, shared: boolean): boolean {
    if (type !== FrameType.appendRequest) throw new LaneProtocolError(`expected an append, got a frame of type ${type}`);
    // Checked on every frame, as gRPC checks every message: membership may have changed.
    const refusal = this.options.refusal(claim);
    if (refusal !== undefined) {
      this.options.counters.rejectedInbound++;
      connection.refuse(refusal);
      return false;
    }
    const message = decodeAppendRequest(shared && body.length > appendRequestFixedBytes ? ownedCopy(body) : body, claim.from, claim.to);
    this.options.counters.laneFramesReceived++;
    this.options.receive(message);
    return true;
  }
}
