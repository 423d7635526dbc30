/**
 * The message index as apply wires it (broker-state.ts): which committed entries add which
 * entries — a stored, pending or half message under its id and keys (not a duplicate, not a
 * refused send), and under its location the trace events of receives, acks, nacks,
 * dead-letterings, timer fires, recalls, commits, rollbacks and expired transactions, each
 * at the entry that made it with the attempt and queue in its position; retention releasing
 * it below the first needed entry; the same index (and digest) on a state restored from a
 * snapshot, in memory or on files; and the state machine: keys read from the entry bytes
 * (checked against the codec), a failing index file stopping the node, and a machine without
 * an index (the simulator's) adding nothing.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BrokerStateMachine, readMessageKeys } from '../broker-state-machine.js';
import { EntryKind, type Entry } from '../../raft/types.js';
import { MessageIndexFileStore } from '../../server/message-index-files.js';
import { QueueFileStore } from '../../server/consume-queue-files.js';
import { DedupFileStore } from '../../server/dedup-files.js';
import { BrokerState, type BrokerCommand, type CommandOutcome, type IndexedRouting, type SendOutcome } from './broker-state.js';
import { encodeCommand, encodeMessages, readMessageAt, type MessageInput } from './entry-codec.js';
import {
  IndexKind, MemoryMessageIndexStore, MessageIndexError, eventOf, eventPosition, hitsPerFindMax, messageIdKey, messageLocationKey, topicKey,
  type IndexHit, type KeyHash, type MessageIndex, type MessageIndexStore,
} from './message-index.js';
import { defaultTopicConfig } from './names.js';

const everything = { fromMs: -Infinity, toMs: Infinity, limit: hitsPerFindMax } as const;
const hitsOf = (index: MessageIndex, key: KeyHash): IndexHit[] => index.find({ key, ...everything }).hits;
/** A message's trace events, oldest first, as [kind, entry, attempt, queue]. */
const eventsOf = (state: BrokerState, at: number, position: number): [number, number, number, number][] =>
  hitsOf(state.messageIndex, messageLocationKey(at, position)).reverse().map((h) => [h.kind, h.logIndex, eventOf(h.position).attempt, eventOf(h.position).queueId]);

const msg = (messageId: string, extra: Partial<IndexedRouting> = {}): IndexedRouting => ({ topic: 't', messageId, tag: '', messageGroup: '', queueId: -1, bodyBytes: 1, ...extra });

/** Applies entries to every state alike, one log index each, time moving forward by `dtMs`. */
class Ledger {
  index = 0;
  timeMs = 10_000;
  constructor(readonly states: BrokerState[]) {}

  send(messages: IndexedRouting[], options: { half?: boolean; dtMs?: number } = {}): { at: number; outcomes: SendOutcome[] } {
    const at = this.next(options.dtMs);
    const outcomes = this.states.map((s) => s.applyMessages(at, s.advanceClock(this.timeMs), messages, options.half === true));
    return { at, outcomes: outcomes[0] as SendOutcome[] };
  }

  command(command: BrokerCommand, dtMs?: number): { at: number; outcome: CommandOutcome } {
    const at = this.next(dtMs);
    const outcomes = this.states.map((s) => s.applyCommand(at, s.advanceClock(this.timeMs), command));
    return { at, outcome: outcomes[0] as CommandOutcome };
  }

  private next(dtMs = 10): number {
    this.timeMs += dtMs;
    return ++this.index;
  }
}

describe('apply adds index entries for committed entries', () => {
  it('indexes a stored message under its id and each key, not a duplicate or a refused send', () => {
    const state = new BrokerState();
    const ledger = new Ledger([state]);
    const { at: createdAt } = ledger.command({ op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 2, writeQueues: 2 } });
    const { at } = ledger.send([msg('m1', { keys: ['k1', 'shared', 'k1', ''] }), msg('m2', { keys: ['shared'] }), msg('m3')]);
    const { outcomes: again } = ledger.send([msg('m1', { keys: ['k1'] }), msg('x', { topic: 'missing', keys: ['k1'] })]);
    expect(again.map((o) => [o.code, o.duplicate])).toEqual([['ok', true], ['topic-not-found', false]]);

    expect(hitsOf(state.messageIndex, messageIdKey('m1'))).toEqual([{ logIndex: at, position: 0, kind: IndexKind.MessageId, timeMs: state.nowMs - 10 }]);
    expect(hitsOf(state.messageIndex, messageIdKey('x'))).toEqual([]);
    // Newest first: the later position first; a key repeated in one message is indexed once, an empty one not at all.
    expect(hitsOf(state.messageIndex, topicKey(createdAt, 'shared')).map((h) => [h.logIndex, h.position, h.kind])).toEqual([[at, 1, IndexKind.Key], [at, 0, IndexKind.Key]]);
    expect(hitsOf(state.messageIndex, topicKey(createdAt, 'k1')).map((h) => h.position)).toEqual([0]);
    expect(hitsOf(state.messageIndex, topicKey(createdAt, ''))).toEqual([]);
    // Keys are scoped to the topic's creation: the same key of a topic created again is another key.
    expect(hitsOf(state.messageIndex, topicKey(createdAt + 1, 'k1'))).toEqual([]);
    // 3 ids + 3 keys; nothing for the duplicate or the refused send.
    expect(state.messageIndex.extent.entryCount).toBe(6);
  });

  it('traces deliveries, acks, nacks and dead-letterings under the message location, with attempt and queue', () => {
    const state = new BrokerState();
    const ledger = new Ledger([state]);
    ledger.command({ op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 1, writeQueues: 1 } });
    ledger.command({ op: 'group.put', config: { name: 'g', maxDeliveryAttempts: 2, fifo: false } });
    const { at } = ledger.send([msg('a'), msg('b'), msg('c')]);
    const receive: BrokerCommand = { op: 'receive', group: 'g', topic: 't', queueId: -1, tags: null, batch: 3, invisibleMs: 1_000, autoRenew: false, clientId: 'c1' };
    const { at: r1, outcome } = ledger.command(receive);
    const r1TimeMs = ledger.timeMs;
    const handles = (outcome as Extract<CommandOutcome, { kind: 'received' }>).deliveries.map((d) => ({ group: 'g', topic: d.topic, queueId: d.queueId, offset: d.offset, seq: d.seq }));
    const { at: ackAt } = ledger.command({ op: 'ack', ...(handles[0] as (typeof handles)[number]) });
    // A repeated ack and a stale handle change nothing, and add nothing.
    ledger.command({ op: 'ack', ...(handles[0] as (typeof handles)[number]) });
    ledger.command({ op: 'ack', ...(handles[1] as (typeof handles)[number]), seq: 1 });
    const { at: nackAt } = ledger.command({ op: 'invisible', invisibleMs: 0, ...(handles[1] as (typeof handles)[number]) });
    const { at: r2 } = ledger.command(receive, 2_000); // b (nacked) and c (expired) come back: attempt 2
    const { at: r3 } = ledger.command(receive, 2_000); // past the last attempt: both dead-lettered
    const { at: dlqRead } = ledger.command({ ...receive, topic: '%DLQ%g', clientId: 'c2' });

    expect(eventsOf(state, at, 0)).toEqual([[IndexKind.Delivered, r1, 1, 0], [IndexKind.Acked, ackAt, 1, 0]]);
    expect(eventsOf(state, at, 1)).toEqual([
      [IndexKind.Delivered, r1, 1, 0], [IndexKind.Nacked, nackAt, 1, 0], [IndexKind.Delivered, r2, 2, 0], [IndexKind.DeadLettered, r3, 2, 0], [IndexKind.Delivered, dlqRead, 1, 0],
    ]);
    expect(eventsOf(state, at, 2)).toEqual([[IndexKind.Delivered, r1, 1, 0], [IndexKind.Delivered, r2, 2, 0], [IndexKind.DeadLettered, r3, 2, 0], [IndexKind.Delivered, dlqRead, 1, 0]]);
    // Each event at its entry's time.
    expect((hitsOf(state.messageIndex, messageLocationKey(at, 0)).at(-1) as IndexHit).timeMs).toBe(r1TimeMs);
  });

  it('a consumer\'s dlq command is a dead-lettering at its entry', () => {
    const state = new BrokerState();
    const ledger = new Ledger([state]);
    ledger.command({ op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 1, writeQueues: 1 } });
    const { at } = ledger.send([msg('a')]);
    const { outcome } = ledger.command({ op: 'receive', group: 'g', topic: 't', queueId: 0, tags: null, batch: 1, invisibleMs: 1_000, autoRenew: false, clientId: 'c1' });
    const d = (outcome as Extract<CommandOutcome, { kind: 'received' }>).deliveries[0];
    const { at: dlqAt } = ledger.command({ op: 'dlq', group: 'g', topic: 't', queueId: 0, offset: d?.offset ?? 0, seq: d?.seq ?? 0 });
    expect(eventsOf(state, at, 0).map((e) => e[0])).toEqual([IndexKind.Delivered, IndexKind.DeadLettered]);
    expect(eventsOf(state, at, 0)[1]).toEqual([IndexKind.DeadLettered, dlqAt, 1, 0]);
  });

  it('a delayed message is indexed when sent, and traced when fired into its queue or recalled', () => {
    const state = new BrokerState();
    const ledger = new Ledger([state]);
    ledger.command({ op: 'topic.put', config: { ...defaultTopicConfig('t', 'DELAY'), readQueues: 4, writeQueues: 4 } });
    const { at, outcomes } = ledger.send([msg('d1', { deliveryTimeMs: ledger.timeMs + 5_000, keys: ['later'] }), msg('d2', { deliveryTimeMs: ledger.timeMs + 5_000 })]);
    expect(hitsOf(state.messageIndex, messageIdKey('d1')).map((h) => [h.logIndex, h.kind])).toEqual([[at, IndexKind.MessageId]]);
    const d2 = outcomes[1]?.delayed as { logIndex: number; position: number; dueMs: number };
    const { at: recallAt } = ledger.command({ op: 'timer.cancel', ...d2 });
    ledger.command({ op: 'timer.cancel', ...d2 }); // recalled already: nothing more
    ledger.command({ op: 'timer.fire', throughMs: ledger.timeMs + 1_000 }); // not due yet
    expect(eventsOf(state, at, 0)).toEqual([]);
    const { at: fireAt } = ledger.command({ op: 'timer.fire', throughMs: ledger.timeMs + 10_000 }, 6_000);
    expect(eventsOf(state, at, 0)).toEqual([[IndexKind.Stored, fireAt, 0, outcomes[0]?.queueId as number]]);
    expect(eventsOf(state, at, 1)).toEqual([[IndexKind.Recalled, recallAt, 0, 0]]);
  });

  it('a half message is indexed when sent; its commit, rollback or expiry is traced', () => {
    const state = new BrokerState();
    const ledger = new Ledger([state]);
    ledger.command({ op: 'topic.put', config: { ...defaultTopicConfig('t', 'TRANSACTION'), readQueues: 2, writeQueues: 2 } });
    const { at, outcomes } = ledger.send([msg('h1'), msg('h2'), msg('h3')], { half: true });
    expect(outcomes.every((o) => o.half !== undefined)).toBe(true);
    expect(hitsOf(state.messageIndex, messageIdKey('h3')).map((h) => h.kind)).toEqual([IndexKind.MessageId]);
    const { at: commitAt } = ledger.command({ op: 'txn.end', topic: 't', logIndex: at, position: 0, messageId: 'h1', commit: true });
    const { at: rollbackAt } = ledger.command({ op: 'txn.end', topic: 't', logIndex: at, position: 1, messageId: 'h2', commit: false });
    ledger.command({ op: 'txn.end', topic: 't', logIndex: at, position: 1, messageId: 'h2', commit: false }); // a repeat: nothing more
    const policy = { checkAfterMs: 0, checkIntervalMs: 1, checksMax: 1 };
    ledger.command({ op: 'txn.check', throughMs: ledger.timeMs + 100, policy }, 100);
    const { at: expiredAt } = ledger.command({ op: 'txn.check', throughMs: ledger.timeMs + 100, policy }, 100);
    expect(eventsOf(state, at, 0)).toEqual([[IndexKind.Stored, commitAt, 0, outcomes[0]?.queueId as number]]);
    expect(eventsOf(state, at, 1)).toEqual([[IndexKind.RolledBack, rollbackAt, 0, outcomes[1]?.queueId as number]]);
    expect(eventsOf(state, at, 2)).toEqual([[IndexKind.RolledBack, expiredAt, 1, outcomes[2]?.queueId as number]]);
  });

  it('retention releases the index below the first entry still needed (a pending delayed message holds it)', () => {
    const state = new BrokerState();
    const ledger = new Ledger([state]);
    ledger.command({ op: 'topic.put', config: { ...defaultTopicConfig('t', 'MIXED'), readQueues: 1, writeQueues: 1 } });
    const { at: first } = ledger.send([msg('old')]);
    const { at: pinned } = ledger.send([msg('due-later', { deliveryTimeMs: ledger.timeMs + 60_000 })]);
    const { at: last } = ledger.send([msg('new')]);
    ledger.command({ op: 'retention', throughIndex: last });
    expect(state.retainedFrom).toBe(last + 1);
    expect(state.messageIndex.extent.releasedBelow).toBe(pinned);
    expect(hitsOf(state.messageIndex, messageIdKey('old'))).toEqual([]);
    expect(hitsOf(state.messageIndex, messageIdKey('due-later')).map((h) => h.logIndex)).toEqual([pinned]);
    expect(hitsOf(state.messageIndex, messageIdKey('new')).map((h) => h.logIndex)).toEqual([last]);
    expect(first).toBeLessThan(pinned);
  });
});

describe('the index in snapshots and the digest', () => {
  let root: string;
  beforeEach(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'raftmq-mt-')); });
  afterEach(() => { fs.rmSync(root, { recursive: true, force: true }); });

  /** A history touching every kind of entry the index takes. */
  const history = (ledger: Ledger, from: number, to: number): void => {
    for (let i = from; i < to; i++) {
      ledger.send([msg(`m${i}`, { keys: [`k${i % 7}`] }), msg(`n${i}`, { keys: ['all'], deliveryTimeMs: i % 3 === 0 ? ledger.timeMs + 30 : 0 })]);
      const { outcome } = ledger.command({ op: 'receive', group: 'g', topic: 't', queueId: -1, tags: null, batch: 2, invisibleMs: 1_000, autoRenew: false, clientId: `c${i % 2}` });
      const d = outcome.kind === 'received' ? outcome.deliveries[0] : undefined;
      if (d !== undefined) ledger.command(i % 2 === 0 ? { op: 'ack', group: 'g', topic: d.topic, queueId: d.queueId, offset: d.offset, seq: d.seq } : { op: 'invisible', invisibleMs: 0, group: 'g', topic: d.topic, queueId: d.queueId, offset: d.offset, seq: d.seq });
      if (i % 5 === 0) ledger.command({ op: 'timer.fire', throughMs: ledger.timeMs + 100 }, 50);
      if (i % 40 === 39) ledger.command({ op: 'retention', throughIndex: ledger.index - 60 });
    }
  };
  const setUp = (ledger: Ledger): void => {
    ledger.command({ op: 'topic.put', config: { ...defaultTopicConfig('t', 'MIXED'), readQueues: 3, writeQueues: 3 } });
    ledger.command({ op: 'group.put', config: { name: 'g', maxDeliveryAttempts: 3, fifo: false } });
  };

  it('a state restored from a snapshot mid-way builds the same index as one that applied everything', () => {
    const whole = new BrokerState();
    const ledger = new Ledger([whole]);
    setUp(ledger);
    history(ledger, 0, 120);
    const restored = BrokerState.restore(whole.snapshot());
    expect(restored.messageIndex.extent).toEqual(whole.messageIndex.extent);
    ledger.states.push(restored);
    history(ledger, 120, 240);
    expect(restored.digest()).toBe(whole.digest());
    for (const key of [messageIdKey('m200'), messageIdKey('m5'), topicKey(1, 'all'), topicKey(1, 'k3'), messageLocationKey(ledger.index - 3, 0)]) {
      expect(hitsOf(restored.messageIndex, key)).toEqual(hitsOf(whole.messageIndex, key));
    }
    // The digest sees the index: a state whose index differs has another digest.
    const other = BrokerState.restore(whole.snapshot());
    expect(other.digest()).toBe(whole.digest());
    other.messageIndex.add(messageIdKey('stray'), IndexKind.MessageId, ledger.index, 0, ledger.timeMs);
    expect(other.digest()).not.toBe(whole.digest());
  });

  it('an index on files: a snapshot without its records restores on the files, one with them anywhere, and the digests agree with memory', () => {
    // The layout is part of the index's state (files are released whole): both have the same one.
    const layout = { entriesPerFile: 256, slotsPerFile: 64 };
    const files = new MessageIndexFileStore({ dir: path.join(root, 'index'), layout, tailEntries: 64 });
    const onFiles = new BrokerState(undefined, undefined, undefined, undefined, files);
    const inMemory = new BrokerState(undefined, undefined, undefined, undefined, new MemoryMessageIndexStore(layout));
    const ledger = new Ledger([onFiles, inMemory]);
    setUp(ledger);
    history(ledger, 0, 150);
    expect(onFiles.messageIndex.recordsDurable).toBe(true);
    expect(onFiles.messageIndex.extent.entryCount).toBeGreaterThan(1_000);
    expect(onFiles.digest()).toBe(inMemory.digest());
    // Queues and dedup in memory: the snapshot carries the index's records too.
    const own = onFiles.snapshot();
    const reopened = new MessageIndexFileStore({ dir: path.join(root, 'index'), layout, tailEntries: 64 });
    files.close();
    const restored = BrokerState.restore(own, undefined, undefined, undefined, undefined, reopened);
    expect(restored.digest()).toBe(inMemory.digest());
    ledger.states.splice(0, 1, restored);
    history(ledger, 150, 200);
    expect(restored.digest()).toBe(inMemory.digest());
    // Its records restore anywhere (a node without these files: InstallSnapshot), keeping the layout.
    expect(BrokerState.restore(restored.snapshot({ withRecords: true })).digest()).toBe(inMemory.digest());
    reopened.close();
  });

  it('a node\'s own snapshot (queues, dedup and index on files) records the index\'s extent only, and restores after a restart', () => {
    const node = (): { queues: QueueFileStore; dedup: DedupFileStore; index: MessageIndexFileStore } => ({
      queues: new QueueFileStore({ dir: path.join(root, 'queues') }), dedup: new DedupFileStore({ dir: path.join(root, 'dedup') }),
      index: new MessageIndexFileStore({ dir: path.join(root, 'index'), layout: { entriesPerFile: 128, slotsPerFile: 32 }, tailEntries: 32 }),
    });
    const first = node();
    const live = new BrokerState(undefined, first.queues, first.dedup, undefined, first.index);
    const reference = new BrokerState(undefined, undefined, undefined, undefined, new MemoryMessageIndexStore({ entriesPerFile: 128, slotsPerFile: 32 }));
    const ledger = new Ledger([live, reference]);
    setUp(ledger);
    history(ledger, 0, 100);
    const own = live.snapshot();
    // Far smaller than with its records: the index entries are in the files.
    const { entryCount, firstFile } = live.messageIndex.extent;
    expect(entryCount - firstFile * 128).toBeGreaterThan(300);
    expect(own.byteLength).toBeLessThan(live.snapshot({ withRecords: true }).byteLength - 28 * (entryCount - firstFile * 128));
    history(ledger, 100, 130); // written after the snapshot: the restart cuts it, replay writes it again
    for (const store of Object.values(first)) store.close();
    const second = node();
    const restored = BrokerState.restore(own, undefined, second.queues, second.dedup, undefined, second.index);
    const replayed = new BrokerState(undefined, undefined, undefined, undefined, new MemoryMessageIndexStore({ entriesPerFile: 128, slotsPerFile: 32 }));
    const reference2 = new Ledger([replayed]);
    setUp(reference2);
    history(reference2, 0, 100);
    expect(restored.digest()).toBe(replayed.digest());
    ledger.states.splice(0, ledger.states.length, restored, replayed);
    ledger.index = reference2.index;
    ledger.timeMs = reference2.timeMs;
    history(ledger, 100, 160);
    expect(restored.digest()).toBe(replayed.digest());
    for (const store of Object.values(second)) store.close();
  });
});

// ---- the state machine ----------------------------------------------------------------------

const input = (messageId: string, extra: Partial<MessageInput> = {}): MessageInput => ({
  topic: 't', messageId, tag: '', keys: [], messageGroup: '', queueId: -1, bornTimestamp: 1, bornHost: 'h', properties: {}, body: new Uint8Array(1), ...extra,
});
const entry = (index: number, payload: Uint8Array): Entry => ({ index, term: 1, kind: EntryKind.normal, payload });

describe('the state machine and the index', () => {
  it('reads each message\'s keys from the entry as the codec wrote them', () => {
    const text = fc.string({ maxLength: 12, unit: 'binary' });
    fc.assert(fc.property(fc.array(fc.record({ keys: fc.array(text, { maxLength: 4 }), tag: text, body: fc.uint8Array({ maxLength: 40 }), props: fc.dictionary(text, text, { maxKeys: 3 }), delay: fc.nat(3) })), fc.boolean(), (specs, half) => {
      const messages = specs.map((s, i) => input(`id${i}`, { keys: s.keys, tag: s.tag, body: s.body, properties: s.props, ...(half || s.delay === 0 ? {} : { deliveryTimeMs: 1_000 * s.delay }) }));
      const payload = encodeMessages({ timeMs: 5 }, messages, half);
      expect(readMessageKeys(payload)).toEqual(messages.map((_, i) => readMessageAt(payload, i).keys));
    }), { seed: 20_240_901, numRuns: 300 });
  });

  it('indexes the keys of applied message entries', () => {
    const machine = new BrokerStateMachine(undefined, undefined, undefined, undefined, new MemoryMessageIndexStore());
    machine.apply([entry(1, encodeCommand({ timeMs: 1_000 }, { op: 'topic.put', config: defaultTopicConfig('t') }))]);
    machine.apply([entry(2, encodeMessages({ timeMs: 1_010 }, [input('a', { keys: ['order-1', 'customer-7'] }), input('b', { keys: ['customer-7'] })]))]);
    const index = machine.state.messageIndex;
    expect(hitsOf(index, topicKey(1, 'customer-7')).map((h) => [h.logIndex, h.position])).toEqual([[2, 1], [2, 0]]);
    expect(hitsOf(index, topicKey(1, 'order-1')).map((h) => h.position)).toEqual([0]);
    expect(hitsOf(index, messageIdKey('b')).map((h) => [h.logIndex, h.position, h.timeMs])).toEqual([[2, 1, 1_010]]);
    // snapshotWithRecords restores through the store's reader: the same index.
    const sent = machine.snapshotWithRecords(machine.snapshot());
    expect(BrokerState.restore(sent).digest()).toBe(machine.state.digest());
  });

  it('a machine without an index (the simulator\'s) adds nothing, and reads any snapshot', () => {
    const machine = new BrokerStateMachine();
    machine.apply([entry(1, encodeCommand({ timeMs: 1_000 }, { op: 'topic.put', config: defaultTopicConfig('t') }))]);
    machine.apply([entry(2, encodeMessages({ timeMs: 1_010 }, [input('a', { keys: ['k'] })]))]);
    expect(machine.state.messageIndex.extent.entryCount).toBe(0);
    expect(hitsOf(machine.state.messageIndex, messageIdKey('a'))).toEqual([]);
    const indexed = new BrokerStateMachine(undefined, undefined, undefined, undefined, new MemoryMessageIndexStore());
    indexed.apply([entry(1, encodeCommand({ timeMs: 1_000 }, { op: 'topic.put', config: defaultTopicConfig('t') })), entry(2, encodeMessages({ timeMs: 1_010 }, [input('a')]))]);
    machine.restore(indexed.snapshot(), { index: 2, term: 1, members: [], configIndex: 0 });
    expect(machine.state.messageIndex.extent.entryCount).toBe(0);
    expect(machine.state.maxOffsets('t').reduce((a, b) => a + b, 0)).toBe(1);
  });

  it('an index write that fails stops the node (MessageIndexError), never a result that lets this node differ', () => {
    const memory = new MemoryMessageIndexStore();
    let failing = false;
    const store: MessageIndexStore = {
      recordsDurable: false, layout: memory.layout, reader: () => store,
      open: (extent) => {
        const index = memory.open(extent);
        const add = index.add.bind(index);
        index.add = (...args) => {
          if (failing) throw new MessageIndexError('index file 7: no space left on device');
          add(...args);
        };
        return index;
      },
    };
    const machine = new BrokerStateMachine(undefined, undefined, undefined, undefined, store);
    machine.apply([entry(1, encodeCommand({ timeMs: 1_000 }, { op: 'topic.put', config: defaultTopicConfig('t') }))]);
    failing = true;
    expect(() => machine.apply([entry(2, encodeMessages({ timeMs: 1_010 }, [input('a')]))])).toThrow(MessageIndexError);
    expect(() => machine.apply([entry(3, encodeCommand({ timeMs: 1_020 }, { op: 'receive', group: 'g', topic: 't', queueId: -1, tags: null, batch: 1, invisibleMs: 1_000, autoRenew: false, clientId: 'c' }))])).toThrow(MessageIndexError);
  });

  it('packs an event\'s attempt and queue into its position', () => {
    expect(eventOf(eventPosition(3, 1023))).toEqual({ attempt: 3, queueId: 1023 });
    expect(eventOf(eventPosition(100_000, 5))).toEqual({ attempt: 16_383, queueId: 5 });
    expect(eventPosition(16_383, 1023)).toBe(0xff_ffff);
    expect(() => eventPosition(1, 1024)).toThrow();
  });
});
