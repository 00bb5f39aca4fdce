/**
 * Turning untrusted bytes into protocol messages. Every failure comes back as a value with a stable
 * reason code; nothing here throws on bad input.
 */
import type { z } from 'zod';
import type { RejectReason } from './errors.ts';
import { LIMITS } from './limits.ts';
import { TelemetryMessageSchema, type TelemetryMessage } from './schemas.ts';

export type Decoded<T> = { ok: true; value: T } | { ok: false; code: RejectReason; message: string };

// ignoreBOM keeps a byte-order mark in the text, where JSON.parse then refuses it (RFC 8259 §8.1).
const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Bytes → text, with size and UTF-8 checks first. */
function decodeText(payload: Uint8Array, maxBytes: number): Decoded<string> {
  if (payload.byteLength > maxBytes) {
    return { ok: false, code: 'PAYLOAD_TOO_LARGE', message: `payload is ${payload.byteLength} bytes; at most ${maxBytes}` };
  }
  try {
    return { ok: true, value: strictUtf8.decode(payload) };
  } catch {
    return { ok: false, code: 'PAYLOAD_INVALID', message: 'payload is not valid UTF-8' };
  }
}

/**
 * JSON.parse, which is safe against prototype pollution on its own: it *defines* every member
 * (CreateDataProperty), so `"__proto__"` becomes an ordinary own property and never a prototype. Keep it
 * that way: copy parsed objects with spread or zod, never with assignment or Object.assign.
 */
function parseJson(text: string): Decoded<unknown> {
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (err) {
    return { ok: false, code: 'PAYLOAD_INVALID', message: `payload is not JSON: ${(err as Error).message}` };
  }
}

/** Bytes → JSON value, with size and UTF-8 checks first. */
export function decodeJson(payload: Uint8Array, maxBytes: number = LIMITS.maxPayloadBytes): Decoded<unknown> {
  const text = decodeText(payload, maxBytes);
  return text.ok ? parseJson(text.value) : text;
}

/**
 * The number of members (key–value pairs) in a JSON text, duplicates included: its colons outside
 * string literals, since in JSON a colon outside a string occurs only between a key and its value.
 * `text` must be valid JSON (JSON.parse accepted it), so every `"` outside a string opens one, and a
 * string ends at the next `"` preceded by an even number of backslashes.
 */
export function countJsonMembers(text: string): number {
  let members = 0;
  let colon = text.indexOf(':');
  let from = 0;
  for (;;) {
    const quote = text.indexOf('"', from);
    while (colon !== -1 && (quote === -1 || colon < quote)) {
      members++;
      colon = text.indexOf(':', colon + 1);
    }
    if (quote === -1) return members;
    from = endOfString(text, quote) + 1;
    while (colon !== -1 && colon < from) colon = text.indexOf(':', colon + 1);
  }
}

/** Index of the `"` that closes the string opened at `open`. */
function endOfString(text: string, open: number): number {
  let close = text.indexOf('"', open + 1);
  while (close !== -1) {
    let backslashes = 0;
    while (text.charCodeAt(close - 1 - backslashes) === 0x5c) backslashes++;
    if (backslashes % 2 === 0) return close;
    close = text.indexOf('"', close + 1);
  }
  return text.length;
}

/** Deeper than any message of the protocol (telemetry: message → readings → reading → values). */
const MAX_MEMBER_DEPTH = 8;

/**
 * The number of members of the objects in a parsed value, at every level; NaN if one of them is named
 * `__proto__` (no message holds one: zod never outputs it) or the value nests deeper than any message.
 */
export function countMessageMembers(value: unknown): number {
  return typeof value === 'object' && value !== null ? membersOf(value, 0) : 0;
}

function membersOf(value: object, depth: number): number {
  if (depth > MAX_MEMBER_DEPTH) return NaN;
  let members = 0;
  if (Array.isArray(value)) {
    for (const item of value as unknown[]) if (typeof item === 'object' && item !== null) members += membersOf(item, depth + 1);
    return members;
  }
  // for…in, not Object.keys: no array per object. It also walks inherited enumerable members, so a
  // polluted Object.prototype makes every count disagree and fails closed.
  for (const key in value) {
    if (key === '__proto__') return NaN;
    members++;
    const member = (value as Record<string, unknown>)[key];
    if (typeof member === 'object' && member !== null) members += membersOf(member, depth + 1);
  }
  return members;
}

/**
 * True if every member written in the JSON text is a member of `message`: none was dropped (zod skips a
 * `__proto__` key in a record), and no key appeared twice (JSON.parse keeps the last value silently, so
 * the first would be bytes nobody signed, or that another parser would read instead). Members are
 * counted, not listed: the text has at least as many as the message, since `message` only ever holds
 * what was parsed (the schemas add nothing: no defaults), equal only if none is missing.
 */
export function everyMemberKept(text: string, message: unknown): boolean {
  const kept = countMessageMembers(message);
  // Every member has a colon, and a telemetry message's strings (slugs, base64, field names) have none,
  // so counting colons decides almost always, at the cost of one indexOf per member. It is sound for any
  // message: colons are never fewer than members, which are never fewer than those kept, so equal
  // counts mean none was lost; strings with colons (a site name, an ISO date) only take the exact count.
  let colons = 0;
  for (let at = text.indexOf(':'); at !== -1; at = text.indexOf(':', at + 1)) colons++;
  return colons === kept || countJsonMembers(text) === kept;
}

/** Reason for a schema failure: a timestamp outside the absolute bounds has its own code. */
function reasonFor(error: z.ZodError): RejectReason {
  const tsBounds = error.issues.some(
    (issue) => issue.path.at(-1) === 'ts' && (issue.code === 'too_big' || issue.code === 'too_small'),
  );
  return tsBounds && error.issues.length === 1 ? 'READING_TS_OUT_OF_RANGE' : 'PAYLOAD_INVALID';
}

function describe(error: z.ZodError): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`)
    .join('; ');
}

const MEMBER_NOT_KEPT =
  'a member of the payload is not part of the message: a key given twice, or one that is not a field or a metric name (such as __proto__)';

/**
 * Bytes → telemetry message. Everything the payload carries ends up in the message, whose canonical
 * bytes the signature covers (PROTOCOL.md §3): a payload with a member the message does not hold is
 * PAYLOAD_INVALID, before any signature is checked, so the reason given is the true one.
 */
export function decodeTelemetry(payload: Uint8Array): Decoded<TelemetryMessage> {
  const text = decodeText(payload, LIMITS.maxPayloadBytes);
  if (!text.ok) return text;
  const json = parseJson(text.value);
  if (!json.ok) return json;
  const parsed = TelemetryMessageSchema.safeParse(json.value);
  if (!parsed.success) {
    const code = reasonFor(parsed.error);
    // Only a timestamp out of bounds has a reason of its own; the shape is valid otherwise, so the
    // parsed JSON has the message's members plus any that would have been dropped.
    if (code !== 'PAYLOAD_INVALID' && !everyMemberKept(text.value, json.value)) return { ok: false, code: 'PAYLOAD_INVALID', message: MEMBER_NOT_KEPT };
    return { ok: false, code, message: describe(parsed.error) };
  }
  if (!everyMemberKept(text.value, parsed.data)) return { ok: false, code: 'PAYLOAD_INVALID', message: MEMBER_NOT_KEPT };
  return { ok: true, value: parsed.data };
}

/**
 * Bytes → a message of `schema`, decoded as decodeTelemetry decodes telemetry: size and strict UTF-8
 * first, then JSON, the schema, and every member written in the text kept in the message (none given
 * twice, none that zod drops, such as `__proto__` in a record). PAYLOAD_TOO_LARGE or PAYLOAD_INVALID
 * otherwise. For the other messages a component reads from MQTT (the display's verified readings,
 * status and completeness); the schema must add nothing (no defaults) for the member count to hold.
 */
export function decodeMessage<T>(payload: Uint8Array, schema: z.ZodType<T>, maxBytes: number): Decoded<T> {
  const text = decodeText(payload, maxBytes);
  if (!text.ok) return text;
  const json = parseJson(text.value);
  if (!json.ok) return json;
  const parsed = schema.safeParse(json.value);
  if (!parsed.success) return { ok: false, code: 'PAYLOAD_INVALID', message: describe(parsed.error) };
  if (!everyMemberKept(text.value, parsed.data)) return { ok: false, code: 'PAYLOAD_INVALID', message: MEMBER_NOT_KEPT };
  return { ok: true, value: parsed.data };
}

/**
 * Relative timestamp bounds, checked by ingest against its own clock: a reading may not be more than
 * `maxFutureMs` ahead nor more than `maxAgeMs` old.
 */
export function checkTimestampBounds(
  message: TelemetryMessage,
  now: number,
  bounds: { maxFutureMs: number; maxAgeMs: number },
): Decoded<TelemetryMessage> {
  for (const reading of message.readings) {
    if (reading.ts > now + bounds.maxFutureMs) {
      return { ok: false, code: 'READING_TS_OUT_OF_RANGE', message: `seq ${reading.seq}: ${reading.ts - now} ms in the future` };
    }
    if (reading.ts < now - bounds.maxAgeMs) {
      return { ok: false, code: 'READING_TS_OUT_OF_RANGE', message: `seq ${reading.seq}: ${now - reading.ts} ms old` };
    }
  }
  return { ok: true, value: message };
}
