import { describe, expect, it } from 'vitest';
import { PeerEntries, type Peer, type ReadCommitted } from './peer-entries.js';

/** Peers that hold entries [first, last] (payload = the index as 4 bytes) and count the requests they serve. */
function peersHolding(first: number, last: number, down: ReadonlySet<string> = new Set()) {
  const requests: Array<{ address: string; fromIndex: number }> = [];
  const readCommitted: ReadCommitted = async (peer: Peer, fromIndex: number, maxEntries: number) => {
    requests.push({ address: peer.address, fromIndex });
    if (down.has(peer.address)) throw new Error('UNAVAILABLE: connection refused');
    const entries = [];
    for (let index = Math.max(fromIndex, first); index <= last && index < fromIndex + maxEntries; index++) {
      entries.push({ index, payload: new Uint8Array(new Uint32Array([index]).buffer) });
    }
    return entries;
  };
  return { readCommitted, requests };
}

const members = [{ id: 'n2', address: 'a2' }, { id: 'n3', address: 'a3' }];
const indexOf = (payload: Uint8Array): number => new Uint32Array(payload.slice().buffer)[0] as number;

describe('entries read from peers', () => {
  it('fetches a run per request, so reading 1,000 entries in order costs two requests', async () => {
    const { readCommitted, requests } = peersHolding(1, 5_000);
    const entries = new PeerEntries({ readCommitted, peers: () => members, batchEntries: 512 });
    for (let index = 100; index < 1_100; index++) expect(indexOf(await entries.payload(index))).toBe(index);
    expect(requests.length).toBe(2);
  });

  it('reads concurrently requested entries of one run with one request', async () => {
    const { readCommitted, requests } = peersHolding(1, 5_000);
    const entries = new PeerEntries({ readCommitted, peers: () => members, batchEntries: 512 });
    const read = await Promise.all(Array.from({ length: 50 }, (_, i) => entries.payload(10 + i)));
    expect(read.map(indexOf)).toEqual(Array.from({ length: 50 }, (_, i) => 10 + i));
    expect(requests.length).toBe(1);
  });

  it('goes to the next peer when one is down, and names every failure when none serves', async () => {
    const { readCommitted } = peersHolding(1, 100, new Set(['a2']));
    const entries = new PeerEntries({ readCommitted, peers: () => members });
    expect(indexOf(await entries.payload(7))).toBe(7);
    const failure = entries.payload(500);
    await expect(failure).rejects.toThrow(/log entry 500 is before this node's log \(restored by snapshot\) and no peer served it/);
    await expect(failure).rejects.toThrow(/n2: UNAVAILABLE: connection refused/);
    await expect(failure).rejects.toThrow(/n3: not there/);
  });

  it('keeps at most cacheBytesMax of payloads', async () => {
    const { readCommitted, requests } = peersHolding(1, 5_000);
    const entries = new PeerEntries({ readCommitted, peers: () => members, batchEntries: 100, cacheBytesMax: 4 * 100 });
    await entries.payload(1);
    await entries.payload(1_000);
    await entries.payload(1); // evicted by the second run: fetched again
    expect(requests.length).toBe(3);
  });
});
