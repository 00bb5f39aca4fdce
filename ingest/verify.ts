/**
 * The per-message checks, in the order PROTOCOL.md §5 gives: size → parse → schema → topic → topic
 * device = payload device → registry → signature → timestamp bounds → seq (replay/dedup).
 * Pure: it reads the registry and the seq memory but changes neither; the caller records acceptance.
 */
import { checkTimestampBounds, decodeTelemetry } from '../core/decode.ts';
import type { RejectReason } from '../core/errors.ts';
import { verifyKeyOf, type DeviceRecord, type Registry } from '../core/registry.ts';
import type { DeviceMeta, Reading } from '../core/schemas.ts';
import { verifyTelemetrySignature, type VerifyKey } from '../core/signature.ts';
import { parseTopic } from '../core/topics.ts';
import { signatureDigest, type SeqTracker } from './seq-tracker.ts';

export type Verdict =
  | { kind: 'accepted'; device: string; meta: DeviceMeta; readings: Reading[]; fresh: number[]; range: [number, number]; digest: number }
  | { kind: 'duplicate'; device: string }
  /** Every seq was accepted before, by a message no longer remembered: only the store can tell (pipeline.ts). */
  | { kind: 'outside-window'; device: string; readings: Reading[]; range: [number, number] }
  | { kind: 'rejected'; reason: RejectReason; device?: string | undefined; message: string };

export interface VerifyContext {
  registry: Registry;
  seqs: SeqTracker;
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
  return signing.alg === 'hmac-sha256' ? signing.key : signing.publicKey;
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
  const record = context.registry.get(device);
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
  if (verdict.kind === 'duplicate') return { kind: 'duplicate', device };
  if (verdict.kind === 'replay') return { kind: 'rejected', reason: 'READING_REPLAYED', device, message: `seq ${range[0]}..${range[1]} was accepted before, with other content` };
  if (verdict.kind === 'outside-window') return { kind: 'outside-window', device, readings: message.readings, range };
  // Usually every seq is new; only a batch that overlaps earlier ones needs filtering.
  let readings = message.readings;
  if (verdict.fresh.length !== readings.length) {
    const fresh = new Set(verdict.fresh);
    readings = readings.filter((r) => fresh.has(r.seq));
  }
  return { kind: 'accepted', device, meta: record.meta, readings, fresh: verdict.fresh, range, digest };
}
