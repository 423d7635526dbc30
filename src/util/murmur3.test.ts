import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { murmur3Reference } from '../../test/support/murmur3-reference.js';
import { murmur3x86x128 } from './murmur3.js';

/** `bytes` as the little-endian words the shipped function reads, zero-padded to whole 16-byte blocks. */
function words(bytes: Uint8Array): Int32Array {
  const padded = new Uint8Array(Math.ceil(bytes.length / 16) * 16 + 16);
  padded.set(bytes);
  return new Int32Array(padded.buffer);
}

describe('MurmurHash3_x86_128', () => {
  it('the byte-level reference passes SMHasher\'s verification value', () => {
    // SMHasher's VerificationTest: hash {}, {0}, {0,1}, … {0..254} with seed 256 - length, then the 256 results with seed 0.
    const key = new Uint8Array(256);
    const results = new DataView(new ArrayBuffer(16 * 256));
    for (let i = 0; i < 256; i++) {
      key[i] = i;
      murmur3Reference(key.subarray(0, i), 256 - i).forEach((word, w) => results.setUint32(16 * i + 4 * w, word, true));
    }
    expect(murmur3Reference(new Uint8Array(results.buffer), 0)[0]).toBe(0xb3ece62a);
  });

  it('the shipped word-based function agrees with the reference on any bytes and seed', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 100 }), fc.integer({ min: 0, max: 0xffff_ffff }), (bytes, seed) => {
      const out = new Uint32Array(4);
      murmur3x86x128(words(bytes), bytes.length, seed | 0, out);
      expect([...out]).toEqual(murmur3Reference(bytes, seed | 0));
    }), { numRuns: 300 });
  });
});
