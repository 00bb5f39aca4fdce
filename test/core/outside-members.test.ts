/**
 * Every core/ parser of outside input that reads objects keyed by names someone else chose (metric
 * names, query parameters) refuses a member it would otherwise drop or merge, rather than returning a
 * different message than was sent (issue 15, item 1's class beyond telemetry): the records of the
 * messages clients read from /live and the API, the display's MQTT messages (decodeMessage), and URL
 * query parameters (queryParamsOf, parseDevicesQuery, parseHistoryParams).
 */
import { describe, expect, it } from 'vitest';
import type { ZodType } from 'zod';
import { DeviceSummarySchema, parseDevicesQuery } from '../../core/api.ts';
import { decodeMessage } from '../../core/decode.ts';
import { isSensorpipeError } from '../../core/errors.ts';
import { LiveReadingSchema, LiveServerFrameSchema } from '../../core/live.ts';
import { parseHistoryParams, queryParamsOf } from '../../core/query.ts';
import { CompletenessMessageSchema, StatusMessageSchema, VerifiedReadingsSchema } from '../../core/schemas.ts';

const NOW = Date.UTC(2026, 0, 5, 12, 0, 0);
const bytes = (text: string) => new TextEncoder().encode(text);
const codeOf = (call: () => unknown): string => {
  try {
    call();
    return 'no error';
  } catch (err) {
    if (!isSensorpipeError(err)) throw err;
    return err.code;
  }
};

describe('records of names refuse __proto__ (z.record would drop it)', () => {
  it.each([
    ['a live reading', () => LiveReadingSchema.safeParse(JSON.parse('["dev-0",1,2,{"temperature":1,"__proto__":2}]'))],
    ['a readings frame', () => LiveServerFrameSchema.safeParse(JSON.parse('{"type":"readings","items":[["dev-0",1,2,{"__proto__":2,"temperature":1}]]}'))],
    ['a __proto__ holding an object', () => LiveReadingSchema.safeParse(JSON.parse('["dev-0",1,2,{"temperature":1,"__proto__":{"x":1}}]'))],
    [
      'a device summary',
      () =>
        DeviceSummarySchema.safeParse(
          JSON.parse('{"id":"dev-0","registered":"active","trust":"signed","meta":{},"state":"online","since":null,"lastSeen":null,"latest":{"__proto__":{"ts":1,"value":2}},"completeness":null}'),
        ),
    ],
  ])('%s', (_, parse) => {
    const result = parse();
    expect(result.success).toBe(false);
    expect(result.error?.issues[0]?.message).toMatch(/__proto__/);
  });

  it('still takes good ones, and keeps every value', () => {
    expect(LiveReadingSchema.parse(JSON.parse('["dev-0",1,2,{"temperature":1,"humidity":2}]'))).toEqual(['dev-0', 1, 2, { temperature: 1, humidity: 2 }]);
    // Live values are metric names with finite numbers, as everywhere else.
    expect(LiveReadingSchema.safeParse(['dev-0', 1, 2, { Temperature: 1 }]).success).toBe(false);
    expect(LiveReadingSchema.safeParse(['dev-0', 1, 2, { constructor: 1 }]).success).toBe(false);
    expect(LiveReadingSchema.safeParse(['dev-0', 1, 2, { temperature: Number.POSITIVE_INFINITY }]).success).toBe(false);
  });
});

describe('decodeMessage: the display\'s MQTT messages', () => {
  const verified = (values: string) => `{"v":1,"device":"dev-0","readings":[{"seq":1,"ts":${NOW},"values":${values}}],"meta":{"site":"Hall: north"},"verifiedAt":${NOW}}`;

  it.each([
    ['__proto__ among the values', VerifiedReadingsSchema, verified('{"temperature":1,"__proto__":2}')],
    ['a value given twice', VerifiedReadingsSchema, verified('{"temperature":1,"temperature":2}')],
    ['a field given twice', StatusMessageSchema, `{"v":1,"device":"dev-0","state":"offline","since":${NOW},"state":"online"}`],
    ['__proto__ in a status', StatusMessageSchema, `{"v":1,"device":"dev-0","state":"online","since":${NOW},"__proto__":{}}`],
    ['a count given twice', CompletenessMessageSchema, '{"v":1,"device":"dev-0","received":10,"missing":0,"missing":5,"ratio":1,"at":1}'],
    ['not UTF-8', StatusMessageSchema, Buffer.concat([Buffer.from(`{"v":1,"device":"dev-0","state":"online","since":${NOW},"reason":"`), Buffer.from([0xff]), Buffer.from('"}')])],
  ] as [string, ZodType, string | Buffer][])('refuses %s with PAYLOAD_INVALID', (_, schema, payload) => {
    const decoded = decodeMessage(typeof payload === 'string' ? bytes(payload) : payload, schema, 1024);
    expect(decoded).toMatchObject({ ok: false, code: 'PAYLOAD_INVALID' });
  });

  it('takes a good one (colons inside strings included) and refuses one over the size', () => {
    expect(decodeMessage(bytes(verified('{"temperature":1,"humidity":2}')), VerifiedReadingsSchema, 1024)).toMatchObject({ ok: true, value: { meta: { site: 'Hall: north' } } });
    expect(decodeMessage(bytes(verified('{"temperature":1}')), VerifiedReadingsSchema, 50)).toMatchObject({ ok: false, code: 'PAYLOAD_TOO_LARGE' });
  });
});

describe('query parameters', () => {
  it('reads every parameter as an own member, __proto__ included, so a strict schema refuses it', () => {
    const raw = queryParamsOf(new URLSearchParams('__proto__=x&from=-1h'));
    expect(Object.hasOwn(raw, '__proto__')).toBe(true);
    expect(Object.keys(raw)).toEqual(['__proto__', 'from']);
    expect(codeOf(() => parseDevicesQuery(new URLSearchParams('__proto__=x')))).toBe('QUERY_INVALID');
    expect(codeOf(() => parseHistoryParams('dev-0', new URLSearchParams('__proto__=x'), NOW))).toBe('QUERY_INVALID');
    expect(codeOf(() => parseHistoryParams('dev-0', new URLSearchParams('constructor=x'), NOW))).toBe('QUERY_INVALID');
  });

  it.each(['status=online&status=offline', 'q=a&q=b', 'token=a&token=b', 'format=csv&format=csv'])('refuses %s: a parameter given twice, ignored ones too', (query) => {
    expect(codeOf(() => parseDevicesQuery(new URLSearchParams(query), ['token', 'format']))).toBe('QUERY_INVALID');
  });

  it('refuses a repeated history parameter and a device in the query', () => {
    expect(codeOf(() => parseHistoryParams('dev-0', new URLSearchParams('from=-2h&from=-1h'), NOW))).toBe('QUERY_INVALID');
    expect(codeOf(() => parseHistoryParams('dev-0', new URLSearchParams('device=dev-1'), NOW))).toBe('QUERY_INVALID');
    expect(parseHistoryParams('dev-0', new URLSearchParams('from=-2h&to=&format=csv'), NOW, ['format'])).toEqual({ device: 'dev-0', from: NOW - 7_200_000, to: NOW });
  });
});
