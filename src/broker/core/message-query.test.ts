/**
 * MessageQuery (src/broker/message-query.ts) over a real BrokerStateMachine with a memory
 * index and an in-memory log: by id, key and store time; traces with groups, clients,
 * attempts and queue offsets read from the command entries; hash collisions dropped (index
 * entries planted under a message's key that name something else); entries retention took
 * from the log counted as released, never a crash; bad input and a follower refused.
 */
import { describe, expect, it } from 'vitest';
import { BrokerStateMachine } from '../broker-state-machine.js';
import { BrokerError } from '../errors.js';
import { MessageQuery, type QueryLog } from '../message-query.js';
import { EntryKind } from '../../raft/types.js';
import { systemClock } from '../../util/clock.js';
import type { CommandOutcome } from './broker-state.js';
import { encodeCommand, encodeMessages, type MessageInput } from './entry-codec.js';
import { IndexKind, MemoryMessageIndexStore, eventPosition, messageIdKey, messageLocationKey } from './message-index.js';
import { defaultTopicConfig } from './names.js';

const input = (messageId: string, extra: Partial<MessageInput> = {}): MessageInput => ({
  topic: 'orders', messageId, tag: 'paid', keys: [], messageGroup: '', queueId: -1, bornTimestamp: 500, bornHost: 'producer-host', properties: { region: 'eu' },
  body: new TextEncoder().encode(`body of ${messageId}`), ...extra,
});

/** A leader's machine and log: entries applied as committed, the log readable until `forget`. */
class Group {
  readonly machine = new BrokerStateMachine(undefined, undefined, undefined, undefined, new MemoryMessageIndexStore());
  readonly entries = new Map<number, Uint8Array>();
  readonly raft = { role: 'leader', term: 3, leaderAddress: (): string | undefined => undefined };
  index = 0;
  timeMs = 1_000_000;
  readonly log: QueryLog = {
    payloadAt: async (index) => {
      const payload = this.entries.get(index);
      if (payload === undefined) throw new BrokerError('INTERNAL_SERVER_ERROR', `log entry ${index} is missing (deleted by retention?)`);
      return payload;
    },
    termAt: (index) => (this.entries.has(index) ? 3 : undefined),
  };

  readonly query = new MessageQuery({ brokerGroup: 'g1', readReadyWaitMs: 200 }, this.raft, this.machine, this.log, systemClock);

  private apply(payload: Uint8Array): { index: number; result: unknown } {
    this.index++;
    this.entries.set(this.index, payload);
    const [result] = this.machine.apply([{ index: this.index, term: 3, kind: EntryKind.normal, payload }]);
    return { index: this.index, result };
  }

  send(messages: MessageInput[], dtMs = 10, half = false): number {
    this.timeMs += dtMs;
    return this.apply(encodeMessages({ timeMs: this.timeMs }, messages, half)).index;
  }

  command(command: object, dtMs = 10): { index: number; outcome: CommandOutcome } {
    this.timeMs += dtMs;
    const { index, result } = this.apply(encodeCommand({ timeMs: this.timeMs }, command));
    return { index, outcome: (result as { outcome: CommandOutcome }).outcome };
  }

  forget(throughIndex: number): void {
    for (const index of [...this.entries.keys()]) if (index <= throughIndex) this.entries.delete(index);
  }
}

const receive = (clientId: string, topic = 'orders') => ({ op: 'receive', group: 'billing', topic, queueId: -1, tags: null, batch: 8, invisibleMs: 1_000, autoRenew: false, clientId });

function scenario(): { group: Group; sentAt: number; ids: string[] } {
  const group = new Group();
  group.command({ op: 'topic.put', config: { ...defaultTopicConfig('orders', 'MIXED'), readQueues: 2, writeQueues: 2 } });
  group.command({ op: 'group.put', config: { name: 'billing', maxDeliveryAttempts: 2, fifo: false } });
  const ids = ['m0', 'm1', 'm2'];
  const sentAt = group.send([input('m0', { keys: ['order-0', 'customer-7'] }), input('m1', { keys: ['order-1', 'customer-7'] }), input('m2', { keys: ['order-2'] })]);
  const { outcome } = group.command(receive('client-a'));
  const deliveries = (outcome as Extract<CommandOutcome, { kind: 'received' }>).deliveries;
  const handle = (position: number) => {
    const d = deliveries.find((x) => x.position === position);
    if (d === undefined) throw new Error(`m${position} was not delivered`);
    return { group: 'billing', topic: d.topic, queueId: d.queueId, offset: d.offset, seq: d.seq };
  };
  group.command({ op: 'ack', ...handle(0) });
  group.command({ op: 'invisible', invisibleMs: 0, ...handle(1) });
  group.command({ op: 'ack', ...handle(2) });
  group.command(receive('client-b'), 50); // m1 again, attempt 2
  group.command(receive('client-b'), 2_000); // m1 past its last attempt: dead-lettered
  return { group, sentAt, ids };
}

describe('MessageQuery', () => {
  it('finds a message by id with where and when it was stored', async () => {
    const { group, sentAt } = scenario();
    const { items, more, released } = await group.query.byId('m1');
    expect([more, released, items.length]).toEqual([false, 0, 1]);
    const m = items[0];
    expect(m).toMatchObject({
      messageId: 'm1', topic: 'orders', tag: 'paid', keys: ['order-1', 'customer-7'], bornHost: 'producer-host', bornTimeMs: 500, properties: { region: 'eu' },
      brokerGroup: 'g1', logIndex: sentAt, position: 1, term: 3, type: 'NORMAL', state: 'stored', bodyBytes: 10,
    });
    expect(group.machine.state.queue('orders', m?.queueId as number)?.logIndexAt(m?.offset as number)).toBe(sentAt);
    expect(m?.storeTimeMs).toBe(m?.sentTimeMs);
    expect((await group.query.byId('m1', { topic: 'other' })).items).toEqual([]);
    expect((await group.query.byId('nope')).items).toEqual([]);
  });

  it('finds by key in a topic, newest first, and by store time, oldest first', async () => {
    const { group } = scenario();
    const later = group.send([input('m3', { keys: ['customer-7'] })], 5_000);
    expect((await group.query.byKey('orders', 'customer-7')).items.map((m) => m.messageId)).toEqual(['m3', 'm1', 'm0']);
    expect((await group.query.byKey('orders', 'customer-7', { limit: 2 })).more).toBe(true);
    const sentM3 = (await group.query.byId('m3')).items[0]?.sentTimeMs as number;
    expect((await group.query.byKey('orders', 'customer-7', { toMs: sentM3 - 1 })).items.map((m) => m.messageId)).toEqual(['m1', 'm0']);
    expect((await group.query.byStoreTime('orders', { fromMs: 0 })).items.map((m) => m.messageId)).toEqual(['m0', 'm1', 'm2', 'm3']);
    const window = await group.query.byStoreTime('orders', { fromMs: sentM3, toMs: sentM3 });
    expect(window.items.map((m) => [m.messageId, m.logIndex])).toEqual([['m3', later]]);
    expect((await group.query.byStoreTime('orders', { fromMs: 0, limit: 3 })).more).toBe(true);
  });

  it('traces sent, stored, delivered, acked, nacked and dead-lettered, with groups, clients and attempts from the log', async () => {
    const { group } = scenario();
    const [trace] = (await group.query.trace('m1')).items;
    expect(trace?.events.map((e) => [e.event, e.group, e.clientId, e.attempt, e.topic])).toEqual([
      ['delivered', 'billing', 'client-a', 1, 'orders'],
      ['nacked', 'billing', '', 1, 'orders'],
      ['delivered', 'billing', 'client-b', 2, 'orders'],
      ['dead-lettered', 'billing', '', 2, 'orders'],
    ]);
    const [delivered, nacked, , dead] = trace?.events ?? [];
    expect(delivered?.offset).toBe(trace?.message.offset);
    expect(nacked?.detail).toBe('invisible for 0 ms');
    expect(dead?.detail).toBe('to %DLQ%billing after 2 attempts');
    expect(dead?.offset).toBe(0); // its record in %DLQ%billing
    expect(trace?.events.every((e) => e.term === 3 && e.timeMs >= (trace.message.storeTimeMs as number))).toBe(true);
    // Consumed from the DLQ: a delivery from there, on the same trace.
    group.command(receive('client-c', '%DLQ%billing'));
    const [again] = (await group.query.trace('m1')).items;
    expect(again?.events.at(-1)).toMatchObject({ event: 'delivered', topic: '%DLQ%billing', clientId: 'client-c', detail: 'from %DLQ%billing' });
    expect((await group.query.trace('m0')).items[0]?.events.map((e) => e.event)).toEqual(['delivered', 'acked']);
  });

  it('drops hash collisions: index entries under a message\'s keys that name something else', async () => {
    const { group, sentAt } = scenario();
    const index = group.machine.state.messageIndex;
    const last = group.index;
    // Under "m1"'s id: a command entry, and a later send of another message; under m0's
    // location: an Acked event naming a receive, and a Delivered one naming a send entry.
    index.add(messageIdKey('m1'), IndexKind.MessageId, last, 0, group.timeMs);
    index.add(messageLocationKey(sentAt, 0), IndexKind.Acked, last, eventPosition(1, 0), group.timeMs);
    const other = group.send([input('x')]);
    index.add(messageIdKey('m1'), IndexKind.MessageId, other, 0, group.timeMs);
    index.add(messageLocationKey(sentAt, 0), IndexKind.Delivered, other, eventPosition(1, 0), group.timeMs);
    expect((await group.query.byId('m1')).items.map((m) => [m.messageId, m.logIndex, m.position])).toEqual([['m1', sentAt, 1]]);
    expect((await group.query.trace('m0')).items[0]?.events.map((e) => e.event)).toEqual(['delivered', 'acked']);
  });

  it('a delayed message: pending, then stored by the fire; a transactional one: half, then committed or rolled back', async () => {
    const group = new Group();
    group.command({ op: 'topic.put', config: { ...defaultTopicConfig('orders', 'MIXED'), readQueues: 2, writeQueues: 2 } });
    group.send([input('later', { deliveryTimeMs: group.timeMs + 5_000 })]);
    expect((await group.query.byId('later')).items[0]).toMatchObject({ type: 'DELAY', state: 'pending', queueId: undefined, storeTimeMs: undefined });
    const { index: fireAt } = group.command({ op: 'timer.fire', throughMs: group.timeMs + 10_000 }, 6_000);
    const [fired] = (await group.query.trace('later')).items;
    expect(fired?.message).toMatchObject({ state: 'stored', storeTimeMs: group.timeMs });
    expect(fired?.message.offset).toBe(0);
    expect(fired?.events.map((e) => [e.event, e.logIndex, e.detail])).toEqual([['stored', fireAt, 'delivery time reached']]);

    const halfAt = group.send([input('t1'), input('t2')], 10, true);
    expect((await group.query.byId('t1')).items[0]).toMatchObject({ type: 'TRANSACTION', state: 'half' });
    group.command({ op: 'txn.end', topic: 'orders', logIndex: halfAt, position: 0, messageId: 't1', commit: true });
    group.command({ op: 'txn.end', topic: 'orders', logIndex: halfAt, position: 1, messageId: 't2', commit: false });
    expect((await group.query.trace('t1')).items[0]?.message.state).toBe('stored');
    expect((await group.query.trace('t1')).items[0]?.events.map((e) => e.detail)).toEqual(['transaction committed']);
    expect((await group.query.trace('t2')).items[0]?.message.state).toBe('rolled-back');
    expect((await group.query.trace('t2')).items[0]?.events.map((e) => e.detail)).toEqual(['rolled back by the producer']);
  });

  it('log entries retention took are counted as released, never a crash; events keep what the index says', async () => {
    const { group, sentAt } = scenario();
    group.forget(sentAt);
    const found = await group.query.byId('m1');
    expect([found.items.length, found.released]).toEqual([0, 1]);
    expect((await group.query.byKey('orders', 'customer-7')).released).toBe(2);
    expect((await group.query.byStoreTime('orders', { fromMs: 0 })).released).toBe(3);
    // The message readable, one event's entry gone: the event stays, without its details.
    const { group: other, sentAt: at } = scenario();
    other.entries.delete(at + 1); // the first receive
    const [trace] = (await other.query.trace('m1')).items;
    expect(trace?.events[0]).toMatchObject({ event: 'delivered', group: '', detail: `entry ${at + 1} was released: its details are gone` });
    // Retention released in the state: the index answers nothing below it.
    other.command({ op: 'retention', throughIndex: other.index });
    expect(await other.query.byId('m1')).toEqual({ items: [], more: false, released: 0 });
  });

  it('refuses bad input with a clear error, and answers only as the leader', async () => {
    const { group } = scenario();
    const refusal = async (run: () => Promise<unknown>): Promise<string> => run().then(() => 'answered', (error: BrokerError) => `${error.code}: ${error.message}`);
    expect(await refusal(() => group.query.byId(''))).toBe('ILLEGAL_MESSAGE_ID: a message id is needed');
    expect(await refusal(() => group.query.byKey('nope', 'k'))).toBe('TOPIC_NOT_FOUND: topic nope does not exist in broker group g1');
    expect(await refusal(() => group.query.byKey('', 'k'))).toBe('BAD_REQUEST: a topic is needed');
    expect(await refusal(() => group.query.byKey('orders', ''))).toBe('ILLEGAL_MESSAGE_KEY: a message key is needed');
    expect(await refusal(() => group.query.byStoreTime('orders', { fromMs: 10, toMs: 5 }))).toBe('BAD_REQUEST: the time range starts (10 ms since the epoch) after it ends (5)');
    expect(await refusal(() => group.query.byStoreTime('orders', {}))).toBe('BAD_REQUEST: a store time range needs a start or an end');
    expect(await refusal(() => group.query.byStoreTime('orders', { fromMs: Number.NaN }))).toMatch(/^BAD_REQUEST: the time range's start NaN/);
    expect(await refusal(() => group.query.byId('m1', { limit: 1001 }))).toBe('BAD_REQUEST: limit 1001 must be a whole number in 1..1000');
    group.raft.role = 'follower';
    group.raft.leaderAddress = () => '127.0.0.1:1';
    expect(await refusal(() => group.query.byId('m1'))).toBe('HA_NOT_AVAILABLE: this node is not the leader of broker group g1; the leader is 127.0.0.1:1');
    group.raft.role = 'leader';
    group.raft.term = 4; // elected, its first entry not applied yet
    expect(await refusal(() => group.query.byId('m1'))).toBe('HA_NOT_AVAILABLE: the new leader has not applied its first entry yet');
  });
});
