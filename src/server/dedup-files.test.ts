/**
 * The dedup window's records in files (dedup-files.ts), through BrokerState and
 * BrokerStateMachine as a broker node uses them: the files' layout; a positions-only snapshot
 * restoring after a restart (duplicates still found, replay continuing it); expiry's released
 * files deleted one sync late, so the previous snapshot stays restorable; power cuts (unsynced
 * writes cut back) losing only what the snapshot does not count, with a negative control
 * without the sync; a missing or short file, or one that cannot be written, as a
 * DedupRecordsError that stops the node; and the time to restore a million ids.
 * (dedup-window.test.ts runs the window's own behaviour tests against these files too.)
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BrokerState, type BrokerStateLimits } from '../broker/core/broker-state.js';
import { DedupRecordsError, DedupWindow, type DedupRecordStore } from '../broker/core/dedup-window.js';
import { defaultTopicConfig } from '../broker/core/names.js';
import { SnapshotReader, SnapshotWriter } from '../broker/core/state-snapshot.js';
import type { MessageRouting } from '../broker/core/entry-codec.js';
import { BrokerStateMachine } from '../broker/broker-state-machine.js';
import { encodeCommand, encodeMessages } from '../broker/core/entry-codec.js';
import { EntryKind, type SnapshotMeta } from '../raft/types.js';
import { QueueFileStore } from './consume-queue-files.js';
import { DedupFileStore } from './dedup-files.js';

const limits: BrokerStateLimits = { dedupWindowMs: 60_000, dedupEntriesMax: 1_000 };
const recordsPerFile = 1024;

let root: string;
beforeEach(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'raftmq-dd-')); });
afterEach(() => { fs.rmSync(root, { recursive: true, force: true }); });

/** A node's derived-state files: queue and dedup records (a positions-only snapshot needs both durable). */
interface NodeFiles {
  readonly queues: QueueFileStore;
  readonly dedup: DedupFileStore;
}

const filesOf = (name: string, powerLossTestMode = false): NodeFiles => ({
  queues: new QueueFileStore({ dir: path.join(root, name, 'queues'), powerLossTestMode }),
  dedup: new DedupFileStore({ dir: path.join(root, name, 'dedup'), recordsPerFile, cacheBlocks: 2, powerLossTestMode }),
});
const stateOn = (files: NodeFiles): BrokerState => new BrokerState(limits, files.queues, files.dedup);
/** The state of `snapshot` on the node's files; `readOnly` as for a snapshot of a running node (its writers are left alone). */
const restoreOn = (snapshot: Uint8Array, files: NodeFiles, readOnly = false): BrokerState => readOnly
  ? BrokerState.restore(snapshot, limits, files.queues.reader(), files.dedup.reader())
  : BrokerState.restore(snapshot, limits, files.queues, files.dedup);
const closeAll = (files: NodeFiles): void => {
  files.queues.close();
  files.dedup.close();
};
const dedupFiles = (name: string): string[] => {
  const dir = path.join(root, name, 'dedup');
  return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
};

const meta: SnapshotMeta = { index: 9, term: 1, members: [], configIndex: 0 };
const message = (messageId: string): MessageRouting => ({ topic: 't', messageId, tag: '', messageGroup: '', queueId: -1, bodyBytes: 1 });

/** Applies the same history to each state, one log index a call; sends `ids` four to an entry. */
class History {
  private index = 1;
  constructor(readonly states: BrokerState[]) {
    this.each((state, at) => state.applyCommand(at, 1_000, { op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 2, writeQueues: 2 } }));
  }

  /** Sends ids `${prefix}${from}` … up to `to`; returns every state's outcomes. */
  send(prefix: string, from: number, to: number): unknown[][] {
    const outcomes: unknown[][] = this.states.map(() => []);
    for (let i = from; i < to; i += 4) {
      const batch = Array.from({ length: Math.min(4, to - i) }, (_, k) => message(`${prefix}${i + k}`));
      this.each((state, at, n) => outcomes[n]?.push(...state.applyMessages(at, 1_000 + at, batch)));
    }
    return outcomes;
  }

  private each(apply: (state: BrokerState, logIndex: number, n: number) => void): void {
    const at = this.index++;
    this.states.forEach((state, n) => apply(state, at, n));
  }
}

describe('dedup records in files', () => {
  it('are 36-byte records in <first sequence number>.dd files; a positions-only snapshot restores after a restart and still knows every id', () => {
    const files = filesOf('a');
    const reference = new BrokerState(limits);
    const live = stateOn(files);
    const history = new History([reference, live]);
    history.send('m', 0, 1_000);
    const snapshot = live.snapshot();
    expect(dedupFiles('a')).toEqual(['00000000000000000000.dd']);
    expect(fs.statSync(path.join(root, 'a', 'dedup', '00000000000000000000.dd')).size).toBe(1_000 * 36);
    // Positions only: the snapshot holds neither the queue records (24 bytes) nor the dedup records (36).
    expect(live.snapshot({ withRecords: true }).byteLength - snapshot.byteLength).toBe(1_000 * (24 + 36));
    closeAll(files);

    const restored = restoreOn(snapshot, filesOf('a'));
    expect(restored.digest()).toBe(reference.digest());
    history.states.splice(1, 1, restored);
    // Old ids are duplicates on both, new ones are stored alike (and expire the oldest), across more files.
    const [again, restoredAgain] = history.send('m', 500, 1_000);
    expect(restoredAgain).toEqual(again);
    expect((again as { duplicate: boolean }[]).every((o) => o.duplicate)).toBe(true);
    const [fresh, restoredFresh] = history.send('n', 0, 2_500);
    expect(restoredFresh).toEqual(fresh);
    expect(restored.digest()).toBe(reference.digest());
    restored.snapshot();
    expect(dedupFiles('a')).toEqual(['00000000000000000000.dd', '00000000000000001024.dd', '00000000000000002048.dd', '00000000000000003072.dd']);
  });

  it('expiry releases files, deleted one sync late, so the previous snapshot stays restorable', () => {
    const files = filesOf('r');
    const live = stateOn(files);
    const history = new History([live]);
    history.send('m', 0, 2_100); // the window: the last 1,000, [1100, 2100)
    const first = live.snapshot();
    history.send('n', 0, 2_000); // now [3100, 4100)
    const second = live.snapshot();
    // File 0 ([0, 1024)) was released before the first snapshot: gone at the second.
    expect(dedupFiles('r')).toEqual(['00000000000000001024.dd', '00000000000000002048.dd', '00000000000000003072.dd', '00000000000000004096.dd']);
    const firstState = restoreOn(first, files, true);
    expect(firstState.applyMessages(9_000, 9_000, [message('m1500')])[0]?.duplicate).toBe(true);
    live.snapshot();
    // Those the second snapshot released go at the third: the first snapshot needs them, the second does not.
    expect(dedupFiles('r')).toEqual(['00000000000000003072.dd', '00000000000000004096.dd']);
    expect(() => restoreOn(first, files, true)).toThrow(/00000000000000001024\.dd is missing/);
    expect(restoreOn(second, files, true).digest()).toBe(live.digest());
  });

  it('a snapshot for a peer reads the records the snapshot counts while the node goes on writing', () => {
    const files = filesOf('leader');
    const machine = new BrokerStateMachine(limits, files.queues, files.dedup);
    const history = new History([machine.state]);
    history.send('m', 0, 3_000);
    const own = machine.snapshot();
    const atSnapshot = BrokerState.restore(machine.state.snapshot({ withRecords: true }), limits).digest();
    history.send('n', 0, 1_500);
    const sent = machine.snapshotWithRecords(own);
    const follower = new BrokerStateMachine(limits);
    follower.restore(sent, meta);
    expect(follower.state.digest()).toBe(atSnapshot);
  });

  describe('power cuts (power-loss test mode: unsynced writes cut back)', () => {
    /** A node takes a snapshot, sends on (unsynced, full blocks reach the files), and its power fails; `sync` replaces the dedup store's. */
    const cutAfterSnapshot = (cut: (maxExclusive: number) => number, sync?: () => void) => {
      const files = filesOf('p', true);
      const reference = new BrokerState(limits);
      const dedup: DedupRecordStore = sync === undefined ? files.dedup : { recordsDurable: true, open: (from, to) => files.dedup.open(from, to), sync, reader: () => files.dedup.reader() };
      const live = new BrokerState(limits, files.queues, dedup);
      const history = new History([reference, live]);
      history.send('m', 0, 1_500);
      const snapshot = live.snapshot();
      const atSnapshot = BrokerState.restore(reference.snapshot(), limits);
      history.send('n', 0, 3_000);
      files.queues.powerFail(() => 0);
      const report = files.dedup.powerFail(cut);
      closeAll(files);
      return { snapshot, atSnapshot, report };
    };

    it('lose only what the snapshot does not count: it restores to the state that took it, and replay gives the same answers', () => {
      // None of the unsynced bytes survive, half of them (a torn record), all but the last byte.
      const cuts = [(): number => 0, (max: number): number => max >> 1, (max: number): number => Math.max(0, max - 2)];
      for (const cut of cuts) {
        fs.rmSync(path.join(root, 'p'), { recursive: true, force: true });
        const { snapshot, atSnapshot, report } = cutAfterSnapshot(cut);
        expect(report.dedupBytesDiscarded).toBeGreaterThan(0);
        const restored = restoreOn(snapshot, filesOf('p'));
        expect(restored.digest()).toBe(atSnapshot.digest());
        // Replay of what followed the snapshot: the same outcomes as on the node that never lost power.
        const replayed = new History([atSnapshot, restored]);
        const [expected, actual] = replayed.send('n', 0, 3_000);
        expect(actual).toEqual(expected);
        expect(restored.digest()).toBe(atSnapshot.digest());
        // Still inside the window of time: the last id is a duplicate, the first expired by count.
        expect(restored.applyMessages(99_999, restored.nowMs, [message('n2999'), message('m0')]).map((o) => o.duplicate)).toEqual([true, false]);
      }
    });

    it('negative control: without the sync before a snapshot, the cut takes records it counts and the restore refuses', () => {
      const { snapshot } = cutAfterSnapshot(() => 0, () => {});
      expect(() => restoreOn(snapshot, filesOf('p'))).toThrow(DedupRecordsError);
    });
  });

  it('names the missing or short file a snapshot needs, and the node stops (a DedupRecordsError, not a malformed snapshot)', () => {
    const files = filesOf('m');
    const live = stateOn(files);
    new History([live]).send('m', 0, 1_600); // the window: the last 1,000 or so, in files 0 and 1024
    const snapshot = live.snapshot();
    closeAll(files);
    const last = path.join(root, 'm', 'dedup', '00000000000000001024.dd');
    fs.truncateSync(last, 36 * 10);
    const machine = (): BrokerStateMachine => {
      const reopened = filesOf('m');
      return new BrokerStateMachine(limits, reopened.queues, reopened.dedup);
    };
    expect(() => machine().restore(snapshot, meta)).toThrow(DedupRecordsError);
    expect(() => machine().restore(snapshot, meta)).toThrow(/00000000000000001024\.dd holds 360 bytes; the snapshot needs 20736 \(dedup records up to 1599\) — repair this node from its peers \(raftmq repair\)/);
    fs.rmSync(last);
    expect(() => machine().restore(snapshot, meta)).toThrow(/00000000000000001024\.dd is missing .*the snapshot needs dedup records \[\d+, 1600\)/);
  });

  it('stops apply with a DedupRecordsError when a dedup file cannot be written (never a result that lets this node differ)', () => {
    const dir = path.join(root, 'blocked');
    fs.writeFileSync(dir, 'not a directory');
    const machine = new BrokerStateMachine(limits, undefined, new DedupFileStore({ dir }));
    const entry = (index: number, payload: Uint8Array) => ({ index, term: 1, kind: EntryKind.normal, payload });
    machine.apply([entry(1, encodeCommand({ timeMs: 1 }, { op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 1, writeQueues: 1 } }))]);
    const messages = Array.from({ length: 1_100 }, (_, i) => ({
      topic: 't', messageId: `m${i}`, tag: '', keys: [], messageGroup: '', queueId: -1, bornTimestamp: 1, bornHost: 'h', properties: {}, body: new Uint8Array(1),
    }));
    const apply = (): unknown => machine.apply([entry(2, encodeMessages({ timeMs: 2 }, messages))]);
    expect(apply).toThrow(DedupRecordsError);
    expect(apply).toThrow(/blocked\/0+\.dd: ENOTDIR/);
  });

  it('restores a million ids from a positions-only snapshot by one sequential read of the hashes', () => {
    const windowLimits = { dedupWindowMs: 600_000, dedupEntriesMax: 1_000_000 };
    const dir = path.join(root, 'big');
    const store = new DedupFileStore({ dir });
    const window = DedupWindow.create(windowLimits, store);
    const n = 1_000_000;
    const id = (i: number) => `C0A8000100002A9F0000${i.toString(16).padStart(12, '0')}`;
    let started = performance.now();
    for (let i = 0; i < n; i++) window.add('TopicTest', id(i), i & 7, i, i);
    const addMs = performance.now() - started;
    store.sync();
    const writer = new SnapshotWriter();
    window.encodeInto(writer, false);
    const bytes = writer.finish();
    expect(bytes.byteLength).toBe(12);
    store.close();
    expect(fs.readdirSync(dir).length).toBe(8); // 4.5 MiB files of 131,072 records

    started = performance.now();
    const restored = DedupWindow.decode(new SnapshotReader(bytes), false, new DedupFileStore({ dir }), windowLimits);
    expect(restored.size).toBe(n); // the first use builds the table
    const restoreMs = performance.now() - started;
    console.info(`dedup files: 1M adds ${addMs.toFixed(0)} ms; restore of 1M ids from a positions-only snapshot ${restoreMs.toFixed(0)} ms; ${(restored.heapBytes / n).toFixed(2)} bytes/id in memory`);
    expect(restored.heapBytes / n).toBeLessThanOrEqual(12);
    expect(restoreMs).toBeLessThan(20_000);
    for (let i = 0; i < n; i += 9_973) expect(restored.find('TopicTest', id(i))).toEqual({ queueId: i & 7, offset: i });
    expect(restored.find('TopicTest', id(n))).toBeUndefined();
  });
});
