import type { FaultProfile, SimControl } from './sim-cluster.js';
import type { NodeId } from '../raft/types.js';

/**
 * Directed scenarios: scripted fault schedules run by the simulator with the real node
 * code. Seeds still vary timing (network delay, election jitter, disk latency). Each is a
 * regression fixture the safe build must pass, named after what it reproduces.
 */
export interface Scenario {
  readonly nodeCount: number;
  /** Only what differs from a scripted run's defaults (random faults off, 1–10 ms delay). */
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
  const s1 = await stableLeader(c);
  await c.waitFor('every log to hold the no-op', () => c.ids.every((id) => c.node(id)?.lastIndex === c.node(s1)?.lastIndex));
  const [s2, ...majority] = c.ids.filter((id) => id !== s1) as [NodeId, ...NodeId[]];
  const xIndex = must(c.node(s1), 's1').lastIndex + 1;
  c.partition([[s1, s2], majority]);
  c.propose(s1);
  await c.waitFor('X replicated to s2', () => (c.node(s2)?.lastIndex ?? 0) >= xIndex, 2_000);
  c.crash(s1);
  let m: NodeId | undefined;
  for (const id of majority) {
    c.onLeader(id, () => {
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

/** The highest term any live node has reached. */
function maxTerm(c: SimControl): number {
  return Math.max(0, ...c.ids.map((id) => c.node(id)?.term ?? 0));
}

async function stableLeader(c: SimControl): Promise<NodeId> {
  await c.waitFor('a leader with a committed no-op', () => {
    const leader = c.leader();
    const node = leader === undefined ? undefined : c.node(leader);
    return node !== undefined && node.commitIndex === node.lastIndex;
  });
  return must(c.leader(), 'leader');
}

/** A leader must commit past `index` within 3 s; a timeout here is a liveness failure. */
async function commitsPast(c: SimControl, index: number, what: string): Promise<void> {
  try {
    await c.waitFor(`a leader for ${what}`, () => c.leader() !== undefined, 3_000);
    c.propose(must(c.leader(), 'leader'));
    await c.waitFor(what, () => {
      const current = c.leader();
      return current !== undefined && (c.node(current)?.commitIndex ?? 0) > index;
    }, 3_000);
  } catch (error) {
    throw new Error(`liveness: ${(error as Error).message}`);
  }
}

/**
 * DLedger #25: the leader and one follower cannot talk to each other, but both see the third
 * node. Without pre-vote and a leader lease this caused endless re-election. Here the cut-off
 * follower cannot win pre-votes while the leader is alive, so the term must stay put and the
 * group keep committing.
 */
async function asymmetricCut(c: SimControl): Promise<void> {
  const leader = await stableLeader(c);
  const follower = must(c.ids.find((id) => id !== leader), 'follower');
  c.partition([[leader], [follower]]);
  // partition() cut both ways between the two named sides only; the third node sees both.
  await c.sleep(500);
  const termBefore = maxTerm(c);
  const commitBefore = c.node(c.leader() ?? leader)?.commitIndex ?? 0;
  await c.sleep(5_000);
  await commitsPast(c, commitBefore, 'a commit during the asymmetric cut');
  if (maxTerm(c) > termBefore + 1) throw new Error(`re-election storm: term went from ${termBefore} to ${maxTerm(c)} during an asymmetric cut`);
  c.heal();
}

/**
 * DLedger #37: a follower cut off for a while rejoins after the partition heals. Without
 * pre-vote it would have raised its term while alone and depose the healthy leader on return
 * (a needless re-election); with pre-vote the term and the leader must not change.
 */
async function reElectionAfterHeal(c: SimControl): Promise<void> {
  const leader = await stableLeader(c);
  const follower = must(c.ids.find((id) => id !== leader), 'follower');
  const termBefore = maxTerm(c);
  c.partition([[follower], c.ids.filter((id) => id !== follower)]);
  await c.sleep(3_000);
  c.heal();
  await c.sleep(3_000);
  const commitBefore = c.node(leader)?.commitIndex ?? 0;
  await commitsPast(c, commitBefore, 'a commit after healing');
  if (maxTerm(c) !== termBefore || c.leader() !== leader) {
    throw new Error(`re-election after heal: term ${termBefore} -> ${maxTerm(c)}, leader ${leader} -> ${c.leader()}`);
  }
}

/**
 * A leader cut off with an uncommitted tail: proposals it accepted can never commit once the
 * majority elects another leader. After healing, every one must settle (unknown when its
 * entry is truncated) instead of hanging. Regression for seeds 59/147/175/177, where such
 * proposals never settled.
 */
async function isolatedLeaderUncommittedTail(c: SimControl): Promise<void> {
  const leader = await stableLeader(c);
  const others = c.ids.filter((id) => id !== leader);
  c.partition([[leader], others]);
  for (let i = 0; i < 5; i++) c.propose(leader);
  await c.waitFor('a new leader on the majority side', () => {
    const current = c.leader();
    return current !== undefined && current !== leader;
  }, 5_000);
  const majorityLeader = must(c.leader(), 'leader');
  await commitsPast(c, c.node(majorityLeader)?.commitIndex ?? 0, 'a commit on the majority side');
  c.heal();
  try {
    await c.waitFor('every proposal to settle after healing', () => c.inFlight() === 0, 3_000);
  } catch {
    throw new Error(`liveness: ${c.inFlight()} proposals of the isolated leader never settled`);
  }
}

/**
 * The cut-off leader must not hold its proposals until the partition heals: once it steps
 * down (check-quorum) it settles them as unknown, so its clients can retry on the majority's
 * leader. Regression for jepsen-tests' isolated-leader run, where a healthy majority took no
 * writes for a whole partition because every client waited on the old leader.
 */
async function isolatedLeaderSettlesBeforeHeal(c: SimControl): Promise<void> {
  const leader = await stableLeader(c);
  const others = c.ids.filter((id) => id !== leader);
  c.partition([[leader], others]);
  for (let i = 0; i < 5; i++) c.propose(leader);
  try {
    await c.waitFor('the cut-off leader to settle its proposals while still cut off', () => c.inFlight() === 0, 3_000);
  } catch {
    throw new Error(`liveness: ${c.inFlight()} proposals of the cut-off leader were still pending before the heal`);
  }
  c.heal();
}

/**
 * Found by jepsen-tests (nightly `corrupt`): a follower loses the synced tail of its log (the
 * disk truncated it, or a bit flip in the last record made recovery cut it as if it were
 * torn) while the third node lags. Before the fix it could not tell that it lost entries it
 * had acknowledged, so it campaigned, the lagging node voted for it, and the committed entries
 * only the old leader still held were overwritten. Now the node compares its log with the
 * durable synced-through mark, abstains from elections, and the group waits for the old
 * leader instead of electing a leader without committed entries.
 */
async function truncatedFollowerElected(c: SimControl): Promise<void> {
  const leader = await stableLeader(c);
  const [amnesiac, lagging] = c.ids.filter((id) => id !== leader) as [NodeId, NodeId];
  c.crash(lagging);
  for (let i = 0; i < 20; i++) c.propose(leader);
  await c.waitFor('every proposal to be acknowledged by the leader and the follower', () => c.inFlight() === 0, 5_000);
  c.crash(amnesiac);
  c.truncateLogTail(amnesiac, 400);
  c.crash(leader);
  c.restart(amnesiac);
  c.restart(lagging);
  await c.sleep(3_000);
  const early = c.leader();
  if (early !== undefined) throw new Error(`safety: ${early} was elected by the node that lost its log tail and the lagging node`);
  c.restart(leader);
  await c.waitFor('a leader once the node with every committed entry is back', () => c.leader() !== undefined, 10_000);
  await commitsPast(c, c.node(must(c.leader(), 'leader'))?.commitIndex ?? 0, 'a commit after recovery');
  await c.sleep(1_000);
}

/**
 * The leader removes itself and keeps accepting proposals until that change commits; then
 * it is a non-member nobody replicates to, so it can never learn their fate. Every one must
 * settle (unknown) instead of hanging. Regression for a hang seen in the process test.
 */
async function leaderRemovesItself(c: SimControl): Promise<void> {
  const leader = await stableLeader(c);
  c.changeMembership(leader, { remove: leader });
  for (let i = 0; i < 5; i++) c.propose(leader);
  await c.waitFor('a leader of the smaller group', () => {
    const current = c.leader();
    return current !== undefined && current !== leader && c.node(current)?.members.length === c.ids.length - 1;
  }, 5_000);
  try {
    await c.waitFor('every proposal to settle', () => c.inFlight() === 0, 3_000);
  } catch {
    throw new Error(`liveness: ${c.inFlight()} proposals of the removed leader never settled`);
  }
}

export const scenarios: Readonly<Record<string, Scenario>> = {
  'leader-removes-itself': { nodeCount: 3, profile: {}, script: leaderRemovesItself },
  'isolated-leader-uncommitted-tail': { nodeCount: 3, profile: {}, script: isolatedLeaderUncommittedTail },
  'isolated-leader-settles-before-heal': { nodeCount: 3, profile: {}, script: isolatedLeaderSettlesBeforeHeal },
  'truncated-follower-elected-over-committed-entries': { nodeCount: 3, profile: {}, script: truncatedFollowerElected },
  'asymmetric-cut': { nodeCount: 3, profile: {}, script: asymmetricCut },
  're-election-after-heal': { nodeCount: 3, profile: {}, script: reElectionAfterHeal },
  'figure-8': { nodeCount: 5, profile: { appendEntriesMax: 1, delayMaxMs: 5 }, script: figure8 },
};
