/**
 * Every member of a telemetry payload is covered by its signature, or the message is PAYLOAD_INVALID
 * (issue 15): keys zod would drop (`__proto__`), reserved names, a key given twice, keys equal only
 * after Unicode normalisation; at the top level, in a reading, in values and in the device id; signed
 * over the legal members only and over all of them. Never accepted, never READING_BAD_SIGNATURE (the
 * decoder refuses before ingest checks a signature).
 */
import { describe, expect, it } from 'vitest';
import { canonicalBytes } from '../../core/canonical.ts';
import { countJsonMembers, countMessageMembers, decodeTelemetry } from '../../core/decode.ts';
import type { TelemetryBody } from '../../core/schemas.ts';
import { signCanonical, verifyTelemetrySignature } from '../../core/signature.ts';

const KEY = Buffer.alloc(32, 0x2a);
const TS = Date.UTC(2026, 0, 1);
const sign = (body: TelemetryBody): string => signCanonical(canonicalBytes(body), { alg: 'hmac-sha256', key: KEY }).toString('base64');

const body = (values: Record<string, number>, reading: { seq?: number; ts?: number } = {}, device = 'dev-1'): TelemetryBody => ({
  v: 1,
  device,
  readings: [{ seq: reading.seq ?? 1, ts: reading.ts ?? TS, values }],
});
/** Values with members JSON.parse defines as own properties, `__proto__` included, as a device would sign them. */
const own = (json: string): Record<string, number> => JSON.parse(json) as Record<string, number>;

/** The JSON text of a telemetry message, with hostile parts spliced in; `$SIG` stands for the signature. */
function payload(parts: { top?: string; device?: string; reading?: string; values?: string; readings?: string; sig?: string }): string {
  const values = parts.values ?? '"temperature":2.5';
  const readings = parts.readings ?? `[{"seq":1,"ts":${TS},${parts.reading ?? ''}"values":{${values}}}]`;
  return `{${parts.top ?? ''}"v":1,"device":${parts.device ?? '"dev-1"'},"readings":${readings},${parts.sig ?? '"sig":"$SIG"'}}`;
}

interface HostileCase {
  name: string;
  text: string;
  /** What JSON.parse and the schema make of it, were the hostile member ignored: signed so that it would verify. */
  legal: TelemetryBody;
  /** Whether `legal` on its own is a valid message (so the hostile member alone is what is refused). */
  legalIsValid?: boolean;
  /** The message as the sender signed it, hostile members included (where canonical bytes can hold them). */
  everything?: TelemetryBody;
}

const LEGAL = body({ temperature: 2.5 });
const OTHER_SIG = sign(body({ temperature: 99 }));

const cases: HostileCase[] = [
  // In values: zod's record skips __proto__ silently, refuses the others by name.
  { name: '__proto__ metric with a number', text: payload({ values: '"__proto__":1.5,"temperature":2.5' }), legal: LEGAL, everything: body(own('{"__proto__":1.5,"temperature":2.5}')) },
  { name: '__proto__ metric with an object', text: payload({ values: '"__proto__":{"humidity":5},"temperature":2.5' }), legal: LEGAL },
  { name: '__proto__ metric spelled with an escape', text: payload({ values: '"\\u005f_proto__":1.5,"temperature":2.5' }), legal: LEGAL, everything: body(own('{"__proto__":1.5,"temperature":2.5}')) },
  { name: '__proto__ as the only metric', text: payload({ values: '"__proto__":2.5' }), legal: body({}), legalIsValid: false, everything: body(own('{"__proto__":2.5}')) },
  { name: 'constructor metric', text: payload({ values: '"constructor":1.5,"temperature":2.5' }), legal: LEGAL, everything: body({ constructor: 1.5, temperature: 2.5 }) },
  { name: 'constructor metric with an object', text: payload({ values: '"constructor":{"prototype":{"polluted":1}},"temperature":2.5' }), legal: LEGAL },
  { name: 'prototype metric', text: payload({ values: '"prototype":1.5,"temperature":2.5' }), legal: LEGAL, everything: body({ prototype: 1.5, temperature: 2.5 }) },
  { name: 'toString metric', text: payload({ values: '"toString":1.5,"temperature":2.5' }), legal: LEGAL, everything: body({ toString: 1.5, temperature: 2.5 }) },
  { name: 'a metric given twice', text: payload({ values: '"temperature":99,"temperature":2.5' }), legal: LEGAL, everything: body({ temperature: 99 }) },
  { name: 'a metric given twice, once with an escape', text: payload({ values: '"temperature":99,"temp\\u0065rature":2.5' }), legal: LEGAL, everything: body({ temperature: 99 }) },
  { name: 'metrics equal after NFC (é as U+00E9 and as e U+0301)', text: payload({ values: '"caf\u00e9":1,"cafe\u0301":2,"temperature":2.5' }), legal: LEGAL },
  { name: 'a metric in fullwidth letters (NFKC: temperature)', text: payload({ values: '"ｔｅｍｐｅｒａｔｕｒｅ":99,"temperature":2.5' }), legal: LEGAL },
  // In a reading.
  { name: '__proto__ in a reading', text: payload({ reading: '"__proto__":{"seq":2},' }), legal: LEGAL },
  { name: 'constructor in a reading', text: payload({ reading: '"constructor":{"prototype":{"polluted":1}},' }), legal: LEGAL },
  { name: 'prototype in a reading', text: payload({ reading: '"prototype":1,' }), legal: LEGAL },
  { name: 'seq given twice in a reading', text: payload({ readings: `[{"seq":7,"seq":1,"ts":${TS},"values":{"temperature":2.5}}]` }), legal: LEGAL, everything: body({ temperature: 2.5 }, { seq: 7 }) },
  { name: 'values given twice in a reading', text: payload({ reading: '"values":{"temperature":99},' }), legal: LEGAL, everything: body({ temperature: 99 }) },
  {
    name: 'ts given twice in a reading, the kept one out of range',
    text: payload({ readings: `[{"seq":1,"ts":${TS},"ts":0,"values":{"temperature":2.5}}]` }),
    legal: body({ temperature: 2.5 }, { ts: 0 }),
    legalIsValid: false,
    everything: LEGAL,
  },
  {
    name: '__proto__ metric in a reading whose ts is out of range',
    text: payload({ readings: '[{"seq":1,"ts":0,"values":{"__proto__":1.5,"temperature":2.5}}]' }),
    legal: body({ temperature: 2.5 }, { ts: 0 }),
    legalIsValid: false,
  },
  // At the top level.
  { name: '__proto__ at the top level', text: payload({ top: '"__proto__":{"device":"dev-2"},' }), legal: LEGAL },
  { name: 'constructor at the top level', text: payload({ top: '"constructor":{"prototype":{"polluted":1}},' }), legal: LEGAL },
  { name: 'prototype at the top level', text: payload({ top: '"prototype":{},' }), legal: LEGAL },
  { name: 'device given twice', text: payload({ top: '"device":"dev-2",' }), legal: LEGAL, everything: body({ temperature: 2.5 }, {}, 'dev-2') },
  { name: 'v given twice', text: payload({ top: '"v":2,' }), legal: LEGAL },
  {
    name: 'readings given twice',
    text: payload({ top: `"readings":[{"seq":1,"ts":${TS},"values":{"temperature":99}}],` }),
    legal: LEGAL,
    everything: body({ temperature: 99 }),
  },
  { name: 'sig given twice', text: payload({ sig: `"sig":"${OTHER_SIG}","sig":"$SIG"` }), legal: LEGAL },
  { name: 'a fullwidth "sig" (NFKC: sig)', text: payload({ top: `"ｓｉｇ":"${OTHER_SIG}",` }), legal: LEGAL },
  // The device id.
  { name: 'device id __proto__', text: payload({ device: '"__proto__"' }), legal: body({ temperature: 2.5 }, {}, '__proto__'), legalIsValid: false },
  { name: 'device id constructor', text: payload({ device: '"constructor"' }), legal: body({ temperature: 2.5 }, {}, 'constructor'), legalIsValid: false },
  { name: 'device id prototype', text: payload({ device: '"prototype"' }), legal: body({ temperature: 2.5 }, {}, 'prototype'), legalIsValid: false },
  { name: 'device id in fullwidth letters (NFKC: dev-1)', text: payload({ device: '"ｄｅｖ-1"' }), legal: LEGAL },
];

const variants = cases.flatMap((c) => [
  [`${c.name}, signed over the legal members`, c.text.replaceAll('$SIG', sign(c.legal))] as const,
  ...(c.everything ? [[`${c.name}, signed over every member`, c.text.replaceAll('$SIG', sign(c.everything))] as const] : []),
]);

describe('a member the signature does not cover', () => {
  it.each(variants)('%s → PAYLOAD_INVALID', (_name, text) => {
    const decoded = decodeTelemetry(Buffer.from(text));
    expect(decoded).toMatchObject({ ok: false, code: 'PAYLOAD_INVALID' });
  });

  // Control: the legal members alone, signed as above, make a message that decodes and verifies. So the
  // refusals above are for the hostile member, not for a mistake in the payload or its signature.
  it.each(cases.filter((c) => c.legalIsValid !== false).map((c) => [c.name, c] as const))('without the hostile member it verifies: %s', (_name, c) => {
    const decoded = decodeTelemetry(Buffer.from(JSON.stringify({ ...c.legal, sig: sign(c.legal) })));
    expect(decoded.ok).toBe(true);
    if (decoded.ok) expect(verifyTelemetrySignature(decoded.value, { alg: 'hmac-sha256', key: KEY })).toBe(true);
  });

  it('leaves Object.prototype alone', () => {
    expect(Object.prototype).not.toHaveProperty('polluted');
    expect(Object.prototype).not.toHaveProperty('humidity');
  });
});

describe('what stays accepted', () => {
  const batch = { v: 1 as const, device: 'dev-1', readings: [1, 2, 3].map((seq) => ({ seq, ts: TS + seq, values: { a: seq, b_2: -seq, c: seq / 3 } })) };
  const accepted: [string, string, TelemetryBody][] = [
    ['compact JSON', JSON.stringify({ ...LEGAL, sig: sign(LEGAL) }), LEGAL],
    ['pretty-printed JSON', JSON.stringify({ ...LEGAL, sig: sign(LEGAL) }, null, 2), LEGAL],
    ['spaces around every colon', payload({}).replaceAll(':', ' : ').replace('$SIG', sign(LEGAL)), LEGAL],
    ['a metric name spelled with an escape, once', payload({ values: '"temp\\u0065rature":2.5' }).replace('$SIG', sign(LEGAL)), LEGAL],
    ['a batch with several metrics', JSON.stringify({ ...batch, sig: sign(batch) }), batch],
  ];
  it.each(accepted)('%s', (_name, text, expected) => {
    const decoded = decodeTelemetry(Buffer.from(text));
    expect(decoded.ok).toBe(true);
    if (!decoded.ok) return;
    const { sig: _sig, ...decodedBody } = decoded.value;
    expect(decodedBody).toEqual(expected);
    expect(verifyTelemetrySignature(decoded.value, { alg: 'hmac-sha256', key: KEY })).toBe(true);
  });
});

describe('counting members', () => {
  it.each([
    ['{}', 0],
    ['[]', 0],
    ['"a:b"', 0],
    ['{"a":1}', 1],
    ['{"a:b":"c:d"}', 1],
    ['{"a":"x","a":"y"}', 2],
    ['{"a":{"b":[{"c":1},{"c":2}]}}', 4],
    ['{"a\\":":"\\":"}', 1],
    ['{"a":"\\\\","b:":"\\\\\\":"}', 2],
    ['{"\\u0022:":1,"x":[":",":"]}', 2],
    [' { "a" : 1 , "b" : { } } ', 2],
  ])('%s has %i', (text, members) => {
    JSON.parse(text); // the counter is only ever given valid JSON
    expect(countJsonMembers(text)).toBe(members);
  });

  it('agrees with the parsed value on random JSON with quotes, backslashes and colons in strings', () => {
    let seed = 15;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)]!;
    const string = () => Array.from({ length: Math.floor(random() * 6) }, () => pick(['a', ':', '"', '\\', '\\\\', ' ', '{', '}', 'é', '\u2028'])).join('');
    const value = (depth: number): unknown => {
      const kind = depth > 3 ? 0 : Math.floor(random() * 4);
      if (kind === 0) return pick([1, -2.5, null, true, string()]);
      if (kind === 1) return Array.from({ length: Math.floor(random() * 4) }, () => value(depth + 1));
      return Object.fromEntries(Array.from({ length: Math.floor(random() * 4) }, (_, i) => [`${string()}${i}`, value(depth + 1)]));
    };
    for (let i = 0; i < 500; i++) {
      const parsed = value(0);
      const text = JSON.stringify(parsed);
      expect(countJsonMembers(text), text).toBe(countMessageMembers(parsed));
    }
  });

  it('refuses to count a __proto__ member or a value nested deeper than any message', () => {
    expect(countMessageMembers(JSON.parse('{"a":{"__proto__":1}}'))).toBeNaN();
    expect(countMessageMembers(JSON.parse('[[[[[[[[[[{"a":1}]]]]]]]]]]'))).toBeNaN();
  });
});
