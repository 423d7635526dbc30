/**
 * F16 retention, snapshots and InstallSnapshot with real `raftmq broker` processes: a
 * size-limited log stays bounded on disk while 4 MiB goes through it, a consumer group left
 * behind is moved up to each queue's new first offset (and the skipped messages are counted
 * as expired), a follower whose log and snapshots were wiped is restored by InstallSnapshot
 * and, made leader, serves every retained acknowledged message, and retention settings
 * that make no sense are refused at start. The first three cases share one cluster and run in
 * order (each builds on what the previous one produced).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePorts } from '../../src/cli/local-cluster.js';
import { fromV2 } from '../../src/client/messages.js';
import { Producer, type SendReceipt } from '../../src/client/producer.js';
import { PullConsumer } from '../../src/client/pull-consumer.js';
import { RaftNodeClient } from '../../src/client/raft-node-client.js';
import { BrokerCluster } from '../support/broker-cluster.js';
import { cliPath, waitFor } from '../support/process-cluster.js';

const segmentBytes = 262_144;
const retentionBytes = 1_048_576;
const logBound = retentionBytes + 2 * segmentBytes;
const topic = 'bulk';
const queueCount = 2;
const bodyBytes = 1024;
const group = 'g1';

const bodyOf = (i: number): string => `m-${i}-`.padEnd(bodyBytes, 'x');

interface DirMeasure { readonly bytes: number; readonly files: ReadonlyArray<{ name: string; bytes: number }> }

async function measure(dir: string): Promise<DirMeasure> {
  const names = await fs.readdir(dir).catch(() => [] as string[]);
  const files = await Promise.all(names.map(async (name) => ({ name, bytes: (await fs.stat(path.join(dir, name)).catch(() => undefined))?.size ?? 0 })));
  return { bytes: files.reduce((sum, f) => sum + f.bytes, 0), files: files.sort((a, b) => a.name.localeCompare(b.name)) };
}

const segmentFiles = (m: DirMeasure): string[] => m.files.filter((f) => f.name.endsWith('.seg')).map((f) => f.name);
const snapshotFiles = (m: DirMeasure): string[] => m.files.filter((f) => f.name.endsWith('.snap')).map((f) => f.name);

describe('retention, snapshots and InstallSnapshot with real broker processes', () => {
  const cluster = new BrokerCluster({
    autoCreateTopics: false,
    extraArgs: ['--segment-bytes', String(segmentBytes), '--retention-bytes', String(retentionBytes), '--snapshot-entries', '50', '--retention-interval-ms', '300'],
  });
  let producer: Producer;
  let raft: RaftNodeClient;
  /** Every acknowledged send: "queueId/offset" → body. */
  const acked = new Map<string, string>();
  let nextBody = 0;
  const dataDir = (id: string): string => path.join(cluster.dataRoot, id);
  const mq = (queueId: number): object => ({ topic: { name: topic, resourceNamespace: '' }, id: queueId, broker: { name: group, id: 0 } });
  const groupResource = (name: string): object => ({ name, resourceNamespace: '' });

  /** Sends `count` 1 KiB messages with `inflight` in flight; every loop bounded by count and time. */
  const produce = async (count: number, inflight: number, until: () => boolean = () => false, deadlineMs = 40_000): Promise<number> => {
    const deadline = Date.now() + deadlineMs;
    let sent = 0;
    const worker = async (): Promise<void> => {
      while (sent < count && Date.now() < deadline && !until()) {
        sent++;
        const body = bodyOf(nextBody++);
        const receipt: SendReceipt | undefined = await producer.send({ topic, body }).catch(() => undefined);
        if (receipt !== undefined) acked.set(`${receipt.queueId}/${receipt.offset}`, body);
      }
    };
    await Promise.all(Array.from({ length: inflight }, worker));
    return sent;
  };

  /** First offset a queue still holds: QueryOffset by time 0 (the first message stored at or after it). */
  const firstOffset = async (queueId: number): Promise<number> => {
    const response = await cluster.admin.connection.unary(group, 'QueryOffset', { messageQueue: mq(queueId), queryOffsetPolicy: 'TIMESTAMP', timestamp: { seconds: 0, nanos: 0 } });
    expect(response.status?.code).toBe('OK');
    return Number(response.offset);
  };

  const pull = async (queueId: number, offset: number, batchSize = 256): Promise<{ code: string; message: string; messages: ReturnType<typeof fromV2>[]; nextOffset: number | undefined }> => {
    const frames = await cluster.admin.connection.stream(group, 'PullMessage', {
      group: groupResource('inspector'), messageQueue: mq(queueId), offset, batchSize, filterExpression: { type: 'TAG', expression: '*' }, longPollingTimeout: { seconds: 0, nanos: 0 },
    }, 10_000);
    const status = frames.find((f) => f.content === 'status')?.status;
    const next = frames.find((f) => f.content === 'nextOffset');
    return {
      code: String(status?.code ?? ''), message: String(status?.message ?? ''),
      messages: frames.filter((f) => f.content === 'message').map((f) => fromV2(f.message, group)),
      nextOffset: next === undefined ? undefined : Number(next.nextOffset),
    };
  };

  const diagnostics = (): string => cluster.output().slice(-6_000);

  beforeAll(async () => {
    await cluster.start();
    producer = new Producer({ nameServers: [cluster.namesrv], sendTimeoutMs: 10_000, retries: 3 });
    raft = new RaftNodeClient(cluster.local.members.map((m) => m.address));
    await cluster.admin.createTopic(topic, { readQueues: queueCount, writeQueues: queueCount });
    // Case 2's group: it commits offset 0 on every queue before anything is produced.
    await cluster.admin.createGroup('laggard');
    for (let queueId = 0; queueId < queueCount; queueId++) {
      const response = await cluster.admin.connection.unary(group, 'UpdateOffset', { group: groupResource('laggard'), messageQueue: mq(queueId), offset: 0 });
      expect(response.status?.code).toBe('OK');
    }
    const before = (await cluster.admin.listGroups()).find((g) => g.name === 'laggard');
    expect(before?.queues.map((q) => [q.queueId, q.offset])).toEqual(Array.from({ length: queueCount }, (_, i) => [i, 0]));
  }, 30_000);

  afterAll(async () => {
    producer?.shutdown();
    raft?.close();
    await cluster.stop();
  });

  it('keeps every node\'s log within retention-bytes + 2 segments while 4 MiB goes through, deleting the old segments', async () => {
    const started = Date.now();
    const sent = await produce(4096, 32);
    const seconds = (Date.now() - started) / 1000;
    expect(sent).toBe(4096);
    expect(acked.size).toBeGreaterThan(4096 * 0.99);
    const leaderStatus = await raft.status(await raft.findLeader());
    const afterProduce = await Promise.all(cluster.local.members.map(async (m) => ({ id: m.id, log: await measure(path.join(dataDir(m.id), 'log')) })));
    console.log(`retention: ${acked.size} × 1 KiB acknowledged in ${seconds.toFixed(1)} s, log index ${leaderStatus.lastIndex}; right after: ${afterProduce.map((n) => `${n.id} ${n.log.bytes} B in ${segmentFiles(n.log).length} segments`).join(', ')}`);

    let nodes: Array<{ id: string; log: DirMeasure; snapshots: DirMeasure; firstIndex: number }> = [];
    const settled = await waitFor('every node\'s log within the bound', async () => {
      nodes = await Promise.all(cluster.local.members.map(async (m) => ({
        id: m.id, log: await measure(path.join(dataDir(m.id), 'log')), snapshots: await measure(path.join(dataDir(m.id), 'snapshots')),
        firstIndex: (await raft.status(m.address).catch(() => undefined))?.firstIndex ?? -1,
      })));
      return nodes.every((n) => n.log.bytes <= logBound);
    }, 10_000).then(() => true, () => false);
    const line = (n: (typeof nodes)[number]): string => `${n.id}: log ${n.log.bytes} B in ${segmentFiles(n.log).length} segments (${segmentFiles(n.log)[0] ?? 'none'} … ${segmentFiles(n.log).at(-1) ?? ''}), first index ${n.firstIndex}, snapshots ${snapshotFiles(n.snapshots).join(' ')}`;
    console.log(`retention: bound ${logBound} B ${settled ? 'reached' : 'NOT reached within 10 s'}\n${nodes.map(line).join('\n')}`);
    for (const n of nodes) {
      expect.soft(n.log.bytes, `${n.id}'s log/ after 4 MiB with --retention-bytes ${retentionBytes}: ${line(n)}`).toBeLessThanOrEqual(logBound);
      // The segments that were there first are gone (the first segment starts at index 1).
      expect.soft(segmentFiles(n.log), `${n.id}'s oldest segment`).not.toContain('00000000000000000001.seg');
      const before = segmentFiles(afterProduce.find((a) => a.id === n.id)!.log);
      // Segments roll before they are full (a batch does not straddle two), so the bound holds one more than 6 full ones.
      expect.soft(segmentFiles(n.log).filter((name) => before.slice(0, -7).includes(name)), `${n.id}: old segments still on disk`).toEqual([]);
      expect.soft(snapshotFiles(n.snapshots).length, `${n.id}'s snapshots`).toBeGreaterThanOrEqual(1);
      expect.soft(snapshotFiles(n.snapshots).length, `${n.id}'s snapshots`).toBeLessThanOrEqual(3);
    }
  }, 70_000);

  it('moves a group left at offset 0 up to each queue\'s new first offset, counts what it missed as expired, and a pull from 0 starts at the first retained message', async () => {
    // Retention runs on the leader every 300 ms; the consume queues lose their prefix once a cut is applied.
    // The leader may release the prefix in more than one cut (a round that ran while the last
    // segment was still filling releases less), so wait until the first offsets are above 0 and
    // have not moved for five retention intervals: then no further cut is coming.
    let firsts: number[] = [];
    let stableSince = Date.now();
    await waitFor('retention to release a prefix of every queue, and then no more', async () => {
      const now = await Promise.all(Array.from({ length: queueCount }, (_, q) => firstOffset(q)));
      if (now.some((f, q) => f !== firsts[q])) stableSince = Date.now();
      firsts = now;
      return firsts.every((f) => f > 0) && Date.now() - stableSince >= 1_500;
    }, 20_000).catch((error: unknown) => { throw new Error(`${(error as Error).message}; first offsets ${firsts.join(', ')}\n${diagnostics()}`); });
    const progress = (await cluster.admin.listGroups()).find((g) => g.name === 'laggard');
    firsts = await Promise.all(Array.from({ length: queueCount }, (_, q) => firstOffset(q)));
    console.log(`retention: first offsets ${firsts.join(', ')}; laggard ${JSON.stringify(progress?.queues)}`);
    for (let queueId = 0; queueId < queueCount; queueId++) {
      const first = firsts[queueId]!;
      const committed = await cluster.admin.connection.unary(group, 'GetOffset', { group: groupResource('laggard'), messageQueue: mq(queueId) });
      expect(committed.status?.code).toBe('OK');
      expect(Number(committed.offset), `laggard's committed offset on queue ${queueId}`).toBe(first);
      const row = progress?.queues.find((q) => q.topic === topic && q.queueId === queueId);
      expect(row?.offset).toBe(first);
      expect(row?.expired, `expired on queue ${queueId}`).toBeGreaterThan(0);
      expect(row?.expired, `expired on queue ${queueId}: it had consumed nothing`).toBe(first);

      // From where it was committed, the group reads on at the first retained message.
      const fromCommitted = await pull(queueId, first, 16);
      expect(fromCommitted.code, `pull from ${first} on queue ${queueId}: ${fromCommitted.message}`).toBe('OK');
      expect(fromCommitted.messages[0]?.offset).toBe(first);
      expect(fromCommitted.messages.map((m) => m.body.toString())).toEqual(fromCommitted.messages.map((m) => acked.get(`${queueId}/${m.offset}`)));

      // A pull from offset 0 (below the first offset) starts at the first retained message, without an error.
      const fromZero = await pull(queueId, 0, 16);
      expect.soft(fromZero.code, `pull from 0 on queue ${queueId} (first offset ${first}): ${fromZero.message}`).toBe('OK');
      if (fromZero.code === 'OK') {
        expect.soft(fromZero.messages[0]?.offset, `first message pulled from 0 on queue ${queueId}`).toBe(first);
        expect.soft(fromZero.messages.map((m) => m.body.toString())).toEqual(fromZero.messages.map((m) => acked.get(`${queueId}/${m.offset}`)));
        expect.soft(fromZero.messages.every((m) => m.intact)).toBe(true);
      }

      // RocketMQ's QueryOffset BEGINNING is the queue's min offset (CONSUME_FROM_FIRST_OFFSET starts there).
      const beginning = await cluster.admin.connection.unary(group, 'QueryOffset', { messageQueue: mq(queueId), queryOffsetPolicy: 'BEGINNING' });
      expect.soft(Number(beginning.offset), `QueryOffset BEGINNING on queue ${queueId} after retention`).toBe(first);
    }

    // A group that never committed starts at offset 0 (PullConsumer's consumeFrom 'first'): it must read the retained messages.
    const newcomer = new PullConsumer({ nameServers: [cluster.namesrv], group: 'newcomer', autoCommitIntervalMs: 0 }).subscribe(topic);
    await newcomer.start();
    const offsets: Array<[number, number]> = [];
    const until = Date.now() + 4_000;
    while (offsets.length === 0 && Date.now() < until) for (const m of await newcomer.poll(250, 16)) offsets.push([m.queueId, m.offset]);
    await newcomer.shutdown();
    expect.soft(offsets.length, 'messages a new PullConsumer group read within 4 s after retention').toBeGreaterThan(0);
    for (const [queueId, offset] of offsets.slice(0, 1)) expect.soft(offset).toBeGreaterThanOrEqual(firsts[queueId]!);
  }, 30_000);

  it('restores a wiped follower by InstallSnapshot; made leader, it serves every retained acknowledged message', async () => {
    const leader = await cluster.leader();
    const follower = cluster.local.members.find((m) => m.id !== leader.nodeId)!;
    const before = await raft.status(follower.address);
    let step = 'wipe';
    const t0 = Date.now();
    const times: string[] = [];
    const mark = (next: string): void => { times.push(`${step} ${((Date.now() - t0) / 1000).toFixed(1)} s`); step = next; };
    try {
      await cluster.local.signal(follower.id, 'SIGKILL');
      // What `raftmq repair` does: log and snapshots go, identity and meta/ (term, vote, synced-through mark) stay.
      await fs.rm(path.join(dataDir(follower.id), 'log'), { recursive: true, force: true });
      await fs.rm(path.join(dataDir(follower.id), 'snapshots'), { recursive: true, force: true });

      mark('compact past it');
      const compactedPast = async (): Promise<boolean> => {
        const statuses = await raft.statusAll(1_000);
        const running = statuses.filter((s) => s.address !== follower.address);
        return running.every((s) => (s.status?.firstIndex ?? 0) > before.lastIndex);
      };
      let produced = 0;
      let compacted = await compactedPast();
      // The log keeps a catch-up window of entries behind each snapshot: one send in flight makes one entry per message.
      const deadline = Date.now() + 35_000;
      for (let round = 0; round < 40 && !compacted && Date.now() < deadline; round++) {
        produced += await produce(250, 1, () => false, deadline - Date.now());
        compacted = await compactedPast();
      }
      const others = await raft.statusAll(1_000);
      const othersReport = others.map((s) => `${s.status?.nodeId ?? s.address}: first ${s.status?.firstIndex} last ${s.status?.lastIndex} commit ${s.status?.commitIndex}`).join('; ');
      console.log(`install: ${follower.id} was at ${before.lastIndex} (first ${before.firstIndex}); produced ${produced} more; ${othersReport}`);
      expect(compacted, `the others' first log index passes ${follower.id}'s last index ${before.lastIndex} after ${produced} more messages: ${othersReport}`).toBe(true);

      mark('restart and catch up');
      cluster.restart(follower.id);
      const target = (await raft.status(await raft.findLeader())).commitIndex;
      let restored = before;
      await waitFor(`${follower.id} to apply through ${target}`, async () => {
        restored = await raft.status(follower.address, 1_000).catch(() => restored);
        return restored.appliedIndex >= target;
      }, 20_000);
      const snapshotsDir = await measure(path.join(dataDir(follower.id), 'snapshots'));
      console.log(`install: ${follower.id} applied ${restored.appliedIndex} ≥ ${target}, its log starts at ${restored.firstIndex}, snapshots ${snapshotFiles(snapshotsDir).join(' ')}`);
      expect(restored.firstIndex, 'it was restored by a snapshot, not by replaying from index 1').toBeGreaterThan(before.lastIndex);
      expect(snapshotFiles(snapshotsDir).length).toBeGreaterThanOrEqual(1);
      expect(restored.failed).toBe('');

      mark('transfer leadership');
      await cluster.admin.transferLeader(group, follower.id);
      await waitFor(`the NameServer to see ${follower.id} lead`, async () => (await cluster.leader().catch(() => undefined))?.nodeId === follower.id, 10_000);
      const leaderNow = await raft.status(follower.address);
      expect(leaderNow.role).toBe('leader');

      mark('read everything retained from it');
      const firsts = await Promise.all(Array.from({ length: queueCount }, (_, q) => firstOffset(q)));
      const reads = new Map<string, string>();
      const unreadable: string[] = [];
      for (let queueId = 0; queueId < queueCount; queueId++) {
        let offset = firsts[queueId]!;
        let failing = false;
        for (let n = 0; n < 5_000; n++) {
          // Past a failing batch, one message at a time: which ones exactly cannot be read.
          let batch = await pull(queueId, offset, failing ? 1 : 256);
          if (!failing && batch.code !== 'OK' && batch.code !== 'MESSAGE_NOT_FOUND') batch = await pull(queueId, offset, 1);
          failing = batch.code !== 'OK' && batch.code !== 'MESSAGE_NOT_FOUND';
          if (failing) {
            unreadable.push(`${queueId}/${offset}: ${batch.code} ${batch.message}`);
            offset++;
            continue;
          }
          for (const m of batch.messages) reads.set(`${queueId}/${m.offset}`, m.body.toString());
          if (batch.messages.length === 0) break;
          offset = batch.nextOffset ?? batch.messages[batch.messages.length - 1]!.offset + 1;
        }
      }
      const retained = [...acked].filter(([k]) => {
        const [queueId, offset] = k.split('/').map(Number) as [number, number];
        return offset >= firsts[queueId]!;
      });
      const missing = retained.filter(([k]) => !reads.has(k)).map(([k]) => k);
      const different = retained.filter(([k, body]) => reads.has(k) && reads.get(k) !== body).map(([k]) => k);
      const unknown = [...reads.keys()].filter((k) => !acked.has(k));
      console.log(`install: read ${reads.size} messages from ${follower.id} (first offsets ${firsts.join(', ')}); ${retained.length} acknowledged ones retained, ${missing.length} missing, ${different.length} different, ${unknown.length} not acknowledged; ${unreadable.length} unreadable, first: ${unreadable.slice(0, 2).join('; ')}`);
      mark('done');
      console.log(`install: steps ended at ${times.join(', ')}`);
      const sizes = await Promise.all(cluster.local.members.map(async (m) => `${m.id} ${(await measure(path.join(dataDir(m.id), 'log'))).bytes} B`));
      console.log(`install: log/ sizes now ${sizes.join(', ')} (bound ${logBound} B)`);
      expect(retained.length).toBeGreaterThan(0);
      expect.soft(unreadable.length, `retained messages ${follower.id} cannot read: ${unreadable.slice(0, 3).join('; ')}`).toBe(0);
      expect(missing.slice(0, 20), `${missing.length} of ${retained.length} retained acknowledged messages not read from ${follower.id}`).toEqual([]);
      expect(different.slice(0, 20)).toEqual([]);
    } catch (error) {
      throw new Error(`failed at step ${step}: ${(error as Error).message}\n${diagnostics()}`, { cause: error });
    }
  }, 80_000);
});

describe('retention settings that make no sense', () => {
  let root = '';
  beforeAll(async () => { root = await fs.mkdtemp(path.join(os.tmpdir(), 'raftmq-retention-flags-')); });
  afterAll(() => fs.rm(root, { recursive: true, force: true }));

  it.each([
    ['--retention-hours', '0'],
    ['--retention-disk-percent', '150'],
    ['--retention-bytes', '-1'],
  ])('refuses %s %s at once, naming the flag', async (flag, value) => {
    const [port] = await freePorts(1);
    const started = Date.now();
    const child = spawn(process.execPath, [cliPath, 'broker', '--group', 'bad', '--id', 'n1', '--members', `n1=127.0.0.1:${port}`,
      '--data', path.join(root, `${flag.slice(2)}-${value}`), '--namesrv', '127.0.0.1:1', flag, value], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { output += chunk.toString(); });
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
    clearTimeout(timer);
    expect(code, `exit code for ${flag} ${value}; output: ${output}`).not.toBe(0);
    expect(code, `killed after 10 s: it did not exit at once; output: ${output}`).not.toBeNull();
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(output).toContain(flag);
  }, 15_000);
});
