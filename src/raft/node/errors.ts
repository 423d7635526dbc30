import type { NodeId } from '../types.js';

/**
 * Every proposal error says whether the outcome is definite (the entry will never be
 * committed) or unknown (it may have been committed). Fault tests and clients depend on it:
 * a definite failure may be retried freely; an unknown one may already have happened.
 */
export abstract class ProposalError extends Error {
  abstract readonly code: string;
  abstract readonly definite: boolean;
}

export class NotLeaderError extends ProposalError {
  override readonly name = 'NotLeaderError';
  readonly code = 'NOT_LEADER';
  readonly definite = true;
  constructor(readonly leaderHint: NodeId | undefined) {
    super(`not the leader${leaderHint === undefined ? ' (leader unknown)' : `; leader is ${leaderHint}`}`);
  }
}

export class ProposalDroppedError extends ProposalError {
  override readonly name = 'ProposalDroppedError';
  readonly code = 'PROPOSAL_DROPPED';
  readonly definite = true;
  constructor(readonly reason: string) {
    super(`proposal refused: ${reason}`);
  }
}

/** Another entry was committed at the proposal's index, so the proposal never will be. */
export class ProposalOverwrittenError extends ProposalError {
  override readonly name = 'ProposalOverwrittenError';
  readonly code = 'PROPOSAL_OVERWRITTEN';
  readonly definite = true;
  constructor(readonly index: number) {
    super(`proposal at index ${index} was replaced by a newer leader's entry; it was not committed`);
  }
}

export class OutcomeUnknownError extends ProposalError {
  override readonly name = 'OutcomeUnknownError';
  readonly code = 'OUTCOME_UNKNOWN';
  readonly definite = false;
  constructor(readonly reason: 'node-stopped' | 'node-failed' | 'cancelled' | 'entry-truncated' | 'removed-from-group' | 'leadership-lost', options?: ErrorOptions) {
    super(`proposal outcome unknown: ${reason}`, options);
  }
}

/** The node stopped after a storage failure (fail-stop); it must be restarted. */
export class NodeFailedError extends Error {
  override readonly name = 'NodeFailedError';
  readonly code = 'NODE_FAILED';
  constructor(options: ErrorOptions) {
    super('raft node stopped after a storage failure', options);
  }
}
