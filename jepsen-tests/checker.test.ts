/**
 * The checker on hand-written histories, one per anomaly (as the Redpanda suite tests its
 * own), plus fast-check properties: dropping any acknowledged value from a clean history's
 * reads is always reported as lost, and under retention only a value below its queue's first
 * offset whose entry a majority saw committed below the retained index is released. The
 * delayed-message rules (checkDelayed) get their own: the negative controls are an early
 * delivery and a lost acknowledged value, each of which must fail the run. The transactional
 * rules (checkTransactions) too: a rolled-back value delivered and a committed value missing
 * are the negative controls.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { check, type CheckInput, type DelayCheckOptions, type LeaderObservation, type RetentionInput } from './checker.js';
import type { Op, OpInput, Read } from './history.js';
import type { TransactionCheckOptions } from './transaction-checker.js';

class Builder {
  readonly ops: Op[] = [];
  private t = 0;

  add(op: OpInput, atS?: number): this {
    this.t = atS === undefined ? this.t + 1e6 : atS * 1e9;
    this.ops.push({ index: this.ops.length, time: this.t, ...op });
    return this;
  }

  send(process: number, value: string, outcome: 'ok' | 'fail' | 'info', queue = 0, offset = 0): this {
    this.add({ type: 'invoke', process, f: 'enqueue', value });
    return this.add(outcome === 'ok' ? { type: 'ok', process, f: 'enqueue', value, queue, offset } : { type: outcome, process, f: 'enqueue', value, error: 'x' });
  }

  read(reads: Read[], f: 'drain' | 'read' | 'dequeue' = 'drain', process = 'drain'): this {
    this.add({ type: 'invoke', process, f });
    return this.add({ type: 'ok', process, f, reads });
  }

  fault(kind: string, value: Record<string, unknown>, stop: Record<string, unknown>, startS: number, stopS: number): this {
    this.add({ type: 'info', process: 'nemesis', f: `start-${kind}`, value }, startS);
    return this.add({ type: 'info', process: 'nemesis', f: `stop-${kind}`, value: stop }, stopS);
  }
}

const run = (b: Builder, extra: Partial<CheckInput> = {}) => check({ ops: b.ops, leaders: [], divergence: 0, leaderFaultMinMs: 1_000, faultEventsMin: 0, ...extra });

/** Three acknowledged sends of producer 0 at offsets 0..2 of queue 0. */
const threeSends = (): Builder => new Builder().send(0, '0-0', 'ok', 0, 0).send(0, '0-1', 'ok', 0, 1).send(0, '0-2', 'ok', 0, 2);

describe('queue checker', () => {
  it('passes a clean history', () => {
    const result = run(threeSends().read([[0, 0, '0-0'], [0, 1, '0-1'], [0, 2, '0-2']]));
    expect(result.verdict).toBe('pass');
    expect(result).toMatchObject({ acked: 3, read: 3, lost: 0 });
  });

  it('reports a value lost between two values that were read as lost-middle and lost-write', () => {
    const result = run(threeSends().read([[0, 0, '0-0'], [0, 2, '0-2']]));
    expect(result.verdict).toBe('fail');
    expect(result).toMatchObject({ lost: 1, lostMiddle: 1, lostWrite: 1 });
    expect(result.pollSkip).toHaveLength(1);
  });

  it('counts a value a consumer saw but the final drain does not find as lost (its entry was cut)', () => {
    const b = threeSends().read([[0, 0, '0-0'], [0, 1, '0-1'], [0, 2, '0-2']], 'dequeue', 'c').read([[0, 0, '0-0'], [0, 1, '0-1']]);
    expect(run(b)).toMatchObject({ lost: 1, lostPostfix: 1, verdict: 'fail' });
  });

  it('splits lost values into prefix and postfix per producer', () => {
    const result = run(threeSends().read([[0, 1, '0-1']]));
    expect(result).toMatchObject({ lost: 2, lostPrefix: 1, lostPostfix: 1 });
  });

  it('reports an unknown drain (not a pass) when a producer\'s highest acknowledged value was never read', () => {
    const b = new Builder().send(0, '0-0', 'ok', 0, 0).send(1, '1-0', 'ok', 1, 0).read([[0, 0, '0-0']]);
    const result = run(b);
    expect(result.verdict).toBe('fail'); // 1-0 is lost, which is worse than unknown
    expect(result.drainComplete).toBe(false);
  });

  it('reports unexpected values, aborted reads and recovered unknowns', () => {
    const b = new Builder().send(0, '0-0', 'fail').send(1, '1-0', 'info').read([[0, 0, '0-0'], [0, 1, '1-0'], [0, 2, '9-9']]);
    const result = run(b);
    expect(result).toMatchObject({ unexpected: 1, abortedRead: 1, recovered: 1, failed: 1, indeterminate: 1 });
    expect(result.verdict).toBe('fail');
  });

  it('reports one offset holding two values as an inconsistent offset', () => {
    const b = new Builder().send(0, '0-0', 'ok', 2, 7).read([[2, 7, '1-5']]);
    expect(run(b).inconsistentOffsets).toEqual([{ queue: 2, offset: 7, values: ['0-0', '1-5'] }]);
  });

  it('reports one value at two offsets as a duplicate', () => {
    const b = new Builder().send(0, '0-0', 'ok', 0, 0).read([[0, 0, '0-0'], [0, 1, '0-0']]);
    expect(run(b).duplicated).toEqual([{ value: '0-0', positions: ['0:0', '0:1'] }]);
  });

  it('reports a sequential producer whose later send got a lower offset', () => {
    const b = new Builder().send(0, '0-0', 'ok', 1, 5).send(0, '0-1', 'ok', 1, 4).read([[1, 4, '0-1'], [1, 5, '0-0']]);
    expect(run(b).nonmonotonicSend).toHaveLength(1);
  });

  it('reports a reader going backwards in a queue; group redeliveries are counted, not failed', () => {
    const backwards = new Builder().send(0, '0-0', 'ok', 0, 0).send(0, '0-1', 'ok', 0, 1).read([[0, 0, '0-0'], [0, 1, '0-1']], 'read', 'r').read([[0, 1, '0-1']], 'read', 'r');
    expect(run(backwards).nonmonotonicPoll).toHaveLength(1);
    const redelivered = new Builder().send(0, '0-0', 'ok', 0, 0).read([[0, 0, '0-0']], 'dequeue', 'c').read([[0, 0, '0-0']], 'dequeue', 'c');
    const result = run(redelivered);
    expect(result.verdict).toBe('pass');
    expect(result.redelivered).toBe(1);
  });

  it('reports two leaders in one term', () => {
    const leaders: LeaderObservation[] = [{ timeNs: 1, nodeId: 'n1', term: 3 }, { timeNs: 2, nodeId: 'n2', term: 3 }];
    expect(run(threeSends().read([[0, 0, '0-0'], [0, 1, '0-1'], [0, 2, '0-2']]), { leaders }).electionSafety).toHaveLength(1);
  });

  it('fails on replica divergence from the audit', () => {
    expect(run(threeSends().read([[0, 0, '0-0'], [0, 1, '0-1'], [0, 2, '0-2']]), { divergence: 2 }).verdict).toBe('fail');
  });

  it('calls a run invalid when its faults did nothing: no leader change, no dropped packets, no discarded bytes', () => {
    const b = threeSends()
      .fault('partition-leader', { partition: true, targetsLeader: true }, { packetsDropped: 0 }, 1, 4)
      .fault('power-loss', { powerFailures: 2, discardedBytes: 0 }, {}, 5, 6)
      .read([[0, 0, '0-0'], [0, 1, '0-1'], [0, 2, '0-2']]);
    const result = run(b);
    expect(result.verdict).toBe('invalid');
    expect(result.reasons.join('\n')).toMatch(/changed no leader/);
    expect(result.reasons.join('\n')).toMatch(/dropped no packets/);
    expect(result.reasons.join('\n')).toMatch(/discarded no bytes/);
    const bitten = run(b, { leaders: [{ timeNs: 0.5e9, nodeId: 'n1', term: 1 }, { timeNs: 2e9, nodeId: 'n2', term: 2 }] });
    expect(bitten.effects.leaderFaultsWithoutLeaderChange).toBe(0);
    // A fault aimed at a node that was no longer the leader is not counted as a leader fault.
    const missed = threeSends().fault('kill', { targetsLeader: true, leader: 'n3' }, {}, 1, 4).read([[0, 0, '0-0'], [0, 1, '0-1'], [0, 2, '0-2']]);
    expect(run(missed, { leaders: [{ timeNs: 0.5e9, nodeId: 'n1', term: 1 }] }).effects.leaderFaults).toBe(0);
    expect(run(missed, { leaders: [{ timeNs: 0.5e9, nodeId: 'n3', term: 1 }] }).effects.leaderFaultsWithoutLeaderChange).toBe(1);
  });

  it('measures recovery after each heal and failover during faults aimed at the leader', () => {
    const b = new Builder()
      .fault('partition-leader', { partition: true, targetsLeader: true }, { packetsDropped: 10 }, 1, 6)
      .add({ type: 'invoke', process: 0, f: 'enqueue', value: '0-0' }, 2)
      .add({ type: 'ok', process: 0, f: 'enqueue', value: '0-0', queue: 0, offset: 0 }, 2.5)
      .add({ type: 'invoke', process: 0, f: 'enqueue', value: '0-1' }, 6.1)
      .add({ type: 'ok', process: 0, f: 'enqueue', value: '0-1', queue: 0, offset: 1 }, 6.3)
      .read([[0, 0, '0-0'], [0, 1, '0-1']]);
    const result = run(b, { failoverBoundMs: 3_000 });
    expect(result.failovers[0]?.failoverMs).toBeCloseTo(1_500, 0);
    expect(result.recoveries[0]?.recoveryMs).toBeCloseTo(300, 0);
    expect(run(b, { failoverBoundMs: 1_000 }).verdict).toBe('fail');
  });

  it('fails a run in which no enqueue is acknowledged soon enough after the last heal (liveness)', () => {
    const b = threeSends().fault('kill', { targetsLeader: false }, {}, 1, 4)
      .add({ type: 'invoke', process: 0, f: 'enqueue', value: '0-3' }, 4.5)
      .add({ type: 'ok', process: 0, f: 'enqueue', value: '0-3', queue: 0, offset: 3 }, 9)
      .read([[0, 0, '0-0'], [0, 1, '0-1'], [0, 2, '0-2'], [0, 3, '0-3']]);
    expect(run(b, { finalHealBoundMs: 6_000 })).toMatchObject({ verdict: 'pass', finalRecoveryMs: 5_000 });
    const slow = run(b, { finalHealBoundMs: 3_000 });
    expect(slow.verdict).toBe('fail');
    expect(slow.reasons.join()).toMatch(/liveness: no enqueue acknowledged within 3000 ms of the last heal \(first after 5000 ms\)/);
    const none = threeSends().fault('kill', { targetsLeader: false }, {}, 1, 4).read([[0, 0, '0-0'], [0, 1, '0-1'], [0, 2, '0-2']]);
    expect(run(none, { finalHealBoundMs: 3_000 }).reasons.join()).toMatch(/none at all/);
  });

  it('does not count a recovery that another fault held up as that fault\'s recovery time', () => {
    // kill heals at 3 s while a partition lasts until 5 s; a pause from 6 to 8 s; first ack at 9 s.
    const b = new Builder()
      .add({ type: 'info', process: 'nemesis', f: 'start-kill', value: { targetsLeader: false } }, 1)
      .add({ type: 'info', process: 'nemesis', f: 'start-partition-halves', value: { partition: true, targetsLeader: false } }, 2)
      .add({ type: 'info', process: 'nemesis', f: 'stop-kill', value: {} }, 3)
      .add({ type: 'info', process: 'nemesis', f: 'stop-partition-halves', value: { packetsDropped: 10 } }, 5)
      .fault('pause', { targetsLeader: false }, {}, 6, 8)
      .add({ type: 'invoke', process: 0, f: 'enqueue', value: '0-0' }, 8.5)
      .add({ type: 'ok', process: 0, f: 'enqueue', value: '0-0', queue: 0, offset: 0 }, 9)
      .read([[0, 0, '0-0']]);
    const result = run(b);
    expect(result.recoveries.map((r) => [r.fault, r.interrupted])).toEqual([['kill', true], ['partition-halves', true], ['pause', false]]);
    expect(result.recoveries.find((r) => r.fault === 'kill')?.recoveryMs).toBeCloseTo(6_000, 0);
    expect(result.maxRecoveryMs).toBeCloseTo(1_000, 0);
  });

  it('any acknowledged value missing from the reads is reported lost (property)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 40 }), fc.nat(), (count, pick) => {
      const b = new Builder();
      const reads: Read[] = [];
      for (let i = 0; i < count; i++) {
        b.send(i % 3, `${i % 3}-${Math.floor(i / 3)}`, 'ok', i % 2, Math.floor(i / 2));
        reads.push([i % 2, Math.floor(i / 2), `${i % 3}-${Math.floor(i / 3)}`]);
      }
      const clean = run(new Builder().read([]).read(reads));
      expect(clean.unexpected).toBe(count); // nothing was sent in this history
      const dropped = reads.filter((_, i) => i !== pick % count);
      const result = run(b.read(dropped));
      expect(result.lost).toBe(1);
      expect(result.verdict).toBe('fail');
    }), { numRuns: 100 });
  });
});

/** Retention released queue 0 below offset 2 and the log below index 10; `committed` says where values were stored. */
const retained = (committed: Record<string, number>, extra: Partial<RetentionInput> = {}): RetentionInput => ({
  firstOffsets: [2, 0], retainedFrom: 10, committedIndex: new Map(Object.entries(committed)), snapshotsInstalled: 1, compactedNodes: 3, ...extra,
});

/** Five sends of producer 0 to queue 0 at offsets 0..4, and a drain that starts at the first offset (2). */
const fiveSendsDrainedFromTwo = (): Builder => {
  const b = new Builder();
  for (let i = 0; i < 5; i++) b.send(0, `0-${i}`, 'ok', 0, i);
  return b.read([[0, 2, '0-2'], [0, 3, '0-3'], [0, 4, '0-4']]);
};

describe('queue checker under retention', () => {
  it('counts a value below the first offset as released only with a committed index below the retained index', () => {
    const result = run(fiveSendsDrainedFromTwo(), { retention: retained({ '0-0': 4, '0-1': 7, '0-2': 11 }) });
    expect(result).toMatchObject({ verdict: 'pass', lost: 0, released: 2, lostBelowFirstOffset: 0, skipsOverReleased: 1 });
    expect(result.pollSkip).toEqual([]);
    expect(result.retention).toMatchObject({ firstOffsets: [2, 0], retainedFrom: 10 });
  });

  it('reports a value below the first offset as lost when no majority saw it committed (an unsafe leader\'s ack)', () => {
    const result = run(fiveSendsDrainedFromTwo(), { retention: retained({ '0-0': 4 }) });
    expect(result).toMatchObject({ verdict: 'fail', lost: 1, lostBelowFirstOffset: 1, released: 1 });
    expect(result.lostValues).toEqual([{ value: '0-1', where: 'prefix' }]);
  });

  it('reports a value below the first offset whose entry is at or after the retained index as lost', () => {
    const result = run(fiveSendsDrainedFromTwo(), { retention: retained({ '0-0': 4, '0-1': 10 }) });
    expect(result).toMatchObject({ verdict: 'fail', lost: 1, lostBelowFirstOffset: 1 });
  });

  it('reports a value at or above the first offset that the drain missed as lost, whatever its index', () => {
    const b = new Builder();
    for (let i = 0; i < 5; i++) b.send(0, `0-${i}`, 'ok', 0, i);
    b.read([[0, 2, '0-2'], [0, 4, '0-4']]);
    const result = run(b, { retention: retained({ '0-0': 4, '0-1': 7, '0-3': 8 }) });
    expect(result).toMatchObject({ verdict: 'fail', lost: 1, lostBelowFirstOffset: 0, released: 2, lostWrite: 1 });
    expect(result.pollSkip).toHaveLength(1); // 2 → 4 skips a retained offset
  });

  it('reports a reader jump that lands above the first offset as a poll skip', () => {
    const b = new Builder();
    for (let i = 0; i < 5; i++) b.send(0, `0-${i}`, 'ok', 0, i);
    b.read([[0, 3, '0-3'], [0, 4, '0-4']]);
    const result = run(b, { retention: retained({ '0-0': 4, '0-1': 7, '0-2': 8 }) });
    expect(result.pollSkip).toEqual(['drain drain queue 0: start → 3']);
    expect(result.lost).toBe(1);
  });

  it('without retention input, a value below a first offset is lost like any other', () => {
    expect(run(fiveSendsDrainedFromTwo())).toMatchObject({ verdict: 'fail', lost: 2, released: 0, retention: null });
  });

  it('counts a producer whose highest acknowledged value was released as drained', () => {
    const b = new Builder().send(0, '0-0', 'ok', 0, 0).send(1, '1-0', 'ok', 0, 1).send(1, '1-1', 'ok', 0, 2).read([[0, 2, '1-1']]);
    const result = run(b, { retention: retained({ '0-0': 3, '1-0': 5 }) });
    expect(result).toMatchObject({ verdict: 'pass', drainComplete: true, released: 2 });
  });

  it('calls a retention run invalid when no snapshot was installed or a node never compacted', () => {
    const result = run(fiveSendsDrainedFromTwo(), { retention: retained({ '0-0': 4, '0-1': 7 }, { snapshotsInstalled: 0, compactedNodes: 2, required: { snapshotsInstalledMin: 1, compactedNodesMin: 3 } }) });
    expect(result.verdict).toBe('invalid');
    expect(result.reasons.join('\n')).toMatch(/0 snapshots installed \(at least 1 required\)/);
    expect(result.reasons.join('\n')).toMatch(/2 nodes compacted their log \(at least 3 required\)/);
  });

  it('fails a run in which the log watcher saw a committed entry change', () => {
    const result = run(fiveSendsDrainedFromTwo(), { retention: retained({ '0-0': 4, '0-1': 7 }), committedLogConflicts: 1 });
    expect(result.verdict).toBe('fail');
    expect(result.reasons.join()).toMatch(/1 committed log entries that changed/);
  });

  it('releases exactly the missing values below the first offset with a majority-committed index below the cut (property)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 30 }), fc.nat({ max: 30 }), fc.array(fc.boolean(), { minLength: 30, maxLength: 30 }), fc.array(fc.boolean(), { minLength: 30, maxLength: 30 }),
      (count, first, proven, read) => {
        const firstOffset = Math.min(first, count);
        const b = new Builder();
        const committed: Record<string, number> = {};
        const reads: Read[] = [];
        let expectedReleased = 0;
        let expectedLost = 0;
        for (let i = 0; i < count; i++) {
          const value = `0-${i}`;
          b.send(0, value, 'ok', 0, i);
          // Entry i + 1 holds value i; retention kept entries from firstOffset + 1 on.
          if (proven[i] === true) committed[value] = i + 1;
          if (i >= firstOffset && read[i] === true) reads.push([0, i, value]);
          else if (i < firstOffset && proven[i] === true) expectedReleased++;
          else expectedLost++;
        }
        const result = run(b.read(reads), { retention: retained(committed, { firstOffsets: [firstOffset], retainedFrom: firstOffset + 1 }) });
        expect(result.released).toBe(expectedReleased);
        expect(result.lost).toBe(expectedLost);
        expect(result.released + result.lost + reads.length).toBe(count);
      }), { numRuns: 200 });
  });
});

/** Wall-clock time 0 of the hand-written delayed histories (the history's monotonic 0). */
const epochMs = 1_800_000_000_000;
const wall = (s: number): number => epochMs + s * 1_000;
const delayOptions: DelayCheckOptions = { toleranceMs: 50, latenessBoundMs: 15_000 };

/** A delayed send invoked at `atS`, due at `dueS`, completed 10 ms later. */
const delayedSend = (b: Builder, process: string, value: string, outcome: 'ok' | 'fail' | 'info', atS: number, dueS: number): Builder => {
  b.add({ type: 'invoke', process, f: 'delay-send', value, dueMs: wall(dueS), wallMs: wall(atS) }, atS);
  return b.add({ type: outcome, process, f: 'delay-send', value, dueMs: wall(dueS), wallMs: wall(atS + 0.01), ...(outcome === 'ok' ? { queue: 0 } : { error: 'x' }) }, atS + 0.01);
};

/** Messages received at `atS` by a delayed-message consumer: [queue, offset, value, stored at (s)]. */
const delayedReceive = (b: Builder, f: 'delay-read' | 'delay-receive' | 'delay-drain', atS: number, messages: Array<[number, number, string, number]>): Builder => {
  const process = f === 'delay-read' ? 'delay-reader' : f === 'delay-receive' ? 'delay-consumer' : 'delay-drain';
  b.add({ type: 'invoke', process, f }, atS - 0.001);
  return b.add({ type: 'ok', process, f, reads: messages.map(([q, o, v]) => [q, o, v] as const), storedMs: messages.map(([, , , storedS]) => wall(storedS)), wallMs: wall(atS) }, atS);
};

/** Three delayed values: d0-0 due at 3 s, d0-1 at 5 s, d0-2 (outcome unknown, never seen) at 6 s; delivered on time and drained at 20 s. */
const cleanDelayed = (): Builder => {
  const b = new Builder();
  delayedSend(b, 'delay-0', 'd0-0', 'ok', 1, 3);
  delayedSend(b, 'delay-0', 'd0-1', 'ok', 2, 5);
  delayedSend(b, 'delay-0', 'd2-0', 'info', 2.5, 6);
  delayedReceive(b, 'delay-read', 3.12, [[0, 0, 'd0-0', 3.1]]);
  delayedReceive(b, 'delay-receive', 3.2, [[0, 0, 'd0-0', 3.1]]);
  delayedReceive(b, 'delay-read', 5.3, [[1, 0, 'd0-1', 5.1]]);
  return delayedReceive(b, 'delay-drain', 20, [[0, 0, 'd0-0', 3.1], [1, 0, 'd0-1', 5.1]]);
};

describe('delayed-message checker', () => {
  it('passes a history where every acknowledged value arrives after its due time; an unknown one may stay away', () => {
    const result = run(cleanDelayed(), { delay: delayOptions });
    expect(result.verdict).toBe('pass');
    expect(result.delay).toMatchObject({ acked: 2, indeterminate: 1, delivered: 2, recovered: 0, early: 0, visibleEarly: 0, lost: 0, late: 0, duplicated: 0, redelivered: 0, drained: true });
    expect(result.delay?.lateness).toMatchObject({ count: 2, p50Ms: 120, maxMs: 300 });
    expect(result.delay?.fireLag).toMatchObject({ p50Ms: 100, maxMs: 100 });
  });

  it('without delay options, the delayed operations are left alone (the queue checks do not see them)', () => {
    expect(run(cleanDelayed())).toMatchObject({ verdict: 'pass', delay: null, acked: 0, read: 0 });
  });

  it('negative control: fails a history with an early delivery, however briefly the value was early', () => {
    const b = cleanDelayed();
    delayedSend(b, 'delay-1', 'd1-0', 'ok', 21, 25);
    delayedReceive(b, 'delay-receive', 24.9, [[2, 0, 'd1-0', 25]]); // 100 ms early; the broker's own stamp looks right
    delayedReceive(b, 'delay-drain', 30, [[2, 0, 'd1-0', 25]]);
    const result = run(b, { delay: delayOptions });
    expect(result.verdict).toBe('fail');
    expect(result.delay).toMatchObject({ early: 1, visibleEarly: 0, lost: 0 });
    expect(result.delay?.earlyValues).toEqual([{ value: 'd1-0', dueMs: wall(25), receivedMs: wall(24.9), by: 'delay-consumer' }]);
    expect(result.reasons.join()).toMatch(/delayed: 1 early .*d1-0 100 ms early/);
    // Within the tolerance it is not early; a store timestamp before the due time is, on its own.
    const within = cleanDelayed();
    delayedSend(within, 'delay-1', 'd1-0', 'ok', 21, 25);
    delayedReceive(within, 'delay-read', 24.97, [[2, 0, 'd1-0', 24.9]]);
    delayedReceive(within, 'delay-drain', 30, [[2, 0, 'd1-0', 24.9]]);
    expect(run(within, { delay: delayOptions }).delay).toMatchObject({ early: 0, visibleEarly: 1 });
    expect(run(within, { delay: delayOptions }).verdict).toBe('fail');
  });

  it('counts an early delivery of a value whose send outcome was unknown too', () => {
    const b = cleanDelayed();
    delayedReceive(b, 'delay-read', 5.5, [[3, 0, 'd2-0', 5.5]]); // d2-0 is due at 6 s
    expect(run(b, { delay: delayOptions }).delay).toMatchObject({ early: 1, recovered: 1 });
  });

  it('negative control: fails a history with an acknowledged delayed value never received', () => {
    const b = cleanDelayed();
    delayedSend(b, 'delay-1', 'd1-0', 'ok', 21, 25);
    delayedReceive(b, 'delay-drain', 45, []);
    const result = run(b, { delay: delayOptions });
    expect(result.verdict).toBe('fail');
    expect(result.delay).toMatchObject({ lost: 1, lostValues: ['d1-0'], lostAfterReceive: 0, early: 0 });
    expect(result.reasons.join()).toMatch(/delayed: 1 lost/);
  });

  it('counts a value a consumer received but the drain (every queue from offset 0) did not find as lost', () => {
    const b = cleanDelayed();
    delayedSend(b, 'delay-1', 'd1-0', 'ok', 21, 25);
    delayedReceive(b, 'delay-read', 25.2, [[2, 0, 'd1-0', 25.1]]);
    delayedReceive(b, 'delay-drain', 40, []);
    expect(run(b, { delay: delayOptions }).delay).toMatchObject({ lost: 1, lostAfterReceive: 1 });
    // Under retention the drain may miss a released prefix: any receive counts.
    expect(run(b, { delay: { ...delayOptions, drainDecides: false } }).delay).toMatchObject({ lost: 0 });
  });

  it('bounds lateness from max(due, the heal of the faults begun by the due time)', () => {
    const b = new Builder();
    b.add({ type: 'info', process: 'nemesis', f: 'start-kill', value: { targetsLeader: false } }, 1);
    delayedSend(b, 'delay-0', 'd0-0', 'ok', 0.5, 2); // due during the fault: owed from its heal at 11 s
    delayedSend(b, 'delay-0', 'd0-1', 'ok', 0.6, 1.5);
    b.add({ type: 'info', process: 'nemesis', f: 'stop-kill', value: {} }, 11);
    delayedSend(b, 'delay-0', 'd0-2', 'ok', 12, 13); // due after it: owed from its due time
    delayedReceive(b, 'delay-read', 24, [[0, 0, 'd0-0', 23.9], [0, 1, 'd0-1', 23.9]]);
    delayedReceive(b, 'delay-read', 29, [[1, 0, 'd0-2', 28.9]]);
    delayedReceive(b, 'delay-drain', 40, [[0, 0, 'd0-0', 23.9], [0, 1, 'd0-1', 23.9], [1, 0, 'd0-2', 28.9]]);
    const result = run(b, { delay: delayOptions });
    expect(result.delay).toMatchObject({ late: 1, early: 0, lost: 0 });
    expect(result.delay?.lateValues).toEqual([{ value: 'd0-2', dueMs: wall(13), fromMs: wall(13), receivedMs: wall(29) }]);
    expect(result.delay?.latenessAfterHeal).toMatchObject({ count: 3, maxMs: 16_000, p50Ms: 13_000 });
    expect(result.delay?.lateness).toMatchObject({ maxMs: 22_500 });
    expect(result.verdict).toBe('fail');
    expect(run(b, { delay: { ...delayOptions, latenessBoundMs: 20_000 } }).verdict).toBe('pass');
  });

  it('counts duplicates and SimpleConsumer redeliveries without failing; fails one offset with two values and values never sent', () => {
    const b = cleanDelayed();
    delayedReceive(b, 'delay-receive', 21, [[0, 0, 'd0-0', 3.1]]); // redelivered after a lost ack
    delayedReceive(b, 'delay-drain', 22, [[3, 5, 'd0-1', 5.1]]); // stored a second time
    const counted = run(b, { delay: delayOptions });
    expect(counted.verdict).toBe('pass');
    expect(counted.delay).toMatchObject({ duplicated: 1, redelivered: 1 });
    delayedReceive(b, 'delay-read', 23, [[3, 5, 'd9-9', 5.1]]);
    const wrong = run(b, { delay: delayOptions });
    expect(wrong.verdict).toBe('fail');
    expect(wrong.delay).toMatchObject({ unexpected: 1, inconsistentOffsets: 1 });
  });

  it('calls a delayed run with no acknowledged delayed send invalid, not passed', () => {
    const b = new Builder();
    delayedSend(b, 'delay-0', 'd0-0', 'info', 1, 3);
    delayedReceive(b, 'delay-drain', 20, []);
    const result = run(b, { delay: delayOptions });
    expect(result.verdict).toBe('invalid');
    expect(result.reasons.join()).toMatch(/no delayed send was acknowledged/);
  });

  it('any delivery moved before its due time beyond the tolerance is reported early, and any dropped value lost (property)', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 30 }), fc.nat(), fc.integer({ min: 51, max: 8_000 }), (count, pick, earlyByMs) => {
      const build = (mutate: 'early' | 'drop' | 'none'): Builder => {
        const b = new Builder();
        for (let i = 0; i < count; i++) delayedSend(b, 'delay-0', `d0-${i}`, 'ok', i * 0.1, i * 0.1 + 8);
        const victim = pick % count;
        const reads: Array<[number, number, string, number]> = [];
        for (let i = 0; i < count; i++) {
          if (mutate === 'drop' && i === victim) continue;
          reads.push([0, i, `d0-${i}`, i * 0.1 + 8.05]);
        }
        delayedReceive(b, 'delay-read', 12, reads);
        if (mutate === 'early') delayedReceive(b, 'delay-receive', victim * 0.1 + 8 - earlyByMs / 1_000, [[0, victim, `d0-${victim}`, victim * 0.1 + 8.05]]);
        return delayedReceive(b, 'delay-drain', 30, reads);
      };
      expect(run(build('none'), { delay: delayOptions }).verdict).toBe('pass');
      expect(run(build('early'), { delay: delayOptions }).delay?.early).toBe(1);
      expect(run(build('drop'), { delay: delayOptions }).delay?.lost).toBe(1);
    }), { numRuns: 100 });
  });
});

const txnOptions: TransactionCheckOptions = { checkAfterMs: 2_000, checkIntervalMs: 2_000, checksMax: 3, latenessBoundMs: 20_000 };

/** Transactional operations, with times in seconds. */
class TxnHistory {
  readonly b = new Builder();
  private offset = 0;

  half(value: string, outcome: 'ok' | 'fail' | 'info', atS: number, process = `txn-${value}`): this {
    this.b.add({ type: 'invoke', process, f: 'txn-send', value, fate: value.slice(0, value.indexOf('/')) }, atS);
    this.b.add(outcome === 'ok' ? { type: 'ok', process, f: 'txn-send', value, queue: 0, transactionId: `t1~jepsen~${Math.round(atS * 100)}~0` } : { type: outcome, process, f: 'txn-send', value, error: 'x' }, atS + 0.01);
    return this;
  }

  end(value: string, resolution: 'COMMIT' | 'ROLLBACK', outcome: 'ok' | 'fail' | 'info', atS: number, process = `txn-${value}`): this {
    this.b.add({ type: 'invoke', process, f: 'txn-end', value, resolution }, atS);
    this.b.add({ type: outcome, process, f: 'txn-end', value, resolution, ...(outcome === 'ok' ? {} : { error: 'x' }) }, atS + 0.01);
    return this;
  }

  check(value: string, resolution: 'COMMIT' | 'ROLLBACK' | 'none', atS: number): this {
    this.b.add({ type: 'info', process: 'txn-checker-0', f: 'txn-check', value, resolution }, atS);
    return this;
  }

  deliver(f: 'txn-read' | 'txn-receive' | 'txn-drain', atS: number, values: string[], at?: Array<[number, number]>): this {
    const process = f === 'txn-drain' ? 'txn-drain' : f === 'txn-read' ? 'txn-reader' : 'txn-consumer';
    this.b.add({ type: 'invoke', process, f }, atS - 0.001);
    this.b.add({ type: 'ok', process, f, reads: values.map((v, i) => [at?.[i]?.[0] ?? 0, at?.[i]?.[1] ?? this.offsetOf(v), v] as const) }, atS);
    return this;
  }

  state(value: string, state: string, atS: number): this {
    this.b.add({ type: 'info', process: 'txn-settle', f: 'txn-state', value, state }, atS);
    return this;
  }

  lateCommit(value: string, outcome: 'ok' | 'fail' | 'info', atS: number): this {
    const process = `txn-probe-${value}`;
    this.b.add({ type: 'invoke', process, f: 'txn-late-commit', value, resolution: 'COMMIT' }, atS);
    this.b.add({ type: outcome, process, f: 'txn-late-commit', value, resolution: 'COMMIT' }, atS + 0.01);
    return this;
  }

  private readonly offsets = new Map<string, number>();

  /** One offset per value, in order of first delivery. */
  private offsetOf(value: string): number {
    if (!this.offsets.has(value)) this.offsets.set(value, this.offset++);
    return this.offsets.get(value) as number;
  }
}

/**
 * One transaction of each fate, everything as it should be: committed by the sender and
 * delivered; rolled back by it; abandoned and committed by a check-back, then delivered;
 * abandoned and rolled back by one; never answered, rolled back after 3 checks (late COMMIT
 * refused). Drained at 40 s. The settle phase's states come before the drain.
 */
const cleanTxn = (): TxnHistory => new TxnHistory()
  .half('commit/0-0', 'ok', 1).end('commit/0-0', 'COMMIT', 'ok', 1.2)
  .half('rollback/0-1', 'ok', 1.5).end('rollback/0-1', 'ROLLBACK', 'ok', 1.6)
  .deliver('txn-read', 1.5, ['commit/0-0'])
  .half('abandon-commit/0-2', 'ok', 2).half('abandon-rollback/0-3', 'ok', 2.2).half('unanswered/0-4', 'ok', 2.4)
  .check('abandon-commit/0-2', 'COMMIT', 4.05).check('abandon-rollback/0-3', 'ROLLBACK', 4.25).check('unanswered/0-4', 'none', 4.45)
  .deliver('txn-receive', 4.3, ['abandon-commit/0-2'])
  .check('unanswered/0-4', 'none', 6.5).check('unanswered/0-4', 'none', 8.5)
  .state('commit/0-0', 'stored', 30).state('rollback/0-1', 'rolled-back', 30).state('abandon-commit/0-2', 'stored', 30)
  .state('abandon-rollback/0-3', 'rolled-back', 30).state('unanswered/0-4', 'rolled-back', 30)
  .lateCommit('rollback/0-1', 'fail', 31).lateCommit('abandon-rollback/0-3', 'fail', 31).lateCommit('unanswered/0-4', 'fail', 31)
  .deliver('txn-drain', 40, ['commit/0-0', 'abandon-commit/0-2']);

const runTxn = (h: TxnHistory, options: TransactionCheckOptions = txnOptions) => run(h.b, { transactions: options });

describe('transactional-message checker', () => {
  it('passes a clean history of every fate and gives the figures', () => {
    const result = runTxn(cleanTxn());
    expect(result.reasons).toEqual([]);
    expect(result.verdict).toBe('pass');
    expect(result.transactions).toMatchObject({
      acked: 5, committed: 1, rolledBack: 1, abandonedCommitted: 1, abandonedRolledBack: 1, unansweredRolledBack: 1, delivered: 2,
      lost: 0, rolledBackDelivered: 0, late: 0, duplicated: 0, visibleBeforeCommit: 0, checkedEarly: 0, notRolledBack: 0, stateMismatch: 0,
      lateCommitAccepted: 0, lateCommitRefused: 3, checkBacks: 5, valuesCheckedBack: 3, redelivered: 0, drained: true,
      ackedByFate: { 'commit': 1, 'rollback': 1, 'abandon-commit': 1, 'abandon-rollback': 1, 'unanswered': 1 },
    });
    expect(result.transactions?.unansweredAsks).toMatchObject({ p50Ms: 3, maxMs: 3 });
    expect(result.transactions?.checkBackLatency?.p50Ms).toBeCloseTo(2_040, 0);
    expect(result.transactions?.checkBackDelivery?.maxMs).toBeCloseTo(2_290, 0);
    expect(result.transactions?.deliveryAfterCommit?.maxMs).toBeCloseTo(290, 0);
  });

  it('without transaction options, the transactional operations are left alone', () => {
    expect(run(cleanTxn().b)).toMatchObject({ verdict: 'pass', transactions: null, acked: 0 });
  });

  it('negative control: fails a history in which a rolled-back value is delivered', () => {
    const result = runTxn(cleanTxn().deliver('txn-drain', 41, ['rollback/0-1']));
    expect(result.verdict).toBe('fail');
    expect(result.transactions).toMatchObject({ rolledBackDelivered: 1, rolledBackDeliveredValues: ['rollback/0-1'], stateMismatch: 1 });
    expect(result.reasons.join()).toMatch(/transactions: 1 rolled-back values delivered \(rollback\/0-1\)/);
  });

  it('negative control: fails a history in which a value whose COMMIT was answered OK is missing', () => {
    const h = new TxnHistory().half('commit/0-0', 'ok', 1).end('commit/0-0', 'COMMIT', 'ok', 1.2).deliver('txn-read', 1.5, ['commit/0-0']);
    const result = runTxn(h.deliver('txn-drain', 40, []));
    expect(result.verdict).toBe('fail');
    expect(result.transactions).toMatchObject({ lost: 1, lostCommitted: 1, lostValues: ['commit/0-0'] });
    expect(result.reasons.join()).toMatch(/transactions: 1 lost .*1 of them committed OK/);
  });

  it('every other rolled-back fate delivered fails too, whatever its sends and ends did', () => {
    for (const value of ['abandon-rollback/0-3', 'unanswered/0-4']) expect(runTxn(cleanTxn().deliver('txn-receive', 35, [value])).transactions?.rolledBackDelivered).toBe(1);
    // A rollback-decided value whose half send was unknown must never appear either.
    const unknown = cleanTxn().half('rollback/3-0', 'info', 5).deliver('txn-drain', 42, ['rollback/3-0']);
    expect(runTxn(unknown)).toMatchObject({ verdict: 'fail', transactions: { rolledBackDelivered: 1 } });
    // Nor one whose own ROLLBACK failed or was unknown (the check-back rolls it back).
    const endUnknown = cleanTxn().half('rollback/4-0', 'ok', 5).end('rollback/4-0', 'ROLLBACK', 'info', 5.1).check('rollback/4-0', 'ROLLBACK', 7.2).deliver('txn-drain', 42, ['rollback/4-0']);
    expect(runTxn(endUnknown).transactions).toMatchObject({ rolledBackDelivered: 1, endUnknown: 1 });
  });

  it('owes a commit-decided value with an acknowledged half whatever its own end did: the check-back commits it', () => {
    const abandoned = cleanTxn().half('abandon-commit/5-0', 'ok', 5);
    expect(runTxn(abandoned).transactions).toMatchObject({ lost: 1, lostCommitted: 0, lostValues: ['abandon-commit/5-0'] });
    const endFailed = cleanTxn().half('commit/5-1', 'ok', 5).end('commit/5-1', 'COMMIT', 'info', 5.2);
    expect(runTxn(endFailed)).toMatchObject({ verdict: 'fail', transactions: { lost: 1, endUnknown: 1 } });
    const finished = cleanTxn().half('commit/5-1', 'ok', 5).end('commit/5-1', 'COMMIT', 'fail', 5.2).check('commit/5-1', 'COMMIT', 7.1).deliver('txn-drain', 20, ['commit/5-1']);
    expect(runTxn(finished)).toMatchObject({ verdict: 'pass', transactions: { lost: 0, commitFinishedByCheckBack: 1, endFailed: 1 } });
  });

  it('a commit-decided value whose half send was unknown may or may not be delivered', () => {
    expect(runTxn(cleanTxn().half('commit/6-0', 'info', 5))).toMatchObject({ verdict: 'pass', transactions: { indeterminate: 1, recovered: 0, lost: 0 } });
    const came = cleanTxn().half('abandon-commit/6-1', 'info', 5).check('abandon-commit/6-1', 'COMMIT', 7.1).deliver('txn-drain', 41, ['abandon-commit/6-1']);
    expect(runTxn(came)).toMatchObject({ verdict: 'pass', transactions: { recovered: 1 } });
  });

  it('fails a value delivered before any commit of it was asked for (a half message visible)', () => {
    const h = cleanTxn().half('commit/7-0', 'ok', 5).deliver('txn-read', 5.1, ['commit/7-0']).end('commit/7-0', 'COMMIT', 'ok', 5.2).deliver('txn-drain', 41, ['commit/7-0']);
    const result = runTxn(h);
    expect(result.verdict).toBe('fail');
    expect(result.transactions).toMatchObject({ visibleBeforeCommit: 1, visibleBeforeCommitValues: ['commit/7-0'], lost: 0 });
    const abandoned = cleanTxn().half('abandon-commit/7-1', 'ok', 5).deliver('txn-drain', 41, ['abandon-commit/7-1']);
    expect(runTxn(abandoned).transactions?.visibleBeforeCommit).toBe(1);
  });

  it('fails values stored twice, at one offset with another value, never sent, or whose half send definitely failed', () => {
    const twice = cleanTxn().deliver('txn-drain', 41, ['commit/0-0'], [[3, 9]]);
    expect(runTxn(twice)).toMatchObject({ verdict: 'fail', transactions: { duplicated: 1 } });
    const wrong = cleanTxn().half('commit/8-0', 'fail', 5).deliver('txn-drain', 41, ['commit/8-0', 'commit/9-9'], [[0, 0], [2, 2]]);
    expect(runTxn(wrong).transactions).toMatchObject({ abortedRead: 1, unexpected: 1, inconsistentOffsets: 1 });
    // A SimpleConsumer redelivery (same queue and offset) is counted, not failed.
    expect(runTxn(cleanTxn().deliver('txn-receive', 10, ['abandon-commit/0-2']))).toMatchObject({ verdict: 'pass', transactions: { redelivered: 1 } });
  });

  it('bounds the first delivery from max(due, the heal of the faults begun by then)', () => {
    const h = new TxnHistory();
    h.b.add({ type: 'info', process: 'nemesis', f: 'start-kill', value: { targetsLeader: false } }, 2.5);
    h.half('abandon-commit/0-0', 'ok', 1); // due at 3 s, during the fault: owed from its heal at 10 s
    h.b.add({ type: 'info', process: 'nemesis', f: 'stop-kill', value: {} }, 10);
    h.half('commit/0-1', 'ok', 11).end('commit/0-1', 'COMMIT', 'ok', 11.2); // due at its COMMIT's OK, 11.21 s
    h.check('abandon-commit/0-0', 'COMMIT', 12).deliver('txn-read', 29, ['abandon-commit/0-0']).deliver('txn-read', 32, ['commit/0-1']);
    h.deliver('txn-drain', 40, ['abandon-commit/0-0', 'commit/0-1']);
    const result = runTxn(h);
    expect(result.transactions).toMatchObject({ late: 1, lost: 0 });
    expect(result.transactions?.lateValues.map((l) => l.value)).toEqual(['commit/0-1']);
    expect(result.transactions?.latenessAfterHeal?.maxMs).toBeCloseTo(20_790, 0);
    expect(runTxn(h, { ...txnOptions, latenessBoundMs: 21_000 }).transactions?.late).toBe(0);
  });

  it('fails an unanswered transaction still open after the settle, a late COMMIT accepted, and a broker state that contradicts the drain', () => {
    const open = cleanTxn().half('unanswered/1-0', 'ok', 5).state('unanswered/1-0', 'half', 39);
    expect(runTxn(open)).toMatchObject({ verdict: 'fail', transactions: { notRolledBack: 1 } });
    const accepted = cleanTxn().half('unanswered/1-0', 'ok', 5).state('unanswered/1-0', 'rolled-back', 30).lateCommit('unanswered/1-0', 'ok', 31);
    expect(runTxn(accepted)).toMatchObject({ verdict: 'fail', transactions: { lateCommitAccepted: 1, unansweredRolledBack: 1 } });
    const stored = cleanTxn().half('commit/1-1', 'ok', 5).end('commit/1-1', 'COMMIT', 'ok', 5.1).state('commit/1-1', 'stored', 30);
    expect(runTxn(stored).transactions).toMatchObject({ stateMismatch: 1, lost: 1 });
    // No state (the query failed) is no verdict.
    const unknown = cleanTxn().half('unanswered/1-2', 'ok', 5).state('unanswered/1-2', 'unknown', 39);
    expect(runTxn(unknown)).toMatchObject({ verdict: 'pass', transactions: { stateUnknown: 1, notRolledBack: 0 } });
  });

  it('fails a check-back that came before checkAfterMs had passed since the half was sent', () => {
    const h = cleanTxn().half('abandon-rollback/2-0', 'ok', 5).check('abandon-rollback/2-0', 'ROLLBACK', 6.5);
    expect(runTxn(h)).toMatchObject({ verdict: 'fail', transactions: { checkedEarly: 1 } });
  });

  it('calls a transaction run that never acknowledged some fate, or saw no check-back, invalid', () => {
    const h = new TxnHistory().half('commit/0-0', 'ok', 1).end('commit/0-0', 'COMMIT', 'ok', 1.2).deliver('txn-drain', 10, ['commit/0-0']);
    const result = runTxn(h);
    expect(result.verdict).toBe('invalid');
    expect(result.reasons.join()).toMatch(/no transactional half send was acknowledged for fate rollback, abandon-commit, abandon-rollback, unanswered/);
    expect(result.reasons.join()).toMatch(/no transaction was checked back/);
  });

  it('any commit-decided value dropped from the drain is lost, and any rollback-decided one added to a read is a rolled-back delivery (property)', () => {
    const fates = ['commit', 'rollback', 'abandon-commit', 'abandon-rollback', 'unanswered'] as const;
    fc.assert(fc.property(fc.array(fc.constantFrom(...fates), { minLength: 5, maxLength: 30 }), fc.nat(), (drawn, pick) => {
      const all = [...fates, ...drawn];
      const build = (mutate: 'none' | 'drop' | 'leak'): TxnHistory => {
        const h = new TxnHistory();
        const values = all.map((fate, i) => `${fate}/0-${i}`);
        values.forEach((value, i) => {
          const at = 1 + i * 0.1;
          h.half(value, 'ok', at);
          const fate = all[i] as typeof fates[number];
          if (fate === 'commit') h.end(value, 'COMMIT', 'ok', at + 0.05);
          if (fate === 'rollback') h.end(value, 'ROLLBACK', 'ok', at + 0.05);
        });
        values.forEach((value, i) => {
          const fate = all[i] as typeof fates[number];
          if (fate !== 'commit') h.check(value, fate === 'abandon-commit' ? 'COMMIT' : fate === 'unanswered' ? 'none' : 'ROLLBACK', 10 + i * 0.1);
        });
        const owed = values.filter((v) => v.startsWith('commit/') || v.startsWith('abandon-commit/'));
        const rolled = values.filter((v) => !owed.includes(v));
        const victim = owed[pick % owed.length] as string;
        const drained = mutate === 'drop' ? owed.filter((v) => v !== victim) : owed;
        if (mutate === 'leak') drained.push(rolled[pick % rolled.length] as string);
        return h.deliver('txn-drain', 15, drained);
      };
      expect(runTxn(build('none')).verdict).toBe('pass');
      expect(runTxn(build('drop')).transactions).toMatchObject({ lost: 1, rolledBackDelivered: 0 });
      expect(runTxn(build('leak')).transactions).toMatchObject({ lost: 0, rolledBackDelivered: 1 });
    }), { numRuns: 100 });
  });
});
