/**
 * The node driver's ordering contract, under every interleaving fast-check's scheduler
 * chooses between message arrivals and storage completions: no answer leaves before what it
 * depends on is durable. A granted vote leaves only once the durable state rules out any
 * other vote in that term (a higher term, or this vote in that term); a
 * successful append answer only covers entries that are durable and match the leader's log;
 * no answer carries a term that is not durable yet.
 */
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { RaftNode } from './raft-node.js';
import { silentLogger, type LogStore, type SnapshotStore, type StableStore } from './ports.js';
import { EntryKind, type Entry, type HardState, type LogIndex, type RaftMessage, type Term } from '../types.js';
import { TermRuns } from '../term-runs.js';

const members = [{ id: 'n1', address: 'a:1' }, { id: 'n2', address: 'a:2' }, { id: 'n3', address: 'a:3' }];

/** One leader history that every append is cut from, so the inputs stay a valid Raft run. */
const leaderTerm = 4;
const leaderLog: Entry[] = [1, 1, 2, 2, 2, 3, 4, 4, 4, 4].map((term, i) => ({ index: i + 1, term, kind: EntryKind.normal, payload: new Uint8Array([i]) }));
const termOf = (index: LogIndex): Term => (index === 0 ? 0 : (leaderLog[index - 1] as Entry).term);

type Input =
  | { kind: 'append'; from: number; count: number; commit: number }
  | { kind: 'vote'; term: number; lastIndex: number; preVote: boolean };

const input: fc.Arbitrary<Input> = fc.oneof(
  fc.record({ kind: fc.constant('append' as const), from: fc.integer({ min: 0, max: 9 }), count: fc.integer({ min: 0, max: 4 }), commit: fc.integer({ min: 0, max: 10 }) }),
  fc.record({ kind: fc.constant('vote' as const), term: fc.integer({ min: 1, max: 6 }), lastIndex: fc.integer({ min: 0, max: 10 }), preVote: fc.boolean() }),
);

function toMessage(value: Input): RaftMessage {
  if (value.kind === 'vote') {
    return { type: 'vote-request', from: 'n3', to: 'n2', term: value.term, preVote: value.preVote, transfer: true, lastIndex: value.lastIndex, lastTerm: termOf(value.lastIndex) };
  }
  const entries = leaderLog.slice(value.from, Math.min(value.from + value.count, leaderLog.length));
  const last = value.from + entries.length;
  return { type: 'append-request', from: 'n1', to: 'n2', term: leaderTerm, prevIndex: value.from, prevTerm: termOf(value.from), entryCount: entries.length, commitIndex: Math.min(value.commit, last), entries };
}

/** This property never takes a snapshot: a store that has none and refuses to write one. */
const noSnapshots: SnapshotStore = {
  loadNewest: async () => undefined,
  save: () => Promise.reject(new Error('this test never snapshots')),
  newest: () => undefined,
  readFileChunk: () => Promise.reject(new Error('this test never snapshots')),
  receive: () => { throw new Error('this test never snapshots'); },
};

it('never sends an answer before the state it depends on is durable', async () => {
  await fc.assert(fc.asyncProperty(fc.scheduler(), fc.array(input, { minLength: 1, maxLength: 25 }), async (s, inputs) => {
    let durableHardState: HardState = { term: 0, votedFor: undefined };
    const written: Entry[] = [];
    let durableThrough = 0;
    const runs = new TermRuns();
    const violations: string[] = [];
    const log: LogStore = {
      get firstIndex() { return 1; },
      get lastIndex() { return written.length; },
      termAt: (index) => runs.termAt(index),
      runs: () => runs.runs(),
      configIndexes: () => [],
      payloadBytesAt: (index) => (written[index - 1] as Entry).payload.length,
      append: async (entries, options) => {
        await s.schedule(Promise.resolve(), 'log.append');
        for (const entry of entries) {
          written[entry.index - 1] = entry;
          runs.append(entry.index, entry.term);
        }
        if (options.sync) durableThrough = written.length;
      },
      truncateSuffix: async (fromIndex) => {
        await s.schedule(Promise.resolve(), 'log.truncate');
        written.length = fromIndex - 1;
        runs.truncateFrom(fromIndex);
        durableThrough = Math.min(durableThrough, written.length);
      },
      deletePrefix: () => Promise.reject(new Error('this test never compacts')),
      resetTo: () => Promise.reject(new Error('this test never installs a snapshot')),
      segments: () => [],
      read: async ({ fromIndex, throughIndex }) => written.slice(fromIndex - 1, Math.min(throughIndex, written.length)),
      sync: async () => {
        await s.schedule(Promise.resolve(), 'log.sync');
        durableThrough = written.length;
      },
    };
    const stable: StableStore = {
      load: async () => undefined,
      save: async (state) => {
        await s.schedule(Promise.resolve(), 'stable.save');
        durableHardState = state;
      },
    };
    const node = await RaftNode.start({
      groupId: 'g', bootstrapMembers: members, log, stable,
      core: { id: 'n2', electionTimeoutTicks: 10, heartbeatIntervalTicks: 2, preVote: true, checkQuorum: true, appendEntriesMax: 64, appendBytesMax: 1 << 20, inflightAppendsMax: 4, uncommittedEntriesMax: 100 },
      transport: {
        send: (message) => {
          // A grant in term t may leave once the durable state rules out any other vote in t:
          // a higher durable term, or term t with this vote recorded.
          const voteSettled = durableHardState.term > (message.term as number) || (durableHardState.term === message.term && message.type === 'vote-response' && durableHardState.votedFor === message.to);
          if (message.type === 'vote-response' && message.granted && !message.preVote && !voteSettled) {
            violations.push(`vote for ${message.to} in t${message.term} sent before it was durable (${JSON.stringify(durableHardState)})`);
          }
          if (!(message.type === 'vote-response' && message.preVote) && message.term > durableHardState.term) {
            violations.push(`${message.type} carries t${message.term}, durable term is t${durableHardState.term}`);
          }
          if (message.type === 'append-response' && message.success) {
            if (message.matchIndex > durableThrough) violations.push(`acknowledged ${message.matchIndex}, durable through ${durableThrough}`);
            for (let index = 1; index <= message.matchIndex; index++) {
              if (written[index - 1]?.term !== termOf(index)) violations.push(`acknowledged ${message.matchIndex} but index ${index} differs from the leader`);
            }
          }
        },
      },
      stateMachine: { apply: (entries) => entries.map(() => undefined), snapshot: () => new Uint8Array(0), restore: () => {}, firstNeededIndex: () => 1 },
      snapshots: noSnapshots, snapshotEveryEntries: Number.MAX_SAFE_INTEGER, snapshotCatchUpEntries: 0,
      clock: { nowMs: () => 0, every: () => ({ dispose() {} }) },
      random: { nextInt: () => 0 },
      logger: silentLogger,
      tickIntervalMs: 10, flushMode: 'sync', flushIntervalMs: 100,
    });
    for (const value of inputs) void s.schedule(Promise.resolve(), 'deliver').then(() => node.receive(toMessage(value)));
    // The loop may schedule more I/O after a drain (and while closing): keep releasing.
    const drain = async (until: () => boolean): Promise<void> => {
      for (let round = 0; round < 10_000 && !until(); round++) {
        await s.waitAll();
        await new Promise((resolve) => setImmediate(resolve));
        if (s.count() === 0 && round > 2 && until === idle) return;
      }
    };
    const idle = (): boolean => false;
    await drain(idle);
    let closed = false;
    const closing = node.close().then(() => { closed = true; });
    await drain(() => closed);
    await closing;
    expect(violations).toEqual([]);
    expect(node.failed).toBeUndefined();
  }), { numRuns: 200 });
});
