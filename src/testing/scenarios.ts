import type { FaultProfile, SimControl } from './sim-cluster.js';
import type { NodeId } from '../raft/types.js';

/**
 * Directed scenarios: scripted fault schedules run by the simulator with the real node
 * code. Seeds still vary timing (network delay, election jitter, disk latency). Each is a
 * regression fixture the safe build must pass, named after what it reproduces.
 */
export interface Scenario {
  readonly nodeCount: number;
  readonly profile: Partial<FaultProfile>;
  readonly script: (control: SimControl) => Promise<void>;
}

const must = <T>(value: T | undefined, what: string): T => {
  if (value === undefined) throw new Error(`scenario: ${what} is missing`);
  return value;
};

/**
 * The Raft paper's Figure 8, with a leader no-op in place. An entry X of an old term sits on
 * {s1, s2} only; a rival entry at X's index lives only on M, a majority-side leader that is
 * isolated the moment it is elected and then crashed. s1 or s2 leads again and copies X to a
 * lagging follower P one entry per message. Counting P's copy of the *old-term* X toward
 * commit is unsafe: M, back with P and Q, can win and overwrite X. The safe leader commits
 * X only through its own no-op, which then stops M from winning.
 */
async function figure8(c: SimControl): Promise<void> {
  await c.waitFor('a first leader with a committed no-op', () => {
    const leader = c.leader();
    const node = leader === undefined ? undefined : c.node(leader);
    return node !== undefined && node.commitIndex === node.lastIndex && c.ids.every((id) => c.node(id)?.lastIndex === node.lastIndex);
  });
  const s1 = must(c.leader(), 'leader');
  const [s2, ...majority] = c.ids.filter((id) => id !== s1) as [NodeId, ...NodeId[]];
  const xIndex = must(c.node(s1), 's1').lastIndex + 1;
  c.partition([[s1, s2], majority]);
  c.propose(s1);
  await c.waitFor('X replicated to s2', () => (c.node(s2)?.lastIndex ?? 0) >= xIndex, 2_000);
  c.crash(s1);
  let m: NodeId | undefined;
  for (const id of majority) {
    c.onRole(id, 'leader', () => {
      if (m !== undefined) return;
      m = id;
      c.isolate(id); // its no-op at X's index must stay on M alone
    });
  }
  await c.waitFor('a majority-side leader', () => m !== undefined && (c.node(m)?.lastIndex ?? 0) >= xIndex, 5_000);
  const mId = must(m, 'M');
  c.crash(mId);
  const rest = majority.filter((id) => id !== mId);
  c.restart(s1);
  c.partition([[mId], [s1, s2, ...rest]]);
  await c.waitFor('s1 or s2 to lead and commit X', () => [s1, s2].some((id) => c.node(id)?.role === 'leader' && (c.node(id)?.commitIndex ?? 0) >= xIndex), 5_000);
  // Cut the old pair off before anything more reaches P and Q, then bring M back.
  c.partition([[s1, s2], [mId, ...rest]]);
  c.restart(mId);
  await c.waitFor('a leader on the M side that commits past X', () => [mId, ...rest].some((id) => c.node(id)?.role === 'leader' && (c.node(id)?.commitIndex ?? 0) > xIndex), 5_000);
  c.heal();
}

export const scenarios: Readonly<Record<string, Scenario>> = {
  'figure-8': { nodeCount: 5, profile: { appendEntriesMax: 1, dropProbability: 0, duplicateProbability: 0, delayMaxMs: 5 }, script: figure8 },
};
