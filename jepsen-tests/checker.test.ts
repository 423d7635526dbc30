/**
 * The checker on hand-written histories, one per anomaly (as the Redpanda suite tests its
 * own), plus fast-check properties: dropping any acknowledged value from a clean history's
 * reads is always reported as lost, and under retention only a value below its queue's first
 * offset whose entry a majority saw committed below the retained index is released.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { check, type CheckInput, type LeaderObservation, type RetentionInput } from './checker.js';
import type { Op, OpInput, Read } from './history.js';

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
