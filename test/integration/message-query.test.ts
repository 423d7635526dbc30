/**
 * F12/F20 query and trace from the operator's side, on real `raftmq broker` processes:
 * messages sent with keys (by our Producer and by the official Node client through the
 * access point), consumed by a simple consumer that acknowledges most, nacks one until it is
 * dead-lettered; then `raftmq message get|find|trace` show them (tables and JSON), and bad
 * input gets a clear error. The same answers come from the new leader after the leader is
 * SIGKILLed, and after the whole group is killed and restarts from its snapshots (the
 * index restored from its files).
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs/promises';
import * as path from 'node:path';
import { Producer as OfficialProducer } from 'rocketmq-client-nodejs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../../src/client/producer.js';
import type { ReceivedMessage } from '../../src/client/messages.js';
import { SimpleConsumer } from '../../src/client/simple-consumer.js';
import { BrokerCluster } from '../support/broker-cluster.js';
import { cliPath, waitFor } from '../support/process-cluster.js';
import { shutDownGuarded, UncaughtGuard } from '../support/uncaught-guard.js';

interface CliResult { status: number | null; stdout: string; stderr: string }
interface JsonMessage { messageId: string; topic: string; keys: string[]; bornHost: string; logIndex: number; term?: number; queueId?: number; offset?: number; state: string; storeTimeMs?: number; brokerGroup: string }
interface JsonEvent { event: string; group: string; clientId: string; attempt: number; topic: string; offset?: number; detail: string; logIndex: number }
interface JsonTrace { message: JsonMessage; events: JsonEvent[] }

describe('raftmq message get|find|trace', () => {
  // Snapshots every 20 entries: the restart below restores from one (and the index from its files).
  const cluster = new BrokerCluster({ autoCreateTopics: false, extraArgs: ['--snapshot-entries', '20'] });
  const uncaught = new UncaughtGuard();
  const closers: (() => unknown)[] = [];
  const ids: string[] = [];
  let officialId = '';
  let sentFrom = 0;
  let sentTo = 0;
  const cli = (...args: string[]): Promise<CliResult> => new Promise((resolve) => {
    const child = spawn(process.execPath, [cliPath, ...args, '--namesrv', cluster.namesrv], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
  const json = async <T>(...args: string[]): Promise<T> => {
    const result = await cli(...args, '--json');
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    return JSON.parse(result.stdout) as T;
  };
  /** Everything the queries answer, as JSON: what must not change across a leader kill and a restart. */
  const answers = async (): Promise<unknown> => ({
    get: await json('message', 'get', ids[1] as string),
    byKey: await json('message', 'find', '--topic', 'orders', '--key', 'customer-7'),
    byTime: await json('message', 'find', '--topic', 'orders', '--from', String(sentFrom), '--to', String(sentTo)),
    trace: await json('message', 'trace', ids[1] as string),
    official: await json('message', 'trace', officialId),
  });
  let before: unknown;

  beforeAll(async () => {
    await cluster.start();
    await cluster.admin.createTopic('orders', { readQueues: 2, writeQueues: 2 });
    await cluster.admin.createGroup('billing', { maxDeliveryAttempts: 2 });
    process.env.HOSTNAME = 'it-producer-host'; // our Producer sends it as the born host
    const producer = new Producer({ nameServers: [cluster.namesrv], sendTimeoutMs: 10_000 });
    closers.push(() => producer.shutdown());
    sentFrom = Date.now() - 1;
    for (let i = 0; i < 6; i++) {
      const keys = i % 2 === 0 ? [`order-${i}`, 'customer-7'] : [`order-${i}`];
      ids.push((await producer.send({ topic: 'orders', body: `order ${i}`, tag: 'paid', keys })).messageId);
    }
    // The official client, unchanged (1.0.8 has no message-trace switch: nothing to turn on or off).
    const official = new OfficialProducer({ endpoints: cluster.accessPoint, topics: ['orders'], requestTimeout: 3000 } as never);
    closers.push(() => official.shutdown());
    await official.startup();
    officialId = (await official.send({ topic: 'orders', tag: 'paid', keys: ['customer-7', 'official'], body: Buffer.from('from the official client') })).messageId;
    sentTo = Date.now() + 1;

    // Everything delivered once; all acknowledged but ids[1], which is nacked twice and then dead-lettered.
    const consumer = new SimpleConsumer({ nameServers: [cluster.namesrv], group: 'billing', awaitMs: 500 }).subscribe('orders');
    closers.push(() => consumer.shutdown());
    const first: ReceivedMessage[] = [];
    await waitFor('every message delivered', async () => { first.push(...await consumer.receive(8, 1_000)); return first.length >= 7; }, 15_000);
    for (const m of first) {
      if (m.messageId === ids[1]) await consumer.changeInvisibleDuration(m, 0);
      else await consumer.ack(m);
    }
    let again: ReceivedMessage | undefined;
    await waitFor('the nacked message again', async () => { again = (await consumer.receive(8, 1_000)).find((m) => m.messageId === ids[1]); return again !== undefined; }, 10_000);
    expect(again?.deliveryAttempt).toBe(2);
    await consumer.changeInvisibleDuration(again as ReceivedMessage, 0);
    await waitFor('the nacked message in %DLQ%billing', async () => {
      expect(await consumer.receive(8, 1_000)).toEqual([]);
      return ((await cluster.admin.listTopics()).find((t) => t.name === '%DLQ%billing')?.maxOffsets[0] ?? 0) === 1;
    }, 10_000);
    // The clients are done: closed before the leader kills below (the closers stay for a failed start only).
    for (const close of closers.splice(0).reverse()) await close();
  }, 90_000);

  afterAll(async () => {
    expect(await shutDownGuarded(uncaught, closers, () => cluster.stop())).toEqual([]);
  });

  it('get: a message by id, as a table and as JSON; an unknown id or topic is a clear error', async () => {
    const table = await cli('message', 'get', ids[1] as string);
    expect(table.status).toBe(0);
    console.log(`raftmq message get ${ids[1]}\n${table.stdout}`);
    for (const text of [ids[1] as string, 'orders', 'it-producer-host', 'order-1', 'stored', 'log index', '(term ']) expect(table.stdout).toContain(text);
    const { messages } = await json<{ messages: JsonMessage[] }>('message', 'get', ids[1] as string);
    expect(messages).toHaveLength(1);
    expect(messages[0]).toMatchObject({ messageId: ids[1], topic: 'orders', keys: ['order-1'], bornHost: 'it-producer-host', state: 'stored', brokerGroup: 'g1' });
    expect(messages[0]?.term).toBeGreaterThanOrEqual(1);
    expect([0, 1]).toContain(messages[0]?.queueId);

    const unknown = await cli('message', 'get', 'no-such-id');
    expect([unknown.status, unknown.stderr.trim()]).toEqual([1, 'raftmq: no message no-such-id on any broker group']);
    const otherTopic = await cli('message', 'get', ids[1] as string, '--topic', 'payments');
    expect([otherTopic.status, otherTopic.stderr.trim()]).toEqual([1, `raftmq: no message ${ids[1]} in topic payments on any broker group`]);
  }, 30_000);

  it('find: by key newest first, by store time oldest first; bad ranges and topics are clear errors', async () => {
    const byKey = await json<{ messages: JsonMessage[] }>('message', 'find', '--topic', 'orders', '--key', 'customer-7');
    expect(byKey.messages.map((m) => m.messageId)).toEqual([officialId, ids[4], ids[2], ids[0]]);
    // The official client names its machine as the born host.
    expect(byKey.messages[0]?.bornHost).not.toBe('');
    const table = await cli('message', 'find', '--topic', 'orders', '--key', 'customer-7');
    console.log(`raftmq message find --topic orders --key customer-7\n${table.stdout}`);
    expect(table.stdout).toContain('4 messages in orders with key customer-7');
    const byTime = await json<{ messages: JsonMessage[]; more: boolean }>('message', 'find', '--topic', 'orders', '--from', String(sentFrom), '--to', String(sentTo));
    expect(byTime.messages.map((m) => m.messageId)).toEqual([...ids, officialId]);
    const limited = await json<{ messages: JsonMessage[]; more: boolean }>('message', 'find', '--topic', 'orders', '--from', String(sentFrom), '--limit', '2');
    expect([limited.messages.map((m) => m.messageId), limited.more]).toEqual([ids.slice(0, 2), true]);
    expect((await json<{ messages: JsonMessage[] }>('message', 'find', '--topic', 'orders', '--key', 'nobody')).messages).toEqual([]);

    const reversed = await cli('message', 'find', '--topic', 'orders', '--from', String(sentTo), '--to', String(sentFrom));
    expect(reversed.status).toBe(1);
    expect(reversed.stderr).toContain('raftmq: --from (');
    expect(reversed.stderr).toContain(') is after --to (');
    const badTime = await cli('message', 'find', '--topic', 'orders', '--from', 'yesterday');
    expect(badTime.status).toBe(1);
    expect(badTime.stderr).toContain('--from "yesterday" is not a time');
    const noTopic = await cli('message', 'find', '--key', 'customer-7');
    expect(noTopic.status).toBe(1);
    expect(noTopic.stderr).toContain("required option '--topic <topic>' not specified");
    const unknownTopic = await cli('message', 'find', '--topic', 'payments', '--key', 'k');
    expect([unknownTopic.status, unknownTopic.stderr.trim()]).toEqual([1, 'raftmq: topic payments does not exist']);
    const neither = await cli('message', 'find', '--topic', 'orders');
    expect([neither.status, neither.stderr.trim()]).toEqual([1, 'raftmq: give --key, or a time range with --from and/or --to']);
  }, 60_000);

  it('trace: sent, stored, delivered, nacked, dead-lettered, acknowledged — the readable table and JSON', async () => {
    const table = await cli('message', 'trace', ids[1] as string);
    expect(table.status).toBe(0);
    console.log(`raftmq message trace ${ids[1]}\n${table.stdout}`);
    for (const text of ['sent', 'stored', 'delivered', 'nacked', 'dead-lettered', 'billing', '%DLQ%billing', 'it-producer-host']) expect(table.stdout).toContain(text);
    const { traces } = await json<{ traces: JsonTrace[] }>('message', 'trace', ids[1] as string);
    expect(traces).toHaveLength(1);
    const events = traces[0]?.events ?? [];
    expect(events.map((e) => [e.event, e.group, e.attempt])).toEqual([
      ['delivered', 'billing', 1], ['nacked', 'billing', 1], ['delivered', 'billing', 2], ['nacked', 'billing', 2], ['dead-lettered', 'billing', 2],
    ]);
    expect(events[0]?.clientId).not.toBe('');
    expect(events[0]?.offset).toBe(traces[0]?.message.offset);
    expect(events.at(-1)).toMatchObject({ offset: 0, detail: 'to %DLQ%billing after 2 attempts' });
    // Log order: every event after the message's entry, each after the one before.
    const indexes = [traces[0]?.message.logIndex ?? 0, ...events.map((e) => e.logIndex)];
    expect([...indexes].sort((a, b) => a - b)).toEqual(indexes);

    const acked = await json<{ traces: JsonTrace[] }>('message', 'trace', ids[0] as string);
    expect(acked.traces[0]?.events.map((e) => e.event)).toEqual(['delivered', 'acked']);
    const official = await json<{ traces: JsonTrace[] }>('message', 'trace', officialId);
    expect(official.traces[0]?.events.map((e) => e.event)).toEqual(['delivered', 'acked']);
    const unknown = await cli('message', 'trace', 'no-such-id');
    expect([unknown.status, unknown.stderr.trim()]).toEqual([1, 'raftmq: no message no-such-id on any broker group']);
    before = await answers();
  }, 60_000);

  it('the new leader answers the same after the leader is SIGKILLed', async () => {
    expect(before).toBeDefined();
    const killed = await cluster.killLeader();
    const leader = await cluster.leader(20_000);
    expect(leader.nodeId).not.toBe(killed);
    expect(await answers()).toEqual(before);
    cluster.restart(killed);
  }, 60_000);

  it('the same after the whole group is killed and restarts from its snapshots, the index from its files', async () => {
    // Every node has taken a snapshot and holds index files.
    await waitFor('a snapshot on every node', async () => {
      for (const member of cluster.local.members) {
        const snapshots = await fs.readdir(path.join(cluster.dataRoot, member.id, 'snapshots')).catch(() => []);
        if (!snapshots.some((name) => name.endsWith('.snap'))) return false;
      }
      return true;
    }, 20_000);
    for (const member of cluster.local.members) {
      expect((await fs.readdir(path.join(cluster.dataRoot, member.id, 'index'))).some((name) => name.endsWith('.idx')), `${member.id}'s index files`).toBe(true);
    }
    const killed = await cluster.killAll();
    for (const id of killed) cluster.restart(id);
    await cluster.leader(30_000);
    let after: unknown;
    await waitFor('the restarted group answering', async () => {
      after = await answers().catch(() => undefined);
      return after !== undefined;
    }, 30_000);
    expect(after).toEqual(before);
  }, 90_000);
});
