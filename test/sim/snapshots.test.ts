/**
 * Snapshots, log compaction and InstallSnapshot in the simulator: every node snapshots every
 * few entries and deletes the log under it, so a follower that was partitioned, crashed or
 * paused comes back behind the leader's first index and must be sent a snapshot. Crashes land
 * anywhere: while a snapshot file is written, while one is received, between the install and
 * the log reset. Every Raft invariant and every acknowledged proposal must hold, and the runs
 * must really install snapshots (not vacuous).
 */
import { expect, it } from 'vitest';
import { runSimulation } from '../../src/testing/sim-cluster.js';

it('compaction and InstallSnapshot under crashes, partitions and pauses keep every invariant and acknowledged proposal', async () => {
  let installs = 0;
  let crashes = 0;
  for (let seed = 1; seed <= 16; seed++) {
    const result = await runSimulation({
      seed, nodeCount: seed % 4 === 0 ? 5 : 3,
      profile: { snapshotEveryEntries: 16, crashWeight: 3, partitionWeight: 3, pauseWeight: 1, segmentBytesMax: 2048 },
    });
    expect(result.violations, `replay: SIM_SEED=${seed} SIM_PROFILE='${JSON.stringify(result.profile)}' npm run sim`).toEqual([]);
    installs += result.stats.snapshotsInstalled;
    crashes += result.stats.crashes;
  }
  expect(installs).toBeGreaterThan(16);
  expect(crashes).toBeGreaterThan(16);
}, 120_000);
