import type { StableStore } from '../raft/node/ports.js';
import type { HardState } from '../raft/types.js';
import type { SimScheduler } from './sim-scheduler.js';

/** Where a simulated node's term, vote and mark survive its crashes. */
export interface HardStateHolder {
  durableHardState: HardState | undefined;
}

/**
 * A simulated stable store: saves take a drawn disk latency and are durable when they resolve;
 * a save from an incarnation that has crashed meanwhile fails (a zombie cannot write).
 */
export function simStableStore(holder: HardStateHolder, scheduler: SimScheduler, latencyMs: () => number, isCurrent: () => boolean): StableStore {
  return {
    load: async () => {
      await scheduler.sleep(0.01);
      return holder.durableHardState;
    },
    save: async (state) => {
      await scheduler.sleep(latencyMs());
      if (!isCurrent()) throw new Error('stable store: node crashed');
      holder.durableHardState = state;
    },
  };
}
