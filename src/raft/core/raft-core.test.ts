/**
 * RaftCore driven directly (etcd's paper-test style): cores exchange messages through a tiny
 * synchronous router that can drop traffic between chosen nodes. Each test is named after
 * the property it checks.
 */
import { describe, expect, it } from 'vitest';
import { RaftCore, type RaftCoreConfig } from './raft-core.js';
import { EntryKind, type AppendRequest, type Entry, type Member, type RaftMessage, type VoteResponse } from '../types.js';

const members = (n: number): Member[] => Array.from({ length: n }, (_, i) => ({ id: `n${i + 1}`, address: `n${i + 1}:1` }));

function config(id: string, overrides: Partial<RaftCoreConfig> = {}): RaftCoreConfig {
  return { id, electionTimeoutTicks: 10, heartbeatIntervalTicks: 2, preVote: true, checkQuorum: true, appendEntriesMax: 64, appendBytesMax: 1 << 20, inflightAppendsMax: 4, uncommittedEntriesMax: 1000, ...overrides };
}

/** In-memory group: each node's durable log is an array, and ready/advance is honoured. */
class Group {
  readonly cores = new Map<string, RaftCore>();
  readonly logs = new Map<string, Entry[]>();
  readonly cut = new Set<string>();
  readonly sent: RaftMessage[] = [];
  readonly installed: { id: string; index: number }[] = [];
  /** Drops the first message it returns true for (then clears itself). */
  dropOnce: ((message: RaftMessage) => boolean) | undefined;

  constructor(size: number, overrides: Partial<RaftCoreConfig> = {}, seed = 1) {
    let state = seed;
    for (const member of members(size)) {
      const log: Entry[] = [];
      this.logs.set(member.id, log);
      const random = { nextInt: (max: number) => { state = (state * 1103515245 + 12345) % 2147483648; return state % max; } };
      this.cores.set(member.id, new RaftCore(config(member.id, overrides), {
        hardState: { term: 0, votedFor: undefined },
        log: { firstIndex: 1, prevTerm: 0, lastIndex: 0, runs: [] },
        configs: [{ index: 0, members: members(size) }],
        appliedIndex: 0,
      }, random, (index) => (log[index - 1] as Entry).payload.length));
    }
  }

  core(id: string): RaftCore { return this.cores.get(id) as RaftCore; }
  isolate(id: string): void { for (const other of this.cores.keys()) if (other !== id) { this.cut.add(`${id}>${other}`); this.cut.add(`${other}>${id}`); } }
  heal(): void { this.cut.clear(); }

  /** Processes ready states and delivers messages until quiet. */
  stabilize(): void {
    for (let round = 0; round < 200; round++) {
      const inFlight: RaftMessage[] = [];
      for (const [id, core] of this.cores) {
        while (core.hasReady()) {
          const ready = core.ready();
          const log = this.logs.get(id) as Entry[];
          if (ready.snapshot !== undefined) {
            log.length = 0; // the log restarts after the snapshot; what it covers is never read again
            log.length = ready.snapshot.index;
            this.installed.push({ id, index: ready.snapshot.index });
          }
          if (ready.truncateFrom !== undefined) log.length = ready.truncateFrom - 1;
          for (const entry of ready.entries) {
            log.length = entry.index - 1;
            log.push(entry);
          }
          for (const message of ready.messages) {
            if (message.type === 'append-request') message.entries = log.slice(message.prevIndex, message.prevIndex + message.entryCount);
            inFlight.push(message);
          }
          core.advance(ready);
        }
      }
      if (inFlight.length === 0) return;
      for (const message of inFlight) {
        this.sent.push(message);
        if (this.dropOnce?.(message) === true) {
          this.dropOnce = undefined;
          continue;
        }
        if (!this.cut.has(`${message.from}>${message.to}`)) this.core(message.to).step(message);
      }
    }
    throw new Error('did not stabilize');
  }

  tick(id: string, times: number): void {
    for (let i = 0; i < times; i++) {
      this.core(id).tick();
      this.stabilize();
    }
  }

  tickAll(times: number): void {
    for (let i = 0; i < times; i++) {
      for (const core of this.cores.values()) core.tick();
      this.stabilize();
    }
  }

  leaders(): RaftCore[] { return [...this.cores.values()].filter((c) => c.role === 'leader'); }
}

const payload = (text: string): Uint8Array => new TextEncoder().encode(text);

describe('RaftCore', () => {
  it('elects exactly one leader, which commits a no-op of its own term', () => {
    const group = new Group(3);
    group.tick('n1', 25);
    expect(group.leaders().map((c) => c.id)).toEqual(['n1']);
    const leader = group.core('n1');
    expect(leader.commitIndex).toBe(1);
    expect(group.logs.get('n1')?.[0]?.kind).toBe(EntryKind.noop);
    expect(group.logs.get('n2')?.[0]?.term).toBe(leader.term);
  });

  it('replicates proposals in batches and commits them on a quorum', () => {
    const group = new Group(3);
    group.tick('n1', 25);
    const outcome = group.core('n1').propose([payload('a'), payload('b'), payload('c')]);
    expect(outcome).toMatchObject({ kind: 'appended', firstIndex: 2, lastIndex: 4 });
    group.stabilize();
    expect(group.core('n1').commitIndex).toBe(4);
    const batched = group.sent.filter((m) => m.type === 'append-request' && m.entryCount === 3);
    expect(batched.length).toBe(2); // one message per follower for the whole batch
  });

  it('refuses proposals on a follower and names the leader', () => {
    const group = new Group(3);
    group.tick('n1', 25);
    expect(group.core('n2').propose([payload('x')])).toEqual({ kind: 'not-leader', leaderHint: 'n1' });
  });

  it('pre-vote keeps a rejoining partitioned node from disrupting a healthy leader', () => {
    const group = new Group(3);
    group.tick('n1', 25);
    const term = group.core('n1').term;
    group.isolate('n3');
    group.tick('n3', 100); // n3 times out many times but cannot win pre-votes
    expect(group.core('n3').term).toBe(term);
    group.heal();
    group.tickAll(5);
    expect(group.core('n1').role).toBe('leader');
    expect(group.core('n1').term).toBe(term);
  });

  it('check-quorum: a leader that cannot hear a majority steps down', () => {
    const group = new Group(3);
    group.tick('n1', 25);
    group.isolate('n1');
    group.tick('n1', 25);
    expect(group.core('n1').role).not.toBe('leader');
  });

  it('rejects a vote for a candidate whose log is behind, with a named reason', () => {
    const group = new Group(3);
    group.tick('n1', 25);
    group.core('n1').propose([payload('a')]);
    group.stabilize();
    const n3 = group.core('n3');
    n3.step({ type: 'vote-request', from: 'n2', to: 'n3', term: n3.term + 1, preVote: false, transfer: true, lastIndex: 1, lastTerm: 1 });
    const ready = n3.ready();
    n3.advance(ready);
    const answer = ready.messages.find((m): m is VoteResponse => m.type === 'vote-response');
    expect(answer).toMatchObject({ granted: false, reason: 'log-behind' });
  });

  it('transfers leadership to a caught-up follower with TimeoutNow', () => {
    const group = new Group(3);
    group.tick('n1', 25);
    expect(group.core('n1').transferLeadership('n2')).toMatchObject({ kind: 'appended' });
    group.stabilize();
    expect(group.leaders().map((c) => c.id)).toEqual(['n2']);
    expect(group.core('n1').role).toBe('follower');
  });

  it('refuses proposals while a transfer is in progress', () => {
    const group = new Group(3);
    group.tick('n1', 25);
    group.isolate('n2');
    group.core('n1').propose([payload('a')]);
    group.stabilize();
    group.core('n1').transferLeadership('n2');
    expect(group.core('n1').propose([payload('b')])).toEqual({ kind: 'dropped', reason: 'leadership-transfer' });
  });

  it('adds and removes a member one at a time, refusing a second change while one is pending', () => {
    const group = new Group(3);
    group.tick('n1', 25);
    const leader = group.core('n1');
    expect(leader.proposeMembershipChange({ remove: 'n3' })).toMatchObject({ kind: 'appended' });
    expect(leader.proposeMembershipChange({ remove: 'n2' })).toEqual({ kind: 'dropped', reason: 'config-change-pending' });
    group.stabilize();
    expect(leader.members.map((m) => m.id)).toEqual(['n1', 'n2']);
    expect(group.core('n2').members.map((m) => m.id)).toEqual(['n1', 'n2']);
    expect(leader.proposeMembershipChange({ add: { id: 'n3', address: 'n3:1' } })).toMatchObject({ kind: 'appended' });
    group.stabilize();
    expect(leader.members.map((m) => m.id)).toEqual(['n1', 'n2', 'n3']);
  });

  it('a new leader refuses a membership change until it has committed an entry of its term', () => {
    const group = new Group(3);
    const n1 = group.core('n1');
    for (let i = 0; i < 30 && n1.role === 'follower'; i++) n1.tick();
    expect(n1.role).toBe('pre-candidate');
    n1.advance(n1.ready());
    n1.step({ type: 'vote-response', from: 'n2', to: 'n1', term: n1.term + 1, preVote: true, granted: true, reason: undefined });
    expect(n1.role).toBe('candidate');
    n1.advance(n1.ready());
    n1.step({ type: 'vote-response', from: 'n2', to: 'n1', term: n1.term, preVote: false, granted: true, reason: undefined });
    expect(n1.role).toBe('leader');
    // Its no-op is not committed yet (Ongaro's single-server change errata).
    expect(n1.proposeMembershipChange({ remove: 'n3' })).toEqual({ kind: 'dropped', reason: 'leader-not-ready' });
  });

  it('a leader removed from the configuration steps down once the change commits', () => {
    const group = new Group(3);
    group.tick('n1', 25);
    group.core('n1').proposeMembershipChange({ remove: 'n1' });
    group.stabilize();
    expect(group.core('n1').role).toBe('follower');
    group.tickAll(40);
    const leaders = group.leaders().map((c) => c.id);
    expect(leaders.length).toBe(1);
    expect(leaders[0]).not.toBe('n1');
  });

  it('backs off over a whole conflicting term at once and truncates the uncommitted suffix', () => {
    const group = new Group(3);
    group.tick('n1', 25);
    group.isolate('n1');
    group.core('n1').propose(Array.from({ length: 20 }, (_, i) => payload(`stale-${i}`)));
    group.stabilize();
    group.tickAll(40); // n2 or n3 wins; n1 steps down
    const leader = group.leaders().find((c) => c.id !== 'n1') as RaftCore;
    expect(leader).toBeDefined();
    leader.propose([payload('fresh')]);
    group.stabilize();
    group.heal();
    const before = group.sent.length;
    group.tickAll(5);
    const rejections = group.sent.slice(before).filter((m) => m.type === 'append-response' && m.from === 'n1' && !m.success);
    expect(rejections.length).toBeLessThanOrEqual(2);
    expect(group.logs.get('n1')?.map((e) => e.term)).toEqual(group.logs.get(leader.id)?.map((e) => e.term));
    expect(group.logs.get('n1')?.some((e) => new TextDecoder().decode(e.payload).startsWith('stale'))).toBe(false);
  });

  // Regression (found by the simulator, seeds 1052/1115/1308/1326/1506): a lost append in the
  // pipeline was never re-sent because heartbeat answers counted as progress.
  /** n1 leads n2 and n3; 'a' is everywhere, the append carrying 'b' to n2 was dropped. */
  function groupThatLostAnAppendToN2(): Group {
    const group = new Group(3);
    group.tick('n1', 25);
    group.core('n1').propose([payload('a')]);
    group.stabilize();
    group.dropOnce = (m) => m.type === 'append-request' && m.to === 'n2' && m.entryCount > 0;
    group.core('n1').propose([payload('b')]);
    group.stabilize();
    return group;
  }

  it('re-sends an append lost from the pipeline once an election timeout passes without progress, not after one slow heartbeat', () => {
    const group = groupThatLostAnAppendToN2();
    expect(group.logs.get('n2')?.length).toBe(2); // 'b' was lost on the way to n2
    group.tick('n1', 6); // three heartbeat intervals: n2 may just be slow, nothing is sent again
    expect(group.logs.get('n2')?.length).toBe(2);
    group.tick('n1', 8); // past the election timeout (10 ticks): lost, probed and re-sent
    expect(group.logs.get('n2')?.length).toBe(3);
  });

  it('a probe outstanding at a heartbeat is asked again without its entries, and replication resumes from the answer', () => {
    const group = groupThatLostAnAppendToN2();
    // Lost after an election timeout: n1 probes n2 from 'b', and that probe is dropped too.
    group.dropOnce = (m) => m.type === 'append-request' && m.to === 'n2' && m.entryCount > 0;
    for (let i = 0; i < 20 && group.dropOnce !== undefined; i++) group.tick('n1', 1);
    expect(group.dropOnce).toBeUndefined();
    const before = group.sent.length;
    group.tick('n1', 2); // the next heartbeat: an empty probe at the same point, then the entries
    const sent = group.sent.slice(before).filter((m): m is AppendRequest => m.type === 'append-request' && m.to === 'n2');
    expect(sent[0]?.entryCount).toBe(0);
    expect(group.logs.get('n2')?.length).toBe(3);
  });

  it('never rewrites entries at or below its commit index, whatever an append says', () => {
    const group = new Group(3);
    group.tick('n1', 25);
    group.core('n1').propose([payload('a')]);
    group.stabilize();
    group.tick('n1', 2); // a heartbeat carries the commit index to followers
    const follower = group.core('n2');
    expect(follower.commitIndex).toBe(2);
    const committedTerms = [follower.termAt(1), follower.termAt(2)];
    const forgedTerm = follower.term + 1;
    follower.step({ type: 'append-request', from: 'n3', to: 'n2', term: forgedTerm, prevIndex: 0, prevTerm: 0, entryCount: 2, commitIndex: 0, entries: [1, 2].map((index) => ({ index, term: forgedTerm, kind: EntryKind.normal, payload: payload('forged') })) });
    expect([follower.termAt(1), follower.termAt(2)]).toEqual(committedTerms);
  });

  /** The leader writes a snapshot through its commit index and compacts its log under it. */
  function snapshotAndCompact(core: RaftCore, log: Entry[]): number {
    const index = core.commitIndex;
    core.snapshotTaken({ index, term: core.termAt(index) as number, ...core.configAt(index) });
    core.logCompacted(index + 1);
    void log;
    return index;
  }

  it('a follower behind the compacted prefix gets an InstallSnapshot, installs it and then follows the log', () => {
    const group = new Group(3);
    group.tick('n1', 25);
    group.isolate('n3');
    const leader = group.core('n1');
    leader.propose([payload('a'), payload('b'), payload('c')]);
    group.stabilize();
    const snapshotIndex = snapshotAndCompact(leader, group.logs.get('n1') as Entry[]);
    expect(leader.firstIndex).toBe(snapshotIndex + 1);
    group.heal();
    group.tick('n1', 4);
    const installs = group.sent.filter((m) => m.type === 'install-snapshot');
    expect(installs).toHaveLength(1); // appends pause while the snapshot streams: one, not one per heartbeat
    expect(group.installed).toEqual([{ id: 'n3', index: snapshotIndex }]);
    expect(group.core('n3').commitIndex).toBe(snapshotIndex);
    leader.propose([payload('d')]);
    group.tick('n1', 4); // a later heartbeat carries the new commit index
    expect(group.core('n3').commitIndex).toBe(snapshotIndex + 1);
    expect(group.logs.get('n3')?.[snapshotIndex]?.payload).toEqual(payload('d'));
    expect(leader.followerMatch('n3')).toBe(snapshotIndex + 1);
  });

  it('a snapshot whose last entry the follower already holds keeps the log after it (no install)', () => {
    const group = new Group(3);
    group.tick('n1', 25);
    const leader = group.core('n1');
    leader.propose([payload('a'), payload('b')]);
    group.stabilize();
    const follower = group.core('n2');
    const meta = { index: 2, term: leader.termAt(2) as number, ...leader.configAt(2) };
    follower.step({ type: 'install-snapshot', from: 'n1', to: 'n2', term: leader.term, snapshot: meta });
    const ready = follower.ready();
    expect(ready.snapshot).toBeUndefined();
    const answer = ready.messages.find((m) => m.type === 'append-response');
    expect(answer).toMatchObject({ success: true });
    follower.advance(ready);
    expect(follower.lastIndex).toBe(3);
  });

  it('a snapshot from an older term is refused with stale-term and installs nothing', () => {
    const group = new Group(3);
    group.tick('n1', 25);
    const follower = group.core('n2');
    const term = follower.term;
    follower.step({ type: 'install-snapshot', from: 'n3', to: 'n2', term: term - 1, snapshot: { index: 50, term: term - 1, members: members(3), configIndex: 0 } });
    const ready = follower.ready();
    expect(ready.snapshot).toBeUndefined();
    expect(ready.messages).toEqual([expect.objectContaining({ type: 'append-response', success: false, reason: 'stale-term' })]);
    follower.advance(ready);
    expect(follower.commitIndex).toBe(1);
  });

  it('a failed snapshot stream makes the leader back off for an election timeout, then send the snapshot again', () => {
    const group = new Group(3);
    group.tick('n1', 25);
    group.isolate('n3');
    const leader = group.core('n1');
    leader.propose([payload('a')]);
    group.stabilize();
    snapshotAndCompact(leader, group.logs.get('n1') as Entry[]);
    // The first snapshot is lost in transit (the node reports the stream failed).
    group.heal();
    group.dropOnce = (m) => m.type === 'install-snapshot';
    group.tick('n1', 2);
    expect(group.installed).toEqual([]);
    leader.reportSnapshot('n3', false);
    group.tick('n1', 4);
    expect(group.sent.filter((m) => m.type === 'install-snapshot')).toHaveLength(1); // backs off: the peer may be down
    group.tick('n1', 10); // one election timeout later it tries again
    expect(group.sent.filter((m) => m.type === 'install-snapshot')).toHaveLength(2);
    expect(group.installed.map((i) => i.id)).toEqual(['n3']);
  });

  it('a node that lost synced log entries grants no votes and never campaigns until a leader has caught it up', () => {
    const single = (lostLogTail: { term: number; syncedThrough: number } | undefined): RaftCore => new RaftCore(config('n2'), {
      hardState: { term: 3, votedFor: undefined },
      log: { firstIndex: 1, prevTerm: 0, lastIndex: 2, runs: [[1, 3]] },
      configs: [{ index: 0, members: members(3) }],
      appliedIndex: 0,
      lostLogTail,
    }, { nextInt: () => 0 }, () => 1);
    const amnesiac = single({ term: 3, syncedThrough: 5 });
    expect(amnesiac.abstainingUntil).toBe(5);
    for (let i = 0; i < 100; i++) amnesiac.tick();
    expect(amnesiac.role).toBe('follower');
    amnesiac.step({ type: 'vote-request', from: 'n1', to: 'n2', term: 4, preVote: false, transfer: false, lastIndex: 2, lastTerm: 3 });
    let ready = amnesiac.ready();
    amnesiac.advance(ready);
    expect(ready.messages.find((m): m is VoteResponse => m.type === 'vote-response')).toMatchObject({ granted: false, reason: 'lost-log-tail' });
    // The same request to a node without the flag is granted: the refusal is the flag's doing.
    const healthy = single(undefined);
    healthy.step({ type: 'vote-request', from: 'n1', to: 'n2', term: 4, preVote: false, transfer: false, lastIndex: 2, lastTerm: 3 });
    ready = healthy.ready();
    expect(ready.messages.find((m): m is VoteResponse => m.type === 'vote-response')).toMatchObject({ granted: true });
    // A commit below the old mark, on an entry of the node's old term, does not clear it...
    const entry = (index: number, term: number): Entry => ({ index, term, kind: EntryKind.normal, payload: payload('x') });
    amnesiac.step({ type: 'append-request', from: 'n1', to: 'n2', term: 4, prevIndex: 2, prevTerm: 3, entryCount: 1, commitIndex: 2, entries: [entry(3, 3)] });
    expect(amnesiac.abstainingUntil).toBe(5);
    // ...a commit that covers the old synced-through mark does.
    amnesiac.step({ type: 'append-request', from: 'n1', to: 'n2', term: 4, prevIndex: 3, prevTerm: 3, entryCount: 2, commitIndex: 5, entries: [entry(4, 3), entry(5, 4)] });
    expect(amnesiac.abstainingUntil).toBeUndefined();
  });
});
