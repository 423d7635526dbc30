/**
 * Negative controls: a harness that cannot catch a known-unsafe build proves nothing. Each
 * switch makes the code unsafe on purpose; the simulator must report a safety violation
 * within a fixed number of seeds.
 */
import { describe, expect, it } from 'vitest';
import { runBrokerSimulation } from '../../src/testing/broker-sim.js';
import type { TransactionEndsFlip } from '../../src/testing/broker-sim-unsafe.js';
import { runSimulation, type SimOptions } from '../../src/testing/sim-cluster.js';
import { scenarios } from '../../src/testing/scenarios.js';
import { nodesForSeed } from '../../src/testing/sim-main.js';

const safetyViolation = /election safety|state machine safety|leader completeness|log matching|was lost|never applied|invariant/;

async function firstCatch(seedsMax: number, options: (seed: number) => SimOptions): Promise<{ seed: number; violation: string } | undefined> {
  for (let seed = 1; seed <= seedsMax; seed++) {
    const result = await runSimulation(options(seed));
    const violation = result.violations.find((v) => safetyViolation.test(v));
    if (violation !== undefined) return { seed, violation };
  }
  return undefined;
}

describe('negative controls', () => {
  it('catches votes granted without the log up-to-date check within 30 seeds', async () => {
    const caught = await firstCatch(30, (seed) => ({ seed, nodeCount: nodesForSeed(seed, undefined), unsafe: { voteWithoutLogCheck: true } }));
    console.log('vote-without-log-check caught:', caught);
    expect(caught).toBeDefined();
  });

  it('catches acknowledging appends before fsync within 30 seeds', async () => {
    const caught = await firstCatch(30, (seed) => ({ seed, nodeCount: nodesForSeed(seed, undefined), unsafe: { ackBeforeFsync: true } }));
    console.log('ack-before-fsync caught:', caught);
    expect(caught).toBeDefined();
  });

  it('catches acknowledging before a quorum holds the entry within 30 seeds', async () => {
    const caught = await firstCatch(30, (seed) => ({ seed, nodeCount: nodesForSeed(seed, undefined), unsafe: { commitWithoutQuorum: true } }));
    console.log('ack-before-quorum caught:', caught);
    expect(caught).toBeDefined();
  });

  it('catches committing by counting older-term entries (Figure 8) within 5 seeds', async () => {
    const scenario = scenarios['figure-8']!;
    const caught = await firstCatch(5, (seed) => ({ seed, nodeCount: scenario.nodeCount, profile: scenario.profile, script: scenario.script, unsafe: { commitOlderTerms: true } }));
    console.log('commit-older-terms caught:', caught);
    expect(caught).toBeDefined();
  });
});

/**
 * The broker simulator's transaction rules (broker-sim-transactions.ts) against an
 * EndTransaction that does the other thing (broker-sim-unsafe.ts, transactionEndsFlipped):
 * every node applies the same wrong entry, so no digest differs; only the rules can tell.
 */
describe('broker negative controls: transactions', () => {
  const caughtBy: Record<TransactionEndsFlip, RegExp> = {
    // A ROLLBACK answered OK stores the message: it is read before any COMMIT of it was sent, stored although rolled back, or a COMMIT repeats OK.
    'rollback-stores': /before any COMMIT of it was sent|whose transaction was rolled back|COMMIT \(\w+\) answered OK after ROLLBACK/,
    // A COMMIT answered OK drops the message: never delivered, or a ROLLBACK repeats OK.
    'commit-drops': /was committed \(answered OK.*never delivered|answered OK after (COMMIT|ROLLBACK) \(\w+\) was answered OK/,
  };
  it.each(['rollback-stores', 'commit-drops'] as const)('catches an EndTransaction that %s within 3 seeds', async (flip) => {
    let caught: { seed: number; violation: string } | undefined;
    for (let seed = 1; seed <= 3 && caught === undefined; seed++) {
      const result = await runBrokerSimulation({ seed, transactions: true, unsafe: { transactionEnds: flip } });
      const violation = result.violations.find((v) => caughtBy[flip].test(v));
      if (violation !== undefined) caught = { seed, violation };
    }
    console.log(`transaction end ${flip} caught:`, caught);
    expect(caught).toBeDefined();
  });
});
