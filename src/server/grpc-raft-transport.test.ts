import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { crc32 } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { silentLogger, type Logger, type SnapshotReceiver, type SnapshotStore, type StoredSnapshot } from '../raft/node/ports.js';
import type { InstallSnapshot, Member, NodeId, SnapshotMeta } from '../raft/types.js';
import { loadProtoFile } from '../util/proto-files.js';
import { GrpcRaftTransport, peerChannelOptions, raftPeerService, type GrpcRaftTransportOptions } from './grpc-raft-transport.js';

/**
 * A SnapshotStore in memory. A file is the state followed by its crc32 (4 bytes), so
 * `finish` can check the file's own checksum as the real store does. It records what the
 * transport did with it: every receive, every chunk written, every abort, and which
 * receives are still open (a partial file).
 */
class MemorySnapshotStore implements SnapshotStore {
  readonly stored: StoredSnapshot[] = [];
  readonly files = new Map<string, Uint8Array>();
  readonly open = new Set<SnapshotReceiver>();
  readonly writes: number[] = [];
  receives = 0;
  aborts = 0;
  /** Awaited before each read (lets a test hold the leader mid-stream). */
  beforeRead: (offset: number) => Promise<void> = () => Promise.resolve();
  /** Awaited before each write of a receive (lets a test stall the follower). */
  beforeWrite: (offset: number) => Promise<void> = () => Promise.resolve();

  loadNewest(): Promise<{ snapshot: StoredSnapshot; data: Uint8Array } | undefined> {
    const snapshot = this.newest();
    return Promise.resolve(snapshot === undefined ? undefined : { snapshot, data: stateOf(this.files.get(snapshot.fileName) as Uint8Array) });
  }

  save(meta: SnapshotMeta, data: Uint8Array): Promise<StoredSnapshot> {
    return Promise.resolve(this.record(meta, fileOf(data)));
  }

  newest(): StoredSnapshot | undefined {
    return this.stored.at(-1);
  }

  async readFileChunk(snapshot: StoredSnapshot, offset: number, length: number): Promise<Uint8Array> {
    await this.beforeRead(offset);
    return (this.files.get(snapshot.fileName) as Uint8Array).slice(offset, offset + length);
  }

  receive(meta: SnapshotMeta, fileBytes: number): SnapshotReceiver {
    this.receives++;
    const chunks: Uint8Array[] = [];
    let received = 0;
    const receiver: SnapshotReceiver = {
      write: async (offset, chunk) => {
        await this.beforeWrite(offset);
        if (!this.open.has(receiver)) return Promise.reject(new Error('receive is over'));
        if (offset !== received) return Promise.reject(new Error(`offset ${offset}, expected ${received}`));
        chunks.push(Uint8Array.from(chunk));
        received += chunk.length;
        this.writes.push(offset);
        return Promise.resolve();
      },
      finish: () => {
        this.open.delete(receiver);
        const file = Buffer.concat(chunks);
        if (file.length !== fileBytes) return Promise.reject(new Error(`${file.length} bytes, expected ${fileBytes}`));
        const data = stateOf(file);
        if (crc32(data) !== Buffer.from(file).readUInt32BE(file.length - 4)) return Promise.reject(new Error('file checksum mismatch'));
        return Promise.resolve({ snapshot: this.record(meta, file), data });
      },
      abort: () => {
        this.aborts++;
        this.open.delete(receiver);
        return Promise.resolve();
      },
    };
    this.open.add(receiver);
    return receiver;
  }

  private record(meta: SnapshotMeta, file: Uint8Array): StoredSnapshot {
    const snapshot: StoredSnapshot = { meta, fileName: `snapshot-${meta.index}`, fileBytes: file.length };
    this.files.set(snapshot.fileName, file);
    this.stored.push(snapshot);
    return snapshot;
  }
}

function fileOf(data: Uint8Array): Uint8Array {
  const trailer = Buffer.alloc(4);
  trailer.writeUInt32BE(crc32(data));
  return Buffer.concat([data, trailer]);
}

function stateOf(file: Uint8Array): Uint8Array {
  return file.subarray(0, file.length - 4);
}

interface Peer {
  readonly id: NodeId;
  readonly transport: GrpcRaftTransport;
  readonly server: grpc.Server;
  readonly store: MemorySnapshotStore;
  readonly sent: Array<{ peer: NodeId; ok: boolean }>;
  readonly received: Array<{ message: InstallSnapshot; data: Uint8Array }>;
  readonly warnings: string[];
}

const groupId = 'g1';
const MiB = 1024 * 1024;
let members: Member[] = [];
const cleanups: Array<() => void> = [];

afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
  members = [];
});

async function startPeer(id: NodeId, options: Partial<GrpcRaftTransportOptions> = {}): Promise<Peer> {
  const store = new MemorySnapshotStore();
  const sent: Peer['sent'] = [];
  const received: Peer['received'] = [];
  const warnings: string[] = [];
  const logger: Logger = { ...silentLogger, warn: (fields) => { warnings.push(String((fields as { err?: unknown }).err)); } };
  const transport = new GrpcRaftTransport({
    groupId, selfId: id, members: () => members, logger, snapshots: store,
    onSnapshotSent: (peer, ok) => sent.push({ peer, ok }),
    onSnapshotReceived: (message, data) => received.push({ message, data }),
    ...options,
  });
  const server = new grpc.Server(peerChannelOptions);
  server.addService(raftPeerService, transport.serviceImplementation());
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) => (error === null ? resolve(bound) : reject(error)));
  });
  members.push({ id, address: `127.0.0.1:${port}` });
  cleanups.push(() => { transport.close(); server.forceShutdown(); });
  return { id, transport, server, store, sent, received, warnings };
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

function metaAt(index: number, term: number): SnapshotMeta {
  return { index, term, configIndex: 1, members: members.map((m) => ({ ...m })) };
}

function installSnapshot(from: NodeId, to: NodeId, term: number, snapshot: SnapshotMeta): InstallSnapshot {
  return { type: 'install-snapshot', from, to, term, snapshot };
}

// A raw client of the same service, to send the follower chunks the transport never would.
const raftPackage = (grpc.loadPackageDefinition(loadProtoFile('raft.proto')) as any).raftmq.raft.v1; // eslint-disable-line @typescript-eslint/no-explicit-any -- proto-loader objects are untyped
const RaftPeerClient = raftPackage.RaftPeer as grpc.ServiceClientConstructor;

interface RawChunk {
  groupId: string;
  from: string;
  to: string;
  term: number;
  snapshot: { index: number; term: number; configIndex: number; members: Member[] };
  fileBytes: number;
  offset: number;
  data: Uint8Array;
  crc32: number;
  done: boolean;
}

interface RawStream {
  readonly call: grpc.ClientWritableStream<RawChunk>;
  readonly result: Promise<{ ok: boolean; error: string }>;
}

function rawStream(to: Peer): RawStream {
  const address = members.find((m) => m.id === to.id)?.address as string;
  const client = new RaftPeerClient(address, grpc.credentials.createInsecure(), peerChannelOptions);
  cleanups.push(() => client.close());
  let call!: grpc.ClientWritableStream<RawChunk>;
  const result = new Promise<{ ok: boolean; error: string }>((resolve, reject) => {
    call = (client as unknown as { InstallSnapshot: (callback: (error: grpc.ServiceError | null, response?: { ok: boolean; error: string }) => void) => grpc.ClientWritableStream<RawChunk> })
      .InstallSnapshot((error, response) => (error === null ? resolve(response as { ok: boolean; error: string }) : reject(error)));
  });
  result.catch(() => undefined);
  return { call, result };
}

/** A well-formed stream of `file` in `chunkBytes` pieces from `from` to `to`. */
function chunksOf(file: Uint8Array, chunkBytes: number, from: NodeId, to: NodeId, term: number, meta: SnapshotMeta): RawChunk[] {
  const chunks: RawChunk[] = [];
  for (let offset = 0; offset < file.length; offset += chunkBytes) {
    const data = file.subarray(offset, Math.min(file.length, offset + chunkBytes));
    chunks.push({
      groupId, from, to, term, snapshot: { index: meta.index, term: meta.term, configIndex: meta.configIndex, members: [...meta.members] },
      fileBytes: file.length, offset, data, crc32: crc32(data), done: offset + data.length === file.length,
    });
  }
  return chunks;
}

describe('GrpcRaftTransport InstallSnapshot', () => {
  it('streams a multi-chunk snapshot that arrives byte-identical, and reports it sent', async () => {
    const leader = await startPeer('a');
    const follower = await startPeer('b');
    const state = randomBytes(3.5 * MiB - 4);
    const meta = metaAt(40, 3);
    const stored = await leader.store.save(meta, state);
    expect(stored.fileBytes).toBe(3.5 * MiB);

    leader.transport.send(installSnapshot('a', 'b', 7, meta));
    leader.transport.send(installSnapshot('a', 'b', 7, meta)); // while one runs: ignored
    await waitFor('the snapshot to be reported sent', () => leader.sent.length > 0);
    expect(leader.sent).toEqual([{ peer: 'b', ok: true }]);
    expect(follower.store.writes).toEqual([0, MiB, 2 * MiB, 3 * MiB]); // default 1 MiB chunks, in order
    expect(follower.received).toHaveLength(1);
    const { message, data } = follower.received[0] as Peer['received'][number];
    expect(message).toEqual({ type: 'install-snapshot', from: 'a', to: 'b', term: 7, snapshot: meta });
    expect(Buffer.compare(Buffer.from(data), state)).toBe(0);
    expect(Buffer.compare(Buffer.from(follower.store.files.get('snapshot-40') as Uint8Array), Buffer.from(leader.store.files.get('snapshot-40') as Uint8Array))).toBe(0);
    expect(follower.store.newest()?.meta).toEqual(meta);

    await sleep(100);
    expect(leader.sent).toHaveLength(1);
    expect(follower.store.receives).toBe(1);
    expect(leader.transport.stats.snapshotsSent).toBe(1);
    expect(follower.transport.stats.snapshotsReceived).toBe(1);

    // Once it is over, the next request streams again.
    leader.transport.send(installSnapshot('a', 'b', 7, meta));
    await waitFor('the second snapshot to be reported sent', () => leader.sent.length > 1);
    expect(leader.sent[1]).toEqual({ peer: 'b', ok: true });
    expect(follower.store.receives).toBe(2);
  });

  it('sends the newest stored snapshot, with its meta, when it is newer than the one asked for', async () => {
    const leader = await startPeer('a', { snapshotChunkBytes: 1000 });
    const follower = await startPeer('b');
    await leader.store.save(metaAt(10, 2), randomBytes(5000));
    const newest = metaAt(20, 3);
    const state = randomBytes(2500);
    await leader.store.save(newest, state);

    leader.transport.send(installSnapshot('a', 'b', 3, metaAt(10, 2)));
    await waitFor('the snapshot to be reported sent', () => leader.sent.length > 0);
    expect(leader.sent).toEqual([{ peer: 'b', ok: true }]);
    expect(follower.store.writes).toEqual([0, 1000, 2000]);
    expect(follower.received[0]?.message.snapshot).toEqual(newest);
    expect(Buffer.compare(Buffer.from(follower.received[0]?.data as Uint8Array), state)).toBe(0);
  });

  it('reports a snapshot the follower refuses as not sent, with its reason in the warning', async () => {
    const leader = await startPeer('a');
    const follower = await startPeer('b', { members: () => members.filter((m) => m.id !== 'a') });
    const meta = metaAt(5, 1);
    await leader.store.save(meta, randomBytes(100));
    leader.transport.send(installSnapshot('a', 'b', 1, meta));
    await waitFor('the snapshot to be reported', () => leader.sent.length > 0);
    expect(leader.sent).toEqual([{ peer: 'b', ok: false }]);
    expect(leader.warnings.join('\n')).toMatch(/node a is not a member of group g1/);
    expect(follower.received).toHaveLength(0);
    expect(follower.store.receives).toBe(0);
  });

  it('reports a leader-side cancellation mid-stream as not sent; the follower aborts its partial receive', async () => {
    const leader = await startPeer('a', { snapshotChunkBytes: 64 * 1024 });
    const follower = await startPeer('b');
    const meta = metaAt(9, 2);
    await leader.store.save(meta, randomBytes(1 * MiB));
    let release!: () => void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    leader.store.beforeRead = (offset) => (offset >= 3 * 64 * 1024 ? held : Promise.resolve());

    leader.transport.send(installSnapshot('a', 'b', 2, meta));
    await waitFor('three chunks written on the follower', () => follower.store.writes.length === 3);
    leader.transport.close(); // cancels the stream
    await waitFor('the snapshot to be reported', () => leader.sent.length > 0);
    expect(leader.sent).toEqual([{ peer: 'b', ok: false }]);
    expect(leader.warnings.join('\n')).toMatch(/cancelled/);
    await waitFor('the follower to abort the receive', () => follower.store.aborts === 1);
    expect(follower.store.open.size).toBe(0);
    expect(follower.store.newest()).toBeUndefined();
    expect(follower.received).toHaveLength(0);
    release();
  });

  it('cancels a stream that stalls (the follower stops reading) and reports it not sent', async () => {
    const leader = await startPeer('a', { snapshotStallMs: 300 });
    const follower = await startPeer('b');
    const meta = metaAt(9, 2);
    await leader.store.save(meta, randomBytes(32 * MiB));
    let release!: () => void;
    const held = new Promise<void>((resolve) => { release = resolve; });
    follower.store.beforeWrite = () => held; // the first write never completes: the call stays paused, flow control fills up

    leader.transport.send(installSnapshot('a', 'b', 2, meta));
    await waitFor('the snapshot to be reported', () => leader.sent.length > 0);
    expect(leader.sent).toEqual([{ peer: 'b', ok: false }]);
    expect(leader.warnings.join('\n')).toMatch(/stalled: no chunk written for 300 ms/);
    release();
    await waitFor('the follower to abort the receive', () => follower.store.aborts === 1);
    expect(follower.store.open.size).toBe(0);
    expect(follower.received).toHaveLength(0);
  });

  describe('the follower refuses a bad stream with a clear error and delivers nothing', () => {
    const cases: Array<{ name: string; error: RegExp; startsReceive: boolean; tamper: (chunks: RawChunk[]) => RawChunk[] }> = [
      {
        name: 'a chunk whose crc32 does not match its data', error: /crc32 mismatch in the chunk at offset 1000/, startsReceive: true,
        tamper: (chunks) => { (chunks[1] as RawChunk).crc32 ^= 1; return chunks; },
      },
      {
        name: 'a chunk whose data was changed in flight', error: /crc32 mismatch in the chunk at offset 2000/, startsReceive: true,
        tamper: (chunks) => { const c = chunks[2] as RawChunk; c.data = Buffer.from(c.data).fill(0xab, 0, 1); return chunks; },
      },
      {
        name: 'an out-of-order chunk', error: /chunk out of order: the chunk at offset 2000, expected offset 1000/, startsReceive: true,
        tamper: (chunks) => [chunks[0], chunks[2], chunks[1], chunks[3]] as RawChunk[],
      },
      {
        name: 'a first chunk that does not start at offset 0', error: /chunk out of order: the chunk at offset 1000, expected offset 0/, startsReceive: false,
        tamper: (chunks) => chunks.slice(1),
      },
      {
        name: 'a chunk from a non-member', error: /snapshot chunk refused: node z is not a member of group g1/, startsReceive: false,
        tamper: (chunks) => chunks.map((c) => ({ ...c, from: 'z' })),
      },
      {
        name: 'a chunk for another group', error: /this node belongs to group g1, not g2/, startsReceive: false,
        tamper: (chunks) => chunks.map((c) => ({ ...c, groupId: 'g2' })),
      },
      {
        name: 'a chunk addressed to another node', error: /this is node b, not c/, startsReceive: false,
        tamper: (chunks) => chunks.map((c) => ({ ...c, to: 'c' })),
      },
      {
        name: 'a term going backwards', error: /term went backwards within the stream: the chunk at offset 1000 has term 4 after term 5/, startsReceive: true,
        tamper: (chunks) => chunks.map((c, i) => ({ ...c, term: i === 0 ? 5 : 4 })),
      },
      {
        name: 'meta that changes mid-stream', error: /snapshot meta changed mid-stream: the chunk at offset 2000 describes index 31 /, startsReceive: true,
        tamper: (chunks) => chunks.map((c, i) => (i === 2 ? { ...c, snapshot: { ...c.snapshot, index: 31 } } : c)),
      },
      {
        name: 'a sender that changes mid-stream', error: /sender changed mid-stream: the chunk at offset 1000 is from c, the stream began from a/, startsReceive: true,
        tamper: (chunks) => chunks.map((c, i) => (i === 1 ? { ...c, from: 'c' } : c)),
      },
      {
        name: 'more bytes than the file size', error: /chunks exceed the snapshot file size: the chunk at offset 3000 ends at byte 4000, the file has 3500/, startsReceive: true,
        tamper: (chunks) => chunks.map((c) => ({ ...c, fileBytes: 3500, done: false })),
      },
      {
        name: 'a last chunk short of the file size', error: /the last chunk ends at byte 4000 but the snapshot file has 5000/, startsReceive: true,
        tamper: (chunks) => chunks.map((c) => ({ ...c, fileBytes: 5000 })),
      },
      {
        name: 'a stream that ends without its last chunk', error: /the stream ended before the last chunk \(received 3000 of 4000 bytes\)/, startsReceive: true,
        tamper: (chunks) => chunks.slice(0, 3),
      },
    ];

    for (const { name, error, startsReceive, tamper } of cases) {
      it(name, async () => {
        await startPeer('a');
        const follower = await startPeer('b');
        await startPeer('c');
        const meta = metaAt(30, 4);
        const file = fileOf(randomBytes(3996)); // 4000 bytes: four chunks of 1000
        const { call, result } = rawStream(follower);
        for (const chunk of tamper(chunksOf(file, 1000, 'a', 'b', 4, meta))) call.write(chunk);
        call.end();
        const answer = await result;
        expect(answer.ok).toBe(false);
        expect(answer.error).toMatch(error);
        expect(follower.store.receives).toBe(startsReceive ? 1 : 0);
        expect(follower.store.aborts).toBe(startsReceive ? 1 : 0);
        expect(follower.store.open.size).toBe(0);
        expect(follower.store.newest()).toBeUndefined();
        expect(follower.received).toHaveLength(0);
        expect(follower.transport.stats.rejectedInbound).toBe(1);
      });
    }

    it('a file whose own checksum does not match (the receiver finish refuses it)', async () => {
      await startPeer('a');
      const follower = await startPeer('b');
      const file = fileOf(randomBytes(1996));
      file[5] = (file[5] as number) ^ 1; // damaged before it was chunked: every chunk's crc32 is right
      const { call, result } = rawStream(follower);
      for (const chunk of chunksOf(file, 1000, 'a', 'b', 4, metaAt(30, 4))) call.write(chunk);
      call.end();
      const answer = await result;
      expect(answer).toEqual({ ok: false, error: expect.stringMatching(/snapshot 30\/t4 rejected: file checksum mismatch/) as unknown as string });
      expect(follower.store.open.size).toBe(0);
      expect(follower.store.newest()).toBeUndefined();
      expect(follower.received).toHaveLength(0);
    });
  });

  it('accepts a well-formed raw stream whose term rises mid-stream, and delivers the last term', async () => {
    await startPeer('a');
    const follower = await startPeer('b');
    const meta = metaAt(30, 4);
    const state = randomBytes(2996);
    const { call, result } = rawStream(follower);
    for (const chunk of chunksOf(fileOf(state), 1000, 'a', 'b', 4, meta).map((c, i) => ({ ...c, term: 4 + i }))) call.write(chunk);
    call.end();
    expect(await result).toEqual({ ok: true, error: '' });
    expect(follower.received[0]?.message).toEqual({ type: 'install-snapshot', from: 'a', to: 'b', term: 6, snapshot: meta });
    expect(Buffer.compare(Buffer.from(follower.received[0]?.data as Uint8Array), state)).toBe(0);
  });

  it('aborts the receive when the sender cancels mid-stream: no partial file, nothing delivered', async () => {
    await startPeer('a');
    const follower = await startPeer('b');
    const chunks = chunksOf(fileOf(randomBytes(3996)), 1000, 'a', 'b', 4, metaAt(30, 4));
    const { call, result } = rawStream(follower);
    call.write(chunks[0] as RawChunk);
    call.write(chunks[1] as RawChunk);
    await waitFor('two chunks written on the follower', () => follower.store.writes.length === 2);
    expect(follower.store.open.size).toBe(1);
    call.cancel();
    await expect(result).rejects.toMatchObject({ code: grpc.status.CANCELLED });
    await waitFor('the follower to abort the receive', () => follower.store.aborts === 1);
    expect(follower.store.open.size).toBe(0);
    expect(follower.store.newest()).toBeUndefined();
    expect(follower.received).toHaveLength(0);
    expect(follower.transport.stats.rejectedInbound).toBe(0); // seen as a cancellation, not as a short stream
    expect(follower.warnings.join('\n')).not.toMatch(/ended before the last chunk/);
  });

  it('aborts a receive in progress when another leader starts one', async () => {
    await startPeer('a');
    const follower = await startPeer('b');
    await startPeer('c');
    const meta = metaAt(30, 4);
    const first = rawStream(follower);
    first.call.write(chunksOf(fileOf(randomBytes(3996)), 1000, 'a', 'b', 4, meta)[0] as RawChunk);
    await waitFor('the first stream to start', () => follower.store.writes.length === 1);

    const newer = metaAt(35, 5);
    const state = randomBytes(1996);
    const second = rawStream(follower);
    for (const chunk of chunksOf(fileOf(state), 1000, 'c', 'b', 5, newer)) second.call.write(chunk);
    second.call.end();
    expect(await first.result).toEqual({ ok: false, error: 'superseded by a snapshot stream from c (index 35, term 5)' });
    expect(await second.result).toEqual({ ok: true, error: '' });
    expect(follower.store.aborts).toBe(1);
    expect(follower.store.open.size).toBe(0);
    expect(follower.received.map((r) => r.message)).toEqual([{ type: 'install-snapshot', from: 'c', to: 'b', term: 5, snapshot: newer }]);
    expect(follower.store.newest()?.meta).toEqual(newer);
    first.call.cancel();
  });

  it('keeps a receive in progress when a stream from an older term starts, and refuses that one', async () => {
    await startPeer('a');
    const follower = await startPeer('b');
    await startPeer('c');
    const meta = metaAt(30, 4);
    const state = randomBytes(1996);
    const chunks = chunksOf(fileOf(state), 1000, 'a', 'b', 6, meta);
    const current = rawStream(follower);
    current.call.write(chunks[0] as RawChunk);
    await waitFor('the first stream to start', () => follower.store.writes.length === 1);

    const stale = rawStream(follower);
    for (const chunk of chunksOf(fileOf(randomBytes(996)), 1000, 'c', 'b', 5, metaAt(25, 5))) stale.call.write(chunk);
    stale.call.end();
    expect(await stale.result).toEqual({ ok: false, error: 'a snapshot stream from a at term 6 is in progress; this one is from the older term 5' });
    current.call.write(chunks[1] as RawChunk);
    current.call.end();
    expect(await current.result).toEqual({ ok: true, error: '' });
    expect(follower.store.receives).toBe(1);
    expect(follower.received.map((r) => r.message)).toEqual([{ type: 'install-snapshot', from: 'a', to: 'b', term: 6, snapshot: meta }]);
  });
});
