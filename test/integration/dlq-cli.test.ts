/**
 * F10 from the operator's side: `raftmq dlq list` shows what a consumer group dead-lettered
 * (table and JSON, read-only) and `raftmq dlq resend` sends it back to the original topic as
 * new messages, keeping its progress in the group `<group>-dlq-resend` so that a second run
 * sends nothing again; `--message-id` resends exactly the named messages.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Producer } from '../../src/client/producer.js';
import { PullConsumer } from '../../src/client/pull-consumer.js';
import type { ReceivedMessage } from '../../src/client/messages.js';
import { SimpleConsumer } from '../../src/client/simple-consumer.js';
import { BrokerCluster } from '../support/broker-cluster.js';
import { cliPath, waitFor } from '../support/process-cluster.js';

interface CliResult { status: number | null; stdout: string; stderr: string }

interface ListedEntry {
  brokerGroup: string; queueId: number; offset: number; messageId: string; originMessageId: string; originTopic: string; tag: string;
  keys: string[]; properties: Record<string, string>; storeTime: string; bodyBytes: number; bodyPreview: string; resent: boolean;
}

interface Listing { group: string; topic: string; resendGroup: string; messages: ListedEntry[]; more: boolean }

/** Resend lines: `<broker group> %DLQ%<group>@<offset> <old id> → <new id> to <topic>`. */
const resentIds = (stdout: string): Array<{ offset: number; from: string; to: string }> =>
  [...stdout.matchAll(/^\S+ %DLQ%billing@(\d+) (\S+) → (\S+) to orders$/gm)].map((m) => ({ offset: Number(m[1]), from: m[2] as string, to: m[3] as string }));

describe('raftmq dlq list|resend', () => {
  const cluster = new BrokerCluster({ autoCreateTopics: false });
  let producer: Producer;
  const originalIds: string[] = [];
  const cli = (...args: string[]): Promise<CliResult> => new Promise((resolve) => {
    const child = spawn(process.execPath, [cliPath, ...args, '--namesrv', cluster.namesrv], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString(); });
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
    child.on('close', (status) => resolve({ status, stdout, stderr }));
  });
  const listing = async (...args: string[]): Promise<Listing> => {
    const result = await cli('dlq', 'list', '--group', 'billing', '--json', ...args);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    return JSON.parse(result.stdout) as Listing;
  };
  const resendOffset = async (): Promise<number | undefined> =>
    (await cluster.admin.listGroups()).find((g) => g.name === 'billing-dlq-resend')?.queues.find((q) => q.topic === '%DLQ%billing')?.offset;

  beforeAll(async () => {
    await cluster.start();
    producer = new Producer({ nameServers: [cluster.namesrv], sendTimeoutMs: 10_000 });
    await cluster.admin.createTopic('orders', { readQueues: 1, writeQueues: 1 });
    await cluster.admin.createGroup('billing', { maxDeliveryAttempts: 1 });
    await cluster.admin.createGroup('calm');
    for (let i = 0; i < 3; i++) {
      const receipt = await producer.send({ topic: 'orders', body: `order-${i} ${'x'.repeat(60)}`, tag: 'paid', keys: [`k-${i}`], properties: { region: 'eu' } });
      originalIds.push(receipt.messageId);
    }
    // One delivery each, never acknowledged: the next receive after the invisibility dead-letters them.
    const consumer = new SimpleConsumer({ nameServers: [cluster.namesrv], group: 'billing', awaitMs: 500 }).subscribe('orders');
    const delivered: ReceivedMessage[] = [];
    const until = Date.now() + 10_000;
    while (delivered.length < 3 && Date.now() < until) delivered.push(...await consumer.receive(3, 1_000));
    expect(delivered.map((m) => m.deliveryAttempt)).toEqual([1, 1, 1]);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await waitFor('three messages in %DLQ%billing', async () => {
      expect(await consumer.receive(3, 1_000)).toEqual([]);
      const dlq = (await cluster.admin.listTopics()).find((t) => t.name === '%DLQ%billing');
      return (dlq?.maxOffsets[0] ?? 0) === 3;
    }, 10_000);
    consumer.shutdown();
  }, 60_000);

  afterAll(async () => {
    producer?.shutdown();
    await cluster.stop();
  });

  it('lists the dead-lettered messages as a table and as JSON, read-only', async () => {
    const table = await cli('dlq', 'list', '--group', 'billing');
    expect(table.status).toBe(0);
    for (const id of originalIds) expect(table.stdout).toContain(id);
    expect(table.stdout).toMatch(/g1 .* 0 .* orders .* paid .* k-0 .* 68 .* order-0 x+… /);
    expect(table.stdout).toContain('3 messages in %DLQ%billing');

    const listed = await listing();
    expect(listed).toMatchObject({ group: 'billing', topic: '%DLQ%billing', resendGroup: 'billing-dlq-resend', more: false });
    expect(listed.messages.map((m) => [m.brokerGroup, m.queueId, m.offset, m.messageId, m.originMessageId, m.originTopic, m.tag, m.keys, m.properties, m.bodyBytes, m.resent]))
      .toEqual(originalIds.map((id, i) => ['g1', 0, i, id, id, 'orders', 'paid', [`k-${i}`], { region: 'eu' }, 68, false]));
    expect(listed.messages.map((m) => m.bodyPreview)).toEqual([0, 1, 2].map((i) => `order-${i} ${'x'.repeat(32)}`));
    expect(listed.messages.every((m) => Math.abs(Date.parse(m.storeTime) - Date.now()) < 60_000)).toBe(true);

    const limited = await listing('--limit', '2');
    expect(limited.messages.map((m) => m.offset)).toEqual([0, 1]);
    expect(limited.more).toBe(true);
    // Nothing was committed or created by listing.
    expect((await cluster.admin.listGroups()).some((g) => g.name === 'billing-dlq-resend')).toBe(false);
  }, 20_000);

  it('refuses bad input and unknown groups; an empty DLQ is no error', async () => {
    const zero = await cli('dlq', 'list', '--group', 'billing', '--limit', '0');
    expect(zero.status).toBe(1);
    expect(zero.stderr).toMatch(/--limit must be a whole number ≥ 1/);
    const badName = await cli('dlq', 'resend', '--group', 'bad name!');
    expect(badName.status).toBe(1);
    expect(badName.stderr).toMatch(/consumer group name "bad name!" is invalid/);
    const both = await cli('dlq', 'resend', '--group', 'billing', '--limit', '1', '--message-id', 'X');
    expect(both.status).toBe(1);
    expect(both.stderr).toMatch(/cannot be used with/);
    const unknown = await cli('dlq', 'list', '--group', 'nobody');
    expect(unknown.status).toBe(1);
    expect(unknown.stderr).toMatch(/consumer group nobody is unknown/);
    const empty = await cli('dlq', 'resend', '--group', 'calm');
    expect(empty.status).toBe(0);
    expect(empty.stdout).toMatch(/no dead-lettered messages for group calm/);
  }, 20_000);

  it('resends to the original topic with new ids, once; --message-id resends exactly one', async () => {
    const first = await cli('dlq', 'resend', '--group', 'billing', '--limit', '2');
    expect(first.status).toBe(0);
    const rest = await cli('dlq', 'resend', '--group', 'billing');
    expect(rest.status).toBe(0);
    expect(rest.stdout).toMatch(/resent 1 messages of %DLQ%billing; 2 passed by earlier runs; progress is kept in group billing-dlq-resend/);
    const resent = [...resentIds(first.stdout), ...resentIds(rest.stdout)];
    expect(resent.map((r) => [r.offset, r.from])).toEqual(originalIds.map((id, i) => [i, id]));
    expect(resent.every((r) => !originalIds.includes(r.to))).toBe(true);
    expect(await resendOffset()).toBe(3);

    const again = await cli('dlq', 'resend', '--group', 'billing');
    expect(again.status).toBe(0);
    expect(resentIds(again.stdout)).toEqual([]);
    expect(again.stdout).toMatch(/nothing to resend/);
    expect((await listing()).messages.map((m) => m.resent)).toEqual([true, true, true]);

    const one = await cli('dlq', 'resend', '--group', 'billing', '--message-id', originalIds[1] as string);
    expect(one.status).toBe(0);
    expect(one.stdout).toMatch(/the offset of billing-dlq-resend was not moved/);
    const single = resentIds(one.stdout);
    expect(single.map((r) => [r.offset, r.from])).toEqual([[1, originalIds[1]]]);
    expect(await resendOffset()).toBe(3);
    const missing = await cli('dlq', 'resend', '--group', 'billing', '--message-id', 'NO-SUCH-ID');
    expect(missing.status).toBe(1);
    expect(missing.stderr).toMatch(/%DLQ%billing holds no message NO-SUCH-ID; nothing was resent/);

    // A fresh group reads the three originals, the three resends and the one --message-id resend.
    const reader = new PullConsumer({ nameServers: [cluster.namesrv], group: 'auditors' }).subscribe('orders');
    await reader.start();
    const received: ReceivedMessage[] = [];
    const until = Date.now() + 10_000;
    while (received.length < 7 && Date.now() < until) received.push(...await reader.poll(300, 64));
    await reader.shutdown();
    expect(received).toHaveLength(7);
    const byId = new Map(received.map((m) => [m.messageId, m]));
    for (const r of [...resent, ...single]) {
      const message = byId.get(r.to);
      const original = byId.get(r.from);
      expect(message, `resent ${r.to}`).toBeDefined();
      expect(message?.body.toString()).toBe(original?.body.toString());
      expect([message?.topic, message?.tag, message?.keys, message?.properties]).toEqual(['orders', 'paid', original?.keys, { region: 'eu' }]);
    }
    expect(new Set(received.map((m) => m.messageId)).size).toBe(7);
  }, 30_000);
});
