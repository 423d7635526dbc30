/**
 * The request signature: the date-time format both ways; signing byte-equal to the official
 * Node client (its exported `sign` and `getRequestDateTime`, and the headers its
 * getRequestMetadata builds for a request); the header parser on the official and Java
 * spellings and on every malformed shape; verification's every outcome; and a property that
 * no edit of a signed header pair verifies unless it reads back to the same request.
 */
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Producer } from 'rocketmq-client-nodejs';
import { getRequestDateTime, sign } from 'rocketmq-client-nodejs/dist/util/index.js';
import { InvariantViolation } from './assert.js';
import {
  formatSignatureDateTime, parseAuthorization, parseSignatureDateTime, signRequest, verifyRequest, type SignedRequest,
} from './request-signature.js';

const t0 = Date.UTC(2023, 8, 13, 6, 30, 59, 399); // 2023-09-13T06:30:59.399Z
const alice = { accessKey: 'alice', accessSecret: 'alice-secret' };
const secrets = new Map([['alice', 'alice-secret'], ['bob', 'bob-secret']]);
const lookup = (accessKey: string): string | undefined => secrets.get(accessKey);
const skewMs = 15 * 60_000;

const requestOf = (headers: Record<string, string>): SignedRequest => ({ authorization: headers['authorization'], dateTime: headers['x-mq-date-time'] });

describe('signature date-time', () => {
  it('formats UTC seconds as yyyyMMddTHHmmssZ', () => {
    expect(formatSignatureDateTime(t0)).toBe('20230913T063059Z');
    expect(formatSignatureDateTime(0)).toBe('19700101T000000Z');
    expect(formatSignatureDateTime(Date.UTC(9999, 11, 31, 23, 59, 59, 999))).toBe('99991231T235959Z');
  });

  it('refuses instants the format cannot show', () => {
    for (const ms of [-1, Number.NaN, Infinity, Date.UTC(10000, 0, 1)]) expect(() => formatSignatureDateTime(ms)).toThrow(InvariantViolation);
  });

  it('parses only the strict format', () => {
    expect(parseSignatureDateTime('20230913T063059Z')).toBe(Date.UTC(2023, 8, 13, 6, 30, 59));
    expect(parseSignatureDateTime('20240229T000000Z')).toBe(Date.UTC(2024, 1, 29));
    const bad = [
      '', '20230913T063059', '20230913t063059Z', '20230913T063059z', '2023-09-13T06:30:59Z', '20230913T063059.399Z',
      ' 20230913T063059Z', '20230913T063059Z ', '20231313T000000Z', '20230000T000000Z', '20230931T000000Z', '20230229T000000Z',
      '20230913T240000Z', '20230913T006000Z', '20230913T000060Z', '19691231T235959Z', '+0230913T063059Z', '２0230913T063059Z',
    ];
    for (const text of bad) expect(parseSignatureDateTime(text), text).toBeUndefined();
  });

  it('never throws, and accepts only what it would format', () => {
    // Digit strings in the shape of the format reach every field's overflow (month 19 of 9999).
    const year = fc.oneof(fc.constantFrom('1970', '9999'), fc.stringMatching(/^\d{4}$/));
    const shaped = fc.tuple(year, fc.stringMatching(/^\d{4}$/), fc.stringMatching(/^\d{6}$/)).map(([y, monthDay, time]) => `${y}${monthDay}T${time}Z`);
    fc.assert(fc.property(fc.oneof(shaped, fc.string()), (text) => {
      const ms = parseSignatureDateTime(text);
      if (ms !== undefined) expect(formatSignatureDateTime(ms)).toBe(text);
    }), { numRuns: 5_000 });
    for (const text of ['99991931T000000Z', '99991232T000000Z', '19700001T000000Z', '19700100T000000Z']) expect(parseSignatureDateTime(text), text).toBeUndefined();
  });

  it('round-trips every second in 1970-9999', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: Date.UTC(9999, 11, 31, 23, 59, 59) }), (ms) => {
      expect(parseSignatureDateTime(formatSignatureDateTime(ms))).toBe(ms - (ms % 1000));
    }));
  });
});

describe('signRequest', () => {
  afterEach(() => { vi.useRealTimers(); });

  it('matches a known vector', () => {
    // HMAC-SHA1('alice-secret', '20230913T063059Z').
    const expected = '252C7C3C6E37FE54BEAF8AB0E94FFD2787873711';
    expect(signRequest(alice, t0)).toEqual({
      'x-mq-date-time': '20230913T063059Z',
      authorization: `MQv2-HMAC-SHA1 Credential=alice, SignedHeaders=x-mq-date-time, Signature=${expected}`,
    });
    // RFC 2202 test case 2 pins our HMAC-SHA1 itself.
    expect(createHmac('sha1', 'Jefe').update('what do ya want for nothing?').digest('hex')).toBe('effcdf6ae5eb2fa2d27416d5f184df9c259a7c79');
  });

  it('is byte-equal to the official client\'s sign and getRequestDateTime', () => {
    vi.useFakeTimers();
    fc.assert(fc.property(
      fc.integer({ min: 0, max: Date.UTC(9999, 11, 31, 23, 59, 59, 999) }), fc.string({ minLength: 1 }), fc.string(),
      (ms, accessKey, accessSecret) => {
        vi.setSystemTime(ms);
        const dateTime = getRequestDateTime();
        const ours = signRequest({ accessKey, accessSecret }, ms);
        expect(ours['x-mq-date-time']).toBe(dateTime);
        expect(ours['authorization']).toBe(`MQv2-HMAC-SHA1 Credential=${accessKey}, SignedHeaders=x-mq-date-time, Signature=${sign(accessSecret, dateTime)}`);
      },
    ));
  });

  it('makes the headers the official client puts on a request', () => {
    vi.useFakeTimers();
    const cases = [
      { accessKey: 'alice', accessSecret: 'alice-secret' },
      { accessKey: 'AK-1', accessSecret: 'sécret ✓', securityToken: 'sts-token-42' },
      { accessKey: 'bob', accessSecret: '', securityToken: '' },
    ];
    for (const [i, sessionCredentials] of cases.entries()) {
      const ms = t0 + i * 86_400_123;
      vi.setSystemTime(ms);
      const producer = new Producer({ endpoints: '127.0.0.1:1', sessionCredentials } as never);
      const metadata = producer.getRequestMetadata();
      const official: Record<string, string> = {};
      for (const name of ['x-mq-date-time', 'x-mq-session-token', 'authorization']) {
        const values = metadata.get(name);
        if (values.length > 0) official[name] = String(values[0]);
      }
      expect(signRequest(sessionCredentials, ms)).toEqual(official);
      expect(Object.keys(signRequest(sessionCredentials, ms))).toEqual(Object.keys(official));
    }
  });
});

describe('parseAuthorization', () => {
  const hex = 'ABCDEF0123456789ABCDEF0123456789ABCDEF01';

  it('reads the official clients\' header and its spacing variants', () => {
    const expected = { ok: true, accessKey: 'alice', signedHeaders: ['x-mq-date-time'], signature: hex };
    const variants = [
      `MQv2-HMAC-SHA1 Credential=alice, SignedHeaders=x-mq-date-time, Signature=${hex}`,
      `MQv2-HMAC-SHA1 Credential=alice,SignedHeaders=x-mq-date-time,Signature=${hex}`,
      `  MQv2-HMAC-SHA1   Credential = alice ,  SignedHeaders=x-mq-date-time ,Signature=${hex}  `,
      `MQv2-HMAC-SHA1\tCredential=alice, SignedHeaders=x-mq-date-time, Signature=${hex.toLowerCase()}`,
      `MQv2-HMAC-SHA1 Signature=${hex}, Credential=alice, SignedHeaders=X-MQ-Date-Time`,
      `MQv2-HMAC-SHA1 Credential=alice/cn-hangzhou/rocketmq, SignedHeaders=x-mq-date-time, Signature=${hex}`,
    ];
    for (const header of variants) expect(parseAuthorization(header), header).toEqual(expected);
  });

  it('splits SignedHeaders on ;', () => {
    const parsed = parseAuthorization(`MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time; host, Signature=${hex}`);
    expect(parsed.ok && parsed.signedHeaders).toEqual(['x-mq-date-time', 'host']);
  });

  it('rejects malformed headers, naming what is wrong', () => {
    const cases: [string, RegExp][] = [
      ['', /must start with MQv2-HMAC-SHA1/],
      [`Bearer abc`, /must start with MQv2-HMAC-SHA1, not "Bearer"/],
      [`mqv2-hmac-sha1 Credential=a, SignedHeaders=x-mq-date-time, Signature=${hex}`, /must start with/],
      ['MQv2-HMAC-SHA1', /no Credential, SignedHeaders and Signature/],
      [`MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time`, /no Signature/],
      [`MQv2-HMAC-SHA1 SignedHeaders=x-mq-date-time, Signature=${hex}`, /no Credential/],
      [`MQv2-HMAC-SHA1 Credential=a, Signature=${hex}`, /no SignedHeaders/],
      [`MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time, Signature=${hex},`, /item "" is not key=value/],
      [`MQv2-HMAC-SHA1 Credential=a SignedHeaders=x-mq-date-time, Signature=${hex}`, /contains a space or comma/],
      [`MQv2-HMAC-SHA1 Credential=a, Credential=b, SignedHeaders=x-mq-date-time, Signature=${hex}`, /Credential appears twice/],
      [`MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time, Signature=${hex}, Region=x`, /item "Region" is unknown/],
      [`MQv2-HMAC-SHA1 Credential=, SignedHeaders=x-mq-date-time, Signature=${hex}`, /empty access key/],
      [`MQv2-HMAC-SHA1 Credential=/scope, SignedHeaders=x-mq-date-time, Signature=${hex}`, /empty access key/],
      [`MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time, Signature=${hex}0`, /40 hex digits/],
      [`MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time, Signature=${hex.slice(1)}G`, /40 hex digits/],
      [`MQv2-HMAC-SHA1 Credential=a, SignedHeaders=x-mq-date-time, Signature=${Buffer.from(hex, 'hex').toString('base64')}`, /40 hex digits/],
    ];
    for (const [header, reason] of cases) {
      const parsed = parseAuthorization(header);
      expect(parsed.ok, header).toBe(false);
      if (!parsed.ok) expect(parsed.reason, header).toMatch(reason);
    }
  });

  it('never throws, whatever the input', () => {
    fc.assert(fc.property(fc.string({ unit: 'binary' }), (text) => { parseAuthorization(text); }));
  });
});

describe('verifyRequest', () => {
  const signed = requestOf(signRequest(alice, t0));
  const verify = (request: SignedRequest, nowMs = t0): ReturnType<typeof verifyRequest> => verifyRequest(request, lookup, nowMs, skewMs);

  it('accepts a signed request within the skew', () => {
    expect(verify(signed)).toEqual({ ok: true, accessKey: 'alice' });
    // The date-time is truncated to the second, so the skew is measured from that second.
    expect(verify(signed, t0 - 399 + skewMs)).toEqual({ ok: true, accessKey: 'alice' });
    expect(verify(signed, t0 - 399 - skewMs)).toEqual({ ok: true, accessKey: 'alice' });
  });

  it('accepts the official client\'s own request', () => {
    vi.useFakeTimers();
    vi.setSystemTime(t0);
    const metadata = new Producer({ endpoints: '127.0.0.1:1', sessionCredentials: alice } as never).getRequestMetadata();
    vi.useRealTimers();
    expect(verify({ authorization: String(metadata.get('authorization')[0]), dateTime: String(metadata.get('x-mq-date-time')[0]) })).toEqual({ ok: true, accessKey: 'alice' });
  });

  it('answers UNAUTHORIZED to a request it cannot read', () => {
    const cases: [SignedRequest, RegExp][] = [
      [{ authorization: undefined, dateTime: signed.dateTime }, /authorization header is missing/],
      [{ authorization: '  ', dateTime: signed.dateTime }, /authorization header is missing/],
      [{ authorization: signed.authorization, dateTime: undefined }, /x-mq-date-time header is missing/],
      [{ authorization: signed.authorization, dateTime: '' }, /x-mq-date-time header is missing/],
      [{ authorization: 'Basic YWxpY2U6c2VjcmV0', dateTime: signed.dateTime }, /must start with MQv2-HMAC-SHA1/],
      [{ authorization: signed.authorization?.replace('SignedHeaders=x-mq-date-time', 'SignedHeaders=x-mq-date-time;host'), dateTime: signed.dateTime }, /SignedHeaders must be x-mq-date-time, not "x-mq-date-time;host"/],
      [{ authorization: signed.authorization, dateTime: '2023-09-13T06:30:59Z' }, /"2023-09-13T06:30:59Z" is not yyyyMMddTHHmmssZ/],
    ];
    for (const [request, reason] of cases) {
      const result = verify(request);
      expect(result.ok, reason.source).toBe(false);
      if (!result.ok) {
        expect(result.code).toBe('UNAUTHORIZED');
        expect(result.reason).toMatch(reason);
      }
    }
  });

  it('answers UNAUTHORIZED outside the skew, naming it', () => {
    const late = verify(signed, t0 - 399 + skewMs + 1_000);
    expect(late).toEqual({ ok: false, code: 'UNAUTHORIZED', reason: `the x-mq-date-time header is ${skewMs + 1_000} ms behind the broker's clock (at most ${skewMs} ms allowed)` });
    const early = verify(signed, t0 - 399 - skewMs - 1);
    expect(early).toMatchObject({ ok: false, code: 'UNAUTHORIZED', reason: expect.stringMatching(/is 900001 ms ahead of the broker's clock/) });
    expect(verifyRequest(signed, lookup, t0 - 399, 0)).toEqual({ ok: true, accessKey: 'alice' });
  });

  it('answers FORBIDDEN to an unknown access key', () => {
    const result = verify(requestOf(signRequest({ accessKey: 'mallory', accessSecret: 'x' }, t0)));
    expect(result).toMatchObject({ ok: false, code: 'FORBIDDEN' });
    expect(!result.ok && result.reason).toMatch(/Username is not matched/);
    expect(!result.ok && result.reason).toContain('"mallory"');
  });

  it('answers FORBIDDEN to a wrong signature, without revealing the secret or the expected signature', () => {
    const forged = requestOf(signRequest({ accessKey: 'alice', accessSecret: 'bob-secret' }, t0));
    const result = verify(forged);
    expect(result).toMatchObject({ ok: false, code: 'FORBIDDEN' });
    expect(!result.ok && result.reason).toMatch(/Check signature failed for accessKey "alice"/);
    const expected = signed.authorization?.split('Signature=')[1] as string;
    for (const secretish of ['alice-secret', 'bob-secret', expected, expected.toLowerCase()]) expect(!result.ok && result.reason).not.toContain(secretish);
    // Another user's valid signature does not pass as alice's.
    const bobs = requestOf(signRequest({ accessKey: 'bob', accessSecret: 'bob-secret' }, t0));
    expect(verify({ authorization: bobs.authorization?.replace('Credential=bob', 'Credential=alice'), dateTime: bobs.dateTime })).toMatchObject({ ok: false, code: 'FORBIDDEN' });
  });

  it('bounds and quotes a hostile access key in its reason', () => {
    const accessKey = `${'k'.repeat(100)}\u0000\n`;
    const result = verify({ authorization: `MQv2-HMAC-SHA1 Credential=${accessKey}, SignedHeaders=x-mq-date-time, Signature=${'0'.repeat(40)}`, dateTime: signed.dateTime });
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).not.toMatch(/[\u0000\n]/);
    expect(!result.ok && result.reason.length).toBeLessThan(150);
  });

  it('refuses bad parameters as a bug', () => {
    expect(() => verifyRequest(signed, lookup, Number.NaN, skewMs)).toThrow(InvariantViolation);
    expect(() => verifyRequest(signed, lookup, t0, -1)).toThrow(InvariantViolation);
  });

  it('round-trips sign -> verify for any credentials and time', () => {
    fc.assert(fc.property(
      fc.stringMatching(/^[A-Za-z0-9_.-]{1,64}$/), fc.string(), fc.integer({ min: 0, max: Date.UTC(9999, 11, 31) }),
      (accessKey, accessSecret, ms) => {
        const result = verifyRequest(requestOf(signRequest({ accessKey, accessSecret }, ms)), (key) => (key === accessKey ? accessSecret : undefined), ms, 1_000);
        expect(result).toEqual({ ok: true, accessKey });
      },
    ));
  });

  it('fails for any edit of either header, unless the edit reads back to the same request', () => {
    const edit = fc.record({
      header: fc.constantFrom('authorization' as const, 'dateTime' as const),
      kind: fc.constantFrom('replace' as const, 'insert' as const, 'delete' as const),
      at: fc.nat(),
      char: fc.oneof(fc.constantFrom('0', '9', 'A', 'F', 'a', 'f', ' ', ',', '=', '/', ';', 'Z', 'T', '-'), fc.string({ minLength: 1, maxLength: 1 })),
    });
    const apply = (text: string, e: { kind: string; at: number; char: string }): string => {
      const at = e.at % (text.length + 1);
      if (e.kind === 'insert') return text.slice(0, at) + e.char + text.slice(at);
      if (e.kind === 'delete') return text.slice(0, at) + text.slice(at + 1);
      return text.slice(0, at) + e.char + text.slice(at + 1);
    };
    // The meaning of a request: who, which signature bytes, which second.
    const meaning = (request: SignedRequest): string | undefined => {
      const parsed = parseAuthorization(request.authorization ?? '');
      const ms = parseSignatureDateTime(request.dateTime ?? '');
      return parsed.ok && ms !== undefined ? `${parsed.accessKey}|${parsed.signedHeaders.join(';')}|${parsed.signature}|${ms}` : undefined;
    };
    let verifiedEdits = 0;
    // The first and last seconds the format shows are where an edited field rolls out of range.
    const instant = fc.oneof(fc.constantFrom(0, Date.UTC(9999, 11, 31, 23, 59, 59)), fc.integer({ min: 0, max: Date.UTC(9999, 11, 31) }));
    fc.assert(fc.property(instant, fc.array(edit, { minLength: 1, maxLength: 3 }), (ms, edits) => {
      const original = requestOf(signRequest(alice, ms));
      let mutated: SignedRequest = original;
      for (const e of edits) mutated = { ...mutated, [e.header]: apply(mutated[e.header] ?? '', e) };
      fc.pre(mutated.authorization !== original.authorization || mutated.dateTime !== original.dateTime);
      const result = verifyRequest(mutated, lookup, ms, 10 * 365 * 86_400_000);
      if (result.ok) {
        verifiedEdits++;
        expect(meaning(mutated)).toBe(meaning(original));
      }
    }), { numRuns: 2_000 });
    // Spacing and hex-case edits do verify; the property still saw mostly failures.
    expect(verifiedEdits).toBeLessThan(2_000);
  });
});
