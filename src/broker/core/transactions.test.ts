import { describe, expect, it } from 'vitest';
import { BrokerState, type BrokerCommand, type CommandOutcome, type Delivery, type SendOutcome } from './broker-state.js';
import { encodeMessages, PayloadKind, readHeader, readMessageAt, readRouting, type MessageInput } from './entry-codec.js';
import { defaultTopicConfig } from './names.js';
import { formatTransactionId, parseTransactionId } from './transaction-id.js';
import type { TransactionCheckPolicy } from './transactions.js';

const message = (topic: string, messageId: string, extra: Partial<MessageInput> = {}): MessageInput => ({
  topic, messageId, tag: '', keys: [], messageGroup: '', queueId: -1, bornTimestamp: 1, bornHost: 'h', properties: {}, body: Buffer.from(messageId), ...extra,
});

const policy: TransactionCheckPolicy = { checkAfterMs: 6_000, checkIntervalMs: 5_000, checksMax: 2 };

class Harness {
  readonly state: BrokerState;
  index = 0;
  constructor(public timeMs = 1_000, openMax = 100) {
    this.state = new BrokerState({ dedupWindowMs: 60_000, dedupEntriesMax: 100, transactions: { openMax, endedKeepMs: 60_000, endedMax: 100 } });
  }
  send(half: boolean, ...messages: MessageInput[]): SendOutcome[] {
    const payload = encodeMessages({ timeMs: this.timeMs }, messages, half);
    return this.state.applyMessages(++this.index, this.state.advanceClock(this.timeMs), readRouting(payload), half);
  }
  run(command: BrokerCommand): CommandOutcome {
    return this.state.applyCommand(++this.index, this.state.advanceClock(this.timeMs), command);
  }
  end(outcome: SendOutcome | undefined, messageId: string, commit: boolean, topic = 't'): CommandOutcome {
    const half = outcome?.half;
    if (half === undefined) throw new Error('not a half');
    return this.run({ op: 'txn.end', topic, ...half, messageId, commit });
  }
  receive(topic = 't'): Delivery[] {
    const outcome = this.run({ op: 'receive', group: 'g', topic, queueId: -1, tags: null, batch: 32, invisibleMs: 10_000, autoRenew: false, clientId: 'c' });
    if (outcome.kind !== 'received') throw new Error(JSON.stringify(outcome));
    return [...outcome.deliveries];
  }
}

describe('transactions (F9) in the replicated state', () => {
  const topic = { ...defaultTopicConfig('t', 'MIXED'), readQueues: 2, writeQueues: 2 };

  it('keeps a half message out of every queue until COMMIT puts it in the queue chosen at send; ROLLBACK drops it', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: topic });
    const [a, b] = h.send(true, message('t', 'a'), message('t', 'b'));
    expect(a).toEqual({ code: 'ok', queueId: 0, offset: -1, duplicate: false, half: { logIndex: 2, position: 0 } });
    expect(b?.half).toEqual({ logIndex: 2, position: 1 });
    expect(h.state.maxOffsets('t')).toEqual([0, 0]);
    expect([h.state.openTransactions, h.state.pendingTimersFrom(), h.state.firstNeededLogIndex]).toEqual([2, 2, 1]);
    expect(h.receive()).toEqual([]);
    expect(h.end(a, 'a', true)).toEqual({ kind: 'txn-ended', topic: 't', stored: true });
    expect(h.end(b, 'b', false)).toEqual({ kind: 'txn-ended', topic: 't', stored: false });
    expect(h.state.maxOffsets('t')).toEqual([1, 0]);
    const [delivered] = h.receive();
    expect([delivered?.logIndex, delivered?.position, delivered?.queueId, delivered?.storeTimeMs]).toEqual([2, 0, 0, 1_000]);
    expect(h.state.openTransactions).toBe(0);
    // The committed message's body is pinned while its queue holds it (it sits below later entries).
    expect(h.state.timerPinnedFrom()).toBe(2);
    expect(h.state.pendingTimersFrom()).toBeUndefined();
  });

  it('answers a repeated end alike, refuses a contradicting one, an unknown one and one naming another message', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: topic });
    const [a] = h.send(true, message('t', 'a'));
    expect(h.end(a, 'other', true)).toMatchObject({ kind: 'error', code: 'invalid-handle' });
    expect(h.end(a, 'a', true, 'u')).toMatchObject({ kind: 'error', code: 'invalid-handle' });
    expect(h.state.openTransactions).toBe(1);
    expect(h.end(a, 'a', true)).toEqual({ kind: 'txn-ended', topic: 't', stored: true });
    expect(h.end(a, 'a', true)).toEqual({ kind: 'txn-ended', topic: '', stored: false });
    expect(h.end(a, 'a', false)).toMatchObject({ kind: 'error', code: 'already-ended', message: expect.stringContaining('already committed') });
    expect(h.run({ op: 'txn.end', topic: 't', logIndex: 99, position: 0, messageId: 'a', commit: true })).toMatchObject({ kind: 'error', code: 'not-pending' });
    expect(h.run({ op: 'txn.end', topic: 't', logIndex: -1, position: 0, messageId: 'a', commit: true })).toMatchObject({ kind: 'error', code: 'bad-request' });
    expect(h.state.maxOffsets('t')).toEqual([1, 0]);
    // Forgotten after endedKeepMs: then unknown.
    h.timeMs += 61_000;
    expect(h.end(a, 'a', true)).toMatchObject({ kind: 'error', code: 'not-pending' });
  });

  it('does not store a committed message twice when its id was stored already (a retried half send)', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: topic });
    const [first] = h.send(true, message('t', 'a'));
    const [retry] = h.send(true, message('t', 'a'));
    expect(h.state.openTransactions).toBe(2);
    expect(h.end(first, 'a', true)).toMatchObject({ stored: true });
    expect(h.end(retry, 'a', true)).toEqual({ kind: 'txn-ended', topic: 't', stored: false });
    expect(h.state.maxOffsets('t').reduce((x, y) => x + y)).toBe(1);
  });

  it('checks a transaction back after checkAfterMs, then every checkIntervalMs, and rolls it back after checksMax', () => {
    const h = new Harness();
    h.run({ op: 'topic.put', config: topic });
    const [a] = h.send(true, message('t', 'a'));
    const check = (): CommandOutcome => h.run({ op: 'txn.check', throughMs: h.timeMs, policy });
    h.timeMs = 6_999;
    expect(h.state.transactionCheckDue(h.timeMs, policy)).toBe(false);
    expect(check()).toEqual({ kind: 'txn-checked', checks: [], expired: [] });
    h.timeMs = 7_000;
    expect(h.state.transactionCheckDue(h.timeMs, policy)).toBe(true);
    const one = { logIndex: 2, position: 0, messageId: 'a', topic: 't', storeTimeMs: 1_000 };
    expect(check()).toEqual({ kind: 'txn-checked', checks: [{ ...one, checks: 1 }], expired: [] });
    expect(check()).toEqual({ kind: 'txn-checked', checks: [], expired: [] });
    h.timeMs = 12_000;
    expect(check()).toEqual({ kind: 'txn-checked', checks: [{ ...one, checks: 2 }], expired: [] });
    h.timeMs = 17_000;
    expect(check()).toEqual({ kind: 'txn-checked', checks: [], expired: [{ ...one, checks: 2 }] });
    expect(h.state.openTransactions).toBe(0);
    expect(h.end(a, 'a', true)).toMatchObject({ kind: 'error', code: 'already-ended', message: expect.stringContaining('after its last unanswered check-back') });
    // A check never goes beyond the entry's own time, and a bad policy is refused.
    const [b] = h.send(true, message('t', 'b'));
    expect(h.run({ op: 'txn.check', throughMs: h.timeMs + 60_000, policy })).toEqual({ kind: 'txn-checked', checks: [], expired: [] });
    expect(h.run({ op: 'txn.check', throughMs: h.timeMs, policy: { ...policy, checkIntervalMs: 0 } })).toMatchObject({ kind: 'error', code: 'bad-request' });
    expect(h.end(b, 'b', false)).toMatchObject({ kind: 'txn-ended' });
  });

  it('refuses a half beyond openMax, and rolls back a commit whose topic was deleted (or deleted and created again)', () => {
    const h = new Harness(1_000, 2);
    h.run({ op: 'topic.put', config: topic });
    const [a, b, c] = h.send(true, message('t', 'a'), message('t', 'b'), message('t', 'c'));
    expect([a?.code, b?.code, c?.code]).toEqual(['ok', 'ok', 'too-many-transactions']);
    h.run({ op: 'topic.delete', name: 't' });
    h.run({ op: 'topic.put', config: topic });
    expect(h.end(a, 'a', true)).toMatchObject({ kind: 'error', code: 'topic-not-found' });
    expect(h.end(a, 'a', false)).toEqual({ kind: 'txn-ended', topic: '', stored: false });
    expect(h.state.maxOffsets('t')).toEqual([0, 0]);
  });

  it('encodes a half batch as kind HalfMessages, read back as transactional', () => {
    const payload = encodeMessages({ timeMs: 5 }, [message('t', 'a')], true);
    expect(readHeader(payload).kind).toBe(PayloadKind.HalfMessages);
    expect(readMessageAt(payload, 0).transactional).toBe(true);
    expect(readMessageAt(encodeMessages({ timeMs: 5 }, [message('t', 'a')]), 0).transactional).toBeUndefined();
    expect(() => encodeMessages({ timeMs: 5 }, [message('t', 'a', { deliveryTimeMs: 9 })], true)).toThrow();
  });

  it('round-trips transaction ids and refuses text that is not one', () => {
    const id = { brokerGroup: 'g-1', logIndex: 123_456, position: 7 };
    expect(parseTransactionId(formatTransactionId(id))).toEqual(id);
    for (const bad of ['', 'x', 't1~g~1', 't1~~1~0', 't1~g~0~0', 't1~g~1~-1', 't1~g~1.5~0', 't2~g~1~0', 't1~g~1~0~x']) expect(parseTransactionId(bad), bad).toBeUndefined();
  });
});
