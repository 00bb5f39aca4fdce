/**
 * Canonical bytes of a telemetry message (protocol v1): the exact bytes a device signs. Binary and
 * fixed-layout on purpose, so that firmware in C builds them with memcpy and byte swaps, and nobody
 * has to agree on how to print a floating-point number. PROTOCOL.md §"Canonical bytes" is normative.
 *
 *   "SPv1"                                  4 bytes, ASCII magic (protocol version)
 *   u8  len(device) ‖ device                 ASCII
 *   u16 number of readings                   big-endian
 *   per reading, in message order:
 *     u64 seq ‖ u64 ts                       big-endian unsigned
 *     u8  number of metrics
 *     per metric, sorted by name (bytewise ascending):
 *       u8 len(name) ‖ name ‖ f64 value      IEEE-754 binary64, big-endian; -0 is written as +0
 */
import type { TelemetryBody } from './schemas.ts';

const MAGIC = Buffer.from('SPv1', 'ascii');

function asciiBytes(text: string): Buffer {
  return Buffer.from(text, 'ascii');
}

export function canonicalBytes(body: TelemetryBody): Buffer {
  const parts: Buffer[] = [MAGIC];
  const device = asciiBytes(body.device);
  parts.push(Buffer.from([device.length]), device);

  const count = Buffer.alloc(2);
  count.writeUInt16BE(body.readings.length);
  parts.push(count);

  for (const reading of body.readings) {
    const head = Buffer.alloc(17);
    head.writeBigUInt64BE(BigInt(reading.seq), 0);
    head.writeBigUInt64BE(BigInt(reading.ts), 8);
    const names = Object.keys(reading.values).sort(compareBytewise);
    head.writeUInt8(names.length, 16);
    parts.push(head);
    for (const name of names) {
      const nameBytes = asciiBytes(name);
      const value = Buffer.alloc(8);
      // JSON has no -0 (JSON.stringify(-0) is "0"), so a signer and a verifier could disagree on it.
      value.writeDoubleBE(reading.values[name]! + 0);
      parts.push(Buffer.from([nameBytes.length]), nameBytes, value);
    }
  }
  return Buffer.concat(parts);
}

/** Metric names are ASCII, so UTF-16 code unit order equals byte order; spelled out for clarity. */
function compareBytewise(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
