/**
 * MurmurHash3_x86_128 over bytes, transcribed plainly from SMHasher's MurmurHash3.cpp: the
 * reference the shipped word-based implementation (src/util/murmur3.ts) and the formats that
 * hash with it (the de-dup window, the message index) are checked against.
 */
export function murmur3Reference(data: Uint8Array, seed: number): [number, number, number, number] {
  const rotl = (x: number, r: number) => (x << r) | (x >>> (32 - r));
  const fmix = (h: number) => {
    h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b); h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35); return h ^ (h >>> 16);
  };
  const c1 = 0x239b961b, c2 = 0xab0e9789, c3 = 0x38b34ae5, c4 = 0xa1e38b93;
  const byte = (i: number) => data[i] as number;
  const word = (i: number) => byte(i) | (byte(i + 1) << 8) | (byte(i + 2) << 16) | (byte(i + 3) << 24);
  let h1 = seed, h2 = seed, h3 = seed, h4 = seed;
  const blocks = data.length >>> 4;
  for (let b = 0; b < blocks; b++) {
    let k1 = word(16 * b), k2 = word(16 * b + 4), k3 = word(16 * b + 8), k4 = word(16 * b + 12);
    k1 = Math.imul(rotl(Math.imul(k1, c1), 15), c2); h1 ^= k1;
    h1 = rotl(h1, 19); h1 = (h1 + h2) | 0; h1 = (Math.imul(h1, 5) + 0x561ccd1b) | 0;
    k2 = Math.imul(rotl(Math.imul(k2, c2), 16), c3); h2 ^= k2;
    h2 = rotl(h2, 17); h2 = (h2 + h3) | 0; h2 = (Math.imul(h2, 5) + 0x0bcaa747) | 0;
    k3 = Math.imul(rotl(Math.imul(k3, c3), 17), c4); h3 ^= k3;
    h3 = rotl(h3, 15); h3 = (h3 + h4) | 0; h3 = (Math.imul(h3, 5) + 0x96cd1c35) | 0;
    k4 = Math.imul(rotl(Math.imul(k4, c4), 18), c1); h4 ^= k4;
    h4 = rotl(h4, 13); h4 = (h4 + h1) | 0; h4 = (Math.imul(h4, 5) + 0x32ac3b17) | 0;
  }
  // The C switch falls through from `len & 15` down; each lane's word takes the tail bytes it covers.
  const tail = blocks * 16;
  const rest = data.length & 15;
  const tailWord = (from: number) => {
    let k = 0;
    for (let i = Math.min(rest, from + 4) - 1; i >= from; i--) k ^= byte(tail + i) << (8 * (i - from));
    return k;
  };
  if (rest > 12) h4 ^= Math.imul(rotl(Math.imul(tailWord(12), c4), 18), c1);
  if (rest > 8) h3 ^= Math.imul(rotl(Math.imul(tailWord(8), c3), 17), c4);
  if (rest > 4) h2 ^= Math.imul(rotl(Math.imul(tailWord(4), c2), 16), c3);
  if (rest > 0) h1 ^= Math.imul(rotl(Math.imul(tailWord(0), c1), 15), c2);
  h1 ^= data.length; h2 ^= data.length; h3 ^= data.length; h4 ^= data.length;
  h1 = (h1 + h2 + h3 + h4) | 0; h2 = (h2 + h1) | 0; h3 = (h3 + h1) | 0; h4 = (h4 + h1) | 0;
  h1 = fmix(h1); h2 = fmix(h2); h3 = fmix(h3); h4 = fmix(h4);
  h1 = (h1 + h2 + h3 + h4) | 0; h2 = (h2 + h1) | 0; h3 = (h3 + h1) | 0; h4 = (h4 + h1) | 0;
  return [h1 >>> 0, h2 >>> 0, h3 >>> 0, h4 >>> 0];
}
