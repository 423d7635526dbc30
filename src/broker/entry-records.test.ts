/** EntryRecords decodes every message exactly as readMessageAt does, for every kind of message entry. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeMessages, readMessageAt, type MessageInput } from './core/entry-codec.js';
import { EntryRecords } from './entry-records.js';

const text = fc.string({ unit: 'grapheme', maxLength: 12 });

const message = (timed: boolean): fc.Arbitrary<MessageInput> => fc.record({
  topic: text, messageId: text, tag: text, keys: fc.array(text, { maxLength: 3 }), messageGroup: text, queueId: fc.integer({ min: -1, max: 64 }),
  bornTimestamp: fc.integer({ min: 0, max: 2 ** 45 }), bornHost: text,
  properties: fc.dictionary(fc.string({ minLength: 1, maxLength: 8 }), fc.string({ unit: 'grapheme', maxLength: 40 }), { maxKeys: 4 }),
  body: fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes)),
  deliveryTimeMs: timed ? fc.integer({ min: 0, max: 2 ** 45 }) : fc.constant(0),
});

describe('EntryRecords', () => {
  it('reads each message of an entry as readMessageAt does (plain, timed and half-message entries)', () => {
    const entry = fc.oneof(
      fc.array(message(false), { minLength: 1, maxLength: 20 }).map((messages) => encodeMessages({ timeMs: 1 }, messages)),
      fc.array(message(true), { minLength: 1, maxLength: 20 }).map((messages) => encodeMessages({ timeMs: 1 }, messages)),
      fc.array(message(false), { minLength: 1, maxLength: 20 }).map((messages) => encodeMessages({ timeMs: 1 }, messages, true)),
    );
    fc.assert(fc.property(entry, (payload) => {
      const records = new EntryRecords(payload);
      const count = Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength).readUInt32BE(9);
      // Backwards first: the index must not depend on reading in order.
      for (let position = count - 1; position >= 0; position--) expect(records.messageAt(position)).toStrictEqual(readMessageAt(payload, position));
    }), { numRuns: 300 });
  });

  it('refuses a position outside the batch', () => {
    const records = new EntryRecords(encodeMessages({ timeMs: 1 }, [{ topic: 't', messageId: 'm', tag: '', keys: [], messageGroup: '', queueId: 0, bornTimestamp: 0, bornHost: '', properties: {}, body: Buffer.from('x') }]));
    expect(() => records.messageAt(1)).toThrow(/outside a batch of 1/);
    expect(() => records.messageAt(-1)).toThrow(/outside a batch of 1/);
    expect(records.messageAt(0).messageId).toBe('m');
  });
});
