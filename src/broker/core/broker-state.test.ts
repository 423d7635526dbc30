import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BrokerState, type BrokerCommand, type CommandOutcome, type Delivery } from './broker-state.js';
import { PayloadKind, encodeMessages, isMessagesKind, readHeader, readMessageAt, readRouting, type MessageInput } from './entry-codec.js';
import { defaultRetryBackoffMs, defaultTopicConfig, dlqTopicOf, groupConfigProblem, type GroupConfig } from './names.js';

const message = (topic: string, messageId: string, extra: Partial<MessageInput> = {}): MessageInput => ({
  topic, messageId, tag: '', keys: [], messageGroup: '', queueId: -1, bornTimestamp: 1, bornHost: 'h', properties: {}, body: Buffer.from(messageId), ...extra,
});

/** A tiny log: every apply gets the next index, like committed entries would. */
class Harness {
  readonly state = new BrokerState();
  index = 0;
  constructor(public timeMs = 1_000) {}
  send(...messages: MessageInput[]) {
    const payload = encodeMessages({ timeMs: this.timeMs }, messages);
    return this.state.applyMessages(++this.index, this.state.advanceClock(this.timeMs), readRouting(payload));
  }
  run(command: BrokerCommand): CommandOutcome {
    return this.state.applyCommand(++this.index, this.state.advanceClock(this.timeMs), command);
  }
  receive(group: string, topic: string, batch = 32, invisibleMs = 10_000, tags: string[] | null = null): Delivery[] {
    const outcome = this.run({ op: 'receive', group, topic, queueId: -1, tags, batch, invisibleMs, autoRenew: false, clientId: 'c1' });
    if (outcome.kind !== 'received') throw new Error(JSON.stringify(outcome));
    return [...outcome.deliveries];
  }
  ack(group: string, d: Delivery): CommandOutcome {
    return this.run({ op: 'ack', group, topic: d.topic, queueId: d.queueId, offset: d.offset, seq: d.seq });
  }
}

describe('message codec', () => {
  it('round-trips every field of every message in a batch', () => {
    fc.assert(fc.property(fc.array(fc.record({
      topic: fc.stringMatching(/^[A-Za-z0-9_-]{1,20}$/), messageId: fc.string({ maxLength: 40 }), tag: fc.string({ maxLength: 10 }),
      keys: fc.array(fc.string({ maxLength: 8 }), { maxLength: 3 }), messageGroup: fc.string({ maxLength: 8 }), queueId: fc.integer({ min: -1, max: 100 }),
      bornTimestamp: fc.integer({ min: 0, max: 2 ** 45 }), bornHost: fc.string({ maxLength: 12 }),
      properties: fc.dictionary(fc.string({ minLength: 1, maxLength: 6 }), fc.string({ maxLength: 30 }), { maxKeys: 4 }),
      body: fc.uint8Array({ maxLength: 300 }),
    }), { minLength: 1, maxLength: 8 }), (messages) => {
      const payload = encodeMessages({ timeMs: 123 }, messages);
      messages.forEach((m, i) => {
        const read = readMessageAt(payload, i);
        expect({ ...read, properties: Object.fromEntries(read.properties), body: [...read.body] }).toEqual({ ...m, properties: Object.fromEntries(Object.entries(m.properties)), body: [...m.body] });
      });
      expect(readRouting(payload).map((r) => r.bodyBytes)).toEqual(messages.map((m) => m.body.byteLength));
    }));
  });

  it('carries delivery times in a batch of kind TimedMessages; a batch without one stays kind Messages, byte for byte', () => {
    const plain = [message('t', 'a'), message('t', 'b', { keys: ['k'], properties: { p: 'v' } })];
    const untimed = encodeMessages({ timeMs: 5 }, plain);
    expect(readHeader(untimed).kind).toBe(PayloadKind.Messages);
    expect(Buffer.from(encodeMessages({ timeMs: 5 }, plain.map((m) => ({ ...m, deliveryTimeMs: 0 }))))).toEqual(Buffer.from(untimed));
    expect(readRouting(untimed).map((r) => r.deliveryTimeMs)).toEqual([0, 0]);
    const timed = encodeMessages({ timeMs: 5 }, [plain[0] as MessageInput, { ...(plain[1] as MessageInput), deliveryTimeMs: 1_700_000_000_123 }]);
    expect(readHeader(timed).kind).toBe(PayloadKind.TimedMessages);
    expect(isMessagesKind(readHeader(timed).kind) && isMessagesKind(readHeader(untimed).kind)).toBe(true);
    expect(readRouting(timed).map((r) => [r.messageId, r.deliveryTimeMs, r.bodyBytes])).toEqual([['a', 0, 1], ['b', 1_700_000_000_123, 1]]);
    const read = readMessageAt(timed, 1);
    expect({ ...read, properties: Object.fromEntries(read.properties), body: Buffer.from(read.body).toString() }).toEqual({ ...plain[1], deliveryTimeMs: 1_700_000_000_123, body: 'b' });
    expect(readMessageAt(timed, 0).deliveryTimeMs).toBeUndefined();
  });
});

describe('broker state', () => {
  it('spreads messages round-robin over write queues and pins a message group to one queue', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: { ...defaultTopicConfig('t'), writeQueues: 4, readQueues: 4 } });
    const outcomes = h.send(...Array.from({ length: 8 }, (_, i) => message('t', `m${i}`)));
    expect(outcomes.map((o) => o.queueId)).toEqual([0, 1, 2, 3, 0, 1, 2, 3]);
    const grouped = h.send(...Array.from({ length: 5 }, (_, i) => message('t', `g${i}`, { messageGroup: 'order-42' })));
    expect(new Set(grouped.map((o) => o.queueId)).size).toBe(1);
  });

  it('stores a retried message id once and answers with the original queue and offset', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: defaultTopicConfig('t') });
    const [first] = h.send(message('t', 'same'));
    const [again] = h.send(message('t', 'same'));
    expect(again).toEqual({ ...first, duplicate: true });
    expect(h.state.maxOffsets('t').reduce((a, b) => a + b)).toBe(1);
  });

  it('stores an id again after its topic was deleted and created with fewer queues, then de-duplicates it there', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 4, writeQueues: 4 } });
    expect(h.send(message('t', 'same', { queueId: 3 }))[0]).toMatchObject({ code: 'ok', queueId: 3, duplicate: false });
    h.run({ op: 'topic.delete', name: 't' });
    h.run({ op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 1, writeQueues: 1 } });
    const [stored] = h.send(message('t', 'same'));
    expect(stored).toMatchObject({ code: 'ok', queueId: 0, offset: 0, duplicate: false });
    expect(h.send(message('t', 'same'))[0]).toEqual({ ...stored, duplicate: true });
  });

  it('rejects messages for unknown topics without storing them', () => {
    const h = new Harness();
    expect(h.send(message('nope', 'a'))[0]?.code).toBe('topic-not-found');
  });

  it('hides received messages until acknowledged or their invisible time passes, then redelivers with attempt + 1', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 1, writeQueues: 1 } });
    h.send(message('t', 'a'), message('t', 'b'));
    const first = h.receive('g', 't', 1);
    expect(first.map((d) => [d.offset, d.attempt])).toEqual([[0, 1]]);
    expect(h.receive('g', 't').map((d) => d.offset)).toEqual([1]);
    expect(h.receive('g', 't')).toEqual([]);
    h.timeMs += 10_001;
    const again = h.receive('g', 't');
    expect(again.map((d) => [d.offset, d.attempt])).toEqual([[0, 2], [1, 2]]);
    // The first handle was superseded by the redelivery.
    expect(h.ack('g', first[0] as Delivery)).toMatchObject({ kind: 'error', code: 'invalid-handle' });
    expect(h.ack('g', again[0] as Delivery)).toEqual({ kind: 'done' });
    expect(h.ack('g', again[0] as Delivery)).toEqual({ kind: 'done' }); // a retried ack is harmless
    expect(h.state.groupProgress('g')[0]).toMatchObject({ offset: 1, inFlight: 1 });
  });

  it('backs a nacked push delivery off by RocketMQ\'s retry levels (10 s, 30 s, 1 m …), or the group\'s own, honouring a longer request', () => {
    const backoffs = (group: GroupConfig, requestedMs: number, rounds: number): number[] => {
      const h = new Harness();
      h.run({ op: 'topic.put', config: { ...defaultTopicConfig('t'), writeQueues: 1, readQueues: 1 } });
      h.run({ op: 'group.put', config: group });
      h.send(message('t', 'failing'));
      const out: number[] = [];
      for (let round = 0; round < rounds; round++) {
        const outcome = h.run({ op: 'receive', group: group.name, topic: 't', queueId: -1, tags: null, batch: 1, invisibleMs: 60_000, autoRenew: true, clientId: 'c1' });
        const d = outcome.kind === 'received' ? outcome.deliveries[0] : undefined;
        if (d === undefined) throw new Error(`round ${round}: nothing delivered`);
        const nackedAt = h.timeMs;
        h.run({ op: 'invisible', group: group.name, topic: d.topic, queueId: d.queueId, offset: d.offset, seq: d.seq, invisibleMs: requestedMs });
        const deadline = h.state.nextDeadline(group.name, 't') as number;
        out.push(deadline - nackedAt);
        h.timeMs = deadline;
      }
      return out;
    };
    expect(backoffs({ name: 'push', maxDeliveryAttempts: 30, fifo: false }, 7, 4)).toEqual([10_000, 30_000, 60_000, 120_000]);
    expect(backoffs({ name: 'push', maxDeliveryAttempts: 30, fifo: false }, 45_000, 3)).toEqual([45_000, 45_000, 60_000]);
    expect(backoffs({ name: 'push', maxDeliveryAttempts: 30, fifo: false, retryBackoffMs: [100, 200] }, 0, 4)).toEqual([100, 200, 200, 200]);
    expect(defaultRetryBackoffMs.length).toBe(16);
    expect(groupConfigProblem({ name: 'g', maxDeliveryAttempts: 3, fifo: false, retryBackoffMs: [] })).toMatch(/retry back-off/);
    expect(groupConfigProblem({ name: 'g', maxDeliveryAttempts: 3, fifo: false, retryBackoffMs: [-1] })).toMatch(/retry back-off/);
  });

  it('decides create-only and update-only topic puts when they apply: an auto-creation never overwrites a topic created first', () => {
    const h = new Harness();
    const delay = { ...defaultTopicConfig('t', 'DELAY'), readQueues: 4, writeQueues: 4 };
    expect(h.run({ op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 1, writeQueues: 1 }, mode: 'update' })).toMatchObject({ kind: 'error', code: 'topic-not-found' });
    expect(h.run({ op: 'topic.put', config: delay, mode: 'create' })).toEqual({ kind: 'done' });
    expect(h.run({ op: 'topic.put', config: defaultTopicConfig('t', 'MIXED'), mode: 'create' })).toMatchObject({ kind: 'error', code: 'topic-exists' });
    expect(h.state.topic('t')).toEqual(delay);
    expect(h.run({ op: 'topic.put', config: { ...delay, perm: 4 }, mode: 'update' })).toEqual({ kind: 'done' });
    expect(h.state.topic('t')?.perm).toBe(4);
  });

  it('stops renewing a push delivery once it is nacked, so it comes back and reaches the DLQ after max attempts', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: { ...defaultTopicConfig('t'), writeQueues: 1, readQueues: 1 } });
    h.run({ op: 'group.put', config: { name: 'push', maxDeliveryAttempts: 3, fifo: false, retryBackoffMs: [1_000] } });
    h.send(message('t', 'failing'));
    const attempts: number[] = [];
    for (let round = 0; round < 6; round++) {
      const outcome = h.run({ op: 'receive', group: 'push', topic: 't', queueId: -1, tags: null, batch: 1, invisibleMs: 60_000, autoRenew: true, clientId: 'c1' });
      if (outcome.kind !== 'received') throw new Error(JSON.stringify(outcome));
      const d = outcome.deliveries[0];
      if (d === undefined) {
        h.timeMs += 10_000;
        continue;
      }
      attempts.push(d.attempt);
      // The listener failed: the official PushConsumer asks for the message back after its backoff.
      expect(h.run({ op: 'invisible', group: 'push', topic: d.topic, queueId: d.queueId, offset: d.offset, seq: d.seq, invisibleMs: 1_000 }).kind).toBe('handle');
      // The leader's renewal sweep runs meanwhile: it must leave the nacked delivery alone.
      const due = h.state.renewalsDue(h.timeMs + 60_000, () => true);
      expect(due).toEqual([]);
      h.run({ op: 'renew', items: [{ group: 'push', topic: d.topic, queueId: d.queueId, offset: d.offset, seq: h.index }], invisibleMs: 60_000 }); // even with the current handle
      h.timeMs += 10_000;
    }
    expect(attempts).toEqual([1, 2, 3]);
    expect(h.state.maxOffsets(dlqTopicOf('push'))).toEqual([1]);
  });

  it('dead-letters a message after the group\'s max delivery attempts, keeping its body reference', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 1, writeQueues: 1 } });
    h.run({ op: 'group.put', config: { name: 'g', maxDeliveryAttempts: 2, fifo: false } });
    h.send(message('t', 'poison'));
    expect(h.receive('g', 't')).toHaveLength(1);
    h.timeMs += 20_000;
    expect(h.receive('g', 't')[0]?.attempt).toBe(2);
    h.timeMs += 20_000;
    expect(h.receive('g', 't')).toEqual([]);
    const dlq = h.state.queue(dlqTopicOf('g'), 0);
    expect(dlq?.maxOffset).toBe(1);
    expect(dlq?.logIndexAt(0)).toBe(h.state.queue('t', 0)?.logIndexAt(0));
  });

  it('never hands out a later message of a FIFO group\'s queue while an earlier one is in flight', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: { ...defaultTopicConfig('t', 'FIFO'), readQueues: 1, writeQueues: 1 } });
    h.run({ op: 'group.put', config: { name: 'g', maxDeliveryAttempts: 5, fifo: true } });
    h.send(message('t', 'a', { messageGroup: 'x' }));
    const first = h.receive('g', 't', 1);
    h.send(message('t', 'b', { messageGroup: 'x' }));
    expect(h.receive('g', 't')).toEqual([]);
    h.ack('g', first[0] as Delivery);
    expect(h.receive('g', 't').map((d) => d.offset)).toEqual([1]);
  });

  it('filters by tag on the broker and skips what the subscription does not want', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 1, writeQueues: 1 } });
    h.send(message('t', 'a', { tag: 'A' }), message('t', 'b', { tag: 'B' }), message('t', 'c', { tag: 'A' }));
    expect(h.receive('g', 't', 32, 10_000, ['A']).map((d) => d.offset)).toEqual([0, 2]);
  });

  it('resets pull and pop offsets of a group to the first message stored at or after a time', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 1, writeQueues: 1 } });
    h.send(message('t', 'old'));
    h.timeMs = 5_000;
    h.send(message('t', 'new'));
    h.run({ op: 'offset.update', group: 'g', topic: 't', queueId: 0, offset: 2 });
    h.run({ op: 'offset.reset', group: 'g', topic: 't', timeMs: 4_000 });
    expect(h.state.committedOffset('g', 't', 0)).toBe(1);
    expect(h.receive('g', 't').map((d) => d.offset)).toEqual([1]);
  });

  it('keeps time monotone when a new leader\'s clock is behind', () => {
    const h = new Harness(10_000);
    h.run({ op: 'topic.put', config: defaultTopicConfig('t') });
    h.timeMs = 5_000;
    h.run({ op: 'topic.put', config: defaultTopicConfig('u') });
    expect(h.state.nowMs).toBe(10_000);
  });
});

describe('retention', () => {
  const topicOneQueue = { ...defaultTopicConfig('t'), readQueues: 1, writeQueues: 1 };

  it('releases the messages stored at or before the cut; a consumer behind moves up and the skipped ones count as expired', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: topicOneQueue });
    for (let i = 0; i < 6; i++) h.send(message('t', `m${i}`)); // log indexes 2..7, offsets 0..5
    const first = h.receive('g', 't', 1);
    expect(h.ack('g', first[0] as Delivery)).toEqual({ kind: 'done' }); // g consumed offset 0
    h.run({ op: 'offset.update', group: 'pull', topic: 't', queueId: 0, offset: 1 });
    expect(h.state.newestStoreTimeThrough(4)).toBe(1_000);
    expect(h.run({ op: 'retention', throughIndex: 4 })).toEqual({ kind: 'done' }); // offsets 0..2 go
    const queue = h.state.queue('t', 0)!;
    expect([queue.minOffset, queue.maxOffset]).toEqual([3, 6]);
    expect(h.state.retainedFrom).toBe(5);
    expect(h.state.committedOffset('pull', 't', 0)).toBe(3);
    expect(h.state.groupProgress('g')).toEqual([expect.objectContaining({ offset: 3, expired: 2 })]);
    expect(h.state.groupProgress('pull')).toEqual([expect.objectContaining({ offset: 3, expired: 2 })]);
    // What is delivered next is the first retained message; a new group starts there too.
    expect(h.receive('g', 't', 10).map((d) => d.offset)).toEqual([3, 4, 5]);
    expect(h.receive('fresh', 't', 10).map((d) => d.offset)).toEqual([3, 4, 5]);
    expect(queue.logIndexAt(3)).toBe(5);
    // An older or repeated cut changes nothing.
    expect(h.run({ op: 'retention', throughIndex: 3 })).toEqual({ kind: 'done' });
    expect(queue.minOffset).toBe(3);
  });

  it('counts as expired, for a group consuming the topic, what a queue it never reached released', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 2, writeQueues: 2 } });
    for (let i = 0; i < 4; i++) h.send(message('t', `q1-${i}`, { queueId: 1 })); // log indexes 2..5 on queue 1
    h.send(message('t', 'q0', { queueId: 0 }));
    expect(h.run({ op: 'receive', group: 'g', topic: 't', queueId: 0, tags: null, batch: 1, invisibleMs: 10_000, autoRenew: false, clientId: 'c' }).kind).toBe('received');
    h.run({ op: 'offset.update', group: 'pull', topic: 't', queueId: 0, offset: 0 });
    h.run({ op: 'retention', throughIndex: 4 }); // offsets 0..2 of queue 1 go
    for (const group of ['g', 'pull']) {
      expect(h.state.groupProgress(group).find((row) => row.queueId === 1), group).toEqual(expect.objectContaining({ expired: 3 }));
    }
    expect(h.state.groupProgress('other')).toEqual([]); // not consuming the topic: nothing counted
  });

  it('survives a snapshot: the restored state has the same first offsets, cut and expired counts', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: topicOneQueue });
    for (let i = 0; i < 200; i++) h.send(message('t', `m${i}`));
    h.run({ op: 'offset.update', group: 'pull', topic: 't', queueId: 0, offset: 0 });
    h.run({ op: 'retention', throughIndex: 150 });
    const restored = BrokerState.restore(h.state.snapshot());
    expect(restored.digest()).toBe(h.state.digest());
    expect(restored.queue('t', 0)?.minOffset).toBe(149);
    expect(restored.retainedFrom).toBe(151);
    expect(restored.groupProgress('pull')).toEqual(h.state.groupProgress('pull'));
    h.send(message('t', 'after'));
    restored.applyMessages(h.index, h.timeMs, readRouting(encodeMessages({ timeMs: h.timeMs }, [message('t', 'after')])));
    expect(restored.digest()).toBe(h.state.digest());
  });
});

describe('delayed messages (F8)', () => {
  const topicTwoQueues = { ...defaultTopicConfig('t', 'MIXED'), readQueues: 2, writeQueues: 2 };
  const fire = (h: Harness, throughMs = h.timeMs): CommandOutcome => h.run({ op: 'timer.fire', throughMs });
  const ids = (h: Harness, group: string): string[] => h.receive(group, 't').map((d) => {
    const queue = h.state.queue('t', d.queueId);
    return `${d.queueId}:${queue?.logIndexAt(d.offset)}/${queue?.positionAt(d.offset)}`;
  });

  it('keeps a message due later out of its queue, records it for de-duplication, and fires it into the queue chosen at send', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: topicTwoQueues });
    const [delayed, now] = h.send(message('t', 'later', { deliveryTimeMs: 6_000 }), message('t', 'now'));
    expect(delayed).toEqual({ code: 'ok', queueId: 0, offset: -1, duplicate: false, delayed: { logIndex: 2, position: 0, dueMs: 6_000 } });
    expect(now).toEqual({ code: 'ok', queueId: 1, offset: 0, duplicate: false });
    expect(h.state.maxOffsets('t')).toEqual([0, 1]);
    expect([h.state.pendingTimers, h.state.nextTimerDueMs(), h.state.timerPinnedFrom()]).toEqual([1, 6_000, 2]);
    // A retry of the delayed send is a duplicate naming the same send entry: stored once.
    expect(h.send(message('t', 'later', { deliveryTimeMs: 6_000 }))[0]).toEqual({ code: 'ok', queueId: 0, offset: -1, duplicate: true, delayed: { logIndex: 2, position: 0, dueMs: 6_000 } });
    expect(h.state.pendingTimers).toBe(1);
    h.timeMs = 5_999;
    expect(fire(h)).toEqual({ kind: 'fired', delivered: 0, dropped: 0, topics: [] });
    h.timeMs = 6_000;
    expect(fire(h)).toEqual({ kind: 'fired', delivered: 1, dropped: 0, topics: ['t'] });
    const queue = h.state.queue('t', 0);
    expect([queue?.maxOffset, queue?.logIndexAt(0), queue?.positionAt(0), queue?.storeTimeAt(0)]).toEqual([1, 2, 0, 6_000]);
    expect([h.state.pendingTimers, h.state.nextTimerDueMs()]).toEqual([0, undefined]);
    // Still a duplicate once delivered (the dedup record names the send entry).
    expect(h.send(message('t', 'later', { deliveryTimeMs: 6_000 }))[0]?.duplicate).toBe(true);
    expect(h.state.maxOffsets('t')).toEqual([1, 1]);
  });

  it('stores a message already due at once, and refuses one due beyond the maximum delay without recording it', () => {
    const h = new Harness(10_000);
    h.run({ op: 'topic.put', config: topicTwoQueues });
    expect(h.send(message('t', 'past', { deliveryTimeMs: 9_000 }))[0]).toEqual({ code: 'ok', queueId: 0, offset: 0, duplicate: false });
    const tooFar = 10_000 + 3 * 24 * 3_600_000 + 1;
    expect(h.send(message('t', 'far', { deliveryTimeMs: tooFar }))[0]?.code).toBe('illegal-delivery-time');
    expect(h.send(message('t', 'far', { deliveryTimeMs: tooFar - 1 }))[0]?.duplicate).toBe(false);
    expect(h.state.pendingTimers).toBe(1);
  });

  it('fires in (due, log index, position) order, never back, through the entry time at most', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: { ...topicTwoQueues, readQueues: 1, writeQueues: 1 } });
    h.send(message('t', 'a', { deliveryTimeMs: 3_000 }), message('t', 'b', { deliveryTimeMs: 2_000 })); // 2/0, 2/1
    h.send(message('t', 'c', { deliveryTimeMs: 2_000 }), message('t', 'd', { deliveryTimeMs: 2_500 })); // 3/0, 3/1
    // A fire ahead of its own entry's time goes only that far.
    expect(fire(h, 10_000)).toEqual({ kind: 'fired', delivered: 0, dropped: 0, topics: [] });
    h.timeMs = 2_600;
    expect(fire(h).kind === 'fired' && fire(h)).toEqual({ kind: 'fired', delivered: 0, dropped: 0, topics: [] });
    expect(ids(h, 'g')).toEqual(['0:2/1', '0:3/0', '0:3/1']);
    // A new leader whose clock is behind: the fire does not go back (and time stays monotone).
    h.timeMs = 1_000;
    h.send(message('t', 'e', { deliveryTimeMs: 2_700 })); // entry 8, at state time 2.6 s
    expect(fire(h)).toEqual({ kind: 'fired', delivered: 0, dropped: 0, topics: [] });
    h.timeMs = 3_000;
    expect(fire(h)).toEqual({ kind: 'fired', delivered: 2, dropped: 0, topics: ['t'] });
    expect(ids(h, 'g')).toEqual(['0:8/0', '0:2/0']);
  });

  it('cancels a pending message once; a delivered, recalled or unknown one is not pending and nothing changes', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: topicTwoQueues });
    h.send(message('t', 'a', { deliveryTimeMs: 5_000 }), message('t', 'b', { deliveryTimeMs: 5_000 }));
    expect(h.run({ op: 'timer.cancel', logIndex: 2, position: 1, dueMs: 4_999 })).toEqual(expect.objectContaining({ kind: 'error', code: 'not-pending' }));
    expect(h.run({ op: 'timer.cancel', logIndex: 2, position: 1, dueMs: 5_000 })).toEqual({ kind: 'done' });
    expect(h.run({ op: 'timer.cancel', logIndex: 2, position: 1, dueMs: 5_000 })).toEqual(expect.objectContaining({ kind: 'error', code: 'not-pending' }));
    expect(h.run({ op: 'timer.cancel', logIndex: -1, position: 0, dueMs: 5_000 })).toEqual(expect.objectContaining({ kind: 'error', code: 'bad-request' }));
    expect(h.state.pendingTimers).toBe(1);
    h.timeMs = 5_000;
    expect(fire(h)).toEqual({ kind: 'fired', delivered: 1, dropped: 0, topics: ['t'] });
    expect(h.run({ op: 'timer.cancel', logIndex: 2, position: 0, dueMs: 5_000 })).toEqual(expect.objectContaining({ kind: 'error', code: 'not-pending' }));
    expect(ids(h, 'g')).toEqual(['0:2/0']);
  });

  it('drops a due message whose topic was deleted, or deleted and created again', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: topicTwoQueues });
    h.run({ op: 'topic.put', config: { ...topicTwoQueues, name: 'u' } });
    h.send(message('t', 'a', { deliveryTimeMs: 5_000 }), message('u', 'b', { deliveryTimeMs: 5_000 }));
    h.run({ op: 'topic.delete', name: 't' });
    h.run({ op: 'topic.delete', name: 'u' });
    h.run({ op: 'topic.put', config: { ...topicTwoQueues, name: 'u' } });
    // The old id in the new topic is no duplicate: it was sent before the topic was created.
    expect(h.send(message('u', 'b', { deliveryTimeMs: 5_000 }))[0]?.duplicate).toBe(false);
    h.timeMs = 5_000;
    expect(fire(h)).toEqual({ kind: 'fired', delivered: 1, dropped: 2, topics: ['u'] });
    expect(h.state.maxOffsets('u')).toEqual([1, 0]);
  });

  it('keeps the log of pending and of delivered-but-held delayed messages, which readers never skip; retention releases them with their prefix', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: { ...topicTwoQueues, readQueues: 1, writeQueues: 1 } });
    h.send(message('t', 'd', { deliveryTimeMs: 9_000 })); // log index 2
    for (let i = 0; i < 5; i++) h.send(message('t', `n${i}`)); // 3..7: offsets 0..4
    // Retention through 4 releases offsets 0-1 (entries 3, 4); the pending one pins entry 2.
    h.run({ op: 'retention', throughIndex: 4 });
    expect([h.state.retainedFrom, h.state.firstNeededLogIndex, h.state.timerPinnedFrom()]).toEqual([5, 2, 2]);
    h.timeMs = 9_000;
    fire(h); // offset 5 holds entry 2, after entries 5..7
    expect(h.state.queue('t', 0)?.logIndexAt(5)).toBe(2);
    expect(h.state.firstNeededLogIndex).toBe(2);
    // Its store time is its delivery: retention by age sees a message stored at 9 s through entry 2.
    expect(h.state.newestStoreTimeThrough(2)).toBe(9_000);
    // Delivered to a group that reaches it, not skipped as released.
    expect(ids(h, 'g')).toEqual(['0:5/0', '0:6/0', '0:7/0', '0:2/0']);
    // Released with its prefix: counted as expired for a group that had not consumed it.
    h.run({ op: 'offset.update', group: 'pull', topic: 't', queueId: 0, offset: 2 });
    h.run({ op: 'retention', throughIndex: 7 });
    expect(h.state.queue('t', 0)?.minOffset).toBe(6);
    expect([h.state.retainedFrom, h.state.firstNeededLogIndex, h.state.timerPinnedFrom()]).toEqual([8, 8, undefined]);
    expect(h.state.groupProgress('pull')).toEqual([expect.objectContaining({ offset: 6, expired: 4 })]);
  });

  it('keeps a handful of runs per queue however many fires there were, never pinning less than the truth', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: { ...topicTwoQueues, readQueues: 1, writeQueues: 1 } });
    const sends: number[] = [];
    for (let i = 0; i < 40; i++) {
      h.send(message('t', `d${i}`, { deliveryTimeMs: h.timeMs + 500 + ((i * 37) % 300) }));
      sends.push(h.index);
      h.send(message('t', `n${i}`));
      h.timeMs += 100;
      fire(h);
    }
    h.timeMs += 1_000;
    fire(h);
    expect(h.state.pendingTimers).toBe(0);
    const snapshot = h.state.snapshot();
    expect(BrokerState.restore(snapshot).timerPinnedFrom()).toBe(h.state.timerPinnedFrom());
    for (const through of [10, 30, 50, 70, 90]) {
      h.run({ op: 'retention', throughIndex: through });
      const queue = h.state.queue('t', 0);
      let truth = Infinity;
      for (let offset = queue?.minOffset ?? 0; offset < (queue?.maxOffset ?? 0); offset++) if (sends.includes(queue?.logIndexAt(offset) ?? 0)) truth = Math.min(truth, queue?.logIndexAt(offset) ?? 0);
      const pinned = h.state.timerPinnedFrom() ?? Infinity;
      expect(pinned, `through ${through}`).toBeLessThanOrEqual(truth);
    }
    expect(h.state.snapshot().byteLength).toBeLessThan(snapshot.byteLength + 1_000);
  });
});
