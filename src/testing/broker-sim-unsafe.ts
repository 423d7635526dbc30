/**
 * NEGATIVE CONTROLS, simulator only; nothing in src/broker or src/server can reach them.
 *
 * applyOnAppend: makes the broker state machine observe entries when they
 * are appended to the log (leader: when proposed; follower: when received) instead of when
 * they are committed: the bug DESIGN §5 forbids ("nobody but Raft may see an uncommitted
 * tail"). The broker checker must catch it.
 */
import type { RaftPort } from '../broker/broker-service.js';
import type { ApplyResult, BrokerStateMachine } from '../broker/broker-state-machine.js';
import type { BrokerCommand } from '../broker/core/broker-state.js';
import { encodeCommand, PayloadKind, readCommand, readHeader } from '../broker/core/entry-codec.js';
import type { LogStore, StateMachine } from '../raft/node/ports.js';
import type { Entry, LogIndex } from '../raft/types.js';

export function applyOnAppend(log: LogStore, machine: BrokerStateMachine): { log: LogStore; stateMachine: StateMachine<ApplyResult> } {
  /** Entries through this index were applied when appended; their results wait for the commit. */
  let earlyThrough: LogIndex = 0;
  const early = new Map<LogIndex, ApplyResult>();
  const wrappedLog = new Proxy(log, {
    get(target, property) {
      if (property === 'append') {
        return (entries: readonly Entry[], options: { sync: boolean }) => {
          const fresh = entries.filter((e) => e.index > earlyThrough);
          if (fresh.length > 0) {
            machine.apply(fresh).forEach((result, i) => early.set((fresh[i] as Entry).index, result));
            earlyThrough = (fresh[fresh.length - 1] as Entry).index;
          }
          return target.append(entries, options);
        };
      }
      if (property === 'truncateSuffix') {
        return (fromIndex: LogIndex) => {
          // The state keeps what the truncated entries did: that is the bug.
          for (const index of [...early.keys()]) if (index >= fromIndex) early.delete(index);
          earlyThrough = Math.min(earlyThrough, fromIndex - 1);
          return target.truncateSuffix(fromIndex);
        };
      }
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  const stateMachine: StateMachine<ApplyResult> = {
    apply: (entries) => {
      const results: ApplyResult[] = [];
      for (const entry of entries) {
        const result = early.get(entry.index);
        if (result !== undefined) {
          early.delete(entry.index);
          results.push(result);
        } else {
          results.push(machine.apply([entry])[0] as ApplyResult);
          earlyThrough = Math.max(earlyThrough, entry.index);
        }
      }
      return results;
    },
    snapshot: () => machine.snapshot(),
    restore: (data, meta) => {
      early.clear();
      earlyThrough = meta.index;
      machine.restore(data, meta);
    },
    firstNeededIndex: () => machine.firstNeededIndex(),
  };
  return { log: wrappedLog, stateMachine };
}

/**
 * NEGATIVE CONTROL, simulator only. Retention that releases more than it chose: every
 * retention entry the leader's RetentionService proposes names an index `ahead` entries past
 * the segment it picked, so messages stored after that entry but at or before the index are
 * dropped as they arrive, acknowledged or not. The release-versus-loss rule must not pass this
 * off as retention: those messages sit at or above their queue's first offset.
 */
export function retentionAhead(raft: RaftPort, ahead: number): RaftPort {
  return {
    propose: (payload) => {
      const header = readHeader(payload);
      const command = header.kind === PayloadKind.Command ? readCommand(payload) as BrokerCommand : undefined;
      if (command?.op !== 'retention') return raft.propose(payload);
      return raft.propose(encodeCommand({ timeMs: header.timeMs }, { op: 'retention', throughIndex: command.throughIndex + ahead }));
    },
    get role() { return raft.role; },
    get term() { return raft.term; },
    leaderAddress: () => raft.leaderAddress(),
  };
}

/** Which way transactionEndsFlipped breaks EndTransaction. */
export type TransactionEndsFlip = 'rollback-stores' | 'commit-drops';

/**
 * NEGATIVE CONTROL, simulator only. EndTransaction that does the other thing: every `txn.end`
 * the node proposes with ROLLBACK is proposed as COMMIT ('rollback-stores': a rolled-back
 * message is stored anyway, and the ROLLBACK still answered OK), or every COMMIT as ROLLBACK
 * ('commit-drops': a committed message is dropped). Every node applies the same entry, so
 * only the transaction rules (broker-sim-transactions.ts) can tell.
 */
export function transactionEndsFlipped(raft: RaftPort, flip: TransactionEndsFlip): RaftPort {
  const from = flip === 'commit-drops';
  return {
    propose: (payload) => {
      const header = readHeader(payload);
      const command = header.kind === PayloadKind.Command ? readCommand(payload) as BrokerCommand : undefined;
      if (command?.op !== 'txn.end' || command.commit !== from) return raft.propose(payload);
      return raft.propose(encodeCommand({ timeMs: header.timeMs }, { ...command, commit: !from }));
    },
    get role() { return raft.role; },
    get term() { return raft.term; },
    leaderAddress: () => raft.leaderAddress(),
  };
}
