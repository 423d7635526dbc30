import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BrokerState, type BrokerStateLimits } from '../broker/core/broker-state.js';
import { QueueRecordsError, type QueueRecordStore } from '../broker/core/consume-queue.js';
import { defaultTopicConfig } from '../broker/core/names.js';
import { BrokerStateMachine } from '../broker/broker-state-machine.js';
import { encodeCommand, encodeMessages } from '../broker/core/entry-codec.js';
import { EntryKind } from '../raft/types.js';
import { QueueFileStore, queueDirName } from './consume-queue-files.js';
import { DedupFileStore } from './dedup-files.js';

const limits: BrokerStateLimits = { dedupWindowMs: 60_000, dedupEntriesMax: 100_000 };
const recordsPerFile = 2048;

let root: string;
beforeEach(() => { root = fs.mkdtempSync(path.join(os.tmpdir(), 'raftmq-cq-')); });
afterEach(() => { fs.rmSync(root, { recursive: true, force: true }); });

const storeIn = (name: string): QueueFileStore => new QueueFileStore({ dir: path.join(root, name), recordsPerFile, cacheBlocks: 4 });
/** The node's dedup files beside its queue files (a positions-only snapshot needs both stores durable). */
const dedupIn = (name: string, powerLossTestMode = false): DedupFileStore => new DedupFileStore({ dir: path.join(root, `${name}.dedup`), powerLossTestMode });

/** Applies the same history to each state: a topic of two queues, then `messages` sends from log index `fromIndex`. */
class History {
  private index = 1;
  constructor(readonly states: BrokerState[]) {
    this.each((state, at) => state.applyCommand(at, 1_000, { op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 2, writeQueues: 2 } }));
  }

  send(messages: number, perEntry = 4): void {
    for (let sent = 0; sent < messages; sent += perEntry) {
      const batch = Array.from({ length: Math.min(perEntry, messages - sent) }, (_, i) => ({
        topic: 't', messageId: `m${this.index}-${i}`, tag: i % 2 === 0 ? 'even' : '', messageGroup: '', queueId: -1, bodyBytes: 1,
      }));
      this.each((state, at) => state.applyMessages(at, 1_000 + at, batch));
    }
  }

  command(command: Parameters<BrokerState['applyCommand']>[2]): void {
    this.each((state, at) => state.applyCommand(at, 1_000 + at, command));
  }

  get logIndex(): number {
    return this.index - 1;
  }

  private each(apply: (state: BrokerState, logIndex: number) => void): void {
    const at = this.index++;
    for (const state of this.states) apply(state, at);
  }
}

const queueFiles = (store: QueueFileStore, queueId: number): string[] => {
  const dir = path.join(store.dir, queueDirName({ topic: 't', topicCreatedAt: 1, queueId }));
  return fs.existsSync(dir) ? fs.readdirSync(dir).sort() : [];
};

describe('consume queues in files', () => {
  it('a positions-only snapshot restores, after a restart, to the state that took it, and replay continues it', () => {
    const files = storeIn('a');
    const reference = new BrokerState(limits);
    const dedup = dedupIn('a');
    const live = new BrokerState(limits, files, dedup);
    const history = new History([reference, live]);
    history.send(10_001);
    const snapshot = live.snapshot();
    expect(live.snapshot({ withRecords: true }).byteLength - snapshot.byteLength).toBe(10_001 * (24 + 36)); // no queue or dedup records in it
    expect(queueFiles(files, 0).length).toBeGreaterThan(2);
    files.close();
    dedup.close();

    const reopened = storeIn('a');
    const restored = BrokerState.restore(snapshot, limits, reopened, dedupIn('a'));
    expect(restored.digest()).toBe(reference.digest());
    // Replay after the snapshot writes past it (the partly written tail block included).
    const more = Array.from({ length: 5 }, (_, i) => ({ topic: 't', messageId: `late-${i}`, tag: '', messageGroup: '', queueId: -1, bodyBytes: 1 }));
    reference.applyMessages(history.logIndex + 1, 90_000, more);
    restored.applyMessages(history.logIndex + 1, 90_000, more);
    expect(restored.digest()).toBe(reference.digest());
    const queue = restored.queue('t', 1);
    expect(queue?.maxOffset).toBe(reference.queue('t', 1)?.maxOffset);
    for (let offset = 0; offset < (queue?.maxOffset ?? 0); offset += 997) {
      expect(queue?.logIndexAt(offset)).toBe(reference.queue('t', 1)?.logIndexAt(offset));
      expect(queue?.tagIdAt(offset)).toBe(reference.queue('t', 1)?.tagIdAt(offset));
    }
    reopened.close();
  });

  it('a snapshot with its records restores on a node without the files', () => {
    const files = storeIn('leader');
    const dedup = dedupIn('leader');
    const live = new BrokerState(limits, files, dedup);
    const history = new History([live]);
    history.send(5_000);
    const own = live.snapshot();
    history.send(300); // the leader moved on; the records the snapshot counts stay as they were
    const sent = BrokerState.restore(own, limits, files.reader(), dedup.reader()).snapshot({ withRecords: true });
    const follower = storeIn('follower');
    const followerDedup = dedupIn('follower');
    const installed = BrokerState.restore(sent, limits, follower, followerDedup);
    expect(installed.digest()).toBe(BrokerState.restore(own, limits, files.reader(), dedup.reader()).digest());
    expect(installed.queue('t', 0)?.maxOffset).toBe(2_500);
    // And on the follower the records are now files: its own snapshot restores after a restart.
    const followerSnapshot = installed.snapshot();
    follower.close();
    followerDedup.close();
    expect(BrokerState.restore(followerSnapshot, limits, storeIn('follower'), dedupIn('follower')).digest()).toBe(installed.digest());
  });

  it('retention deletes a released file one sync late, so the previous snapshot stays restorable', () => {
    const files = storeIn('r');
    const dedup = dedupIn('r');
    const live = new BrokerState(limits, files, dedup);
    const history = new History([live]);
    history.send(20_000);
    live.snapshot();
    const before = queueFiles(files, 0);
    expect(before.length).toBe(5); // 10,000 records in files of 2,048
    history.command({ op: 'retention', throughIndex: Math.floor(history.logIndex / 2) });
    const first = live.snapshot();
    expect(queueFiles(files, 0)).toEqual(before);
    expect(BrokerState.restore(first, limits, files.reader(), dedup.reader()).queue('t', 0)?.minOffset).toBe(live.queue('t', 0)?.minOffset);
    history.send(4);
    live.snapshot();
    const after = queueFiles(files, 0);
    expect(after.length).toBeLessThan(before.length);
    // The previous snapshot (first) still restores: the deleted files were below its first offset.
    expect(BrokerState.restore(first, limits, files.reader(), dedup.reader()).queue('t', 0)?.logIndexAt(live.queue('t', 0)?.minOffset ?? 0)).toBeGreaterThan(0);
  });

  it('restores a queue whose first retained offset is inside its last, partly written block', () => {
    const files = storeIn('tail');
    const dedup = dedupIn('tail');
    const reference = new BrokerState(limits);
    const live = new BrokerState(limits, files, dedup);
    const history = new History([reference, live]);
    history.send(10_000);
    history.command({ op: 'retention', throughIndex: history.logIndex - 2 });
    const base = live.queue('t', 0)?.minOffset ?? 0;
    expect(base % 1024).toBeGreaterThan(0);
    expect(Math.floor(base / 1024)).toBe(Math.floor((live.queue('t', 0)?.maxOffset ?? 0) / 1024));
    const snapshot = live.snapshot();
    files.close();
    dedup.close();
    const restored = BrokerState.restore(snapshot, limits, storeIn('tail'), dedupIn('tail'));
    history.states.splice(1, 1, restored);
    history.send(2_000);
    expect(restored.digest()).toBe(reference.digest());
    const again = BrokerState.restore(restored.snapshot(), limits, storeIn('tail'), dedupIn('tail'));
    expect(again.digest()).toBe(reference.digest());
  });

  it('a deleted topic\'s files go one sync after the first snapshot without it', () => {
    const files = storeIn('d');
    const live = new BrokerState(limits, files, dedupIn('d'));
    const history = new History([live]);
    history.send(100);
    live.snapshot();
    history.command({ op: 'topic.delete', name: 't' });
    live.snapshot();
    expect(queueFiles(files, 0).length).toBe(1);
    live.snapshot();
    expect(queueFiles(files, 0).length).toBe(0);
  });

  it('names the missing or short file when a snapshot needs records that are not there', () => {
    const files = storeIn('m');
    const dedup = dedupIn('m');
    const live = new BrokerState(limits, files, dedup);
    const history = new History([live]);
    history.send(6_000);
    const snapshot = live.snapshot();
    files.close();
    dedup.close();
    const dir = path.join(root, 'm', queueDirName({ topic: 't', topicCreatedAt: 1, queueId: 0 }));
    const last = fs.readdirSync(dir).sort().at(-1) as string;
    fs.truncateSync(path.join(dir, last), 24 * 10);
    expect(() => BrokerState.restore(snapshot, limits, storeIn('m'), dedupIn('m'))).toThrow(QueueRecordsError);
    expect(() => BrokerState.restore(snapshot, limits, storeIn('m'), dedupIn('m'))).toThrow(new RegExp(`${last} holds 240 bytes; the snapshot needs \\d+ .*raftmq repair`));
    fs.rmSync(path.join(dir, last));
    expect(() => BrokerState.restore(snapshot, limits, storeIn('m'), dedupIn('m'))).toThrow(new RegExp(`${last} is missing`));
  });

  it('stops apply with a QueueRecordsError when a queue file cannot be written (never a result that lets this node differ)', () => {
    const dir = path.join(root, 'blocked');
    fs.writeFileSync(dir, 'not a directory');
    const machine = new BrokerStateMachine(limits, new QueueFileStore({ dir, recordsPerFile }));
    const entry = (index: number, payload: Uint8Array) => ({ index, term: 1, kind: EntryKind.normal, payload });
    machine.apply([entry(1, encodeCommand({ timeMs: 1 }, { op: 'topic.put', config: { ...defaultTopicConfig('t'), readQueues: 1, writeQueues: 1 } }))]);
    const messages = Array.from({ length: 1_100 }, (_, i) => ({
      topic: 't', messageId: `m${i}`, tag: '', keys: [], messageGroup: '', queueId: -1, bornTimestamp: 1, bornHost: 'h', properties: {}, body: new Uint8Array(1),
    }));
    const apply = (): unknown => machine.apply([entry(2, encodeMessages({ timeMs: 2 }, messages))]);
    expect(apply).toThrow(QueueRecordsError);
    expect(apply).toThrow(/blocked\/t@1-0\/0+\.cq: ENOTDIR/);
  });

  describe('power cuts (power-loss test mode: unsynced writes cut back)', () => {
    const cutAfterSnapshot = (store: (files: QueueFileStore) => QueueRecordStore) => {
      const files = new QueueFileStore({ dir: path.join(root, 'p'), recordsPerFile, cacheBlocks: 4, powerLossTestMode: true });
      const dedup = dedupIn('p', true);
      const reference = new BrokerState(limits);
      const live = new BrokerState(limits, store(files), dedup);
      const history = new History([reference, live]);
      history.send(5_001);
      const snapshot = live.snapshot();
      const atSnapshot = BrokerState.restore(reference.snapshot(), limits);
      history.send(3_000); // flushed blocks reach the files, unsynced
      const report = files.powerFail(() => 0); // none of it survives
      dedup.powerFail(() => 0);
      files.close();
      dedup.close();
      return { snapshot, atSnapshot, report };
    };

    it('lose only what the snapshot does not count: it restores to the state that took it', () => {
      const { snapshot, atSnapshot, report } = cutAfterSnapshot((files) => files);
      expect(report.queueBytesDiscarded).toBeGreaterThan(0);
      const restored = BrokerState.restore(snapshot, limits, new QueueFileStore({ dir: path.join(root, 'p'), recordsPerFile }), dedupIn('p'));
      expect(restored.digest()).toBe(atSnapshot.digest());
    });

    it('negative control: without the sync before a snapshot, the cut takes records it counts and the restore refuses', () => {
      const { snapshot } = cutAfterSnapshot((files) => ({ recordsDurable: true, open: (q, from, to) => files.open(q, from, to), sync: () => {}, reader: () => files.reader() }));
      expect(() => BrokerState.restore(snapshot, limits, new QueueFileStore({ dir: path.join(root, 'p'), recordsPerFile }), dedupIn('p'))).toThrow(QueueRecordsError);
    });
  });

  it('a state whose queues are in memory refuses a positions-only snapshot', () => {
    const files = storeIn('x');
    const live = new BrokerState(limits, files, dedupIn('x'));
    new History([live]).send(10);
    expect(() => BrokerState.restore(live.snapshot(), limits)).toThrow(/relies on consume-queue files/);
  });
});
