/**
 * The timer store in files (TimerFileStore), directed cases beside the model-based property
 * in src/broker/core/timer-store.test.ts (which runs this store too): a crash without a sync
 * and a power cut both come back to the last snapshot, and replay gives the same visits; files
 * go one sync late, so the previous snapshot still restores (through reader()); a missing,
 * short or damaged file is a TimerRecordsError naming it; I/O failures stop apply the same
 * way; a snapshot restores into a store whose wheel is configured otherwise; and memory, by the
 * store's own accounting, stays at a bound set by configuration with 300,000 timers pending.
 * Then the store under BrokerState with queue and dedup files, as on a node: a positions-only
 * snapshot restores after a crash and replay continues it, a peer restores the records it is
 * sent, and a missing or unwritable timer file stops the node (TimerRecordsError).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SnapshotReader, SnapshotWriter } from '../broker/core/state-snapshot.js';
import { TimerRecordsError, type TimerRecord, type TimerStore, type TimerStoreLimits } from '../broker/core/timer-store.js';
import { BrokerState } from '../broker/core/broker-state.js';
import { BrokerStateMachine } from '../broker/broker-state-machine.js';
import { encodeCommand, encodeMessages, type MessageRouting } from '../broker/core/entry-codec.js';
import { defaultTopicConfig } from '../broker/core/names.js';
import { EntryKind } from '../raft/types.js';
import { QueueFileStore } from './consume-queue-files.js';
import { DedupFileStore } from './dedup-files.js';
import { TimerFileStore, type TimerFileStoreOptions } from './timer-files.js';

const limits: TimerStoreLimits = { maxDelayMs: 3_600_000, precisionMs: 1000 };
const epochMs = 1_700_000_000_000;

let root: string;
beforeEach(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'raftmq-timer-files-')); });
afterEach(() => { fs.rmSync(root, { recursive: true, force: true }); });

const open = (name: string, options: Partial<TimerFileStoreOptions> = {}): TimerFileStore =>
  new TimerFileStore({ dir: path.join(root, name), limits, wheelSlots: 1024, recordsPerFile: 512, cachePages: 16, ...options });

const encode = (store: TimerStore, withRecords: boolean): Uint8Array => {
  const writer = new SnapshotWriter();
  store.encodeInto(writer, withRecords);
  return writer.finish();
};

/** A node's own snapshot: sync, then positions. */
const snapshot = (store: TimerStore): Uint8Array => {
  store.sync();
  return encode(store, false);
};

const restore = <S extends TimerStore>(store: S, bytes: Uint8Array, withRecords: boolean): S => {
  store.restore(new SnapshotReader(bytes), withRecords);
  return store;
};

const fire = (store: TimerStore, throughMs: number): TimerRecord[] => {
  const visited: TimerRecord[] = [];
  store.fireThrough(throughMs, (record) => visited.push(record));
  return visited;
};

/** `count` records from log index `from`, four to an entry, due over the next `spreadMs`. */
function records(from: number, count: number, spreadMs: number, nowMs = epochMs): TimerRecord[] {
  return Array.from({ length: count }, (_, i) => ({
    dueMs: nowMs + ((i * 7_919) % spreadMs), logIndex: from + Math.floor(i / 4), position: i % 4,
    topicCreatedAt: 3, queueId: i % 8, tagId: (i % 5) - 2, storeTimeMs: nowMs,
  }));
}

const byKey = (a: TimerRecord, b: TimerRecord): number => a.dueMs - b.dueMs || a.logIndex - b.logIndex || a.position - b.position;

const addAll = (store: TimerStore, batch: readonly TimerRecord[], nowMs = epochMs): void => {
  for (const record of batch) store.add(record, nowMs);
};

const timerFiles = (store: TimerFileStore): string[] => (fs.existsSync(store.dir) ? fs.readdirSync(store.dir).sort() : []);

describe('timer records in files', () => {
  it('a crash without a sync comes back to the last snapshot, and replay gives the same visits', () => {
    const live = open('a');
    addAll(live, records(1, 1_500, 600_000));
    fire(live, epochMs + 100_000);
    fire(live, epochMs + 100_400); // inside a slot
    const own = snapshot(live);
    const atSnapshot = encode(live, true);
    // After the snapshot: more adds (some already due, some in the slot being fired), a cancel, fires.
    const later = records(10_000, 1_000, 400_000, epochMs + 100_000).map((r, i) => (i % 10 === 0 ? { ...r, dueMs: epochMs + 50_000 + i } : r));
    const replay = (store: TimerStore): unknown[] => {
      addAll(store, later, epochMs + 100_000);
      return [store.cancel(later[1]!.logIndex, later[1]!.position, later[1]!.dueMs), fire(store, epochMs + 100_900), fire(store, epochMs + 300_000)];
    };
    const first = replay(live);
    expect((first[1] as TimerRecord[]).length).toBeGreaterThan(100);
    live.close(); // a crash: the tail and everything since the sync were never synced

    const reopened = restore(open('a'), own, false);
    expect(encode(reopened, true)).toEqual(atSnapshot);
    expect(replay(reopened)).toEqual(first);
    // And again, from a snapshot taken after the replay.
    const again = snapshot(reopened);
    const rest = fire(reopened, epochMs + 10_000_000);
    reopened.close();
    expect(fire(restore(open('a'), again, false), epochMs + 10_000_000)).toEqual(rest);
    expect(rest).toEqual([...rest].sort(byKey));
  });

  it('a power cut loses only what the snapshot does not count: reopening from it still matches', () => {
    const cuts = [(): number => 0, (max: number): number => Math.floor(max / 3)];
    for (const [n, cut] of cuts.entries()) {
      const name = `p${n}`;
      const live = open(name, { powerLossTestMode: true });
      addAll(live, records(1, 2_001, 900_000));
      fire(live, epochMs + 300_000);
      const own = snapshot(live);
      const expected = fire(restore(open(name).reader(), own, false) as TimerFileStore, epochMs + 1_000_000);
      addAll(live, records(5_000, 3_000, 900_000, epochMs + 300_000), epochMs + 300_000); // flushed blocks reach the files, unsynced
      fire(live, epochMs + 500_000);
      const report = live.powerFail(cut);
      expect(report.timerBytesDiscarded).toBeGreaterThan(0);
      live.close();
      expect(fire(restore(open(name), own, false), epochMs + 1_000_000)).toEqual(expected);
    }
  });

  it('deletes files one sync late, so the previous snapshot stays restorable; a reader reads it while the store goes on', () => {
    const live = open('r', { recordsPerFile: 256, cachePages: 64 });
    addAll(live, records(1, 2_000, 20_000));
    const first = snapshot(live);
    const firstRecords = encode(live, true);
    const before = timerFiles(live);
    expect(before.length).toBe(8); // 2,000 records in files of 256
    fire(live, epochMs + 30_000); // everything: no chain needs the files any more
    const second = snapshot(live);
    const secondRecords = encode(live, true);
    expect(timerFiles(live)).toEqual(before); // not yet: `first` may still be the newest durable snapshot
    expect(encode(restore(live.reader(), first, false), true)).toEqual(firstRecords);
    addAll(live, records(9_000, 10, 1_000, epochMs + 30_000), epochMs + 30_000);
    snapshot(live);
    expect(timerFiles(live).length).toBeLessThan(before.length);
    expect(() => restore(live.reader(), first, false)).toThrow(TimerRecordsError); // two syncs on: gone
    expect(encode(restore(live.reader(), second, false), true)).toEqual(secondRecords); // the previous one still does
  });

  it('names the missing, short or damaged file when a snapshot needs records that are not there', () => {
    const live = open('m');
    addAll(live, records(1, 1_500, 200_000));
    const own = snapshot(live);
    live.close();
    const dir = path.join(root, 'm');
    const last = fs.readdirSync(dir).sort().at(-1) as string;
    fs.truncateSync(path.join(dir, last), 64 * 10);
    expect(() => restore(open('m'), own, false)).toThrow(TimerRecordsError);
    expect(() => restore(open('m'), own, false)).toThrow(new RegExp(`${last} holds 640 bytes; the snapshot needs \\d+ .*raftmq repair`));
    fs.rmSync(path.join(dir, last));
    expect(() => restore(open('m'), own, false)).toThrow(new RegExp(`${last} is missing`));
  });

  it('a damaged record stops the fire that reads it with a TimerRecordsError (its checksum)', () => {
    const live = open('c');
    addAll(live, records(1, 1_024, 10_000));
    const own = snapshot(live);
    live.close();
    const dir = path.join(root, 'c');
    const first = fs.readdirSync(dir).sort()[0] as string;
    const bytes = fs.readFileSync(path.join(dir, first));
    bytes[64 * 5 + 3] = (bytes[64 * 5 + 3] as number) ^ 0x10; // a bit of record 5's due time
    fs.writeFileSync(path.join(dir, first), bytes);
    const reopened = restore(open('c'), own, false);
    expect(() => fire(reopened, epochMs + 10_000)).toThrow(new RegExp(`${first}: timer record \\d+ at byte 320 fails its checksum`));
  });

  it('stops with a TimerRecordsError when a timer file cannot be written', () => {
    const dir = path.join(root, 'blocked');
    fs.writeFileSync(dir, 'not a directory');
    const store = new TimerFileStore({ dir, limits, wheelSlots: 1024, recordsPerFile: 512 });
    const add = (): void => addAll(store, records(1, 300, 10_000));
    expect(add).toThrow(TimerRecordsError);
    expect(add).toThrow(/blocked.*ENOTDIR/);
    expect(() => store.sync()).toThrow(TimerRecordsError);
  });

  it('a snapshot with its records restores on a node without the files, whose own snapshots then restore after a restart', () => {
    const leader = open('leader');
    addAll(leader, records(1, 2_500, 1_000_000));
    fire(leader, epochMs + 200_000);
    const sent = encode(leader, true);
    const follower = restore(open('follower'), sent, true);
    expect(encode(follower, true)).toEqual(sent);
    const own = snapshot(follower);
    follower.close();
    const restarted = restore(open('follower'), own, false);
    expect(fire(restarted, epochMs + 2_000_000)).toEqual(fire(leader, epochMs + 2_000_000));
  });

  it('restores a positions-only snapshot into a store whose wheel is configured otherwise', () => {
    const live = open('w', { wheelSlots: 64, cascadeSlots: 8 });
    addAll(live, records(1, 1_000, 3_000_000));
    fire(live, epochMs + 100_000);
    live.cancel(live.minPendingLogIndex() ?? 0, 0, 0); // unknown: false, nothing changes
    const own = snapshot(live);
    const expected = fire(live, epochMs + 4_000_000);
    live.close();
    const bigger = restore(open('w', { wheelSlots: 4096 }), own, false);
    expect(fire(bigger, epochMs + 4_000_000)).toEqual(expected);
    expect(() => fire(bigger, epochMs)).toThrow(/fired through/);
  });

  it('memory stays at a bound set by configuration with 300,000 timers pending', () => {
    const options = { wheelSlots: 4096, cachePages: 16, recordsPerFile: 65_536 };
    const store = open('big', options);
    const bound = 4096 * 40 + 16 * 28 + 16 * 4096 + 256 * 64 + 4096 * 44 + 4096; // wheel + blocks + page cache + tail + scratch at most + slack
    const nowMs = epochMs;
    let logIndex = 1;
    const addSome = (count: number): void => {
      for (let i = 0; i < count; i++, logIndex++) {
        store.add({ dueMs: nowMs + ((logIndex * 104_729) % limits.maxDelayMs), logIndex, position: 0, topicCreatedAt: 1, queueId: 0, tagId: 0, storeTimeMs: nowMs }, nowMs);
      }
    };
    addSome(1_000);
    const small = store.heapBytes;
    addSome(299_000);
    expect(store.pendingCount).toBe(300_000);
    expect(store.heapBytes).toBeLessThanOrEqual(bound);
    expect(store.heapBytes - small).toBeLessThanOrEqual(16 * 4096); // at most the cache filling up
    // Firing a stretch reads only its slots (here 600 s of them: ~50,000 records).
    const visited = fire(store, nowMs + 600_000);
    expect(visited.length).toBe(Array.from({ length: 300_000 }, (_, i) => (i + 1) * 104_729 % limits.maxDelayMs).filter((d) => d <= 600_000).length);
    expect(store.heapBytes).toBeLessThanOrEqual(bound);
    store.close();
  });
});

describe('timer files under the broker state (with queue and dedup files, as on a node)', () => {
  const stateLimits = { dedupWindowMs: 600_000, dedupEntriesMax: 100_000 };
  const storesIn = (name: string, powerLossTestMode = false) => ({
    queues: new QueueFileStore({ dir: path.join(root, name, 'queues'), powerLossTestMode }),
    dedup: new DedupFileStore({ dir: path.join(root, name, 'dedup'), powerLossTestMode }),
    timers: new TimerFileStore({ dir: path.join(root, name, 'timers'), limits: { maxDelayMs: 3 * 24 * 3_600_000, precisionMs: 1000 }, wheelSlots: 1024, recordsPerFile: 1024, powerLossTestMode }),
  });
  const stateOn = (stores: ReturnType<typeof storesIn>): BrokerState => new BrokerState(stateLimits, stores.queues, stores.dedup, stores.timers);
  const closeAll = (stores: ReturnType<typeof storesIn>): void => {
    stores.queues.close();
    stores.dedup.close();
    stores.timers.close();
  };
  const message = (id: string, deliveryTimeMs: number): MessageRouting => ({ topic: 't', messageId: id, tag: id.endsWith('0') ? 'A' : '', messageGroup: '', queueId: -1, bodyBytes: 1, deliveryTimeMs });

  type Step = (state: BrokerState) => unknown;
  /** Entries as a log would hold them: delayed sends due over 10 minutes, normal sends, a fire every 5 rounds, recalls. */
  function history(rounds: number): Step[] {
    const steps: Step[] = [];
    let index = 0;
    let timeMs = epochMs;
    const at = (run: (state: BrokerState, index: number, timeMs: number) => unknown): void => {
      const i = ++index;
      const t = timeMs;
      steps.push((state) => run(state, i, state.advanceClock(t)));
    };
    at((s, i, t) => s.applyCommand(i, t, { op: 'topic.put', config: { ...defaultTopicConfig('t', 'MIXED'), readQueues: 4, writeQueues: 4 } }));
    for (let round = 0; round < rounds; round++) {
      const dues = Array.from({ length: 20 }, (_, k) => timeMs + 1_000 + ((round * 7_919 + k * 104_729) % 600_000));
      const sendIndex = index + 1;
      at((s, i, t) => s.applyMessages(i, t, dues.map((due, k) => message(`d${round}-${k}`, due))));
      at((s, i, t) => s.applyMessages(i, t, [message(`n${round}`, 0)]));
      if (round % 7 === 3) at((s, i, t) => s.applyCommand(i, t, { op: 'timer.cancel', logIndex: sendIndex, position: 3, dueMs: dues[3] as number }));
      timeMs += 2_000;
      if (round % 5 === 4) at((s, i, t) => s.applyCommand(i, t, { op: 'timer.fire', throughMs: timeMs }));
    }
    timeMs += 700_000;
    at((s, i, t) => s.applyCommand(i, t, { op: 'timer.fire', throughMs: timeMs }));
    return steps;
  }

  it('a positions-only snapshot restores, after a restart, to the state that took it; replay continues it; a peer gets the records', () => {
    const steps = history(160);
    const split = steps.length - 60;
    const stores = storesIn('n');
    const reference = new BrokerState(stateLimits);
    const live = stateOn(stores);
    for (const step of steps.slice(0, split)) for (const state of [reference, live]) step(state);
    expect(live.pendingTimers).toBeGreaterThan(1_000);
    const own = live.snapshot();
    expect(own[5]).toBe(0); // positions only
    expect(live.digest()).toBe(reference.digest());
    const atSnapshot = reference.digest();
    // What BrokerStateMachine.snapshotWithRecords sends a peer: read back through read-only views while the store goes on.
    const sent = BrokerState.restore(own, stateLimits, stores.queues.reader(), stores.dedup.reader(), stores.timers.reader()).snapshot({ withRecords: true });
    for (const step of steps.slice(split)) for (const state of [reference, live]) step(state);
    expect(live.digest()).toBe(reference.digest());
    expect([reference.pendingTimers, reference.timerPinnedFrom() !== undefined]).toEqual([0, true]);
    closeAll(stores); // a crash: whatever was written after the snapshot's sync may be lost

    const restarted = storesIn('n');
    const restored = BrokerState.restore(own, stateLimits, restarted.queues, restarted.dedup, restarted.timers);
    const peer = BrokerState.restore(sent, stateLimits); // a node without the files, sent the records
    expect(restored.digest()).toBe(atSnapshot);
    expect(peer.digest()).toBe(atSnapshot);
    for (const step of steps.slice(split)) for (const state of [restored, peer]) step(state);
    expect(restored.digest()).toBe(reference.digest());
    expect(peer.digest()).toBe(reference.digest());
    expect(restored.maxOffsets('t')).toEqual(reference.maxOffsets('t'));
    closeAll(restarted);
  });

  it('names a missing timer file as a TimerRecordsError (not a malformed snapshot); a state with memory timers refuses positions', () => {
    const stores = storesIn('m');
    const live = stateOn(stores);
    for (const step of history(60).slice(0, 100)) step(live);
    const own = live.snapshot();
    closeAll(stores);
    const dir = path.join(root, 'm', 'timers');
    for (const name of fs.readdirSync(dir)) fs.rmSync(path.join(dir, name));
    const again = storesIn('m');
    expect(() => BrokerState.restore(own, stateLimits, again.queues, again.dedup, again.timers)).toThrow(TimerRecordsError);
    expect(() => BrokerState.restore(own, stateLimits, again.queues, again.dedup, again.timers)).toThrow(/00000000000000000000\.tl is missing/);
    expect(() => BrokerState.restore(own, stateLimits, again.queues, again.dedup)).toThrow(/relies on timer files/);
    closeAll(again);
  });

  it('stops apply with a TimerRecordsError when a timer file cannot be written (never a result that lets this node differ)', () => {
    const blocked = path.join(root, 'blocked');
    fs.writeFileSync(blocked, 'not a directory');
    const machine = new BrokerStateMachine(stateLimits, undefined, undefined, new TimerFileStore({ dir: blocked, limits, wheelSlots: 1024, recordsPerFile: 512 }));
    const entry = (index: number, payload: Uint8Array) => ({ index, term: 1, kind: EntryKind.normal, payload });
    machine.apply([entry(1, encodeCommand({ timeMs: epochMs }, { op: 'topic.put', config: { ...defaultTopicConfig('t', 'MIXED'), readQueues: 1, writeQueues: 1 } }))]);
    const messages = Array.from({ length: 300 }, (_, i) => ({
      topic: 't', messageId: `m${i}`, tag: '', keys: [], messageGroup: '', queueId: -1, bornTimestamp: 1, bornHost: 'h', properties: {}, body: new Uint8Array(1), deliveryTimeMs: epochMs + 60_000,
    }));
    const apply = (): unknown => machine.apply([entry(2, encodeMessages({ timeMs: epochMs }, messages))]);
    expect(apply).toThrow(TimerRecordsError);
    expect(apply).toThrow(/blocked.*ENOTDIR/);
  });
});
