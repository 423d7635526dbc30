/**
 * The checker on hand-written histories, one per anomaly (as the Redpanda suite tests its
 * own), plus a fast-check property: dropping any acknowledged value from a clean history's
 * reads is always reported as lost.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { check, type CheckInput, type LeaderObservation } from './checker.js';
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
