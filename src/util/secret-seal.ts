/**
 * Users' secrets at rest. A broker must know each secret to check an HMAC signature (the
 * scheme is symmetric), so it cannot keep a hash; it keeps the secret sealed with AES-256-GCM
 * under a cluster key the server reads from its own file, and the Raft log, the snapshots and
 * the data folder only ever hold the sealed bytes.
 *
 * Sealed layout: u8 version = 1 | 12-byte nonce | 16-byte GCM tag | ciphertext (the UTF-8
 * secret). The version byte and a fixed label are the additional data, so a sealed value
 * cannot be passed off as another format's.
 *
 * The nonce is a parameter so that sealing stays a pure function; the caller must draw it at
 * random (crypto.randomBytes(12)) for every seal. GCM with a repeated nonce under one key
 * leaks the XOR of the plaintexts and lets tags be forged.
 *
 * This lives in util, not beside the access-control table in broker/core, because broker/**
 * may not import node:crypto (eslint.config.js); the table only stores the sealed bytes.
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { assert } from './assert.js';

export const sealVersion = 1;
export const sealKeyBytes = 32;
export const sealNonceBytes = 12;
const tagBytes = 16;
const headerBytes = 1 + sealNonceBytes + tagBytes;
const label = Buffer.from('raftmq user secret');

function additionalData(): Buffer {
  return Buffer.concat([Buffer.of(sealVersion), label]);
}

export function sealSecret(secret: string, key: Buffer, nonce: Buffer): Buffer {
  assert(key.length === sealKeyBytes, `seal key must be ${sealKeyBytes} bytes, not ${key.length}`);
  assert(nonce.length === sealNonceBytes, `seal nonce must be ${sealNonceBytes} bytes, not ${nonce.length}`);
  const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: tagBytes });
  cipher.setAAD(additionalData());
  const ciphertext = Buffer.concat([cipher.update(secret, 'utf8'), cipher.final()]);
  return Buffer.concat([Buffer.of(sealVersion), nonce, cipher.getAuthTag(), ciphertext]);
}

export type UnsealResult = { readonly ok: true; readonly secret: string } | { readonly ok: false; readonly reason: string };

/** The secret, or why not: a wrong key and damaged bytes look the same to GCM. */
export function unsealSecret(sealed: Buffer, key: Buffer): UnsealResult {
  assert(key.length === sealKeyBytes, `seal key must be ${sealKeyBytes} bytes, not ${key.length}`);
  if (sealed.length < headerBytes) return { ok: false, reason: `sealed secret is ${sealed.length} bytes, shorter than its ${headerBytes}-byte header` };
  if (sealed[0] !== sealVersion) return { ok: false, reason: `sealed secret has version ${sealed[0]}, this build reads ${sealVersion}` };
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(1, 1 + sealNonceBytes), { authTagLength: tagBytes });
  decipher.setAAD(additionalData());
  decipher.setAuthTag(sealed.subarray(1 + sealNonceBytes, headerBytes));
  const plain = decipher.update(sealed.subarray(headerBytes));
  try {
    decipher.final();
  } catch {
    return { ok: false, reason: 'sealed secret does not open with this key (wrong cluster key, or damaged bytes)' };
  }
  return { ok: true, secret: plain.toString('utf8') };
}
