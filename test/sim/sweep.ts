import { expect } from 'vitest';
import { runSimulation, type SimResult } from '../../src/testing/sim-cluster.js';
import { nodesForSeed } from '../../src/testing/sim-main.js';

/** Runs seeds `[from, from + count)` (odd seeds 3 nodes, even seeds 5) and fails with replay commands. */
export async function sweep(from: number, count: number): Promise<SimResult[]> {
  const results: SimResult[] = [];
  for (let seed = from; seed < from + count; seed++) results.push(await runSimulation({ seed, nodeCount: nodesForSeed(seed, undefined) }));
  const failures = results.filter((r) => !r.ok).map((r) => `seed ${r.seed} (${r.nodeCount} nodes): ${r.violations.join('; ')} — replay: SIM_SEED=${r.seed} npm run sim${r.nodeCount === 5 ? ' -- --nodes 5' : ''}`);
  const acked = results.reduce((sum, r) => sum + r.stats.acked, 0);
  const crashes = results.reduce((sum, r) => sum + r.stats.crashes, 0);
  const failStops = results.reduce((sum, r) => sum + r.stats.failStops, 0);
  const membershipChanges = results.reduce((sum, r) => sum + r.stats.membershipChanges, 0);
  console.log(`sim sweep seeds ${from}..${from + count - 1}: ${count - failures.length} passed, ${failures.length} failed; ${acked} acked proposals, ${crashes} crashes, ${failStops} fsync fail-stops, ${membershipChanges} membership changes`);
  expect(failures).toEqual([]);
  // The faults must bite: a sweep without crashes, elections and acknowledged work proves little.
  expect(crashes).toBeGreaterThan(count);
  expect(failStops).toBeGreaterThan(0);
  expect(membershipChanges).toBeGreaterThan(count / 4);
  expect(results.every((r) => r.stats.leaderChanges >= 1)).toBe(true);
  expect(acked).toBeGreaterThan(count * 50);
  return results;
}
