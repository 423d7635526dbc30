import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BrokerState, type BrokerCommand, type BrokerStateLimits, type CommandOutcome, type HandleRef, type IndexedRouting, type SendOutcome } from './broker-state.js';
import type { MessageRouting } from './entry-codec.js';
import { defaultTopicConfig, dlqTopicOf, permReadWrite, type TopicType } from './names.js';
import { sealSecret } from '../../util/secret-seal.js';
import { SnapshotFormatError, sha256Hex, snapshotVersion } from './state-snapshot.js';

const limits: BrokerStateLimits = { dedupWindowMs: 20_000, dedupEntriesMax: 6, transactions: { openMax: 5, endedKeepMs: 30_000, endedMax: 4 } };
const groups = ['g', 'h'];
const topics = ['t', 'u', 'x', dlqTopicOf('g')];

type Op = { readonly dtMs: number } & (
  | { readonly kind: 'topic.put'; readonly topic: string; readonly readQueues: number; readonly writeQueues: number; readonly perm: number; readonly messageType: TopicType }
  | { readonly kind: 'topic.delete'; readonly topic: string }
  | { readonly kind: 'group.put'; readonly group: string; readonly maxDeliveryAttempts: number; readonly fifo: boolean }
  | { readonly kind: 'send'; readonly messages: readonly (IndexedRouting & { readonly delayMs?: number })[]; readonly half?: boolean }
  | { readonly kind: 'txn.end'; readonly pick: number; readonly commit: boolean; readonly wrongId: boolean }
  | { readonly kind: 'txn.check'; readonly aheadMs: number; readonly checkAfterMs: number; readonly checkIntervalMs: number; readonly checksMax: number }
  | { readonly kind: 'fire'; readonly aheadMs: number }
  | { readonly kind: 'cancel'; readonly pick: number; readonly stale: boolean }
  | { readonly kind: 'command'; readonly command: BrokerCommand }
  | { readonly kind: 'ack' | 'invisible' | 'dlq'; readonly pick: number; readonly stale: boolean; readonly invisibleMs: number }
  | { readonly kind: 'renew'; readonly picks: readonly number[]; readonly invisibleMs: number }
);

const group = fc.constantFrom(...groups);
const topic = fc.constantFrom(...topics);
const clientId = fc.constantFrom('c1', 'c2');
const dtMs = fc.oneof(fc.integer({ min: 0, max: 15_000 }), fc.constant(0), fc.integer({ min: -3_000, max: 0 }));

const topicPutOp = fc.record({
  dtMs, kind: fc.constant('topic.put' as const), topic: fc.constantFrom('t', 'u'), readQueues: fc.integer({ min: 1, max: 3 }),
  writeQueues: fc.integer({ min: 1, max: 3 }), perm: fc.constantFrom(6, 6, 6, 2, 4, 0), messageType: fc.constantFrom<TopicType>('NORMAL', 'FIFO', 'MIXED'),
});
const topicDeleteOp = fc.record({ dtMs, kind: fc.constant('topic.delete' as const), topic });
const groupPutOp = fc.record({ dtMs, kind: fc.constant('group.put' as const), group, maxDeliveryAttempts: fc.integer({ min: 1, max: 3 }), fifo: fc.boolean() });
const sendOp = fc.record({
  dtMs, kind: fc.constant('send' as const),
  messages: fc.array(fc.record({
    topic: fc.constantFrom('t', 't', 'u', 'x'), messageId: fc.constantFrom('m0', 'm1', 'm2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8', 'm9'),
    tag: fc.constantFrom('', 'A', 'B', 'C'), messageGroup: fc.constantFrom('', '', 'k1', 'k2'), queueId: fc.integer({ min: -1, max: 3 }), bodyBytes: fc.constant(1),
    // Keys for the message index (snapshots carry it: a restored state must index alike).
    keys: fc.array(fc.constantFrom('order-1', 'order-2', 'customer', ''), { maxLength: 2 }),
    // Mostly at once; some delayed (a few beyond the maximum delay of 3 days, a few already due).
    delayMs: fc.oneof({ arbitrary: fc.constant(0), weight: 4 }, { arbitrary: fc.integer({ min: 1, max: 40_000 }), weight: 2 }, { arbitrary: fc.constantFrom(-500, 4 * 24 * 3_600_000), weight: 1 }),
  }), { minLength: 1, maxLength: 5 }),
});
const halfSendOp = fc.record({
  dtMs, kind: fc.constant('send' as const), half: fc.constant(true),
  messages: fc.array(fc.record({
    topic: fc.constantFrom('t', 'u', 'x'), messageId: fc.constantFrom('m0', 'm1', 'm2', 'h0', 'h1'), tag: fc.constantFrom('', 'A'), messageGroup: fc.constant(''),
    queueId: fc.integer({ min: -1, max: 3 }), bodyBytes: fc.constant(1),
  }), { minLength: 1, maxLength: 3 }),
});
const txnEndOp = fc.record({ dtMs, kind: fc.constant('txn.end' as const), pick: fc.nat(), commit: fc.boolean(), wrongId: fc.boolean() });
const txnCheckOp = fc.record({
  dtMs, kind: fc.constant('txn.check' as const), aheadMs: fc.integer({ min: -2_000, max: 2_000 }), checkAfterMs: fc.integer({ min: 0, max: 10_000 }),
  checkIntervalMs: fc.integer({ min: 1, max: 10_000 }), checksMax: fc.integer({ min: 0, max: 3 }),
});
const fireOp = fc.record({ dtMs, kind: fc.constant('fire' as const), aheadMs: fc.integer({ min: -5_000, max: 5_000 }) });
const cancelOp = fc.record({ dtMs, kind: fc.constant('cancel' as const), pick: fc.nat(), stale: fc.boolean() });
const receiveOp = fc.record({
  dtMs, kind: fc.constant('command' as const),
  command: fc.record({
    op: fc.constant('receive' as const), group, topic, queueId: fc.integer({ min: -1, max: 2 }),
    tags: fc.constantFrom<string[] | null>(null, ['A'], ['A', 'B']), batch: fc.integer({ min: 1, max: 5 }), invisibleMs: fc.integer({ min: 0, max: 20_000 }),
    autoRenew: fc.boolean(), clientId,
  }),
});
const handleOpOp = fc.record({ dtMs, kind: fc.constantFrom('ack' as const, 'invisible' as const, 'dlq' as const), pick: fc.nat(), stale: fc.boolean(), invisibleMs: fc.integer({ min: 0, max: 20_000 }) });
const renewOp = fc.record({ dtMs, kind: fc.constant('renew' as const), picks: fc.array(fc.nat(), { maxLength: 4 }), invisibleMs: fc.integer({ min: 0, max: 30_000 }) });
const releaseOp = fc.record({ dtMs, kind: fc.constant('command' as const), command: fc.record({ op: fc.constant('release' as const), clientId }) });
const offsetUpdateOp = fc.record({
  dtMs, kind: fc.constant('command' as const),
  command: fc.record({ op: fc.constant('offset.update' as const), group, topic, queueId: fc.integer({ min: 0, max: 3 }), offset: fc.integer({ min: -1, max: 12 }) }),
});
const offsetResetOp = fc.record({
  dtMs, kind: fc.constant('command' as const),
  command: fc.record({ op: fc.constant('offset.reset' as const), group, topic, timeMs: fc.integer({ min: 0, max: 200_000 }) }),
});

/** Weighted so that histories are mostly traffic: sends, receives and handle operations. */
const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: topicPutOp, weight: 1 },
  { arbitrary: topicDeleteOp, weight: 1 },
  { arbitrary: groupPutOp, weight: 1 },
  { arbitrary: sendOp, weight: 5 },
  { arbitrary: receiveOp, weight: 5 },
  { arbitrary: handleOpOp, weight: 4 },
  { arbitrary: renewOp, weight: 2 },
  { arbitrary: releaseOp, weight: 1 },
  { arbitrary: offsetUpdateOp, weight: 1 },
  { arbitrary: offsetResetOp, weight: 1 },
  { arbitrary: fireOp, weight: 2 },
  { arbitrary: cancelOp, weight: 1 },
  { arbitrary: halfSendOp, weight: 2 },
  { arbitrary: txnEndOp, weight: 2 },
  { arbitrary: txnCheckOp, weight: 1 },
);

/** Topics with several queues exist from the start, so most traffic lands somewhere. */
const setup: readonly Op[] = [
  { dtMs: 0, kind: 'topic.put', topic: 't', readQueues: 3, writeQueues: 3, perm: permReadWrite, messageType: 'MIXED' },
  { dtMs: 0, kind: 'topic.put', topic: 'u', readQueues: 2, writeQueues: 2, perm: permReadWrite, messageType: 'MIXED' },
];

/** Byte equality, fast for megabytes (toEqual walks a typed array element by element), naming the first difference. */
function expectSameBytes(actual: Uint8Array, expected: Uint8Array): void {
  if (Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(expected)) return;
  let at = 0;
  while (at < actual.byteLength && actual[at] === expected[at]) at++;
  expect.fail(`snapshots differ: ${actual.byteLength} vs ${expected.byteLength} bytes, first difference at offset ${at}`);
}

/** Every read a service makes of the state, so two states are compared by behaviour as well as by bytes. */
function observe(state: BrokerState): unknown {
  const now = state.nowMs;
  return {
    now,
    topics: state.topicList(),
    groups: state.groupList(),
    maxOffsets: topics.map((t) => state.maxOffsets(t)),
    progress: groups.map((g) => state.groupProgress(g)),
    committed: groups.flatMap((g) => topics.flatMap((t) => [0, 1, 2].map((q) => state.committedOffset(g, t, q)))),
    mayDeliver: groups.flatMap((g) => topics.flatMap((t) => [-1, 0, 1].map((q) => state.mayDeliver(g, t, q, now + 5_000)))),
    nextDeadline: groups.flatMap((g) => topics.map((t) => state.nextDeadline(g, t))),
    renewalsDue: state.renewalsDue(now + 30_000, (id) => id !== 'c2'),
    autoRenewClients: [...state.autoRenewClients()],
    tags: [0, 1, 2, 3, 4].map((id) => state.tagName(id)),
    timers: [state.pendingTimers, state.nextTimerDueMs(), state.timerPinnedFrom(), state.firstNeededLogIndex, state.retainedFrom],
    transactions: [state.openTransactions, state.openTransactionList(), state.pendingTimersFrom(), state.transactionCheckDue(now + 5_000, { checkAfterMs: 1_000, checkIntervalMs: 1_000, checksMax: 2 })],
    newest: [0, 5, 20, 60, 1_000].map((index) => state.newestStoreTimeThrough(index)),
  };
}

/** Applies ops to one or more states in lockstep, with one log index and one leader clock. */
class Run {
  index = 0;
  timeMs = 1_000;
  readonly handles: HandleRef[] = [];
  /** Delayed sends as a recall names them. */
  readonly delayed: { logIndex: number; position: number; dueMs: number }[] = [];
  /** Half messages as EndTransaction names them. */
  readonly halves: { logIndex: number; position: number; messageId: string; topic: string }[] = [];

  constructor(public states: BrokerState[]) {}

  step(op: Op): unknown[] {
    this.index++;
    this.timeMs += op.dtMs;
    const outcomes = this.states.map((state) => this.applyTo(state, this.resolve(op)));
    const first = outcomes[0] as CommandOutcome | undefined;
    if (op.kind === 'command' && op.command.op === 'receive' && first?.kind === 'received') {
      for (const d of first.deliveries) this.handles.push({ group: op.command.group, topic: d.topic, queueId: d.queueId, offset: d.offset, seq: d.seq });
    }
    if (op.kind === 'send') {
      (outcomes[0] as SendOutcome[]).forEach((outcome, i) => {
        if (outcome.delayed !== undefined) this.delayed.push(outcome.delayed);
        const message = op.messages[i] as MessageRouting;
        if (outcome.half !== undefined) this.halves.push({ ...outcome.half, messageId: message.messageId, topic: message.topic });
      });
    }
    return outcomes;
  }

  private resolve(op: Op): MessageRouting[] | BrokerCommand | { half: MessageRouting[] } {
    const handle = (pick: number, stale: boolean): HandleRef => {
      const ref = this.handles[pick % Math.max(1, this.handles.length)] ?? { group: 'g', topic: 't', queueId: 0, offset: 0, seq: 1 };
      return stale ? { ...ref, seq: ref.seq - 1 } : ref;
    };
    switch (op.kind) {
      case 'topic.put': return { op: 'topic.put', config: { name: op.topic, readQueues: op.readQueues, writeQueues: op.writeQueues, perm: op.perm, messageType: op.messageType } };
      case 'topic.delete': return { op: 'topic.delete', name: op.topic };
      case 'group.put': return { op: 'group.put', config: { name: op.group, maxDeliveryAttempts: op.maxDeliveryAttempts, fifo: op.fifo } };
      case 'send': {
        const messages = op.messages.map(({ delayMs = 0, ...m }) => ({ ...m, deliveryTimeMs: delayMs === 0 ? 0 : this.timeMs + delayMs }));
        return op.half === true ? { half: messages } : messages;
      }
      case 'txn.end': {
        const ref = this.halves[op.pick % Math.max(1, this.halves.length)] ?? { logIndex: 1, position: 0, messageId: 'm0', topic: 't' };
        return { op: 'txn.end', ...ref, messageId: op.wrongId ? `${ref.messageId}-x` : ref.messageId, commit: op.commit };
      }
      case 'txn.check': return { op: 'txn.check', throughMs: this.timeMs + op.aheadMs, policy: { checkAfterMs: op.checkAfterMs, checkIntervalMs: op.checkIntervalMs, checksMax: op.checksMax } };
      case 'fire': return { op: 'timer.fire', throughMs: this.timeMs + op.aheadMs };
      case 'cancel': {
        const ref = this.delayed[op.pick % Math.max(1, this.delayed.length)] ?? { logIndex: 1, position: 0, dueMs: 1 };
        return { op: 'timer.cancel', ...ref, dueMs: ref.dueMs + (op.stale ? 1 : 0) };
      }
      case 'command': return op.command;
      case 'ack': return { op: 'ack', ...handle(op.pick, op.stale) };
      case 'dlq': return { op: 'dlq', ...handle(op.pick, op.stale) };
      case 'invisible': return { op: 'invisible', invisibleMs: op.invisibleMs, ...handle(op.pick, op.stale) };
      case 'renew': return { op: 'renew', items: op.picks.map((pick) => handle(pick, false)), invisibleMs: op.invisibleMs };
    }
  }

  private applyTo(state: BrokerState, input: MessageRouting[] | BrokerCommand | { half: MessageRouting[] }): unknown {
    const timeMs = state.advanceClock(this.timeMs);
    if ('half' in input) return state.applyMessages(this.index, timeMs, input.half, true);
    return Array.isArray(input) ? state.applyMessages(this.index, timeMs, input) : state.applyCommand(this.index, timeMs, input);
  }
}

describe('broker state snapshots', () => {
  it('restores a state that behaves exactly like the original from any point of any history', () => {
    fc.assert(fc.property(fc.array(opArbitrary, { minLength: 5, maxLength: 120, size: 'max' }), fc.nat(), (randomOps, splitSeed) => {
      const ops = [...setup, ...randomOps];
      const split = splitSeed % (ops.length + 1);
      const a = new BrokerState(limits);
      const run = new Run([a]);
      for (const op of ops.slice(0, split)) run.step(op);

      const bytes = a.snapshot();
      const b = BrokerState.restore(bytes, limits);
      expectSameBytes(b.snapshot(), bytes);
      expect(b.digest()).toBe(a.digest());
      expect(observe(b)).toEqual(observe(a));

      run.states = [a, b];
      for (const op of ops.slice(split)) {
        const [fromA, fromB] = run.step(op);
        expect(fromB).toEqual(fromA);
        expect(observe(b)).toEqual(observe(a));
      }
      expectSameBytes(b.snapshot(), a.snapshot());
      expect(b.digest()).toBe(a.digest());
    }), { numRuns: 300 });
  });

  it('round-trips an empty state', () => {
    const empty = new BrokerState();
    const bytes = empty.snapshot();
    const restored = BrokerState.restore(bytes);
    expectSameBytes(restored.snapshot(), bytes);
    expect(restored.digest()).toBe(empty.digest());
    expect(observe(restored)).toEqual(observe(empty));
    expect(restored.tagName(0)).toBe('');
  });

  it('gives equal bytes for equal states whatever the order of maps whose order is not behaviour', () => {
    const build = (groupOrder: string[], offsetOrder: number[]): BrokerState => {
      const state = new BrokerState();
      let index = 0;
      state.applyCommand(++index, 1_000, { op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 3, writeQueues: 3 } });
      for (const name of groupOrder) state.applyCommand(++index, 1_000, { op: 'group.put', config: { name, maxDeliveryAttempts: 3, fifo: false } });
      for (const queueId of offsetOrder) state.applyCommand(++index, 1_000, { op: 'offset.update', group: 'a', topic: 't', queueId, offset: 0 });
      return state;
    };
    const one = build(['a', 'b', 'c'], [0, 1, 2]);
    const other = build(['c', 'a', 'b'], [2, 0, 1]);
    expectSameBytes(other.snapshot(), one.snapshot());
    expect(other.digest()).toBe(one.digest());
  });

  it('keeps the insertion order of the dedup window, which expiry depends on', () => {
    const sendAll = (ids: string[]): BrokerState => {
      const state = new BrokerState({ dedupWindowMs: 60_000, dedupEntriesMax: 2 });
      state.applyCommand(1, 1_000, { op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 1, writeQueues: 1 } });
      ids.forEach((id, i) => state.applyMessages(2 + i, 1_000, [{ topic: 't', messageId: id, tag: '', messageGroup: '', queueId: 0, bodyBytes: 1 }]));
      return state;
    };
    const state = sendAll(['a', 'b']);
    const restored = BrokerState.restore(state.snapshot(), { dedupWindowMs: 60_000, dedupEntriesMax: 2 });
    // A third id evicts the oldest ('a') from both, so 'a' is stored again and 'b' is a duplicate.
    for (const s of [state, restored]) {
      s.applyMessages(10, 1_000, [{ topic: 't', messageId: 'c', tag: '', messageGroup: '', queueId: 0, bodyBytes: 1 }]);
      s.applyMessages(11, 1_000, [{ topic: 't', messageId: 'x', tag: '', messageGroup: '', queueId: 0, bodyBytes: 1 }]);
      expect(s.applyMessages(12, 1_000, [{ topic: 't', messageId: 'c', tag: '', messageGroup: '', queueId: 0, bodyBytes: 1 }])[0]?.duplicate).toBe(true);
    }
    expectSameBytes(restored.snapshot(), state.snapshot());
    expect(sendAll(['b', 'a']).snapshot()).not.toEqual(sendAll(['a', 'b']).snapshot());
  });

  it('keeps strings exactly, lone surrogates included', () => {
    const state = new BrokerState();
    state.applyCommand(1, 1_000, { op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 1, writeQueues: 1 } });
    const tags = ['\ud800', 'é', '日本', '\udc00x', 'a'.repeat(100_000)];
    state.applyMessages(2, 1_000, tags.map((tag, i) => ({ topic: 't', messageId: `id-${tag.slice(0, 4)}-${i}`, tag, messageGroup: '', queueId: 0, bodyBytes: 1 })));
    const restored = BrokerState.restore(state.snapshot());
    expect(tags.map((_, i) => restored.tagName(i + 1))).toEqual(tags);
    expectSameBytes(restored.snapshot(), state.snapshot());
  });

  it('carries users and policies: the restored state authorizes alike, and the digest sees a grant', () => {
    const state = new BrokerState();
    const secretSealed = sealSecret('s3cret', Buffer.alloc(32, 7), Buffer.alloc(12, 1)).toString('base64');
    expect(state.applyCommand(1, 1_000, { op: 'access', command: { type: 'user.create', name: 'alice', secretSealed, kind: 'normal' } })).toEqual({ kind: 'done' });
    const before = state.digest();
    expect(state.applyCommand(2, 1_000, { op: 'access', command: { type: 'acl.grant', user: 'alice', resource: 'Topic:orders', decision: 'Allow', actions: ['Pub'] } })).toEqual({ kind: 'done' });
    expect(state.digest()).not.toBe(before);
    const restored = BrokerState.restore(state.snapshot());
    expect(restored.access.authorize('alice', 'Topic:orders', 'Pub').allowed).toBe(true);
    expect(restored.access.authorize('alice', 'Topic:orders', 'Sub').allowed).toBe(false);
    expect(restored.access.user('alice')?.secretSealed.toString('base64')).toBe(secretSealed);
    expectSameBytes(restored.snapshot(), state.snapshot());
    // A refused command (a second alice, a malformed command) changes nothing.
    const digest = state.digest();
    expect(state.applyCommand(3, 1_000, { op: 'access', command: { type: 'user.create', name: 'alice', secretSealed, kind: 'super' } })).toMatchObject({ kind: 'error', code: 'access-refused' });
    expect(state.applyCommand(4, 1_000, { op: 'access', command: { type: 'acl.grant', user: 'alice' } as never })).toMatchObject({ kind: 'error', code: 'access-refused' });
    expect(state.digest()).toBe(digest);
  });

  it('lists every field of BrokerState that a snapshot must hold (a new field needs the format extended)', () => {
    expect(Object.keys(new BrokerState()).sort()).toEqual(
      ['accessTable', 'clockMs', 'dedup', 'dedupRecords', 'expiredUnconsumed', 'firedRuns', 'groups', 'index', 'indexStore', 'limits', 'offsets', 'popQueues', 'queueRecords', 'receiveCursor', 'retainedFromIndex', 'tagIds', 'tagNames', 'timers', 'topics', 'transactions'],
    );
  });
});

describe('malformed snapshots', () => {
  const sample = (): Uint8Array => {
    const state = new BrokerState(limits);
    const run = new Run([state]);
    run.step({ dtMs: 0, kind: 'topic.put', topic: 't', readQueues: 2, writeQueues: 2, perm: permReadWrite, messageType: 'NORMAL' });
    run.step({ dtMs: 0, kind: 'group.put', group: 'g', maxDeliveryAttempts: 1, fifo: false });
    run.step({ dtMs: 10, kind: 'send', messages: ['a', 'b', 'c'].map((id) => ({ topic: 't', messageId: id, tag: id === 'b' ? 'B' : '', messageGroup: '', queueId: -1, bodyBytes: 1 })) });
    run.step({ dtMs: 10, kind: 'command', command: { op: 'receive', group: 'g', topic: 't', queueId: -1, tags: null, batch: 2, invisibleMs: 100, autoRenew: true, clientId: 'c1' } });
    run.step({ dtMs: 10, kind: 'ack', pick: 1, stale: false, invisibleMs: 0 });
    run.step({ dtMs: 500, kind: 'command', command: { op: 'receive', group: 'g', topic: 't', queueId: -1, tags: null, batch: 5, invisibleMs: 100, autoRenew: false, clientId: 'c2' } });
    run.step({ dtMs: 0, kind: 'command', command: { op: 'offset.update', group: 'h', topic: 't', queueId: 1, offset: 1 } });
    return state.snapshot();
  };

  it('throws a SnapshotFormatError for every truncation', () => {
    const bytes = sample();
    expect(bytes.byteLength).toBeGreaterThan(100);
    for (let cut = 0; cut < bytes.byteLength; cut++) {
      expect(() => BrokerState.restore(bytes.subarray(0, cut), limits), `cut at ${cut}`).toThrow(SnapshotFormatError);
    }
    expect(() => BrokerState.restore(bytes.subarray(0, bytes.byteLength - 1))).toThrow(/broker snapshot is truncated: .* at offset \d+ but only \d+ remain/);
  });

  it('names an unknown format version, a foreign file and trailing bytes', () => {
    const bytes = sample();
    const flipped = Uint8Array.from(bytes);
    flipped[4] = (flipped[4] as number) ^ 0xff;
    expect(() => BrokerState.restore(flipped)).toThrow(`broker snapshot format version ${snapshotVersion ^ 0xff} is not supported (this build reads versions 4 to ${snapshotVersion})`);
    // Version 3 (no timers, no fired runs) is refused by name; version 4 is read as a state without transactions, 5 without a message index, 6 without access control.
    expect(snapshotVersion).toBe(7);
    const older = Uint8Array.from(bytes);
    older[4] = 3;
    expect(() => BrokerState.restore(older)).toThrow('broker snapshot format version 3 is not supported (this build reads versions 4 to 7)');
    const foreign = Uint8Array.from(bytes);
    foreign[0] = 0;
    expect(() => BrokerState.restore(foreign)).toThrow(/not a broker snapshot/);
    const longer = new Uint8Array(bytes.byteLength + 1);
    longer.set(bytes);
    expect(() => BrokerState.restore(longer)).toThrow('broker snapshot has 1 bytes after its end');
  });

  /** Version 7 appends the access-control section: u32 length, then the table's encoding. */
  const accessSectionBytes = (state: BrokerState): number => 4 + state.access.encode().byteLength;
  /** Version 6 appends the message index section: u8 with records, then (memory index) its extent (50 bytes with the flag) and 28 bytes an entry. */
  const indexSectionBytes = (state: BrokerState): number => 50 + 28 * state.messageIndex.extent.entryCount;
  const emptyIndexSection = (): Uint8Array => {
    const empty = new BrokerState().snapshot();
    const end = empty.byteLength - accessSectionBytes(new BrokerState());
    return empty.subarray(end - 50, end);
  };
  const concat = (a: Uint8Array, b: Uint8Array): Uint8Array => { const out = new Uint8Array(a.byteLength + b.byteLength); out.set(a); out.set(b, a.byteLength); return out; };
  /** Version 6 bytes as this build writes them: an empty access-control section appended, version 7. */
  const asVersion7 = (v6: Uint8Array): Uint8Array => { const out = concat(v6, emptyAccessSection()); out[4] = 7; return out; };

  /** A sample as version 6 wrote it: without the access-control section. */
  const sampleV6 = (): Uint8Array => {
    const bytes = sample();
    const v6 = Uint8Array.from(bytes.subarray(0, bytes.byteLength - accessSectionBytes(BrokerState.restore(bytes, limits))));
    v6[4] = 6;
    return v6;
  };
  const emptyAccessSection = (): Uint8Array => { const empty = new BrokerState().snapshot(); return empty.subarray(empty.byteLength - accessSectionBytes(new BrokerState())); };

  it('reads a version 6 snapshot (an upgraded node) as a state without users or policies', () => {
    const v6 = sampleV6();
    const restored = BrokerState.restore(v6, limits);
    expect(restored.access.listUsers()).toEqual([]);
    const rewritten = concat(v6, emptyAccessSection());
    rewritten[4] = 7;
    expectSameBytes(restored.snapshot(), rewritten);
  });

  it('reads a version 5 snapshot (an upgraded node) as a state whose message index is new and empty', () => {
    const bytes = sampleV6();
    const original = BrokerState.restore(bytes, limits);
    expect(original.messageIndex.extent.entryCount).toBeGreaterThan(3);
    const withoutIndex = bytes.subarray(0, bytes.byteLength - indexSectionBytes(original));
    const v5 = Uint8Array.from(withoutIndex);
    v5[4] = 5;
    const restored = BrokerState.restore(v5, limits);
    expect(restored.messageIndex.extent).toEqual({ ...original.messageIndex.extent, entryCount: 0, lastLogIndex: 0, lastTimeMs: 0, releasedBelow: 0, firstFile: 0 });
    expectSameBytes(restored.snapshot(), asVersion7(concat(withoutIndex, emptyIndexSection())));
    // A truncated index section is still an error in version 6.
    expect(() => BrokerState.restore(bytes.subarray(0, bytes.byteLength - indexSectionBytes(original) + 1), limits)).toThrow(SnapshotFormatError);
  });

  it('reads a version 4 snapshot (an upgraded node) as a state without transactions or message index', () => {
    const bytes = sampleV6();
    const withoutIndex = bytes.subarray(0, bytes.byteLength - indexSectionBytes(BrokerState.restore(bytes, limits)));
    // Version 5 appends the transaction section: with none open or ended, two zero counts.
    expect([...withoutIndex.subarray(withoutIndex.byteLength - 8)]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    const v4 = Uint8Array.from(withoutIndex.subarray(0, withoutIndex.byteLength - 8));
    v4[4] = 4;
    const restored = BrokerState.restore(v4, limits);
    expectSameBytes(restored.snapshot(), asVersion7(concat(withoutIndex, emptyIndexSection())));
    expect(restored.openTransactions).toBe(0);
  });

  it('rejects a count far beyond the bytes without allocating for it', () => {
    const state = new BrokerState();
    state.applyCommand(1, 1_000, { op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 1, writeQueues: 1 } });
    const bytes = state.snapshot();
    // magic, version, withRecords, clock, tag count, the empty tag, topic count, config JSON, created at, round robin: then the queue count, the queue's first offset, then its message count.
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const json = JSON.stringify(state.topic('t'));
    const queueCountAt = 4 + 1 + 1 + 8 + 4 + 4 + 4 + 4 + json.length + 8 + 8;
    expect(view.getUint32(queueCountAt, true)).toBe(1);
    view.setUint32(queueCountAt + 4 + 8, 0xffff_fff0, true);
    expect(() => BrokerState.restore(bytes)).toThrow(/consume queue of 4294967280 messages needs/);
  });
});

describe('large states', () => {
  const fill = (messages: number): BrokerState => {
    const state = new BrokerState({ dedupWindowMs: 60_000, dedupEntriesMax: 1_000 });
    state.applyCommand(1, 1_000, { op: 'topic.put', config: defaultTopicConfig('big') });
    for (let sent = 0, index = 2; sent < messages; index++) {
      const batch: MessageRouting[] = [];
      for (let i = 0; i < 1_000 && sent < messages; i++, sent++) batch.push({ topic: 'big', messageId: `m${sent}`, tag: sent % 3 === 0 ? 'A' : '', messageGroup: '', queueId: -1, bodyBytes: 100 });
      state.applyMessages(index, 1_000 + index, batch);
    }
    return state;
  };

  it('writes consume queues as columns: bytes grow linearly, under 40 per message (24 of them the columns) besides the message index (28 an entry)', () => {
    const half = fill(100_000).snapshot().byteLength;
    const state = fill(200_000);
    const bytes = state.snapshot();
    // One index entry a message (its id; these have no keys).
    expect(state.messageIndex.extent.entryCount).toBe(200_000);
    expect((bytes.byteLength - 50 - 28 * 200_000) / 200_000).toBeLessThan(40);
    expect(bytes.byteLength / half).toBeGreaterThan(1.9);
    expect(bytes.byteLength / half).toBeLessThan(2.1);

    const restored = BrokerState.restore(bytes, { dedupWindowMs: 60_000, dedupEntriesMax: 1_000 });
    expect(restored.digest()).toBe(state.digest());
    const queue = restored.queue('big', 3);
    expect(queue?.maxOffset).toBe(25_000);
    expect([queue?.logIndexAt(24_999), queue?.positionAt(24_999), queue?.tagIdAt(24_999), queue?.storeTimeAt(24_999)])
      .toEqual([state.queue('big', 3)?.logIndexAt(24_999), state.queue('big', 3)?.positionAt(24_999), state.queue('big', 3)?.tagIdAt(24_999), state.queue('big', 3)?.storeTimeAt(24_999)]);
    // A restored queue keeps growing past its restored size.
    for (const s of [state, restored]) s.applyMessages(1_000, 5_000, Array.from({ length: 100 }, (_, i) => ({ topic: 'big', messageId: `late${i}`, tag: 'Z', messageGroup: '', queueId: 3, bodyBytes: 1 })));
    expectSameBytes(restored.snapshot(), state.snapshot());
  });
});

describe('sha256Hex', () => {
  it('agrees with node:crypto', () => {
    const lengths = [0, 1, 55, 56, 57, 63, 64, 65, 119, 120, 127, 128, 129, 1_000];
    for (const length of lengths) {
      const data = Uint8Array.from({ length }, (_, i) => (i * 31 + length) & 0xff);
      expect(sha256Hex(data), `length ${length}`).toBe(createHash('sha256').update(data).digest('hex'));
    }
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (data) => {
      expect(sha256Hex(data)).toBe(createHash('sha256').update(data).digest('hex'));
    }));
    const offsetView = new Uint8Array(300).fill(7).subarray(13, 250);
    expect(sha256Hex(offsetView)).toBe(createHash('sha256').update(offsetView).digest('hex'));
  });
});
