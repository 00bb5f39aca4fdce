/** Telemetry decoding: valid messages pass; a table of hostile ones is rejected with its reason code. */
import { describe, expect, it } from 'vitest';
import { checkTimestampBounds, decodeJson, decodeTelemetry } from '../../core/decode.ts';
import { LIMITS } from '../../core/limits.ts';
import { StatusMessageSchema, VerifiedReadingsSchema } from '../../core/schemas.ts';

const TS = Date.UTC(2026, 0, 1);
const SIG = Buffer.alloc(32, 7).toString('base64');

function message(overrides: Record<string, unknown> = {}, reading: Record<string, unknown> = {}) {
  return { v: 1, device: 'dev-1', readings: [{ seq: 1, ts: TS, values: { temperature: 21.5 }, ...reading }], sig: SIG, ...overrides };
}
const bytes = (value: unknown): Buffer => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));
const manyMetrics = (n: number) => Object.fromEntries(Array.from({ length: n }, (_, i) => [`m${i}`, i]));
const readings = (n: number) => Array.from({ length: n }, (_, i) => ({ seq: i, ts: TS + i, values: { t: i } }));

describe('valid telemetry', () => {
  it.each([
    ['one reading', message()],
    ['a batch', message({ readings: readings(3) })],
    ['the largest batch', message({ readings: readings(LIMITS.maxReadingsPerMessage) })],
    ['the most metrics', message({}, { values: manyMetrics(LIMITS.maxMetricsPerReading) })],
    ['the longest id', message({ device: `a${'-'.repeat(46)}z` })],
    ['negative, zero and tiny values', message({}, { values: { a: -40.25, b: 0, c: 5e-324, d: 1.7976931348623157e308 } })],
    ['the largest seq', message({}, { seq: Number.MAX_SAFE_INTEGER })],
    ['an Ed25519-sized signature', message({ sig: Buffer.alloc(64, 1).toString('base64') })],
  ])('%s is accepted', (_name, value) => {
    const decoded = decodeTelemetry(bytes(value));
    expect(decoded).toMatchObject({ ok: true });
  });
});

describe('hostile telemetry', () => {
  const cases: [string, Buffer, string][] = [
    ['v as a string', bytes(message({ v: '1' })), 'PAYLOAD_INVALID'],
    ['unknown protocol version', bytes(message({ v: 2 })), 'PAYLOAD_INVALID'],
    ['device as a number', bytes(message({ device: 123 })), 'PAYLOAD_INVALID'],
    ['upper-case device id', bytes(message({ device: 'Dev-1' })), 'PAYLOAD_INVALID'],
    ['over-long device id', bytes(message({ device: 'a'.repeat(49) })), 'PAYLOAD_INVALID'],
    ['non-ASCII device id', bytes(message({ device: 'dév-1' })), 'PAYLOAD_INVALID'],
    ['empty device id', bytes(message({ device: '' })), 'PAYLOAD_INVALID'],
    ['device id with a topic separator', bytes(message({ device: 'a/b' })), 'PAYLOAD_INVALID'],
    ['device id with an MQTT wildcard', bytes(message({ device: '+' })), 'PAYLOAD_INVALID'],
    ['a 200 kB device id', bytes(message({ device: 'a'.repeat(200_000) })), 'PAYLOAD_INVALID'],
    ['a 1 MB string', bytes(message({ device: 'a'.repeat(1_000_000) })), 'PAYLOAD_TOO_LARGE'],
    ['value as a string', bytes(message({}, { values: { t: '21.5' } })), 'PAYLOAD_INVALID'],
    ['value null', bytes(message({}, { values: { t: null } })), 'PAYLOAD_INVALID'],
    ['value NaN', bytes(JSON.stringify(message()).replace('21.5', 'NaN')), 'PAYLOAD_INVALID'],
    ['value Infinity', bytes(JSON.stringify(message()).replace('21.5', 'Infinity')), 'PAYLOAD_INVALID'],
    ['value 1e400', bytes(JSON.stringify(message()).replace('21.5', '1e400')), 'PAYLOAD_INVALID'],
    ['value -1e400', bytes(JSON.stringify(message()).replace('21.5', '-1e400')), 'PAYLOAD_INVALID'],
    ['value as an object', bytes(message({}, { values: { t: { valueOf: 1 } } })), 'PAYLOAD_INVALID'],
    ['__proto__ metric', bytes(JSON.stringify(message()).replace('"temperature"', '"__proto__"')), 'PAYLOAD_INVALID'],
    ['constructor metric', bytes(message({}, { values: { constructor: 1 } })), 'PAYLOAD_INVALID'],
    ['toString metric', bytes(message({}, { values: { tostring: 1, toString: 2 } })), 'PAYLOAD_INVALID'],
    ['__proto__ at the top level', bytes(JSON.stringify(message()).replace('"v":1', '"__proto__":{"admin":true},"v":1')), 'PAYLOAD_INVALID'],
    ['10,000 metrics', bytes(message({}, { values: manyMetrics(10_000) })), 'PAYLOAD_INVALID'],
    ['one metric over the limit', bytes(message({}, { values: manyMetrics(LIMITS.maxMetricsPerReading + 1) })), 'PAYLOAD_INVALID'],
    ['no metrics', bytes(message({}, { values: {} })), 'PAYLOAD_INVALID'],
    ['upper-case metric name', bytes(message({}, { values: { Temp: 1 } })), 'PAYLOAD_INVALID'],
    ['over-long metric name', bytes(message({}, { values: { ['m'.repeat(33)]: 1 } })), 'PAYLOAD_INVALID'],
    ['metric name with a space', bytes(message({}, { values: { 'a b': 1 } })), 'PAYLOAD_INVALID'],
    ['negative seq', bytes(message({}, { seq: -1 })), 'PAYLOAD_INVALID'],
    ['fractional seq', bytes(message({}, { seq: 1.5 })), 'PAYLOAD_INVALID'],
    ['seq above 2^53-1', bytes(message({}, { seq: 2 ** 53 })), 'PAYLOAD_INVALID'],
    ['seq as a string', bytes(message({}, { seq: '1' })), 'PAYLOAD_INVALID'],
    ['timestamp in year 9999', bytes(message({}, { ts: Date.UTC(9999, 0, 1) })), 'READING_TS_OUT_OF_RANGE'],
    ['timestamp in 1970', bytes(message({}, { ts: 0 })), 'READING_TS_OUT_OF_RANGE'],
    ['negative timestamp', bytes(message({}, { ts: -1 })), 'READING_TS_OUT_OF_RANGE'],
    ['fractional timestamp', bytes(message({}, { ts: TS + 0.5 })), 'PAYLOAD_INVALID'],
    ['timestamp as an ISO string', bytes(message({}, { ts: '2026-01-01T00:00:00Z' })), 'PAYLOAD_INVALID'],
    ['empty batch', bytes(message({ readings: [] })), 'PAYLOAD_INVALID'],
    ['oversized batch', bytes(message({ readings: readings(LIMITS.maxReadingsPerMessage + 1) })), 'PAYLOAD_INVALID'],
    ['repeated seq in a batch', bytes(message({ readings: [readings(1)[0], readings(1)[0]] })), 'PAYLOAD_INVALID'],
    ['decreasing seq in a batch', bytes(message({ readings: readings(3).reverse() })), 'PAYLOAD_INVALID'],
    ['readings as an object', bytes(message({ readings: { 0: readings(1)[0] } })), 'PAYLOAD_INVALID'],
    ['extra top-level field', bytes(message({ admin: true })), 'PAYLOAD_INVALID'],
    ['extra field in a reading', bytes(message({}, { unit: 'C' })), 'PAYLOAD_INVALID'],
    ['missing signature', bytes({ ...message(), sig: undefined }), 'PAYLOAD_INVALID'],
    ['signature not base64', bytes(message({ sig: 'not base64!' })), 'PAYLOAD_INVALID'],
    ['oversized signature', bytes(message({ sig: 'A'.repeat(200) })), 'PAYLOAD_INVALID'],
    ['truncated JSON', bytes(JSON.stringify(message()).slice(0, 40)), 'PAYLOAD_INVALID'],
    ['non-UTF-8 bytes', Buffer.concat([Buffer.from('{"v":1,"device":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]), 'PAYLOAD_INVALID'],
    ['lone UTF-16 surrogate as UTF-8 bytes', Buffer.from([0x22, 0xed, 0xa0, 0x80, 0x22]), 'PAYLOAD_INVALID'],
    ['a JSON array', bytes([message()]), 'PAYLOAD_INVALID'],
    ['JSON null', bytes('null'), 'PAYLOAD_INVALID'],
    ['an empty payload', Buffer.alloc(0), 'PAYLOAD_INVALID'],
    ['a byte-order mark', Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), bytes(message())]), 'PAYLOAD_INVALID'],
    ['deeply nested values', bytes(JSON.stringify(message()).replace('21.5', '['.repeat(100_000) + ']'.repeat(100_000))), 'PAYLOAD_INVALID'],
    ['payload one byte over the limit', Buffer.alloc(LIMITS.maxPayloadBytes + 1, 0x20), 'PAYLOAD_TOO_LARGE'],
  ];

  it('covers at least 30 hostile cases', () => {
    expect(cases.length).toBeGreaterThanOrEqual(30);
  });

  it.each(cases.map(([name, payload, code]) => [name, code, payload] as const))('%s → %s', (_name, code, payload) => {
    const decoded = decodeTelemetry(payload);
    expect(decoded.ok).toBe(false);
    if (!decoded.ok) {
      expect(decoded.code).toBe(code);
      expect(decoded.message.length).toBeGreaterThan(0);
      // An error message quotes at most a little of the input, never the whole hostile payload.
      expect(decoded.message.length).toBeLessThan(2000);
    }
  });

  // Each payload names a probe member inside a __proto__ (or constructor.prototype) object: had a key
  // reached a prototype, the probe would be readable where it was never written.
  it('does not let __proto__ reach an object prototype', () => {
    const probe = '{"polluted":"yes"}';
    const parsed = decodeJson(bytes(`{"__proto__":${probe},"values":{"__proto__":${probe}},"constructor":{"prototype":${probe}}}`));
    if (!parsed.ok) throw new Error(parsed.message);
    const value = parsed.value as Record<string, Record<string, unknown>>;
    expect(Object.getPrototypeOf(value)).toBe(Object.prototype);
    expect(Object.getPrototypeOf(value.values)).toBe(Object.prototype);
    expect(Object.hasOwn(value, '__proto__')).toBe(true);
    expect(value.polluted).toBeUndefined();
    expect(value.values?.polluted).toBeUndefined();
    const hostile = [
      JSON.stringify(message()).replace('"v":1', `"__proto__":${probe},"v":1`),
      JSON.stringify(message()).replace('"temperature":21.5', `"__proto__":${probe},"temperature":21.5`),
      JSON.stringify(message()).replace('"seq":1', `"constructor":{"prototype":${probe}},"seq":1`),
    ];
    for (const payload of hostile) expect(decodeTelemetry(bytes(payload))).toMatchObject({ ok: false, code: 'PAYLOAD_INVALID' });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe('relative timestamp bounds', () => {
  const bounds = { maxFutureMs: 300_000, maxAgeMs: 7 * 86_400_000 };
  const at = (ts: number) => {
    const decoded = decodeTelemetry(bytes(message({}, { ts })));
    if (!decoded.ok) throw new Error(decoded.message);
    return checkTimestampBounds(decoded.value, TS, bounds);
  };
  it.each([
    ['now', TS, true],
    ['just inside the future bound', TS + 300_000, true],
    ['too far ahead', TS + 300_001, false],
    ['just inside the age bound', TS - 7 * 86_400_000, true],
    ['too old', TS - 7 * 86_400_000 - 1, false],
  ])('%s', (_name, ts, ok) => {
    const result = at(ts);
    expect(result.ok).toBe(ok);
    if (!result.ok) expect(result.code).toBe('READING_TS_OUT_OF_RANGE');
  });
});

describe('status and verified-readings schemas', () => {
  it('accepts a status and refuses a bad state', () => {
    expect(StatusMessageSchema.safeParse({ v: 1, device: 'dev-1', state: 'online', since: TS }).success).toBe(true);
    expect(StatusMessageSchema.safeParse({ v: 1, device: 'dev-1', state: 'asleep', since: TS }).success).toBe(false);
    expect(StatusMessageSchema.safeParse({ v: 1, device: 'dev-1', state: 'online', since: TS, extra: 1 }).success).toBe(false);
  });
  it('accepts verified readings with metadata and refuses control characters in it', () => {
    const base = { v: 1, device: 'dev-1', readings: readings(1), verifiedAt: TS };
    expect(VerifiedReadingsSchema.safeParse({ ...base, meta: { site: 'Plant 3, Hall "B" — Zürich' } }).success).toBe(true);
    expect(VerifiedReadingsSchema.safeParse({ ...base, meta: { site: 'a\nb' } }).success).toBe(false);
  });
});
