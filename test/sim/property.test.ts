/**
 * The cluster simulator as a fast-check property: fast-check draws the seed, the group size
 * and the whole fault profile (network drop/duplicate/delay, partitions, pauses, crashes with
 * lost unsynced writes and torn tails, fsync failures, tiny segments, one-entry appends,
 * snapshots that compact the log so lagging followers need InstallSnapshot), and
 * every run must keep every Raft invariant and every acknowledged proposal. A failure prints
 * fast-check's seed and path, and shrinks the profile toward the fewest faults that still
 * break it; the assertion message holds the exact replay command.
 */
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { runSimulation, type FaultProfile } from '../../src/testing/sim-cluster.js';

const profile: fc.Arbitrary<FaultProfile> = fc.record({
  dropProbability: fc.double({ min: 0, max: 0.15, noNaN: true }),
  duplicateProbability: fc.double({ min: 0, max: 0.05, noNaN: true }),
  delayMaxMs: fc.integer({ min: 1, max: 60 }),
  nemesisIntervalMs: fc.integer({ min: 100, max: 2000 }),
  partitionWeight: fc.integer({ min: 0, max: 4 }),
  crashWeight: fc.integer({ min: 0, max: 4 }),
  pauseWeight: fc.integer({ min: 0, max: 3 }),
  keepSomeUnsynced: fc.boolean(),
  tornWrites: fc.boolean(),
  restartDelayMaxMs: fc.integer({ min: 0, max: 3000 }),
  diskLatencyMaxMs: fc.constantFrom(0.01, 0.2, 2),
  segmentBytesMax: fc.constantFrom(1024, 8192, 1 << 20),
  appendEntriesMax: fc.constantFrom(1, 3, 64),
  fsyncFailureProbability: fc.constantFrom(0, 0, 0.003),
  membershipWeight: fc.integer({ min: 0, max: 3 }),
  snapshotEveryEntries: fc.constantFrom(8, 64, Number.MAX_SAFE_INTEGER),
});

it('every drawn fault profile keeps Raft safety, liveness after healing, and acknowledged proposals', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.constantFrom(3, 5), profile, async (seed, nodeCount, drawn) => {
      const result = await runSimulation({ seed, nodeCount, profile: drawn, faultDurationMs: 8_000 });
      expect(result.violations, `replay: SIM_SEED=${seed} SIM_PROFILE='${JSON.stringify(drawn)}' npm run sim -- --nodes ${nodeCount} --fault-ms 8000`).toEqual([]);
    }),
    { numRuns: 60 },
  );
}, 240_000);
