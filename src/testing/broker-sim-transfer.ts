/**
 * What the broker simulator moves between nodes besides Raft's own messages, over the
 * simulated network's semantics (partitions, pauses, drops, delays, crashes on either side):
 * - InstallSnapshot streams: the leader's newest snapshot file, rewritten with the state's
 *   consume-queue records as the transport sends it (raft-group-node's snapshotFileForPeer with
 *   `BrokerStateMachine.snapshotWithRecords`), in chunks into the follower's snapshot store; a
 *   partition, drop, pause or crash on either side fails it (the leader retries).
 * - Reads of committed entries from a peer's log (the port PeerEntries reads through;
 *   `RaftNodeClient.readCommitted` on a broker node): a node restored by InstallSnapshot holds
 *   the state, but its log starts after the snapshot while its consume queues still point at
 *   retained entries before it.
 */
import type { ApplyResult, BrokerStateMachine } from '../broker/broker-state-machine.js';
import type { CommitLog } from '../commitlog/commit-log.js';
import type { FileSnapshotStore } from '../commitlog/snapshot-store.js';
import type { RaftNode } from '../raft/node/raft-node.js';
import type { InstallSnapshot, LogIndex, NodeId } from '../raft/types.js';
import type { Prng } from './prng.js';
import type { SimNetwork } from './sim-network.js';
import type { SimScheduler } from './sim-scheduler.js';

/** What the transfers need of a simulated node (one slot, across its incarnations). */
export interface TransferSlot {
  readonly id: NodeId;
  readonly incarnation: number;
  readonly alive: boolean;
  readonly node: RaftNode<ApplyResult> | undefined;
  readonly machine: BrokerStateMachine | undefined;
  readonly commitLog: CommitLog | undefined;
  readonly snapshots: FileSnapshotStore | undefined;
}

export interface TransferHost {
  readonly scheduler: SimScheduler;
  readonly network: SimNetwork;
  readonly slots: readonly TransferSlot[];
  trace(line: string): void;
  /** A stream to `to` is about to write into its store (the nemesis may arm a crash there). */
  onInstallStart(to: TransferSlot): void;
  /**
   * The received file is durable in `to`'s store, the node has not taken it yet (the window
   * the gRPC transport leaves between the store's commit and onSnapshotReceived): the nemesis
   * may crash `to` here; true if it did.
   */
  onInstallStored(to: TransferSlot): boolean;
  /** The stream ended without an install. */
  onInstallFailed(to: TransferSlot): void;
}

export interface TransferStats {
  snapshotsSent: number;
  snapshotSendsFailed: number;
  peerReads: number;
  peerReadsFailed: number;
}

const chunkBytes = 4096;

export class SimTransfers {
  readonly stats: TransferStats = { snapshotsSent: 0, snapshotSendsFailed: 0, peerReads: 0, peerReadsFailed: 0 };

  constructor(private readonly host: TransferHost, private readonly random: Prng) {}

  /** One network hop's delay, drawn from the current network faults. */
  private hop(): Promise<void> {
    const { delayMinMs, delayMaxMs } = this.host.network.faults;
    return this.host.scheduler.sleep(this.random.int(delayMinMs, Math.max(delayMinMs, delayMaxMs)));
  }

  /** A call from `a` to `b` and its answer can pass (both directions open, neither paused). */
  private connected(a: NodeId, b: NodeId): boolean {
    const network = this.host.network;
    return !network.isBlocked(a, b) && !network.isBlocked(b, a) && !network.isPaused(a) && !network.isPaused(b);
  }

  /** InstallSnapshot from `from` (incarnation `fromIncarnation`) as the gRPC transport streams it. */
  streamSnapshot(from: TransferSlot, fromIncarnation: number, message: InstallSnapshot): void {
    const to = this.host.slots.find((s) => s.id === message.to);
    const sender = from.node;
    const source = from.snapshots;
    const machine = from.machine;
    const stored = source?.newest();
    const senderCurrent = (): boolean => from.alive && from.incarnation === fromIncarnation;
    let reported = false;
    const report = (ok: boolean): void => {
      if (reported) return;
      reported = true;
      if (ok) this.stats.snapshotsSent++;
      else this.stats.snapshotSendsFailed++;
      if (senderCurrent()) sender?.reportSnapshot(message.to, ok);
    };
    if (to === undefined || sender === undefined || source === undefined || machine === undefined || stored === undefined || stored.meta.index < message.snapshot.index) {
      report(false);
      return;
    }
    let started = false;
    const transfer = async (): Promise<void> => {
      // What is sent: the stored file with the state's records (raft-group-node's snapshotFileForPeer).
      const bytes = await source.fileWithState(stored, (data) => machine.snapshotWithRecords(data));
      await this.hop();
      const targetIncarnation = to.incarnation;
      const target = to.node;
      const store = to.snapshots;
      const reachable = (): boolean => senderCurrent() && to.alive && to.incarnation === targetIncarnation && this.connected(message.from, message.to);
      if (target === undefined || store === undefined || !reachable() || this.random.chance(this.host.network.faults.dropProbability)) {
        report(false);
        return;
      }
      started = true;
      this.host.onInstallStart(to);
      const receiver = store.receive(stored.meta, bytes.length);
      try {
        for (let offset = 0; offset < bytes.length; offset += chunkBytes) {
          await this.host.scheduler.sleep(this.random.int(0, 2));
          if (!reachable()) throw new Error('snapshot stream broken');
          await receiver.write(offset, bytes.subarray(offset, Math.min(bytes.length, offset + chunkBytes)));
        }
        const { data } = await receiver.finish();
        if (this.host.onInstallStored(to)) throw new Error('the follower crashed with the snapshot stored, not installed');
        if (!reachable()) throw new Error('snapshot stream broken after the last chunk');
        this.host.trace(`${message.from}->${message.to} snapshot ${stored.meta.index}/t${stored.meta.term} (${bytes.length} bytes) received`);
        target.receiveSnapshot({ ...message, snapshot: stored.meta }, data);
        report(true);
      } catch (error) {
        await receiver.abort().catch(() => undefined);
        throw error;
      }
    };
    transfer().catch((error: unknown) => {
      this.host.trace(`${message.from}->${message.to} snapshot ${stored.meta.index} failed: ${(error as Error).message}`);
      if (started) this.host.onInstallFailed(to);
      report(false);
    });
  }

  /**
   * `RaftNodeClient.readCommitted` from `self` to `peerId` over the simulated network: the call
   * needs both directions open and neither side paused, and the peer serves only committed
   * entries it holds, at or below its applied index (as raft-group-node's ReadCommitted). A
   * lost call or answer throws, like an unreachable peer.
   */
  async readCommitted(self: TransferSlot, peerId: NodeId, fromIndex: LogIndex, maxEntries: number): Promise<ReadonlyArray<{ readonly index: number; readonly payload: Uint8Array }>> {
    this.stats.peerReads++;
    const peer = this.host.slots.find((s) => s.id === peerId);
    const fail = (why: string): never => {
      this.stats.peerReadsFailed++;
      throw new Error(why);
    };
    if (peer === undefined || !peer.alive || !this.connected(self.id, peer.id)) return fail('unreachable');
    await this.hop();
    const incarnation = peer.incarnation;
    const node = peer.node;
    const log = peer.commitLog;
    if (!peer.alive || node === undefined || log === undefined || !this.connected(self.id, peer.id) || this.random.chance(this.host.network.faults.dropProbability)) return fail('unreachable');
    if (fromIndex < log.firstIndex) return fail(`index ${fromIndex} was deleted by retention; the first index is ${log.firstIndex}`);
    const throughIndex = Math.min(node.appliedIndex, fromIndex + maxEntries - 1);
    const entries = throughIndex < fromIndex ? [] : await log.read({ fromIndex, throughIndex, bytesMax: 4 * 1024 * 1024 });
    await this.hop();
    if (peer.incarnation !== incarnation || !this.connected(self.id, peer.id)) return fail('the answer was lost');
    return entries;
  }
}
