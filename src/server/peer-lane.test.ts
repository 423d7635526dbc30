/**
 * The peer lane between real GrpcRaftTransports on 127.0.0.1: appends and their answers
 * travel on it once it is open, on gRPC while it is down (and to or from a node without one),
 * it reconnects after a broken connection, a peer that never reads costs bounded memory
 * (drops counted), and a wrong claim or hostile bytes are refused without harm to the node.
 */
import * as net from 'node:net';
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import type { Logger } from '../raft/node/ports.js';
import { EntryKind, type AppendRequest, type AppendResponse, type Member, type NodeId, type RaftMessage } from '../raft/types.js';
import { GrpcRaftTransport, peerChannelOptions, raftPeerService } from './grpc-raft-transport.js';
import { FrameReader, FrameType, decodeHello, decodeRefused, encodeHello, encodeWelcome } from './peer-frame-codec.js';
import { plainLaneSockets, type LaneAddress, type LaneSockets, type PeerLaneSettings } from './peer-lane.js';

const groupId = 'g1';
let members: Member[] = [];
const laneAddresses = new Map<NodeId, LaneAddress>();
const cleanups: Array<() => void> = [];

afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
  members = [];
  laneAddresses.clear();
});

interface Node {
  readonly id: NodeId;
  readonly transport: GrpcRaftTransport;
  readonly received: RaftMessage[];
  readonly logs: string[];
}

/** A transport with its gRPC server; `lane: false` is a node from before the lane. */
async function startNode(id: NodeId, options: { lane?: false | PeerLaneSettings; listen?: boolean } = {}): Promise<Node> {
  const received: RaftMessage[] = [];
  const logs: string[] = [];
  const record = (fields: object, message: string): void => { logs.push(`${message} ${JSON.stringify(fields)}`); };
  const logger: Logger = { debug: record, info: record, warn: record, error: record };
  const lane = options.lane === false ? undefined : { addressOf: (m: Member) => laneAddresses.get(m.id), ...options.lane };
  const transport = new GrpcRaftTransport({ groupId, selfId: id, members: () => members, logger, ...(lane === undefined ? {} : { lane }) });
  transport.setReceiver((message) => received.push(message));
  const server = new grpc.Server(peerChannelOptions);
  server.addService(raftPeerService, transport.serviceImplementation());
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error)));
  });
  members.push({ id, address: `127.0.0.1:${port}` });
  if (lane !== undefined && options.listen !== false) laneAddresses.set(id, await transport.listenLane({ host: '127.0.0.1', port: 0 }));
  cleanups.push(() => { transport.close(); server.forceShutdown(); });
  return { id, transport, received, logs };
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function append(from: NodeId, to: NodeId, prevIndex: number, payloadBytes = 64, count = 1): AppendRequest {
  const entries = Array.from({ length: count }, (_, i) => ({
    index: prevIndex + 1 + i, term: 2, kind: EntryKind.normal, payload: new Uint8Array(payloadBytes).fill((prevIndex + i) % 251),
  }));
  return { type: 'append-request', from, to, term: 2, prevIndex, prevTerm: 2, commitIndex: prevIndex, entryCount: count, entries };
}

function answer(from: NodeId, to: NodeId, matchIndex: number): AppendResponse {
  return { type: 'append-response', from, to, term: 2, success: true, matchIndex, reason: undefined, conflictIndex: 0, conflictTerm: 0, lastIndex: matchIndex, rejectedPrevIndex: 0 };
}

const appendsIn = (node: Node): AppendRequest[] => node.received.filter((m): m is AppendRequest => m.type === 'append-request');

/** Sends heartbeats until the leader's lane to `to` is open. */
async function openLane(leader: Node, to: NodeId): Promise<void> {
  const opened = leader.transport.stats.laneConnections;
  await waitFor(`the lane to ${to}`, () => {
    leader.transport.send(append(leader.id, to, 0, 0, 0));
    return leader.transport.stats.laneConnections > opened;
  });
}

/** Socket factory that remembers the sockets it dialed. */
function recordingSockets(): LaneSockets & { readonly dialed: net.Socket[] } {
  const dialed: net.Socket[] = [];
  return { dialed, connect: (address, peer) => { const socket = plainLaneSockets.connect(address, peer); dialed.push(socket); return socket; }, createServer: plainLaneSockets.createServer };
}

/** Connects to a lane as a hand-written client: sends `bytes`, collects frames until the listener closes. */
async function rawExchange(address: LaneAddress, bytes: Buffer[]): Promise<{ frames: Array<{ type: number; body: Buffer }>; problem: string | undefined }> {
  const socket = net.connect(address.port, address.host);
  const reader = new FrameReader(1 << 20);
  const frames: Array<{ type: number; body: Buffer }> = [];
  let problem: string | undefined;
  socket.on('data', (chunk: Buffer) => { problem ??= reader.push(chunk, (type, body) => { frames.push({ type, body }); return true; }); });
  socket.on('error', () => undefined);
  for (const part of bytes) socket.write(part);
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => { socket.destroy(); reject(new Error('the listener did not close the connection')); }, 8_000);
    socket.on('close', () => { clearTimeout(timer); resolve(); });
  });
  return { frames, problem };
}

describe('peer lane', () => {
  it('carries appends and their answers once open, in order and byte for byte', async () => {
    const leader = await startNode('n1');
    const follower = await startNode('n2');
    await openLane(leader, 'n2');
    const laneIn = follower.transport.stats.laneFramesReceived;
    const sent = Array.from({ length: 20 }, (_, i) => append('n1', 'n2', 100 + i * 50, 5_000, 50)); // 250 KiB each
    for (const message of sent) leader.transport.send(message);
    const withEntries = (): AppendRequest[] => appendsIn(follower).filter((m) => m.entryCount > 0);
    await waitFor('20 appends', () => withEntries().length === 20);
    expect(follower.transport.stats.laneFramesReceived - laneIn).toBeGreaterThanOrEqual(20); // and a heartbeat or so from openLane
    const got = withEntries();
    expect(got.map((m) => m.prevIndex)).toEqual(sent.map((m) => m.prevIndex));
    expect(got.every((m, i) => m.entries.every((e, j) => Buffer.compare(e.payload, sent[i]?.entries[j]?.payload as Uint8Array) === 0))).toBe(true);

    follower.transport.send(answer('n2', 'n1', 1_099));
    await waitFor('the answer', () => leader.received.some((m) => m.type === 'append-response' && m.matchIndex === 1_099));
    expect(leader.transport.stats.laneFramesReceived).toBeGreaterThanOrEqual(1);
    expect(leader.received.find((m) => m.type === 'append-response')).toMatchObject({ from: 'n2', to: 'n1', success: true, reason: undefined });
  });

  it('falls back to gRPC while the lane is down and reconnects with backoff', async () => {
    const sockets = recordingSockets();
    const leader = await startNode('n1', { lane: { sockets, reconnectBackoffMs: { initial: 50, max: 200 } } });
    const follower = await startNode('n2');
    await openLane(leader, 'n2');
    sockets.dialed.at(-1)?.destroy();
    await waitFor('the leader to see the lane close', () => leader.logs.some((l) => l.startsWith('peer lane closed')));
    const laneIn = follower.transport.stats.laneFramesReceived;
    leader.transport.send(append('n1', 'n2', 7));
    await waitFor('the append over gRPC', () => appendsIn(follower).some((m) => m.prevIndex === 7));
    expect(follower.transport.stats.laneFramesReceived).toBe(laneIn);

    await openLane(leader, 'n2'); // redialed after the backoff
    expect(leader.transport.stats.laneConnections).toBe(2);
    leader.transport.send(append('n1', 'n2', 8));
    await waitFor('the append on the new lane', () => appendsIn(follower).some((m) => m.prevIndex === 8));
    expect(follower.transport.stats.laneFramesReceived).toBeGreaterThan(laneIn);
  });

  it('replicates over gRPC both ways with a node that has no lane (rolling upgrade)', async () => {
    const upgraded = await startNode('n1');
    const old = await startNode('n2', { lane: false });
    laneAddresses.set('n2', await unusedAddress()); // nothing listens where the upgraded node looks
    for (let i = 0; i < 5; i++) upgraded.transport.send(append('n1', 'n2', i));
    await waitFor('appends on gRPC', () => appendsIn(old).length === 5);
    old.transport.send(answer('n2', 'n1', 4));
    await waitFor('the answer on gRPC', () => upgraded.received.some((m) => m.type === 'append-response'));

    // The old node leads: the upgraded follower answers the way the append came, over gRPC.
    old.transport.send(append('n2', 'n1', 10));
    await waitFor('the append', () => appendsIn(upgraded).some((m) => m.prevIndex === 10));
    upgraded.transport.send(answer('n1', 'n2', 11));
    await waitFor('the answer', () => old.received.some((m) => m.type === 'append-response' && m.matchIndex === 11));
    expect(upgraded.transport.stats.laneFramesSent + upgraded.transport.stats.laneFramesReceived).toBe(0);
  });

  it('closes the lane to a node removed from the group', async () => {
    const sockets = recordingSockets();
    const leader = await startNode('n1', { lane: { sockets } });
    await startNode('n2');
    await startNode('n3');
    await openLane(leader, 'n2');
    const toRemoved = sockets.dialed.at(-1) as net.Socket;
    members = members.filter((m) => m.id !== 'n2');
    await sleep(1_100); // pruning runs at most once a second
    leader.transport.send(append('n1', 'n3', 0, 0, 0));
    await waitFor('the lane to the removed node to close', () => toRemoved.destroyed);
  });

  it('keeps memory bounded for a peer that never reads, and counts what it drops', async () => {
    // A listener that completes the handshake and then never reads again.
    const stalled: net.Socket[] = [];
    const server = net.createServer((socket) => {
      stalled.push(socket);
      socket.on('error', () => undefined);
      const reader = new FrameReader(4096);
      socket.on('data', (chunk: Buffer) => reader.push(chunk, (type, body) => {
        if (type === FrameType.hello) socket.write(encodeWelcome({ version: 1, groupId, nodeId: decodeHello(body).from === 'n1' ? 'n2' : '?' }));
        socket.pause();
        return false;
      }));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanups.push(() => { for (const s of stalled) s.destroy(); server.close(); });
    const sockets = recordingSockets();
    const bufferBytesMax = 1024 * 1024;
    const leader = await startNode('n1', { lane: { sockets, bufferBytesMax } });
    members.push({ id: 'n2', address: '127.0.0.1:1' }); // its gRPC is never used: the lane opens
    laneAddresses.set('n2', { host: '127.0.0.1', port: (server.address() as net.AddressInfo).port });
    await openLane(leader, 'n2');
    const socket = sockets.dialed.at(-1) as net.Socket;
    const frameBytes = 256 * 1024;
    let queuedMax = 0;
    for (let i = 0; i < 400; i++) { // 100 MiB offered, far beyond what the kernel buffers
      leader.transport.send(append('n1', 'n2', i, frameBytes - 100));
      await tick();
      queuedMax = Math.max(queuedMax, socket.writableLength);
    }
    expect(queuedMax).toBeLessThanOrEqual(bufferBytesMax + frameBytes);
    expect(leader.transport.stats.dropped).toBeGreaterThan(100);
    expect(leader.transport.stats.laneFramesSent + leader.transport.stats.dropped).toBeGreaterThanOrEqual(400);
  });

  it('refuses a hello from another group, for another node or from a non-member, as gRPC does', async () => {
    const follower = await startNode('n2');
    const address = laneAddresses.get('n2') as LaneAddress;
    const refusals: string[] = [];
    for (const hello of [{ groupId: 'g9', from: 'n1', to: 'n2' }, { groupId, from: 'n1', to: 'n7' }, { groupId, from: 'intruder', to: 'n2' }]) {
      if (hello.from === 'n1') members.push({ id: 'n1', address: '127.0.0.1:1' });
      const { frames } = await rawExchange(address, [encodeHello({ version: 1, ...hello })]);
      expect(frames.map((f) => f.type)).toEqual([FrameType.refused]);
      refusals.push(decodeRefused((frames[0] as { body: Buffer }).body));
      members = members.filter((m) => m.id !== 'n1');
    }
    expect(refusals).toEqual([
      'this node belongs to group g1, not g9',
      'this is node n2, not n7 (check the member addresses)',
      'node intruder is not a member of group g1',
    ]);
    expect(follower.transport.stats.rejectedInbound).toBe(3);
    expect(follower.received).toEqual([]);
  });

  it('closes connections that send garbage, oversized frames or nothing, and keeps serving', async () => {
    const follower = await startNode('n2', { lane: { handshakeTimeoutMs: 300, frameBytesMax: 64 * 1024 } });
    const address = laneAddresses.get('n2') as LaneAddress;
    members.push({ id: 'n1', address: '127.0.0.1:1' });
    const hello = encodeHello({ version: 1, groupId, from: 'n1', to: 'n2' });
    const header = (length: number, type: number): Buffer => Buffer.from([length >>> 24, (length >>> 16) & 0xff, (length >>> 8) & 0xff, length & 0xff, type]);
    const hostile: Buffer[][] = [
      [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')], // garbage instead of a hello
      [header(100_000, FrameType.hello)], // a hello far over the handshake limit
      [hello, header(0xffff_ffff, FrameType.appendRequest)], // an append over the frame limit
      [hello, header(40, FrameType.appendRequest), Buffer.alloc(39, 0xff)], // a malformed append
      [hello, header(1, 77)], // an unknown frame type
      [], // says nothing: closed after the handshake timeout
    ];
    for (const bytes of hostile) {
      const { frames } = await rawExchange(address, bytes);
      expect(frames.every((f) => f.type === FrameType.welcome)).toBe(true);
    }
    expect(follower.transport.stats.rejectedInbound).toBe(5);
    expect(follower.received).toEqual([]);

    const leader = await startNode('n1');
    members = members.filter((m) => m.address !== '127.0.0.1:1');
    await openLane(leader, 'n2');
    leader.transport.send(append('n1', 'n2', 41));
    await waitFor('an append after the hostile clients', () => appendsIn(follower).some((m) => m.prevIndex === 41));
  });

  it('accepts at most 16 connections that have not said hello', async () => {
    await startNode('n2', { lane: { handshakeTimeoutMs: 5_000 } });
    const address = laneAddresses.get('n2') as LaneAddress;
    const sockets = Array.from({ length: 20 }, () => net.connect(address.port, address.host).on('error', () => undefined));
    cleanups.push(() => { for (const s of sockets) s.destroy(); });
    const closed = new Set<number>();
    sockets.forEach((s, i) => s.on('close', () => closed.add(i)));
    await waitFor('the surplus to be closed', () => closed.size >= 4);
    await sleep(100);
    expect(closed.size).toBe(4);
  });
});

/** An address on which nothing listens (bound, then released). */
async function unusedAddress(): Promise<LaneAddress> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return { host: '127.0.0.1', port };
}
