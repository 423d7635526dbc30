/**
 * What the broker simulator moves between nodes besides Raft's own messages, over the
 * simulated network's semantics (partitions, pauses, drops, delays, crashes on either side):
 * - InstallSnapshot streams: the leader's newest snapshot file, rewritten with the state's
 *   consume-queue records as the transport sends it (raft-group-node's snapshotFileForPeer with
 *   `BrokerStateMachine.snapshotWithRecords`), in chunks into the follower's snapshot store; a
 *   partition, drop, pause or crash on either side fails it (the leader retries).
 * - Reads of committed entries from a peer's log (broker-node.ts's `peerPayload` over
 *   `RaftNodeClient.readCommitted`): a node restored by InstallSnapshot holds the state, but its
 *   log starts after the snapshot while its consume queues still point at retained entries
 *   before it.
 */
import type { ApplyResult, BrokerStateMachine } from '../broker/broker-state-machine.js';
import { BrokerError } from '../broker/errors.js';
import type { CommitLog } from '../commitlog/commit-log.js';
import { encodeSnapshotFile, parseSnapshotFile, type FileSnapshotStore } from '../commitlog/snapshot-store.js';
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
      // What is sent: the stored file with the state's records (snapshotFileForPeer).
      const parsed = parseSnapshotFile(await source.readFileChunk(stored, 0, stored.fileBytes), stored.meta.index);
      if (!parsed.ok) throw new Error(`snapshot ${stored.fileName} cannot be sent: ${parsed.problem}`);
      const bytes = encodeSnapshotFile(stored.meta, machine.snapshotWithRecords(parsed.data));
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
   * Entry `index` from a peer's log, as broker-node.ts's peerPayload reads it: each peer in
   * member order, over a call that needs both directions open and neither side paused; a
   * peer serves only a committed entry it holds, at or below its applied index. When none
   * can, a BrokerError (the client retries).
   */
  async peerPayload(self: TransferSlot, index: LogIndex): Promise<Uint8Array> {
    this.stats.peerReads++;
    const failures: string[] = [];
    for (const peer of this.host.slots) {
      if (peer === self) continue;
      if (!peer.alive || !this.connected(self.id, peer.id)) {
        failures.push(`${peer.id}: unreachable`);
        continue;
      }
      await this.hop();
      const incarnation = peer.incarnation;
      const node = peer.node;
      const log = peer.commitLog;
      if (!peer.alive || node === undefined || log === undefined || !this.connected(self.id, peer.id) || this.random.chance(this.host.network.faults.dropProbability)) {
        failures.push(`${peer.id}: unreachable`);
        continue;
      }
      if (index > node.appliedIndex || index < log.firstIndex) {
        failures.push(`${peer.id}: not there (log ${log.firstIndex}..${log.lastIndex}, applied ${node.appliedIndex})`);
        continue;
      }
      let payload: Uint8Array | undefined;
      try {
        const [entry] = await log.read({ fromIndex: index, throughIndex: index, bytesMax: 1 });
        if (entry?.index === index) payload = entry.payload;
      } catch (error) {
        failures.push(`${peer.id}: ${(error as Error).message}`);
        continue;
      }
      await this.hop();
      if (peer.incarnation !== incarnation || !this.connected(self.id, peer.id)) {
        failures.push(`${peer.id}: the answer was lost`);
        continue;
      }
      if (payload !== undefined) return payload;
      failures.push(`${peer.id}: not there`);
    }
    this.stats.peerReadsFailed++;
    throw new BrokerError('INTERNAL_SERVER_ERROR', `log entry ${index} is before ${self.id}'s log (restored by snapshot) and no peer served it (${failures.join('; ')})`);
  }
}
