/**
 * MurmurHash3_x86_128 (Austin Appleby, SMHasher, public domain) over `lengthBytes` bytes held
 * as little-endian 32-bit words in `words` (zero past the end), written as four 32-bit words
 * into `out`. Pure and allocation-free. Its output is part of on-disk and snapshot formats
 * (the de-duplication window, the message index): never change it without a format bump.
 */
export function murmur3x86x128(words: Int32Array, lengthBytes: number, seed: number, out: Uint32Array | Int32Array): void {
  let h1 = seed, h2 = seed, h3 = seed, h4 = seed;
  let at = 0;
  for (const end = (lengthBytes >>> 4) * 4; at < end; at += 4) {
    h1 ^= mixK1(words[at] as number);
    h1 = (rotl(h1, 19) + h2) | 0;
    h1 = (Math.imul(h1, 5) + 0x561ccd1b) | 0;
    h2 ^= mixK2(words[at + 1] as number);
    h2 = (rotl(h2, 17) + h3) | 0;
    h2 = (Math.imul(h2, 5) + 0x0bcaa747) | 0;
    h3 ^= mixK3(words[at + 2] as number);
    h3 = (rotl(h3, 15) + h4) | 0;
    h3 = (Math.imul(h3, 5) + 0x96cd1c35) | 0;
    h4 ^= mixK4(words[at + 3] as number);
    h4 = (rotl(h4, 13) + h1) | 0;
    h4 = (Math.imul(h4, 5) + 0x32ac3b17) | 0;
  }
  // The tail (up to 15 bytes, zero-padded): each word it starts is mixed into its lane, without the lane step.
  const tailBytes = lengthBytes & 15;
  if (tailBytes > 12) h4 ^= mixK4(words[at + 3] as number);
  if (tailBytes > 8) h3 ^= mixK3(words[at + 2] as number);
  if (tailBytes > 4) h2 ^= mixK2(words[at + 1] as number);
  if (tailBytes > 0) h1 ^= mixK1(words[at] as number);
  h1 ^= lengthBytes;
  h2 ^= lengthBytes;
  h3 ^= lengthBytes;
  h4 ^= lengthBytes;
  h1 = (h1 + h2 + h3 + h4) | 0;
  h2 = (h2 + h1) | 0;
  h3 = (h3 + h1) | 0;
  h4 = (h4 + h1) | 0;
  h1 = fmix(h1);
  h2 = fmix(h2);
  h3 = fmix(h3);
  h4 = fmix(h4);
  h1 = (h1 + h2 + h3 + h4) | 0;
  h2 = (h2 + h1) | 0;
  h3 = (h3 + h1) | 0;
  h4 = (h4 + h1) | 0;
  out[0] = h1;
  out[1] = h2;
  out[2] = h3;
  out[3] = h4;
}

function rotl(x: number, r: number): number {
  return (x << r) | (x >>> (32 - r));
}

// The per-lane word mixes (constants c1..c4 of the reference).
function mixK1(k: number): number {
  return Math.imul(rotl(Math.imul(k, 0x239b961b), 15), 0xab0e9789);
}
function mixK2(k: number): number {
  return Math.imul(rotl(Math.imul(k, 0xab0e9789), 16), 0x38b34ae5);
}
function mixK3(k: number): number {
  return Math.imul(rotl(Math.imul(k, 0x38b34ae5), 17), 0xa1e38b93);
}
function mixK4(k: number): number {
  return Math.imul(rotl(Math.imul(k, 0xa1e38b93), 18), 0x239b961b);
}

function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}
