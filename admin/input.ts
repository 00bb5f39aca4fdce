/**
 * Reading what a client hands over, the same way for the admin API and `sensorpipe devices`: JSON as
 * strictly as every message from MQTT (core/decode.ts: size, UTF-8, JSON, no key given twice, no
 * `__proto__`), and bulk files as JSON (`{"devices": [ … ]}`) or CSV (admin/csv.ts).
 */
import { z } from 'zod';
import { decodeMessage } from '../core/decode.ts';
import { SensorpipeError } from '../core/errors.ts';
import { devicesFromCsv } from './csv.ts';
import type { BulkInput } from './devices.ts';

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

/** Bytes → a JSON value; PAYLOAD_TOO_LARGE or PAYLOAD_INVALID (with why) otherwise. The schema is checked later, by the device service. */
export function decodeStrictJson(bytes: Uint8Array, maxBytes: number): unknown {
  const decoded = decodeMessage(bytes, z.unknown(), maxBytes);
  if (!decoded.ok) {
    // decodeMessage says why in the words of telemetry; the one case it cannot name here is said plainly.
    const message = decoded.message.startsWith('a member of the payload') ? 'a key is given twice in one object, or is "__proto__"' : decoded.message;
    throw new SensorpipeError(decoded.code === 'PAYLOAD_TOO_LARGE' ? 'PAYLOAD_TOO_LARGE' : 'PAYLOAD_INVALID', message);
  }
  return decoded.value;
}

export function decodeUtf8(bytes: Uint8Array): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    throw new SensorpipeError('PAYLOAD_INVALID', 'the text is not valid UTF-8');
  }
}

/** A bulk file given as JSON: `{"devices": [ … ]}` and nothing else. */
export function bulkInputFromJson(json: unknown): BulkInput {
  const keys = typeof json === 'object' && json !== null && !Array.isArray(json) ? Object.keys(json) : [];
  const devices = keys.length === 1 && keys[0] === 'devices' ? (json as { devices: unknown }).devices : undefined;
  if (!Array.isArray(devices)) throw new SensorpipeError('DEVICE_INVALID', 'a bulk file in JSON must be {"devices": [ … ]}');
  return { devices: devices as unknown[] };
}

/** A bulk file's bytes, read as CSV or JSON. */
export function bulkInput(bytes: Uint8Array, type: 'csv' | 'json', maxBytes: number): BulkInput {
  if (bytes.byteLength > maxBytes) throw new SensorpipeError('PAYLOAD_TOO_LARGE', `the bulk file is ${bytes.byteLength} bytes; at most ${maxBytes}`);
  return type === 'csv' ? devicesFromCsv(decodeUtf8(bytes)) : bulkInputFromJson(decodeStrictJson(bytes, maxBytes));
}
