/**
 * Bad input gets a clear error and loses nothing: a mismatched cluster configuration, a data
 * directory of another group or node, Raft traffic from a non-member or another group, and a
 * corrupted segment on one node of a running group.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterEach, describe, expect, it } from 'vitest';
import { NodeFileSystem } from '../../src/commitlog/file-system.js';
import { claimDataDir } from '../../src/server/data-dir.js';
import { defaultRaftGroupNodeConfig, validateConfig, type RaftGroupNodeConfig } from '../../src/server/raft-group-node.js';
import { loadProtoFile } from '../../src/util/proto-files.js';
import { ProcessCluster, cliPath, waitFor } from '../support/process-cluster.js';

const config = (overrides: Partial<RaftGroupNodeConfig>): RaftGroupNodeConfig => ({
  ...defaultRaftGroupNodeConfig, groupId: 'g', nodeId: 'n1', dataDir: '/tmp/unused',
  members: [{ id: 'n1', address: '127.0.0.1:1' }, { id: 'n2', address: '127.0.0.1:2' }, { id: 'n3', address: '127.0.0.1:3' }],
  ...overrides,
});

describe('cluster configuration', () => {
  it('rejects duplicate node ids', () => {
    expect(() => validateConfig(config({ members: [{ id: 'n1', address: '127.0.0.1:1' }, { id: 'n1', address: '127.0.0.1:2' }] }))).toThrow(/duplicate node id n1/);
  });
  it('rejects duplicate addresses', () => {
    expect(() => validateConfig(config({ members: [{ id: 'n1', address: '127.0.0.1:1' }, { id: 'n2', address: '127.0.0.1:1' }] }))).toThrow(/duplicate address/);
  });
  it('rejects a node id that is not a member', () => {
    expect(() => validateConfig(config({ nodeId: 'n7' }))).toThrow(/node id n7 is not in the member list/);
  });
  it('rejects an address that is not host:port', () => {
    expect(() => validateConfig(config({ members: [{ id: 'n1', address: 'localhost' }] }))).toThrow(/not host:port/);
  });
  it('the CLI reports a bad member list and exits non-zero without touching the data directory', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-bad-'));
    const run = spawnSync(process.execPath, [cliPath, 'node', '--group', 'g', '--id', 'n1', '--members', 'n1=127.0.0.1:7101,n1=127.0.0.1:7102', '--data', path.join(dir, 'n1')], { encoding: 'utf8' });
    expect(run.status).toBe(1);
    expect(run.stderr).toMatch(/duplicate node id n1/);
    expect(await fs.readdir(dir)).toEqual([]);
    await fs.rm(dir, { recursive: true });
  });
});

describe('data directory identity', () => {
  it('refuses the data directory of another group or node', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-id-'));
    const disk = new NodeFileSystem();
    await claimDataDir(disk, dir, 'orders', 'n1');
    await claimDataDir(disk, dir, 'orders', 'n1'); // the owner may reopen it
    await expect(claimDataDir(disk, dir, 'payments', 'n1')).rejects.toThrow(/belongs to group orders node n1, not group payments node n1/);
    await expect(claimDataDir(disk, dir, 'orders', 'n2')).rejects.toThrow(/not group orders node n2/);
    await fs.rm(dir, { recursive: true });
  });

  it('refuses a non-empty directory that has no identity', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-id-'));
    await fs.writeFile(path.join(dir, 'something'), 'x');
    await expect(claimDataDir(new NodeFileSystem(), dir, 'g', 'n1')).rejects.toThrow(/not empty but has no identity.json/);
    await fs.rm(dir, { recursive: true });
  });
});

describe('a running group', () => {
  let cluster: ProcessCluster | undefined;
  afterEach(async () => {
    await cluster?.stop();
    cluster = undefined;
  });

  it('refuses Raft traffic from a non-member or another group with a clear reason', async () => {
    cluster = new ProcessCluster({ nodeCount: 3 });
    await cluster.start();
    const client = cluster.client();
    await client.findLeader(10_000);
    client.close();
    const definition = loadProtoFile('raft.proto');
    const Peer = (grpc.loadPackageDefinition(definition) as unknown as { raftmq: { raft: { v1: { RaftPeer: grpc.ServiceClientConstructor } } } }).raftmq.raft.v1.RaftPeer;
    const peer = new Peer(cluster.address("n1"), grpc.credentials.createInsecure()) as unknown as grpc.Client & { Vote: (request: object, callback: (error: grpc.ServiceError | null) => void) => void };
    const vote = (request: object): Promise<grpc.ServiceError | null> => new Promise((resolve) => peer.Vote(request, resolve));
    const fromStranger = await vote({ groupId: 'it', from: 'n9', to: 'n1', term: 999, lastIndex: 999, lastTerm: 999 });
    expect(fromStranger?.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(fromStranger?.details).toMatch(/node n9 is not a member of group it/);
    const otherGroup = await vote({ groupId: 'payments', from: 'n2', to: 'n1', term: 999 });
    expect(otherGroup?.details).toMatch(/belongs to group it, not payments/);
    const wrongNode = await vote({ groupId: 'it', from: 'n2', to: 'n3', term: 999 });
    expect(wrongNode?.details).toMatch(/this is node n1, not n3/);
    peer.close();
  });

  it('a corrupted segment stops that node with the file and offset; the group loses nothing', async () => {
    cluster = new ProcessCluster({ nodeCount: 3, extraArgs: ['--segment-bytes', '65536'] });
    await cluster.start();
    const client = cluster.client();
    try {
      await client.findLeader(10_000);
      const acked: number[] = [];
      await Promise.all(Array.from({ length: 16 }, async (_, worker) => {
        for (let i = 0; i < 40; i++) acked.push((await client.propose(new Uint8Array(512).fill(worker))).index);
      }));
      const leaderId = cluster.idOf(await client.findLeader());
      const target = cluster.members.find((m) => m.id !== leaderId)!.id; // damage a follower
      await cluster.signal(target, 'SIGKILL');
      const logDir = path.join(cluster.dataRoot, target, 'log');
      const firstSegment = path.join(logDir, (await fs.readdir(logDir)).sort()[0]!);
      const handle = await fs.open(firstSegment, 'r+');
      const byte = Buffer.alloc(1);
      await handle.read(byte, 0, 1, 1000);
      byte[0] = byte[0]! ^ 0xff;
      await handle.write(byte, 0, 1, 1000);
      await handle.close();
      cluster.startNode(target);
      const child = cluster.processes.get(target)!;
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      // Sealed segments are opened from their index files, so the damage is found when the
      // record is read (here: applying it at start-up), a fatal storage failure (exit code 2).
      expect(code).toBe(2);
      expect(cluster.output.get(target)!.join('')).toMatch(/commitlog corrupt: 0+1\.seg at byte \d+/);
      // The other two still hold every acknowledged entry and keep committing.
      const survivor = cluster.members.find((m) => m.id !== target)!.address;
      const entries = await client.readAllCommitted(survivor);
      const present = new Set(entries.map((e) => e.index));
      expect(acked.every((index) => present.has(index))).toBe(true);
      await waitFor('the group to commit without the damaged node', async () => (await client.propose(new Uint8Array(8))).index > 0, 10_000);
    } finally {
      client.close();
    }
  });

  it('a node whose log lost its synced tail abstains, says so in `raftmq status`, and rejoins once a leader caught it up', async () => {
    cluster = new ProcessCluster({ nodeCount: 3 });
    await cluster.start();
    const client = cluster.client();
    try {
      await client.findLeader(10_000);
      const acked: number[] = [];
      await Promise.all(Array.from({ length: 8 }, async () => {
        for (let i = 0; i < 25; i++) acked.push((await client.propose(new Uint8Array(256).fill(i))).index);
      }));
      const highest = Math.max(...acked);
      // Applied implies the ready that wrote those entries finished, synced-through mark included
      // (a node killed mid-catch-up legitimately has a mark below entries it never acknowledged).
      await waitFor('n1 to apply every acknowledged entry', async () => (await client.status(cluster!.address('n1'))).appliedIndex >= highest, 10_000);
      // Stop everything so no leader can catch the damaged node up before we look at it.
      for (const member of cluster.members) await cluster.signal(member.id, 'SIGKILL');
      const logDir = path.join(cluster.dataRoot, 'n1', 'log');
      const newest = path.join(logDir, (await fs.readdir(logDir)).sort().at(-1)!);
      const { size } = await fs.stat(newest);
      await fs.truncate(newest, size - 1_500); // a few synced entries and a torn one
      cluster.startNode('n1');
      const address = cluster.address('n1');
      await waitFor('n1 to answer', async () => (await client.status(address, 500).catch(() => undefined)) !== undefined, 10_000);
      const status = await client.status(address);
      expect(status.lastIndex).toBeLessThan(status.abstainingUntil);
      expect(status.abstainingUntil).toBeGreaterThanOrEqual(highest);
      const shown = spawnSync(process.execPath, [cliPath, 'status', '--nodes', address], { encoding: 'utf8' });
      expect(shown.stdout).toMatch(new RegExp(`follower, abstaining until ${status.abstainingUntil} is committed here`));
      expect(cluster.output.get('n1')!.join('')).toMatch(/the log lost entries that were durable/);
      // The other two elect a leader (n1 refuses its vote), which catches n1 up and ends the abstention.
      cluster.startNode('n2');
      cluster.startNode('n3');
      await waitFor('n1 to stop abstaining', async () => (await client.status(address, 500).catch(() => undefined))?.abstainingUntil === 0, 15_000);
      const entries = await client.readAllCommitted(address);
      const present = new Set(entries.map((e) => e.index));
      expect(acked.every((index) => present.has(index))).toBe(true);
    } finally {
      client.close();
    }
  });
});
