/**
 * Retained log entries this node does not hold, read from its peers. A node restored by
 * InstallSnapshot has the state, but its log starts after the snapshot while its consume
 * queues still point at retained entries before it; every peer keeps what retention has not
 * released. Consumers read in offset order, so entries are fetched in runs of
 * `batchEntries` and kept in a byte-bounded LRU: a run of receives costs one request per
 * batch, not one per message. The reads go through a port: RaftNodeClient.readCommitted on a
 * broker node (src/server/broker-node.ts), the simulated network in the broker simulator.
 */
import { BrokerError } from './errors.js';

export interface Peer {
  readonly id: string;
  readonly address: string;
}

/** Up to `maxEntries` committed entries of `peer`'s log from `fromIndex` (fewer, or none, if it does not hold them); throws when unreachable. */
export type ReadCommitted = (peer: Peer, fromIndex: number, maxEntries: number) => Promise<ReadonlyArray<{ readonly index: number; readonly payload: Uint8Array }>>;

export interface PeerEntriesOptions {
  readonly readCommitted: ReadCommitted;
  /** The other members, consulted on every fetch (membership changes). */
  readonly peers: () => readonly Peer[];
  readonly batchEntries?: number;
  readonly cacheBytesMax?: number;
}

export class PeerEntries {
  private readonly cache = new Map<number, Uint8Array>();
  private cachedBytes = 0;
  /** Fetches under way, by their first index: a read inside one waits for it. */
  private readonly fetching = new Map<number, Promise<void>>();
  private preferred: string | undefined;
  private readonly batchEntries: number;
  private readonly cacheBytesMax: number;

  constructor(private readonly options: PeerEntriesOptions) {
    this.batchEntries = options.batchEntries ?? 512;
    this.cacheBytesMax = options.cacheBytesMax ?? 64 * 1024 * 1024;
  }

  /** The payload of committed entry `index`, or a BrokerError naming why no peer served it. */
  async payload(index: number): Promise<Uint8Array> {
    const cached = this.take(index);
    if (cached !== undefined) return cached;
    for (const [first, fetch] of this.fetching) {
      if (index >= first && index < first + this.batchEntries) {
        await fetch;
        const fetched = this.take(index);
        if (fetched !== undefined) return fetched;
      }
    }
    const failures: string[] = [];
    const fetch = this.fetch(index, failures);
    this.fetching.set(index, fetch);
    try {
      await fetch;
    } finally {
      this.fetching.delete(index);
    }
    const fetched = this.take(index);
    if (fetched !== undefined) return fetched;
    throw new BrokerError('INTERNAL_SERVER_ERROR', `log entry ${index} is before this node's log (restored by snapshot) and no peer served it (${failures.join('; ') || 'no peers'})`);
  }

  private async fetch(index: number, failures: string[]): Promise<void> {
    const peers = [...this.options.peers()].sort((a, b) => Number(b.address === this.preferred) - Number(a.address === this.preferred));
    for (const peer of peers) {
      try {
        const entries = await this.options.readCommitted(peer, index, this.batchEntries);
        if (entries[0]?.index !== index) {
          failures.push(`${peer.id}: not there`);
          continue;
        }
        for (const entry of entries) this.put(entry.index, entry.payload);
        this.preferred = peer.address;
        return;
      } catch (error) {
        failures.push(`${peer.id}: ${(error as Error).message}`);
      }
    }
  }

  private take(index: number): Uint8Array | undefined {
    const payload = this.cache.get(index);
    if (payload !== undefined) {
      this.cache.delete(index);
      this.cache.set(index, payload);
    }
    return payload;
  }

  private put(index: number, payload: Uint8Array): void {
    const previous = this.cache.get(index);
    if (previous !== undefined) {
      this.cachedBytes -= previous.byteLength;
      this.cache.delete(index);
    }
    this.cache.set(index, payload);
    this.cachedBytes += payload.byteLength;
    for (const [oldest, bytes] of this.cache) {
      if (this.cachedBytes <= this.cacheBytesMax || oldest === index) break;
      this.cache.delete(oldest);
      this.cachedBytes -= bytes.byteLength;
    }
  }
}
