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

/**
 * Built in one buffer: its size first, then every field written in place. This runs for every message
 * ingest verifies (and every one a device signs); assembling it from a dozen small buffers and a
 * concat cost three times as much, most of it in allocation.
 */
export function canonicalBytes(body: TelemetryBody): Buffer {
  const { device, readings } = body;
  const namesOf: string[][] = new Array<string[]>(readings.length);
  let size = MAGIC.length + 1 + device.length + 2;
  for (let r = 0; r < readings.length; r++) {
    const names = Object.keys(readings[r]!.values).sort(compareBytewise);
    namesOf[r] = names;
    size += 17;
    for (const name of names) size += 1 + name.length + 8;
  }
  const out = Buffer.allocUnsafe(size);
  let at = MAGIC.copy(out, 0);
  // 'ascii' writes one byte per UTF-16 code unit (as latin1 does), so lengths in characters are lengths
  // in bytes. A length byte keeps the low 8 bits, as Buffer.from([length]) did.
  out[at++] = device.length & 0xff;
  at += out.write(device, at, 'ascii');
  at = out.writeUInt16BE(readings.length, at);
  for (let r = 0; r < readings.length; r++) {
    const reading = readings[r]!;
    at = out.writeBigUInt64BE(BigInt(reading.seq), at);
    at = out.writeBigUInt64BE(BigInt(reading.ts), at);
    const names = namesOf[r]!;
    at = out.writeUInt8(names.length, at);
    for (const name of names) {
      out[at++] = name.length & 0xff;
      at += out.write(name, at, 'ascii');
      // JSON has no -0 (JSON.stringify(-0) is "0"), so a signer and a verifier could disagree on it.
      at = out.writeDoubleBE(reading.values[name]! + 0, at);
    }
  }
  return out;
}

/** Metric names are ASCII, so UTF-16 code unit order equals byte order; spelled out for clarity. */
function compareBytewise(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
