/**
 * Fault injection: what can go wrong with real devices, on purpose. Each fault names the bad thing a
 * device does and (FAULTS.md) what the pipeline must do about it.
 *
 * Flag syntax: `--faults bad-signature:0.01,flap:0.05,replay@dev-3` — `name:fraction` gives the fault to
 * that fraction of the fleet (chosen from the seed), `name@device` to one device.
 */
import { SensorpipeError } from '../core/errors.ts';
import { PROTOCOL_VERSION, type Reading, type StatusMessage, type TelemetryMessage } from '../core/schemas.ts';
import { signTelemetry, type SignKey } from '../core/signature.ts';
import { topics } from '../core/topics.ts';
import { prng } from './signals.ts';

export const FAULTS = [
  'stuck', // a metric stops changing: stored (it is real data)
  'spike', // one value jumps tenfold now and then: stored
  'dropout', // readings skipped (seq still counts up): stored, gaps visible as missing readings
  'flap', // the network drops now and then: readings buffered and sent as a batch later, nothing lost
  'non-json', // garbage instead of JSON: PAYLOAD_INVALID
  'bad-signature', // a signature that does not verify: READING_BAD_SIGNATURE
  'replay', // an accepted message's seq sent again with other values, signed: READING_REPLAYED
  'foreign-topic', // publishes on another device's topic: refused by the broker's ACL, never stored
  'burst', // far more messages than its rate allows: the excess dropped by the broker's rate limit
  'clock-ahead', // timestamps an hour in the future: READING_TS_OUT_OF_RANGE
  'clock-behind', // timestamps 30 days old: READING_TS_OUT_OF_RANGE
] as const;
export type FaultName = (typeof FAULTS)[number];

/** Faults that make a message the pipeline must refuse (and quarantine, when it reaches ingest). */
export const EXPECTED_REASON: Partial<Record<FaultName, string>> = {
  'non-json': 'PAYLOAD_INVALID',
  'bad-signature': 'READING_BAD_SIGNATURE',
  replay: 'READING_REPLAYED',
  'clock-ahead': 'READING_TS_OUT_OF_RANGE',
  'clock-behind': 'READING_TS_OUT_OF_RANGE',
};

export interface FaultSpec {
  fractions: Partial<Record<FaultName, number>>;
  devices: Partial<Record<FaultName, string[]>>;
}

export function parseFaults(text: string | undefined): FaultSpec {
  const spec: FaultSpec = { fractions: {}, devices: {} };
  if (text === undefined || text.trim() === '') return spec;
  for (const part of text.split(',')) {
    const match = /^([a-z-]+)(?::([0-9.]+)|@([a-z0-9][a-z0-9-]*))$/.exec(part.trim());
    const name = match?.[1] as FaultName | undefined;
    if (!match || name === undefined || !(FAULTS as readonly string[]).includes(name)) {
      throw new SensorpipeError('CONFIG_INVALID', `--faults: "${part}" is not name:fraction or name@device with a fault from ${FAULTS.join(', ')}`);
    }
    if (match[2] !== undefined) {
      const fraction = Number(match[2]);
      if (!(fraction >= 0 && fraction <= 1)) throw new SensorpipeError('CONFIG_INVALID', `--faults: fraction of ${name} must be between 0 and 1`);
      spec.fractions[name] = fraction;
    } else {
      (spec.devices[name] ??= []).push(match[3]!);
    }
  }
  return spec;
}

/** Which faults each device has: reproducible from the seed. */
export function assignFaults(deviceIds: string[], spec: FaultSpec, seed: number): Map<string, FaultName[]> {
  const random = prng(seed ^ 0x5eed);
  const assigned = new Map<string, FaultName[]>(deviceIds.map((id) => [id, []]));
  for (const [name, fraction] of Object.entries(spec.fractions) as [FaultName, number][]) {
    const count = Math.round(deviceIds.length * fraction);
    const shuffled = [...deviceIds].sort(() => random() - 0.5);
    for (const id of shuffled.slice(0, count)) assigned.get(id)!.push(name);
  }
  for (const [name, ids] of Object.entries(spec.devices) as [FaultName, string[]][]) {
    for (const id of ids) assigned.get(id)?.push(name);
  }
  return assigned;
}

/** A faulty device misbehaves on every 10th reading (spikes every 20th, flaps and bursts every 30th). */
const FAULT_EVERY = 10;

/** What the faults may do with the device they live in: its connection, seen from outside the healthy device. */
export interface FaultyDeviceLink {
  readonly id: string;
  /** Another device's id, for foreign-topic. */
  readonly neighbour: string;
  readonly key: SignKey;
  isConnected(): boolean;
  /** Good readings the broker has acknowledged so far. */
  acknowledgedReadings(): number;
  /** QoS 1, counted in flight like every message of the device; `onAcknowledged` on its PUBACK. */
  publish: Publish;
  /** QoS 0: never stored for a resend, never acknowledged. */
  publishAtMostOnce(topic: string, payload: string): void;
  /** The network drops: the device reconnects as after any dropped connection. */
  dropConnection(): void;
  onlineStatus(): StatusMessage;
}

export type Publish = (topic: string, payload: string, options: { retain?: boolean }, onAcknowledged?: () => void) => void;

/** Bad messages sent on purpose, by fault, with the seqs they carried (if any, and if recorded). */
export type FaultMessages = Partial<Record<FaultName, { count: number; acked: number; seqs: number[] }>>;

/**
 * A device's faults, as a layer around the healthy device, which takes a reading and sends it (or
 * buffers it while offline) without knowing of any fault. `wrapSend` puts the faults between the two:
 * each reading passes through them in the order below, and may be changed (stuck, spike), withheld
 * (dropout), or replaced by a bad message (bad-signature, clock-ahead, clock-behind: its seq stays a
 * gap), and messages may go out beside it (non-json, replay, foreign-topic, burst) or the network drop
 * just before it (flap). `wrapPublish` lets replay see the first telemetry message the broker
 * acknowledged. A device without faults gets its own functions back, unwrapped.
 */
export class DeviceFaults {
  /** Readings taken so far: the faults' schedule. */
  private tick = 0;
  private stuckValue: number | undefined;
  /** The replay fault's message, made once from the first telemetry message the broker acknowledged. */
  private replayPayload: string | undefined;
  /** Readings never sent on purpose (dropout). */
  private skipped = 0;
  private readonly messages: FaultMessages = {};

  constructor(
    private readonly faults: readonly FaultName[],
    private readonly link: FaultyDeviceLink,
    private readonly recordSeqs = true,
  ) {}

  report(): { skipped: number; faultMessages: FaultMessages } {
    return { skipped: this.skipped, faultMessages: this.messages };
  }

  wrapSend(send: (reading: Reading) => void): (reading: Reading) => void {
    if (this.faults.length === 0) return send;
    return (reading) => {
      this.tick++;
      const passed = this.misbehave(reading);
      if (passed) send(passed);
    };
  }

  wrapPublish(publish: Publish): Publish {
    if (!this.has('replay')) return publish;
    const telemetry = topics.telemetry(this.link.id);
    return (topic, payload, options, onAcknowledged) => {
      if (topic !== telemetry || this.replayPayload !== undefined) return publish(topic, payload, options, onAcknowledged);
      publish(topic, payload, options, () => {
        this.replayPayload ??= this.replayOf(payload);
        onAcknowledged?.();
      });
    };
  }

  /** The reading as the faults leave it, or undefined when it is not to be sent. */
  private misbehave(reading: Reading): Reading | undefined {
    const { seq, ts } = reading;
    const values = { ...reading.values };
    const due = this.tick % FAULT_EVERY === 0;
    if (this.has('stuck')) {
      const first = Object.keys(values)[0]!;
      this.stuckValue ??= values[first];
      values[first] = this.stuckValue!;
    }
    if (this.has('spike') && this.tick % (FAULT_EVERY * 2) === 0) {
      const first = Object.keys(values)[0]!;
      values[first] = Number((values[first]! * 10).toFixed(3));
      this.count('spike', seq);
    }
    if (this.has('dropout') && due) {
      this.skipped++;
      this.count('dropout', seq);
      return undefined;
    }
    if (this.has('flap') && this.tick % (FAULT_EVERY * 3) === 0 && this.link.isConnected()) {
      this.count('flap');
      this.link.dropConnection(); // the network drops: readings taken while it is down wait in the device's buffer
    }
    if (due && this.link.isConnected()) {
      const bad = this.badInstead({ seq, ts, values });
      if (bad) {
        this.publishFault(bad.fault, topics.telemetry(this.link.id), JSON.stringify(bad.message), seq);
        return undefined; // its seq stays a gap
      }
      this.sendBeside();
    }
    return { seq, ts, values };
  }

  /** The bad message sent instead of the reading, from the first fault the device has that makes one. */
  private badInstead(reading: Reading): { fault: FaultName; message: TelemetryMessage } | undefined {
    const signed = (r: Reading) => signTelemetry({ v: PROTOCOL_VERSION, device: this.link.id, readings: [r] }, this.link.key);
    if (this.has('bad-signature')) return { fault: 'bad-signature', message: { ...signed(reading), sig: Buffer.alloc(32, 7).toString('base64') } };
    if (this.has('clock-ahead')) return { fault: 'clock-ahead', message: signed({ ...reading, ts: reading.ts + 3_600_000 }) };
    if (this.has('clock-behind')) return { fault: 'clock-behind', message: signed({ ...reading, ts: reading.ts - 30 * 86_400_000 }) };
    return undefined;
  }

  /** Faults that add a message beside the reading. */
  private sendBeside(): void {
    const { id, neighbour, key } = this.link;
    if (this.has('non-json')) this.publishFault('non-json', topics.telemetry(id), 'temperature=21.5 (not JSON)');
    if (this.has('replay') && this.replayPayload && this.link.acknowledgedReadings() > 100) this.publishFault('replay', topics.telemetry(id), this.replayPayload);
    if (this.has('foreign-topic')) {
      const body = { v: PROTOCOL_VERSION, device: id, readings: [{ seq: 0, ts: Date.now(), values: { t: 1 } }] };
      // QoS 0: a broker may close the connection for it [MQTT-3.3.5-2] (ours does). A QoS 1 copy would stay
      // in the outgoing store and be resent first on every reconnect, so the device would be refused again
      // at once, for ever, and never deliver another good reading. So it is never acknowledged either.
      this.count('foreign-topic');
      this.link.publishAtMostOnce(topics.telemetry(neighbour), JSON.stringify(signTelemetry(body, key)));
    }
    if (this.has('burst') && this.tick % (FAULT_EVERY * 3) === 0) {
      for (let i = 0; i < 200; i++) this.publishFault('burst', topics.status(id), JSON.stringify(this.link.onlineStatus()));
    }
  }

  /**
   * A genuine replay of an accepted message: its seqs and times with other values, validly signed. A
   * byte-identical copy would be a redelivery, which ingest counts as a duplicate, not a replay.
   */
  private replayOf(payload: string): string {
    const accepted = JSON.parse(payload) as TelemetryMessage;
    const readings = accepted.readings.map((r) => ({ ...r, values: Object.fromEntries(Object.entries(r.values).map(([metric, value]) => [metric, value + 1])) }));
    return JSON.stringify(signTelemetry({ v: PROTOCOL_VERSION, device: this.link.id, readings }, this.link.key));
  }

  private publishFault(fault: FaultName, topic: string, payload: string, seq?: number): void {
    const entry = this.count(fault, seq);
    this.link.publish(topic, payload, {}, () => entry.acked++);
  }

  private count(fault: FaultName, seq?: number): { count: number; acked: number; seqs: number[] } {
    const entry = (this.messages[fault] ??= { count: 0, acked: 0, seqs: [] });
    entry.count++;
    if (seq !== undefined && this.recordSeqs) entry.seqs.push(seq);
    return entry;
  }

  private has(fault: FaultName): boolean {
    return this.faults.includes(fault);
  }
}
