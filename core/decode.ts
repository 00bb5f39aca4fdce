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

/** Bytes → JSON value, with size and UTF-8 checks first. */
export function decodeJson(payload: Uint8Array, maxBytes: number = LIMITS.maxPayloadBytes): Decoded<unknown> {
  if (payload.byteLength > maxBytes) {
    return { ok: false, code: 'PAYLOAD_TOO_LARGE', message: `payload is ${payload.byteLength} bytes; at most ${maxBytes}` };
  }
  let text: string;
  try {
    text = strictUtf8.decode(payload);
  } catch {
    return { ok: false, code: 'PAYLOAD_INVALID', message: 'payload is not valid UTF-8' };
  }
  try {
    return { ok: true, value: JSON.parse(text) as unknown };
  } catch (err) {
    return { ok: false, code: 'PAYLOAD_INVALID', message: `payload is not JSON: ${(err as Error).message}` };
  }
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

export function decodeTelemetry(payload: Uint8Array): Decoded<TelemetryMessage> {
  const json = decodeJson(payload);
  if (!json.ok) return json;
  const parsed = TelemetryMessageSchema.safeParse(json.value);
  if (!parsed.success) return { ok: false, code: reasonFor(parsed.error), message: describe(parsed.error) };
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
