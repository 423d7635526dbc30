/**
 * NEGATIVE CONTROL, simulator only. Makes the broker state machine observe entries when they
 * are appended to the log (leader: when proposed; follower: when received) instead of when
 * they are committed: the bug DESIGN §5 forbids ("nobody but Raft may see an uncommitted
 * tail"). The broker checker must catch it. Nothing in src/broker or src/server can reach it.
 */
import type { ApplyResult, BrokerStateMachine } from '../broker/broker-state-machine.js';
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
