/**
 * The load generator of bench/ingest.ts (and so of bench/capacity.ts): signed telemetry from N devices
 * at a set rate, QoS 1, over raw TCP sockets.
 *
 * Every reading is built, signed and encoded as its MQTT PUBLISH packet *before* the timed phase
 * (`planLoad`): real devices sign on their own CPUs, so the generator must not take the server's CPU
 * for it. Signing alone is ~11 µs a reading here, and an MQTT.js publish several µs more; at 30,000
 * readings/s that was most of a core on a 2-core machine that also runs broker, ingest and the store.
 * During the run (`RawDevices.run`) a timer slices each device's ready-made bytes and writes them, and
 * counts PUBACKs: a few µs per *write*, not per reading.
 *
 * The schedule is open-loop: reading i is due at start + i / rate, whatever happened before, so a
 * server that falls behind is measured as late, not given a rest (no coordinated omission). Each device
 * keeps at most `window` readings unacknowledged, as firmware with a bounded in-flight queue does: when
 * the broker holds back PUBACKs (backpressure), the backlog stays on the devices (`heldOnDevices`).
 *
 * Reading i goes to device i mod N as its seq ⌊i / N⌋ + 1, with ts = tsBase + ⌊i · 1000 / rate⌋ (made
 * strictly increasing per device), so (device, seq) alone tells when a reading was due (`dueMsOf`).
 *
 * With `perMessage` K > 1 (a device catching up, or batching), message i carries K readings of device
 * i mod N (seqs kK+1 … kK+K for its k-th message, timestamps 1 ms apart), messages are due at rate / K
 * per second, and every count in RunStats is still in readings.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { remainingLength } from '../harness/mqtt-bytes.ts';
import { topics } from '../core/topics.ts';
import { signedPayload, type TestDevice } from '../harness/publisher.ts';

/** Metrics per reading: what bench/ingest.ts divides the store's point count by. */
export const METRICS_PER_READING = 3;

export function readingValues(i: number): Record<string, number> {
  return { temperature: 20 + (i % 100) / 10, humidity: 40, pressure: 1013.25 };
}


/** An MQTT 3.1.1 CONNECT with username and password, clean session (what a simulated device sends). */
export function connectPacket(clientId: string, username: string, password: string, keepaliveSeconds = 600): Buffer {
  const field = (s: string) => {
    const b = Buffer.from(s);
    const l = Buffer.alloc(2);
    l.writeUInt16BE(b.length);
    return Buffer.concat([l, b]);
  };
  const keepalive = Buffer.alloc(2);
  keepalive.writeUInt16BE(keepaliveSeconds);
  const body = Buffer.concat([field('MQTT'), Buffer.from([4, 0xc2]), keepalive, field(clientId), field(username), field(password)]);
  return Buffer.concat([Buffer.from([0x10, ...remainingLength(body.length)]), body]);
}

const PINGREQ = Buffer.from([0xc0, 0x00]);
const DISCONNECT = Buffer.from([0xe0, 0x00]);
/** QoS 1 packet ids run 1 … 65535; a window below that never has one id in flight twice. */
const MAX_PACKET_ID = 65_535;

export interface DeviceLoad {
  /** Every PUBLISH packet of this device, back to back. */
  packets: Buffer;
  /** Byte offset of packet k (and, at [count], the end). */
  offsets: Uint32Array;
  /** ts of the last reading of message k (seq (k + 1) · perMessage). */
  ts: Float64Array;
  /** Messages. */
  count: number;
}

export interface LoadPlan {
  /** Readings per second. */
  rate: number;
  seconds: number;
  /** Readings offered: messages × perMessage. */
  total: number;
  perMessage: number;
  /** Messages offered, and per second. */
  messages: number;
  messageRate: number;
  deviceCount: number;
  tsBase: number;
  devices: DeviceLoad[];
  buildSeconds: number;
}

/** The index of a reading in the schedule, from its device's position in the fleet and its seq. */
export function readingIndex(deviceIndex: number, seq: number, deviceCount: number): number {
  return (seq - 1) * deviceCount + deviceIndex;
}

/** Readings of device `j` among the first `due` of the schedule. */
export function dueForDevice(due: number, j: number, deviceCount: number): number {
  return due > j ? Math.ceil((due - j) / deviceCount) : 0;
}

/** When reading `seq` of device `j` was due, in ms from the start of the run. */
export function dueMsOf(plan: Pick<LoadPlan, 'perMessage' | 'messageRate' | 'deviceCount'>, j: number, seq: number): number {
  return (readingIndex(j, Math.floor((seq - 1) / plan.perMessage) + 1, plan.deviceCount) * 1000) / plan.messageRate;
}

/** Builds, signs and encodes every reading of a run (before it starts), `perMessage` readings to a message. */
export function planLoad(devices: readonly TestDevice[], rate: number, seconds: number, options: { perMessage?: number; tsBase?: number } = {}): LoadPlan {
  const started = performance.now();
  const tsBase = options.tsBase ?? Date.now();
  const perMessage = options.perMessage ?? 1;
  const messageRate = rate / perMessage;
  const n = devices.length;
  const messages = Math.round((rate * seconds) / perMessage);
  const loads: DeviceLoad[] = [];
  for (let j = 0; j < n; j++) {
    const device = devices[j]!;
    const count = dueForDevice(messages, j, n);
    const topic = Buffer.from(topics.telemetry(device.id));
    const offsets = new Uint32Array(count + 1);
    const times = new Float64Array(count);
    let packets = Buffer.allocUnsafeSlow(Math.max(1024, count * (topic.length + 256 * perMessage)));
    let at = 0;
    let lastTs = 0;
    for (let k = 0; k < count; k++) {
      const i = k * n + j;
      const readings = [];
      for (let r = 0; r < perMessage; r++) {
        const ts = Math.max(tsBase + Math.floor((i * 1000) / messageRate), lastTs + 1);
        lastTs = ts;
        readings.push({ seq: k * perMessage + r + 1, ts, values: readingValues(i * perMessage + r) });
      }
      times[k] = lastTs;
      const payload = signedPayload(device, readings);
      const payloadBytes = Buffer.byteLength(payload);
      const rest = 2 + topic.length + 2 + payloadBytes;
      const header = remainingLength(rest);
      const size = 1 + header.length + rest;
      if (at + size > packets.length) {
        const grown = Buffer.allocUnsafeSlow(Math.max(packets.length * 2, at + size));
        packets.copy(grown, 0, 0, at);
        packets = grown;
      }
      offsets[k] = at;
      packets[at++] = 0x32; // PUBLISH, QoS 1
      for (const byte of header) packets[at++] = byte;
      at = packets.writeUInt16BE(topic.length, at);
      at += topic.copy(packets, at);
      at = packets.writeUInt16BE((k % MAX_PACKET_ID) + 1, at);
      at += packets.write(payload, at, 'utf8');
    }
    offsets[count] = at;
    loads.push({ packets: packets.subarray(0, at), offsets, ts: times, count });
  }
  return { rate, seconds, total: messages * perMessage, perMessage, messages, messageRate, deviceCount: n, tsBase, devices: loads, buildSeconds: (performance.now() - started) / 1000 };
}

export interface RunOptions {
  /** How often due readings are written (ms). A reading waits up to this long past its due time. */
  tickMs: number;
  /** Most messages a device leaves unacknowledged. */
  window: number;
  /** After the schedule ends: how long to wait for the PUBACKs of what was sent (ms). */
  drainMs: number;
  /** Called with the wall-clock time reading 0 was due, as the run starts. */
  onStart?(startedAt: number): void;
}

export interface RunStats {
  offered: number;
  sent: number;
  acknowledged: number;
  /** Readings never sent because their device's window stayed full (the broker held back PUBACKs). */
  heldOnDevices: number;
  /** Sent, and still without a PUBACK when the drain ended. */
  unacknowledgedAtEnd: number;
  /** PUBACKs whose packet id was not the next one expected (the per-device count is then not exact). */
  outOfOrderAcks: number;
  /** Connections that closed during the run. */
  disconnects: number;
  /** Per device: how many of its messages were acknowledged (its first ones, when they came in order). */
  ackedPerDevice: number[];
  /** Per device: how many of its first messages were sent. */
  sentPerDevice: number[];
  /** Wall-clock time reading 0 was due. */
  startedAt: number;
  /** Seconds from the start until the schedule's last reading was written. */
  sendSeconds: number;
  /** Largest delay of a write behind its schedule (ms): up to a tick when all is well; late ticks and full windows add to it. */
  maxLagMs: number;
}

interface DeviceConnection {
  socket: Socket;
  next: number;
  acked: number;
  closed: boolean;
}

/** N devices on raw MQTT connections, logged in with their own credentials. */
export class RawDevices {
  private constructor(
    private readonly connections: DeviceConnection[],
    private readonly keepaliveMs: number,
  ) {}

  outOfOrderAcks = 0;
  disconnects = 0;

  static async connect(port: number, devices: readonly TestDevice[], keepaliveSeconds = 60): Promise<RawDevices> {
    const connections: DeviceConnection[] = [];
    const result = new RawDevices(connections, keepaliveSeconds * 1000);
    await Promise.all(
      devices.map(
        (device, j) =>
          new Promise<void>((resolve, reject) => {
            const socket = netConnect({ port, host: '127.0.0.1' });
            socket.setNoDelay(true);
            const connection: DeviceConnection = { socket, next: 0, acked: 0, closed: false };
            connections[j] = connection;
            let connected = false;
            let pending: Buffer | undefined;
            socket.once('connect', () => socket.write(connectPacket(device.id, device.id, device.credentials.mqttPassword, keepaliveSeconds)));
            socket.on('error', (err) => {
              if (!connected) reject(new Error(`${device.id}: ${err.message}`));
            });
            socket.on('close', () => {
              if (!connection.closed) result.disconnects++;
              connection.closed = true;
              if (!connected) reject(new Error(`${device.id}: closed before CONNACK`));
            });
            socket.on('data', (chunk: Buffer) => {
              const buffer = pending === undefined ? chunk : Buffer.concat([pending, chunk]);
              let at = 0;
              while (at + 2 <= buffer.length) {
                let length = 0;
                let multiplier = 1;
                let p = at + 1;
                let complete = false;
                while (p < buffer.length) {
                  const byte = buffer[p++]!;
                  length += (byte & 0x7f) * multiplier;
                  multiplier *= 128;
                  if ((byte & 0x80) === 0) {
                    complete = true;
                    break;
                  }
                }
                if (!complete || p + length > buffer.length) break;
                const type = buffer[at]! >> 4;
                if (type === 4 && length >= 2) {
                  // PUBACK [MQTT-3.4]: QoS 1 acknowledgements come in publish order on one connection.
                  if (buffer.readUInt16BE(p) !== (connection.acked % MAX_PACKET_ID) + 1) result.outOfOrderAcks++;
                  connection.acked++;
                } else if (type === 2 && length >= 2) {
                  if (buffer[p + 1] !== 0) reject(new Error(`${device.id}: CONNACK return code ${buffer[p + 1]}`));
                  else {
                    connected = true;
                    resolve();
                  }
                }
                at = p + length;
              }
              pending = at < buffer.length ? buffer.subarray(at) : undefined;
            });
          }),
      ),
    );
    return result;
  }

  /** Sends the plan on its schedule; resolves once the schedule is over and the PUBACKs are in (or drainMs passed). */
  async run(plan: LoadPlan, options: RunOptions): Promise<RunStats> {
    const n = this.connections.length;
    if (plan.devices.length !== n) throw new Error('the plan is for another fleet');
    const window = Math.min(options.window, MAX_PACKET_ID);
    const started = performance.now();
    const startedAt = Date.now();
    options.onStart?.(startedAt);
    let lastPing = started;
    let maxLagMs = 0;
    let sendSeconds = plan.seconds;
    const sentCount = () => this.connections.reduce((t, c) => t + c.next, 0);
    await new Promise<void>((resolve) => {
      const tick = () => {
        const now = performance.now();
        const elapsed = now - started;
        const due = Math.min(plan.messages, Math.floor((elapsed / 1000) * plan.messageRate));
        // How late the oldest reading still to be written is (a late tick, or a full window).
        let oldestDue = Infinity;
        for (let j = 0; j < n; j++) {
          const c = this.connections[j]!;
          if (!c.closed && c.next < dueForDevice(due, j, n)) oldestDue = Math.min(oldestDue, (readingIndex(j, c.next + 1, n) * 1000) / plan.messageRate);
        }
        if (oldestDue !== Infinity) maxLagMs = Math.max(maxLagMs, elapsed - oldestDue);
        for (let j = 0; j < n; j++) {
          const c = this.connections[j]!;
          if (c.closed) continue;
          const load = plan.devices[j]!;
          const upTo = Math.min(dueForDevice(due, j, n), c.acked + window);
          if (upTo > c.next) {
            c.socket.write(load.packets.subarray(load.offsets[c.next]!, load.offsets[upTo]!));
            c.next = upTo;
          }
        }
        if (now - lastPing > this.keepaliveMs / 2) {
          lastPing = now;
          for (const c of this.connections) if (!c.closed) c.socket.write(PINGREQ);
        }
        if (elapsed >= plan.seconds * 1000) {
          clearInterval(timer);
          sendSeconds = elapsed / 1000;
          resolve();
        }
      };
      const timer = setInterval(tick, options.tickMs);
    });
    // The schedule is over: what was not sent by now stays on the devices. Wait for the PUBACKs.
    const sent = sentCount();
    const drainDeadline = performance.now() + options.drainMs;
    await new Promise<void>((resolve) => {
      const check = () => {
        const acked = this.connections.reduce((t, c) => t + Math.min(c.acked, c.next), 0);
        if (acked >= sent || performance.now() > drainDeadline || this.connections.every((c) => c.closed)) {
          clearInterval(poll);
          resolve();
        }
      };
      const poll = setInterval(check, 50);
      check();
    });
    const acknowledged = this.connections.reduce((t, c) => t + c.acked, 0);
    const k = plan.perMessage;
    return {
      offered: plan.total,
      sent: sent * k,
      acknowledged: acknowledged * k,
      heldOnDevices: plan.total - sent * k,
      unacknowledgedAtEnd: (sent - acknowledged) * k,
      outOfOrderAcks: this.outOfOrderAcks,
      disconnects: this.disconnects,
      ackedPerDevice: this.connections.map((c) => c.acked),
      sentPerDevice: this.connections.map((c) => c.next),
      startedAt,
      sendSeconds,
      maxLagMs: Math.round(maxLagMs),
    };
  }

  /** MQTT DISCONNECT on every connection (no Will), then closes them. */
  async close(): Promise<void> {
    await Promise.all(
      this.connections.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.closed) return resolve();
            c.closed = true;
            c.socket.once('close', () => resolve());
            c.socket.end(DISCONNECT);
            setTimeout(() => c.socket.destroy(), 2000).unref();
          }),
      ),
    );
  }
}
