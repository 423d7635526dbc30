/**
 * RocketMQ 5's request signature (the gRPC `authorization` header), shared by our client,
 * which signs, and the broker, which verifies. The format is the official clients' own
 * (rocketmq-client-nodejs `BaseClient.getRequestMetadata`, the Java client's signer):
 *
 *   x-mq-date-time:      20230913T063059Z            (UTC, yyyyMMdd'T'HHmmss'Z')
 *   x-mq-session-token:  <securityToken>             (only when there is one)
 *   authorization:       MQv2-HMAC-SHA1 Credential=<accessKey>, SignedHeaders=x-mq-date-time, Signature=<HEX>
 *
 * where HEX is the upper-case hex of HMAC-SHA1(key = accessSecret as UTF-8, data = the
 * x-mq-date-time value). Only the date-time is signed: a captured header pair can be replayed
 * on any request until it leaves the skew window, so the transport must be TLS wherever the
 * network is not trusted. The session token is passed on, never verified (RocketMQ's default
 * provider ignores it as well).
 *
 * The parser accepts what Apache RocketMQ's broker accepts from the clients in use: the
 * key=value items separated by `,` with any spaces around them, in any order, a Credential of
 * `<accessKey>/<scope…>` (older clients; the part before the first `/` is the key), and hex
 * in either case. It rejects the rest with a reason instead of throwing, because the input is
 * whatever a peer sent.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { assert } from './assert.js';

export const signatureAlgorithm = 'MQv2-HMAC-SHA1';
export const dateTimeHeader = 'x-mq-date-time';
export const sessionTokenHeader = 'x-mq-session-token';
export const authorizationHeader = 'authorization';

/** HMAC-SHA1 is 20 bytes, so its hex is 40 characters. */
const signatureHexLength = 40;
/** The first instant the 4-digit year of the format cannot show (10000-01-01T00:00:00Z). */
const dateTimeEndMs = 253_402_300_800_000;
/** Longest access key quoted back in a reason, so a hostile header cannot flood the logs. */
const quotedKeyLengthMax = 64;

export interface Credentials {
  readonly accessKey: string;
  readonly accessSecret: string;
  readonly securityToken?: string | undefined;
}

/** `ms` (UTC, truncated to the second) as `yyyyMMddTHHmmssZ`. */
export function formatSignatureDateTime(ms: number): string {
  assert(Number.isFinite(ms) && ms >= 0 && ms < dateTimeEndMs, `date-time ${ms} ms is outside years 1970-9999`);
  // toISOString gives yyyy-MM-ddTHH:mm:ss.sssZ for these years; the official client does the same.
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 19).replace(/[-:]/g, '')}Z`;
}

const dateTimePattern = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$/;

/** The instant (ms) of a strict `yyyyMMddTHHmmssZ`, or undefined for anything else. */
export function parseSignatureDateTime(text: string): number | undefined {
  const match = dateTimePattern.exec(text);
  if (match === null) return undefined;
  const [year, month, day, hour, minute, second] = match.slice(1).map(Number) as [number, number, number, number, number, number];
  if (year < 1970) return undefined;
  const ms = Date.UTC(year, month - 1, day, hour, minute, second);
  // Date.UTC rolls 31 February over into March, month 0 of 1970 back into 1969 and month 19
  // of 9999 into 10000; formatting back catches every out-of-range field, once the result is
  // within the years the format shows.
  if (ms < 0 || ms >= dateTimeEndMs) return undefined;
  return formatSignatureDateTime(ms) === text ? ms : undefined;
}

/** HMAC-SHA1 of the date-time under the secret, as the official clients compute it. */
function signatureOf(accessSecret: string, dateTime: string): Buffer {
  return createHmac('sha1', accessSecret).update(dateTime).digest();
}

/** The headers the official client adds to every request when it has credentials. */
export function signRequest(credentials: Credentials, nowMs: number): Record<string, string> {
  const dateTime = formatSignatureDateTime(nowMs);
  const signature = signatureOf(credentials.accessSecret, dateTime).toString('hex').toUpperCase();
  const headers: Record<string, string> = { [dateTimeHeader]: dateTime };
  // The official client skips an empty token too (it tests truthiness).
  if (credentials.securityToken !== undefined && credentials.securityToken !== '') headers[sessionTokenHeader] = credentials.securityToken;
  headers[authorizationHeader] = `${signatureAlgorithm} Credential=${credentials.accessKey}, SignedHeaders=${dateTimeHeader}, Signature=${signature}`;
  return headers;
}

export interface ParsedAuthorization {
  readonly accessKey: string;
  /** The SignedHeaders list, lower-cased, split on `;`. */
  readonly signedHeaders: readonly string[];
  /** Upper-case hex, 40 characters. */
  readonly signature: string;
}

export type ParseAuthorizationResult = ({ readonly ok: true } & ParsedAuthorization) | { readonly ok: false; readonly reason: string };

const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

/** Reads an `authorization` header value; never throws. */
export function parseAuthorization(headerValue: string): ParseAuthorizationResult {
  const text = headerValue.trim();
  const space = text.search(/\s/);
  const algorithm = space < 0 ? text : text.slice(0, space);
  if (algorithm !== signatureAlgorithm) {
    return fail(`authorization header must start with ${signatureAlgorithm}, not ${quote(algorithm)}`);
  }
  if (space < 0) return fail('authorization header has no Credential, SignedHeaders and Signature');
  const items = new Map<string, string>();
  for (const item of text.slice(space).split(',')) {
    const trimmed = item.trim();
    const equals = trimmed.indexOf('=');
    if (equals < 0) return fail(`authorization item ${quote(trimmed)} is not key=value`);
    const key = trimmed.slice(0, equals).trim();
    if (key !== 'Credential' && key !== 'SignedHeaders' && key !== 'Signature') {
      return fail(`authorization item ${quote(key)} is unknown (expected Credential, SignedHeaders, Signature)`);
    }
    if (items.has(key)) return fail(`authorization item ${key} appears twice`);
    items.set(key, trimmed.slice(equals + 1).trim());
  }
  const credential = items.get('Credential');
  const signedHeaders = items.get('SignedHeaders');
  const signature = items.get('Signature');
  if (credential === undefined) return fail('authorization header has no Credential');
  const accessKey = credential.split('/')[0] as string;
  if (accessKey === '') return fail('authorization Credential has an empty access key');
  if (/[\s,]/.test(accessKey)) return fail(`authorization Credential ${quote(accessKey)} contains a space or comma`);
  if (signedHeaders === undefined) return fail('authorization header has no SignedHeaders');
  if (signature === undefined) return fail('authorization header has no Signature');
  if (signature.length !== signatureHexLength || !/^[0-9A-Fa-f]+$/.test(signature)) {
    return fail(`authorization Signature must be ${signatureHexLength} hex digits (HMAC-SHA1)`);
  }
  return { ok: true, accessKey, signedHeaders: signedHeaders.toLowerCase().split(';').map((name) => name.trim()), signature: signature.toUpperCase() };
}

export interface SignedRequest {
  readonly authorization: string | undefined;
  readonly dateTime: string | undefined;
}

export type VerifyResult =
  | { readonly ok: true; readonly accessKey: string }
  | { readonly ok: false; readonly code: 'UNAUTHORIZED' | 'FORBIDDEN'; readonly reason: string };

/**
 * Checks a request's signature. UNAUTHORIZED: the request is not signed in a form we read
 * (a header missing or malformed, SignedHeaders other than x-mq-date-time, a date-time more
 * than `maxSkewMs` from `nowMs`). FORBIDDEN: it is signed, but by no user we know ("Username
 * is not matched") or with the wrong secret ("Check signature failed for accessKey") — the
 * phrases the official clients' tests look for. Reasons never contain a secret or the
 * expected signature.
 */
export function verifyRequest(request: SignedRequest, lookupSecret: (accessKey: string) => string | undefined, nowMs: number, maxSkewMs: number): VerifyResult {
  assert(Number.isFinite(nowMs), `nowMs ${nowMs} is not a number`);
  assert(Number.isFinite(maxSkewMs) && maxSkewMs >= 0, `maxSkewMs ${maxSkewMs} must be >= 0`);
  const unauthorized = (reason: string): VerifyResult => ({ ok: false, code: 'UNAUTHORIZED', reason });
  if (request.authorization === undefined || request.authorization.trim() === '') return unauthorized(`the ${authorizationHeader} header is missing`);
  if (request.dateTime === undefined || request.dateTime === '') return unauthorized(`the ${dateTimeHeader} header is missing`);
  const parsed = parseAuthorization(request.authorization);
  if (!parsed.ok) return unauthorized(parsed.reason);
  if (parsed.signedHeaders.length !== 1 || parsed.signedHeaders[0] !== dateTimeHeader) {
    return unauthorized(`authorization SignedHeaders must be ${dateTimeHeader}, not ${quote(parsed.signedHeaders.join(';'))}`);
  }
  const requestMs = parseSignatureDateTime(request.dateTime);
  if (requestMs === undefined) return unauthorized(`the ${dateTimeHeader} header ${quote(request.dateTime)} is not yyyyMMddTHHmmssZ`);
  const skewMs = requestMs - nowMs;
  if (Math.abs(skewMs) > maxSkewMs) {
    return unauthorized(`the ${dateTimeHeader} header is ${Math.abs(skewMs)} ms ${skewMs < 0 ? 'behind' : 'ahead of'} the broker's clock (at most ${maxSkewMs} ms allowed)`);
  }
  const secret = lookupSecret(parsed.accessKey);
  if (secret === undefined) return { ok: false, code: 'FORBIDDEN', reason: `Username is not matched: no user has accessKey ${quote(parsed.accessKey)}` };
  const expected = signatureOf(secret, request.dateTime);
  const given = Buffer.from(parsed.signature, 'hex');
  // Both are 20 bytes here (the parser checked the length), which timingSafeEqual needs.
  if (!timingSafeEqual(expected, given)) return { ok: false, code: 'FORBIDDEN', reason: `Check signature failed for accessKey ${quote(parsed.accessKey)}` };
  return { ok: true, accessKey: parsed.accessKey };
}

/** A peer's string for a reason: JSON-quoted (no raw control characters) and bounded. */
function quote(text: string): string {
  return JSON.stringify(text.length > quotedKeyLengthMax ? `${text.slice(0, quotedKeyLengthMax)}…` : text);
}
