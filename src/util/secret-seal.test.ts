/**
 * Sealed secrets: a round trip for any secret; the same inputs give the same bytes (replicas
 * that apply the same command agree); the plain secret never appears in the sealed bytes;
 * and a wrong key, any flipped bit, a cut, or a foreign version are refused with a reason.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvariantViolation } from './assert.js';
import { sealSecret, unsealSecret } from './secret-seal.js';

const key = Buffer.alloc(32, 7);
const otherKey = Buffer.alloc(32, 8);
const nonce = Buffer.alloc(12, 1);

describe('secret seal', () => {
  it('round-trips any secret and is deterministic in its inputs', () => {
    fc.assert(fc.property(fc.string({ unit: 'grapheme' }), fc.uint8Array({ minLength: 12, maxLength: 12 }), (secret, nonceBytes) => {
      const sealed = sealSecret(secret, key, Buffer.from(nonceBytes));
      expect(sealed).toEqual(sealSecret(secret, key, Buffer.from(nonceBytes)));
      expect(unsealSecret(sealed, key)).toEqual({ ok: true, secret });
    }));
  });

  it('does not hold the plain secret', () => {
    const secret = 'correct horse battery staple';
    const sealed = sealSecret(secret, key, nonce);
    expect(sealed.includes(Buffer.from(secret))).toBe(false);
    expect(sealed.length).toBe(1 + 12 + 16 + Buffer.byteLength(secret));
  });

  it('refuses a wrong key, damaged bytes, a cut and a foreign version', () => {
    const sealed = sealSecret('s3cret', key, nonce);
    expect(unsealSecret(sealed, otherKey)).toMatchObject({ ok: false, reason: expect.stringMatching(/does not open with this key/) });
    for (let bit = 0; bit < sealed.length * 8; bit++) {
      const damaged = Buffer.from(sealed);
      damaged[bit >> 3] = (damaged[bit >> 3] as number) ^ (1 << (bit & 7));
      expect(unsealSecret(damaged, key).ok, `bit ${bit}`).toBe(false);
    }
    expect(unsealSecret(sealed.subarray(0, 28), key)).toMatchObject({ ok: false, reason: expect.stringMatching(/shorter than its 29-byte header/) });
    expect(unsealSecret(sealed.subarray(0, sealed.length - 1), key).ok).toBe(false);
    expect(unsealSecret(Buffer.concat([Buffer.of(2), sealed.subarray(1)]), key)).toMatchObject({ ok: false, reason: expect.stringMatching(/version 2/) });
  });

  it('treats a key or nonce of the wrong size as a bug', () => {
    expect(() => sealSecret('s', Buffer.alloc(16), nonce)).toThrow(InvariantViolation);
    expect(() => sealSecret('s', key, Buffer.alloc(16))).toThrow(InvariantViolation);
    expect(() => unsealSecret(sealSecret('s', key, nonce), Buffer.alloc(31))).toThrow(InvariantViolation);
  });
});
