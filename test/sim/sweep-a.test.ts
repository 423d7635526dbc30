/**
 * Randomised cluster simulation, seeds 1–100 (3- and 5-node). Each seed draws its own fault
 * mix (drops, duplicates, delay/reorder, partitions incl. one-way, pauses, crashes that lose
 * unsynced writes and tear the last one) and is checked after every event for election
 * safety, log matching, leader completeness, state-machine safety and monotone commit, then
 * for liveness and for every acknowledged proposal after healing.
 */
import { it } from 'vitest';
import { sweep } from './sweep.js';

it('seeds 1-100 keep every Raft invariant and every acknowledged proposal', async () => {
  await sweep(1, 100);
}, 240_000);
