/**
 * The committed-log watcher's decoding, without a cluster: entries are handed to it as its
 * loops would (one node, so one report is a majority). A batch holding a delayed message is
 * kind TimedMessages as a whole, queue-workload values included: they must get their index.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { PayloadKind, encodeCommand, encodeMessages, readHeader, type MessageInput } from '../src/broker/core/entry-codec.js';
import type { CommittedEntry } from '../src/client/raft-node-client.js';
import { LogWatch } from './log-watch.js';

const message = (topic: string, body: string, deliveryTimeMs = 0): MessageInput => ({
  topic, messageId: `id-${body}`, tag: '', keys: [], messageGroup: '', queueId: -1, bornTimestamp: 1, bornHost: 'h', properties: {}, body: Buffer.from(body), deliveryTimeMs,
});

/** The watcher's entry point for one entry a node reported committed and applied. */
const observe = (watch: LogWatch, entry: CommittedEntry): void => (watch as unknown as { observe(nodeId: string, entry: CommittedEntry): void }).observe('n1', entry);

describe('committed-log watcher', () => {
  let watch: LogWatch | undefined;
  afterEach(() => watch?.stop());

  it('decodes Messages and TimedMessages entries alike, for every watched topic, and counts timer fires', () => {
    watch = new LogWatch([{ id: 'n1', address: '127.0.0.1:1' }], ['jepsen', 'jepsen-delay'], 1);
    const plain = encodeMessages({ timeMs: 1_000 }, [message('jepsen', '0-0')]);
    const timed = encodeMessages({ timeMs: 1_001 }, [message('jepsen', '0-1'), message('jepsen-delay', 'd0-0', 5_000), message('other', 'x-0')]);
    expect(readHeader(timed).kind).toBe(PayloadKind.TimedMessages);
    observe(watch, { index: 5, term: 1, kind: 0, payload: plain });
    observe(watch, { index: 6, term: 1, kind: 0, payload: timed });
    observe(watch, { index: 7, term: 1, kind: 0, payload: encodeCommand({ timeMs: 5_000 }, { op: 'timer.fire', throughMs: 5_000 }) });
    expect(watch.committedIndexOf('0-0')).toBe(5);
    expect(watch.committedIndexOf('0-1')).toBe(6);
    expect(watch.committedIndexOf('d0-0')).toBe(6);
    expect(watch.committedIndexOf('x-0')).toBeUndefined();
    expect(watch.summary()).toMatchObject({ valuesSeen: 3, timedEntries: 1, timerFires: 1, conflicts: 0 });
  });
});
