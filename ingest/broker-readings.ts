/**
 * Replay and dedup for broker-authenticated devices, whose readings have no seq (core/PROTOCOL.md §7.4):
 * a reading is identified by the device's own timestamp, and its content by a digest of the payload.
 *
 * Per device: the newest accepted ts, and the (ts, digest) of its last REMEMBERED accepted payloads.
 *   - ts newer than every accepted one: new;
 *   - otherwise, (ts, digest) remembered: a redelivery (acknowledged, not written again);
 *   - otherwise: a replay (READING_REPLAYED): a device's time only moves forward.
 * A payload without a time of its own is given ingest's clock, made strictly increasing per device, so
 * it is always new: such a device gets at-least-once (a copy the broker redelivers is a second reading).
 *
 * Held in memory only; after an ingest restart the first reading of each device is new unless the store
 * says otherwise — and writing a copy again lands on its own identity (device, metric, ts) with the
 * values it had, changing nothing. Bounded: REMEMBERED entries of two numbers per device.
 */
const REMEMBERED = 64;

interface DeviceTimes {
  high: number;
  /** ts, digest pairs, flat, oldest first. */
  recent: number[];
}

export type TimeVerdict = 'new' | 'duplicate' | 'replay';

export class BrokerReadingMemory {
  private readonly devices = new Map<string, DeviceTimes>();

  classify(device: string, ts: number, digest: number): TimeVerdict {
    const state = this.devices.get(device);
    if (state === undefined || ts > state.high) return 'new';
    for (let i = state.recent.length - 2; i >= 0; i -= 2) if (state.recent[i] === ts && state.recent[i + 1] === digest) return 'duplicate';
    return 'replay';
  }

  accept(device: string, ts: number, digest: number): void {
    let state = this.devices.get(device);
    if (state === undefined) this.devices.set(device, (state = { high: ts, recent: [] }));
    if (ts > state.high) state.high = ts;
    state.recent.push(ts, digest);
    if (state.recent.length > 2 * REMEMBERED) state.recent.splice(0, state.recent.length - 2 * REMEMBERED);
  }

  /** The ts of a reading that carries no time: ingest's clock, strictly after the device's newest. */
  clockTs(device: string, now: number): number {
    const high = this.devices.get(device)?.high;
    return high !== undefined && now <= high ? high + 1 : now;
  }
}

/** A 30-bit digest of a payload (FNV-1a): which of two payloads with one ts is the one accepted. */
export function payloadDigest(payload: Uint8Array): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < payload.length; i++) hash = Math.imul(hash ^ payload[i]!, 0x01000193);
  return (hash >>> 2) & 0x3fffffff;
}
