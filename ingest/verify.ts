/**
 * The per-message checks, in the order PROTOCOL.md §5 gives: size → parse → schema → topic → topic
 * device = payload device → registry → signature → timestamp bounds → seq (replay/dedup).
 * Pure: it reads the registry and the seq memory but changes neither; the caller records acceptance.
 *
 * A broker-authenticated device's messages (PROTOCOL.md §7) take their own path, chosen by the topic's
 * device before anything is decoded: size → JSON → registry → topic of its mapping → no other device
 * named, no signature → payload mapping → timestamp bounds → (device, ts) dedup. The registry lookup
 * this needs is the one the signed path makes anyway, done earlier: the signed path costs what it did.
 */
import { checkTimestampBounds, decodeJson, decodeTelemetry } from '../core/decode.ts';
import type { RejectReason } from '../core/errors.ts';
import { mapPayload } from '../core/mappings.ts';
import { verifyKeyOf, type DeviceRecord, type Registry } from '../core/registry.ts';
import type { DeviceMeta, Reading } from '../core/schemas.ts';
import { verifyTelemetrySignature, type VerifyKey } from '../core/signature.ts';
import { parseTopic, type ParsedTopic } from '../core/topics.ts';
import { BrokerReadingMemory, payloadDigest } from './broker-readings.ts';
import { signatureDigest, type SeqTracker } from './seq-tracker.ts';

export type Verdict =
  /** `repeated`: readings of the message accepted before (a batch overlapping earlier ones), not written again. */
  | { kind: 'accepted'; device: string; meta: DeviceMeta; readings: Reading[]; fresh: number[]; range: [number, number]; digest: number; repeated: number }
  /** A broker-authenticated device's reading (trust `broker`): one, with seq 0 (it has none). */
  | { kind: 'accepted-broker'; device: string; meta: DeviceMeta; reading: Reading; digest: number }
  /** Read and understood, but not a measurement (a Shelly NotifyEvent): acknowledged, counted, not stored. */
  | { kind: 'ignored'; device: string; message: string }
  /** `readings`: how many the message carries (counted as duplicates per device: ./device-counts.ts). */
  | { kind: 'duplicate'; device: string; readings: number }
  /** Every seq was accepted before, by a message no longer remembered: only the store can tell (pipeline.ts). */
  | { kind: 'outside-window'; device: string; readings: Reading[]; range: [number, number] }
  | { kind: 'rejected'; reason: RejectReason; device?: string | undefined; message: string };

export interface VerifyContext {
  registry: Registry;
  seqs: SeqTracker;
  /** Dedup of broker-authenticated devices' readings (by their ts); one per ingest. */
  brokerReadings?: BrokerReadingMemory;
  now: number;
  bounds: { maxFutureMs: number; maxAgeMs: number };
}

/**
 * Decoded verification keys by registry record: decoding the base64 key of every message was 2% of the
 * pipeline. Keyed by the record object (a reloaded registry has new ones), and used only while the
 * record still holds the very key text it was decoded from, so a rotated key is never missed.
 */
const verifyKeys = new WeakMap<DeviceRecord, { signing: DeviceRecord['signing']; text: string; key: VerifyKey }>();

function keyText(signing: DeviceRecord['signing']): string {
  return signing.alg === 'hmac-sha256' ? signing.key : signing.alg === 'ed25519' ? signing.publicKey : '';
}

function verifyKeyFor(record: DeviceRecord): VerifyKey {
  const cached = verifyKeys.get(record);
  if (cached !== undefined && cached.signing === record.signing && cached.signing.alg === record.signing.alg && cached.text === keyText(record.signing)) return cached.key;
  const key = verifyKeyOf(record);
  verifyKeys.set(record, { signing: record.signing, text: keyText(record.signing), key });
  return key;
}

export function verifyTelemetryMessage(topic: string, payload: Uint8Array, context: VerifyContext): Verdict {
  const parsedTopic = parseTopic(topic);
  const topicDevice = parsedTopic?.deviceId;
  // The one registry lookup of the message: the topic's device is the payload's, or the message is refused.
  const topicRecord = topicDevice === undefined ? undefined : context.registry.get(topicDevice);
  if (parsedTopic !== undefined && (topicRecord?.trust === 'broker-authenticated' || parsedTopic.kind === 'tasmota' || parsedTopic.kind === 'shelly')) {
    return verifyMappedMessage(parsedTopic, topicRecord, payload, context);
  }
  const decoded = decodeTelemetry(payload);
  if (!decoded.ok) return { kind: 'rejected', reason: decoded.code, device: topicDevice, message: decoded.message };
  const message = decoded.value;

  if (parsedTopic === undefined || parsedTopic.kind !== 'telemetry') {
    return { kind: 'rejected', reason: 'TOPIC_INVALID', device: message.device, message: `not a telemetry topic: ${topic.slice(0, 128)}` };
  }
  if (message.device !== parsedTopic.deviceId) {
    return { kind: 'rejected', reason: 'TOPIC_DEVICE_MISMATCH', device: parsedTopic.deviceId, message: `payload names device ${message.device}` };
  }
  const device = message.device;
  const record = topicRecord;
  if (record === undefined) return { kind: 'rejected', reason: 'DEVICE_UNKNOWN', device, message: 'device is not in the registry' };
  if (record.status !== 'active') return { kind: 'rejected', reason: 'DEVICE_REVOKED', device, message: `device was revoked at ${record.revokedAt ?? '?'}` };
  if (!verifyTelemetrySignature(message, verifyKeyFor(record))) {
    return { kind: 'rejected', reason: 'READING_BAD_SIGNATURE', device, message: `signature does not verify with the device's ${record.signing.alg} key` };
  }
  const bounded = checkTimestampBounds(message, context.now, context.bounds);
  if (!bounded.ok) return { kind: 'rejected', reason: bounded.code, device, message: bounded.message };

  const seqs = message.readings.map((r) => r.seq);
  const range: [number, number] = [seqs[0]!, seqs[seqs.length - 1]!];
  const digest = signatureDigest(message.sig);
  const verdict = context.seqs.classify(device, seqs, digest);
  if (verdict.kind === 'duplicate') return { kind: 'duplicate', device, readings: message.readings.length };
  if (verdict.kind === 'replay') return { kind: 'rejected', reason: 'READING_REPLAYED', device, message: `seq ${range[0]}..${range[1]} was accepted before, with other content` };
  if (verdict.kind === 'outside-window') return { kind: 'outside-window', device, readings: message.readings, range };
  // Usually every seq is new; only a batch that overlaps earlier ones needs filtering.
  let readings = message.readings;
  if (verdict.fresh.length !== readings.length) {
    const fresh = new Set(verdict.fresh);
    readings = readings.filter((r) => fresh.has(r.seq));
  }
  return { kind: 'accepted', device, meta: record.meta, readings, fresh: verdict.fresh, range, digest, repeated: message.readings.length - readings.length };
}

const FORMAT_TOPIC = { 'flat-json': 'telemetry', pointers: 'telemetry', tasmota: 'tasmota', 'shelly-gen2': 'shelly' } as const;

/** Memory for contexts that bring none (unit tests): no dedup across calls. */
const noMemory = (): BrokerReadingMemory => new BrokerReadingMemory();

/**
 * A message on a broker-authenticated device's topic, or on a payload mapping's topic (tele/…/SENSOR,
 * …/events/rpc): read with the device's mapping, never as signed (PROTOCOL.md §7).
 */
function verifyMappedMessage(parsedTopic: ParsedTopic, record: DeviceRecord | undefined, payload: Uint8Array, context: VerifyContext): Verdict {
  const device = parsedTopic.deviceId;
  const json = decodeJson(payload);
  if (!json.ok) return { kind: 'rejected', reason: json.code, device, message: json.message };
  if (record === undefined) return { kind: 'rejected', reason: 'DEVICE_UNKNOWN', device, message: 'device is not in the registry' };
  if (record.status !== 'active') return { kind: 'rejected', reason: 'DEVICE_REVOKED', device, message: `device was revoked at ${record.revokedAt ?? '?'}` };
  const mapping = record.payload;
  if (record.trust !== 'broker-authenticated' || mapping === undefined) {
    return { kind: 'rejected', reason: 'TOPIC_INVALID', device, message: `device ${device} is signed: its readings go to sensors/${device}/telemetry, signed` };
  }
  if (FORMAT_TOPIC[mapping.format] !== parsedTopic.kind) {
    return { kind: 'rejected', reason: 'TOPIC_INVALID', device, message: `device ${device} sends ${mapping.format} payloads, which are not read from this topic` };
  }
  const value = json.value;
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const named = (value as Record<string, unknown>).device;
    if (Object.hasOwn(value, 'device') && named !== device) {
      return { kind: 'rejected', reason: 'TOPIC_DEVICE_MISMATCH', device, message: `payload names device ${JSON.stringify(named)?.slice(0, 60)}` };
    }
    // Nothing a broker-authenticated device sends is checked as signed, so nothing it sends may look so.
    if (Object.hasOwn(value, 'sig')) {
      return { kind: 'rejected', reason: 'READING_SIGNATURE_UNEXPECTED', device, message: 'the device is broker-authenticated: a payload carrying "sig" is refused, never stored as signed' };
    }
  }
  const mapped = mapPayload(value, mapping);
  if (mapped.ok === false) return { kind: 'rejected', reason: mapped.code, device, message: mapped.message };
  if (mapped.ok === 'nothing') return { kind: 'ignored', device, message: mapped.message };
  const memory = context.brokerReadings ?? noMemory();
  const ts = mapped.reading.ts ?? memory.clockTs(device, context.now);
  const { maxFutureMs, maxAgeMs } = context.bounds;
  if (ts > context.now + maxFutureMs) return { kind: 'rejected', reason: 'READING_TS_OUT_OF_RANGE', device, message: `ts ${ts} is ${ts - context.now} ms in the future` };
  if (ts < context.now - maxAgeMs) return { kind: 'rejected', reason: 'READING_TS_OUT_OF_RANGE', device, message: `ts ${ts} is ${context.now - ts} ms old` };
  const digest = payloadDigest(payload);
  const seen = memory.classify(device, ts, digest);
  if (seen === 'duplicate') return { kind: 'duplicate', device, readings: 1 };
  if (seen === 'replay') return { kind: 'rejected', reason: 'READING_REPLAYED', device, message: `ts ${ts} is not after the device's newest accepted reading, and no reading accepted at it had this content` };
  return { kind: 'accepted-broker', device, meta: record.meta, reading: { seq: 0, ts, values: mapped.reading.values }, digest };
}
