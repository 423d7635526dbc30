import type { LogIndex } from '../types.js';

/**
 * The leader's view of one follower.
 *
 * probe: one append at a time until the follower's match point is found;
 * replicate: optimistic pipelining, `next` advances as messages are sent, at most
 * `inflightAppendsMax` unacknowledged messages;
 * snapshot: the follower needs entries the leader no longer holds; a snapshot through
 * `pendingSnapshot` is being streamed and appends pause until the node reports its outcome
 * or the follower acknowledges it. Invariant: match < next.
 */
export interface Progress {
  match: LogIndex;
  next: LogIndex;
  state: 'probe' | 'replicate' | 'snapshot';
  /** In the snapshot state: the index of the snapshot being sent. */
  pendingSnapshot: LogIndex;
  /** Ticks before another snapshot may be sent after a failed stream (the peer may be down). */
  snapshotBackoffTicks: number;
  /** Last index of each unacknowledged append message, oldest first. */
  inflight: LogIndex[];
  probeSent: boolean;
  /** Heard from during the current election timeout (check-quorum). */
  recentActive: boolean;
  /**
   * `match` at the previous heartbeat: appends in flight with no advance of `match` over a
   * whole heartbeat interval mean a message was lost (heartbeat answers do not count).
   */
  matchAtLastHeartbeat: LogIndex;
  /**
   * Ticks for which appends have been in flight with no advance of `match`. Only an election
   * timeout of them counts as lost appends: a follower that is merely slow (a long fsync, a
   * pause, a busy machine) would only be slowed further by getting the same entries again.
   */
  stalledTicks: number;
}

export function newProgress(next: LogIndex): Progress {
  return { match: 0, next, state: 'probe', pendingSnapshot: 0, snapshotBackoffTicks: 0, inflight: [], probeSent: false, recentActive: true, matchAtLastHeartbeat: 0, stalledTicks: 0 };
}

/** Back to one append at a time from `next` (after a refusal or lost appends). */
export function becomeProbe(progress: Progress, next: LogIndex): void {
  progress.state = 'probe';
  progress.next = next;
  progress.inflight = [];
  progress.probeSent = false;
  progress.stalledTicks = 0;
}

/** The follower's match point is known: pipeline from just after it. */
export function becomeReplicate(progress: Progress): void {
  progress.state = 'replicate';
  progress.next = progress.match + 1;
  progress.inflight = [];
  progress.probeSent = false;
  progress.stalledTicks = 0;
}

/** Appends pause while a snapshot through `index` is streamed to the follower. */
export function becomeSnapshot(progress: Progress, index: LogIndex): void {
  progress.state = 'snapshot';
  progress.pendingSnapshot = index;
  progress.inflight = [];
  progress.probeSent = false;
  progress.stalledTicks = 0;
}
