/**
 * The simulated fleet against real brokers (a bare aedes, our broker, Debian's Mosquitto) with real
 * MQTT.js clients: readings that are the ones the seed gives, signatures that verify with core/, each
 * fault producing exactly the bad message it names, and offline buffering across a 10 s broker outage.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeTelemetry } from '../../core/decode.ts';
import { loadRegistry, Registry, saveRegistry, verifyKeyOf, type DeviceCredentials } from '../../core/registry.ts';
import type { Reading, StatusMessage } from '../../core/schemas.ts';
import { verifyTelemetrySignature } from '../../core/signature.ts';
import { parseTopic, topics } from '../../core/topics.ts';
import { assignFaults } from '../../firmware-sim/faults.ts';
import { deviceSeed, FAULTS, parseFaults, provisionFleet, startFleet, type FaultName, type Fleet, type FleetOptions } from '../../firmware-sim/index.ts';
import { SeqBook } from '../../firmware-sim/seq-book.ts';
import { SignalGenerator } from '../../firmware-sim/signals.ts';
import { startBareAedes, type BareBroker } from '../../harness/aedes.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { testFleetOptions } from '../../harness/fleet.ts';
import { startMosquitto } from '../../harness/mosquitto.ts';
import { waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

const SEED = 42;
let dir: TempDir;
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  await dir.remove();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

interface Seen {
  topic: string;
  payload: Buffer;
  /** When it reached the subscriber or the broker (ms). */
  at: number;
}

interface Watcher {
  seen: Seen[];
  /** Waits until nothing new has arrived for a moment, then disconnects. */
  close(): Promise<void>;
}

async function watch(url: string, auth: { username: string; password: string } | undefined = undefined): Promise<Watcher> {
  const seen: Seen[] = [];
  const client = await mqtt.connectAsync(url, { clientId: `watcher-${process.pid}-${Math.random().toString(36).slice(2)}`, ...auth });
  client.on('message', (topic, payload) => seen.push({ topic, payload, at: Date.now() }));
  await client.subscribeAsync('sensors/#', { qos: 1 });
  return { seen, close: async () => { await quiet(seen); await client.endAsync(); } };
}

/** Waits until a list stops growing (messages in flight to a subscriber have arrived). */
async function quiet(list: unknown[], forMs = 300): Promise<void> {
  let last = -1;
  while (list.length !== last) {
    last = list.length;
    await sleep(forMs);
  }
}

/** Every message a broker routes, recorded inside our broker (no subscriber can miss one by connecting late). */
function recordAtBroker(broker: TestBroker, into: Seen[]): void {
  broker.broker.aedes.on('publish', (packet, client) => {
    if (client) into.push({ topic: packet.topic, payload: Buffer.from(packet.payload), at: Date.now() });
  });
}

/** Built on the shared test options, with this file's seed; no registry settling (see below). */
function fleetOptions(url: string, devices: number, faults = '', intervalMs = 50): FleetOptions & { registryPath: string } {
  // No broker here follows the registry, or the test provisions before it starts the broker.
  return { ...testFleetOptions(dir.path, { devices, faults, intervalMs, seed: SEED, url }), registrySettleMs: 0 };
}

const fleetOn = (url: string, devices: number, faults = '', intervalMs = 50): Promise<Fleet> => startFleet(fleetOptions(url, devices, faults, intervalMs));

interface Delivered extends Reading {
  /** The message it came in, and how many readings that message carried. */
  payload: Buffer;
  batch: number;
  at: number;
}

/** Readings in messages on a device's own telemetry topic, signed by that device and verifying with the registry key. */
async function verifiedReadings(seen: Seen[], id: string, registryPath = join(dir.path, 'registry.json')): Promise<Delivered[]> {
  const record = (await loadRegistry(registryPath)).get(id)!;
  return seen
    .filter((m) => m.topic === topics.telemetry(id))
    .flatMap((m) => {
      const decoded = decodeTelemetry(m.payload);
      if (!decoded.ok || decoded.value.device !== id || !verifyTelemetrySignature(decoded.value, verifyKeyOf(record))) return [];
      return decoded.value.readings.map((r) => ({ ...r, payload: m.payload, batch: decoded.value.readings.length, at: m.at }));
    })
    .sort((a, b) => a.seq - b.seq);
}

describe('seq book', () => {
  it('never reuses a seq across a restart, even under concurrent takes', async () => {
    const path = join(dir.path, 'seqs.json');
    let book = await SeqBook.open(path);
    const first = await Promise.all(Array.from({ length: 20 }, () => book.take('d')));
    expect(first).toEqual(range(1, 20));
    await book.close();
    book = await SeqBook.open(path);
    expect(await book.take('d')).toBeGreaterThan(20);
    await book.close();
  });
});

describe('determinism', () => {
  it('signals are the same for the same seed and differ for another', () => {
    const ts = Array.from({ length: 50 }, (_, i) => Date.UTC(2026, 0, 1) + i * 1000);
    const run = (seed: number) => {
      const g = new SignalGenerator('env', seed);
      return ts.map((t) => g.next(t));
    };
    expect(run(7)).toEqual(run(7));
    expect(run(7)).not.toEqual(run(8));
    for (const values of run(7)) expect(Object.keys(values).sort()).toEqual(['co2', 'humidity', 'pressure', 'temperature']);
  });

  it('faults go to the same devices for the same seed, in the fractions asked for', () => {
    const ids = range(0, 199).map((i) => `sim-${String(i).padStart(4, '0')}`);
    const spec = parseFaults('bad-signature:0.01,flap:0.05,replay@sim-0007');
    const withFault = (assigned: Map<string, FaultName[]>, fault: FaultName) => ids.filter((id) => assigned.get(id)!.includes(fault));
    const a = assignFaults(ids, spec, 3);
    expect(assignFaults(ids, spec, 3)).toEqual(a);
    expect(withFault(a, 'bad-signature')).toHaveLength(2);
    expect(withFault(a, 'flap')).toHaveLength(10);
    expect(withFault(a, 'replay')).toEqual(['sim-0007']);
    expect(withFault(assignFaults(ids, spec, 4), 'flap')).not.toEqual(withFault(a, 'flap'));
  });
});

describe('fleet on a bare aedes', () => {
  let broker: BareBroker;
  beforeEach(async () => {
    broker = await startBareAedes();
  });
  afterEach(async () => {
    await broker.close();
  });

  it('sends exactly the readings its seed gives: every value recomputes from the seed and the timestamp', async () => {
    const watcher = await watch(broker.url);
    const fleet = await fleetOn(broker.url, 3);
    await waitFor(() => fleet.summary().perDevice.every((d) => d.acked >= 20), 'readings');
    const summary = await fleet.stop();
    await watcher.close();
    for (const [index, device] of summary.perDevice.entries()) {
      const readings = await verifiedReadings(watcher.seen, device.id);
      expect(readings.length, device.id).toBeGreaterThanOrEqual(20);
      expect(readings.map((r) => r.seq), `${device.id}: every seq from 1, once`).toEqual(range(1, readings.length));
      const generator = new SignalGenerator(device.profile, deviceSeed(SEED, index));
      for (const r of readings) expect(r.values, `${device.id} seq ${r.seq}`).toEqual(generator.next(r.ts));
      // Another seed would have given other values.
      const other = new SignalGenerator(device.profile, deviceSeed(SEED + 1, index));
      expect(readings.map((r) => other.next(r.ts))).not.toEqual(readings.map((r) => r.values));
    }
  });

  it('signs every reading so that core/ verifies it with the registry key, HMAC and Ed25519 alike', async () => {
    const registry = new Registry();
    const credentials: DeviceCredentials[] = [registry.add('hmac-dev'), registry.add('ed-dev', { alg: 'ed25519' })];
    const registryPath = join(dir.path, 'existing-registry.json');
    await saveRegistry(registryPath, registry);
    const credentialsFile = join(dir.path, 'credentials.jsonl');
    await writeFile(credentialsFile, credentials.map((c) => JSON.stringify(c)).join('\n'));
    const watcher = await watch(broker.url);
    const fleet = await startFleet({ ...fleetOptions(broker.url, 2), registryPath: undefined, credentialsFile });
    await waitFor(() => fleet.summary().perDevice.every((d) => d.acked >= 10), 'readings');
    const summary = await fleet.stop();
    await watcher.close();
    for (const id of ['hmac-dev', 'ed-dev']) {
      const onTopic = watcher.seen.filter((m) => m.topic === topics.telemetry(id));
      const verified = await verifiedReadings(watcher.seen, id, registryPath);
      expect(onTopic.length, id).toBeGreaterThanOrEqual(10);
      expect(verified.length, `${id}: every message verifies`).toBe(onTopic.length);
      expect(summary.perDevice.find((d) => d.id === id)!.acked).toBeLessThanOrEqual(verified.length);
    }
    expect(summary.sent).toBe(summary.acked);
  });

  it('produces exactly the bad message each fault names, and only that', async () => {
    const watcher = await watch(broker.url);
    const FAULTY: Record<string, FaultName> = {
      'sim-0000': 'bad-signature',
      'sim-0001': 'non-json',
      'sim-0002': 'clock-ahead',
      'sim-0003': 'clock-behind',
      'sim-0004': 'foreign-topic',
      'sim-0005': 'dropout',
      'sim-0006': 'replay',
      'sim-0007': 'stuck',
      'sim-0008': 'spike',
      'sim-0009': 'burst',
      'sim-0010': 'flap',
    };
    expect(Object.values(FAULTY).sort(), 'every fault is tested here').toEqual([...FAULTS].sort());
    const fleet = await fleetOn(broker.url, 12, Object.entries(FAULTY).map(([id, fault]) => `${fault}@${id}`).join(','), 10);
    const faultsOf = (id: string) => fleet.devices.find((d) => d.id === id)!.report().faultMessages;
    await waitFor(() => (faultsOf('sim-0006').replay?.count ?? 0) >= 1 && (faultsOf('sim-0010').flap?.count ?? 0) >= 2, 'a replay and two flaps', 60_000);
    const summary = await fleet.stop();
    await watcher.close();
    const registry = await loadRegistry(join(dir.path, 'registry.json'));
    const device = (id: string) => summary.perDevice.find((d) => d.id === id)!;
    const fault = (id: string) => device(id).faultMessages[FAULTY[id]!]!;
    const on = (id: string) => watcher.seen.filter((m) => m.topic === topics.telemetry(id));
    const body = (m: Seen) => JSON.parse(m.payload.toString()) as { device: string; readings: Reading[] };
    const verifies = (m: Seen) => {
      const d = decodeTelemetry(m.payload);
      return d.ok && verifyTelemetrySignature(d.value, verifyKeyOf(registry.get(d.value.device)!));
    };
    const fresh = (m: Seen) => body(m).readings.every((r) => Math.abs(r.ts - m.at) < 60_000);
    // Each fault happened (stuck is not counted: it is every reading of the device, checked below).
    for (const id of Object.keys(FAULTY)) if (FAULTY[id] !== 'stuck') expect(device(id).faultMessages[FAULTY[id]!]?.count, `${id} ${FAULTY[id]} happened`).toBeGreaterThan(0);

    // bad-signature: the messages that fail verification are exactly its counted ones, at the seqs it
    // reported; otherwise well-formed and on time. Everything else it sent verifies.
    const forged = on('sim-0000').filter((m) => !verifies(m));
    expect(forged.length).toBe(fault('sim-0000').count);
    expect(forged.every((m) => decodeTelemetry(m.payload).ok && fresh(m))).toBe(true);
    expect(forged.flatMap((m) => body(m).readings.map((r) => r.seq))).toEqual(fault('sim-0000').seqs);
    // non-json: that many payloads that are not JSON at all; the rest verify.
    const garbage = on('sim-0001').filter((m) => !decodeTelemetry(m.payload).ok);
    expect(garbage.length).toBe(fault('sim-0001').count);
    expect(garbage.every((m) => { try { JSON.parse(m.payload.toString()); return false; } catch { return true; } })).toBe(true);
    expect(on('sim-0001').length - garbage.length).toBe(on('sim-0001').filter(verifies).length);
    // clock faults: signed correctly, at the reported seqs, an hour ahead / 30 days back; the rest on time.
    const skewed = (id: string, test: (ts: number) => boolean) => on(id).filter((m) => verifies(m) && body(m).readings.some((r) => test(r.ts)));
    const ahead = skewed('sim-0002', (ts) => ts > Date.now() + 30 * 60_000);
    expect(ahead.length).toBe(fault('sim-0002').count);
    expect(ahead.flatMap((m) => body(m).readings.map((r) => r.seq))).toEqual(fault('sim-0002').seqs);
    const behind = skewed('sim-0003', (ts) => ts < Date.now() - 29 * 86_400_000);
    expect(behind.length).toBe(fault('sim-0003').count);
    expect(behind.flatMap((m) => body(m).readings.map((r) => r.seq))).toEqual(fault('sim-0003').seqs);
    for (const id of ['sim-0002', 'sim-0003']) expect(on(id).filter((m) => verifies(m) && fresh(m)).length, id).toBe(on(id).length - fault(id).count);
    // foreign-topic: its own signed message on its neighbour's (sim-0005's) topic, that many times.
    const foreign = on('sim-0005').filter((m) => body(m).device === 'sim-0004');
    expect(foreign.length).toBe(fault('sim-0004').count);
    expect(foreign.every(verifies)).toBe(true);
    // dropout: the seqs it skipped are exactly the gaps; every other seq arrives.
    const sentSeqs = (await verifiedReadings(watcher.seen, 'sim-0005')).map((r) => r.seq);
    const dropped = fault('sim-0005').seqs;
    expect(range(1, Math.max(...sentSeqs)).filter((seq) => !sentSeqs.includes(seq))).toEqual(dropped.filter((seq) => seq < Math.max(...sentSeqs)));
    expect(device('sim-0005').skipped).toBe(dropped.length);
    // replay: its first message's seq again with other values, validly signed, that many times (one
    // message); not a byte-for-byte copy, which ingest would take as a redelivery.
    const sent = on('sim-0006');
    const seqsOf = (m: (typeof sent)[number]) => body(m).readings.map((r) => r.seq).join(',');
    const replays = sent.filter((m) => seqsOf(m) === seqsOf(sent[0]!) && !m.payload.equals(sent[0]!.payload));
    expect(replays.length).toBe(fault('sim-0006').count);
    expect(new Set(replays.map((m) => m.payload.toString())).size).toBe(1);
    expect(replays.every(verifies)).toBe(true);
    // stuck and spike: recomputed from the seed, each value is what the generator gives, except the
    // first metric: frozen at its first value (stuck), or tenfold at the reported seqs (spike).
    for (const [index, id] of [[7, 'sim-0007'], [8, 'sim-0008']] as const) {
      const readings = await verifiedReadings(watcher.seen, id);
      expect(readings.map((r) => r.seq), id).toEqual(range(1, readings.length));
      const generator = new SignalGenerator(device(id).profile, deviceSeed(SEED, index));
      const first = Object.keys(readings[0]!.values)[0]!;
      let frozen: number | undefined;
      const spiked = new Set(device(id).faultMessages.spike?.seqs ?? []);
      for (const r of readings) {
        const expected = generator.next(r.ts);
        if (FAULTY[id] === 'stuck') expected[first] = frozen ??= expected[first]!;
        else if (spiked.has(r.seq)) expected[first] = Number((expected[first]! * 10).toFixed(3));
        expect(r.values, `${id} seq ${r.seq}`).toEqual(expected);
      }
      if (FAULTY[id] === 'spike') expect([...spiked].every((seq) => readings.some((r) => r.seq === seq))).toBe(true);
      else expect(new Set(readings.map((r) => r.values[first])).size, `${id}: one value`).toBe(1);
    }
    // burst: 200 extra status messages each time (beyond the one per connection), its telemetry intact.
    const statuses = watcher.seen.filter((m) => m.topic === topics.status('sim-0009')).map((m) => JSON.parse(m.payload.toString()) as StatusMessage);
    const online = statuses.filter((s) => s.state === 'online').length;
    expect(fault('sim-0009').count % 200).toBe(0);
    expect(online - device('sim-0009').connects).toBe(fault('sim-0009').count);
    expect(on('sim-0009').every(verifies)).toBe(true);
    // flap: the connection dropped that many times and came back; nothing lost, the readings taken while
    // down arrived later as batches, with their original timestamps (in seq order, not bunched).
    // A reading in flight when the link drops is sent again after the reconnect (QoS 1 is at-least-once;
    // ingest deduplicates it): a repeat must be an exact copy, and is counted once.
    const arrivals = await verifiedReadings(watcher.seen, 'sim-0010');
    const firstBySeq = new Map<number, (typeof arrivals)[number]>();
    for (const r of arrivals) {
      const earlier = firstBySeq.get(r.seq);
      if (earlier === undefined) firstBySeq.set(r.seq, r);
      else expect({ ts: r.ts, values: r.values }, `sim-0010 seq ${r.seq} resent`).toEqual({ ts: earlier.ts, values: earlier.values });
    }
    const flapped = [...firstBySeq.values()];
    expect(device('sim-0010').connects).toBeGreaterThanOrEqual(2);
    expect(device('sim-0010').connects).toBeLessThanOrEqual(1 + fault('sim-0010').count);
    expect(flapped.map((r) => r.seq)).toEqual(range(1, flapped.length));
    expect(flapped.some((r) => r.batch > 1)).toBe(true);
    for (let i = 1; i < flapped.length; i++) expect(flapped[i]!.ts).toBeGreaterThanOrEqual(flapped[i - 1]!.ts);
    const batched = flapped.filter((r) => r.batch > 1);
    expect(Math.max(...batched.map((r) => r.at - r.ts))).toBeGreaterThan(100); // waited on the device
    // A device without faults sends nothing bad, and nothing is missing.
    expect(on('sim-0011').filter((m) => !verifies(m)).map((m) => m.payload.toString().slice(0, 300))).toEqual([]);
    const clean = (await verifiedReadings(watcher.seen, 'sim-0011')).map((r) => r.seq);
    expect(clean.length).toBeGreaterThanOrEqual(100);
    expect(clean).toEqual(range(1, clean.length));
  }, 90_000);
});

describe('fleet on our broker', () => {
  let broker: TestBroker | undefined;
  afterEach(async () => {
    await broker?.close();
    broker = undefined;
  });

  it('buffers through a 10 s outage of the broker and delivers every reading taken, once, with its original timestamp', async () => {
    const options = fleetOptions('', 3, '', 100);
    await provisionFleet(options);
    const arrived: Seen[] = [];
    broker = await startTestBroker({ registryPath: options.registryPath });
    recordAtBroker(broker, arrived);
    const port = broker.broker.ports.mqtt;
    const fleet = await startFleet({ ...options, url: broker.url });
    await waitFor(() => fleet.summary().perDevice.every((d) => d.acked >= 10), 'readings before the outage');

    const closing = broker.close();
    broker = undefined;
    await waitFor(() => fleet.summary().connected === 0, 'devices see the broker gone', 10_000, 10);
    const down = Date.now();
    await closing;
    await sleep(10_000 - (Date.now() - down));
    const up = Date.now();
    broker = await startTestBroker({ registryPath: options.registryPath, mqttPort: port });
    recordAtBroker(broker, arrived);
    await waitFor(() => fleet.summary().buffered === 0 && fleet.summary().connected === 3, 'buffers sent', 60_000);
    // One more reading each after the catch-up, then stop (a graceful stop waits for the PUBACKs).
    const caughtUp = Date.now();
    await waitFor(() => fleet.summary().perDevice.every((d) => d.ackedReadings.some(([, ts]) => ts > caughtUp)), 'readings after the outage');
    const summary = await fleet.stop();
    await quiet(arrived);

    expect(summary.droppedFromBuffer).toBe(0);
    expect(summary.acked).toBe(summary.sent);
    for (const device of summary.perDevice) {
      const readings = await verifiedReadings(arrived, device.id, options.registryPath);
      // No seq missing: every seq from 1 to the last arrives. No seq repeated: one reading per seq (a
      // second copy could only be a QoS 1 redelivery of the very same message, which ingest drops).
      const bySeq = new Map<number, Delivered[]>();
      for (const r of readings) bySeq.set(r.seq, [...(bySeq.get(r.seq) ?? []), r]);
      expect([...bySeq.keys()], `${device.id}: no seq missing`).toEqual(range(1, Math.max(...bySeq.keys())));
      for (const [seq, copies] of bySeq) expect(copies.every((c) => c.payload.equals(copies[0]!.payload)), `${device.id} seq ${seq} once`).toBe(true);
      for (const [seq] of device.ackedReadings) expect(bySeq.has(seq)).toBe(true);
      // Every reading taken during the outage arrived after it, in batches, with the time it was taken.
      const duringOutage = [...bySeq.values()].map((c) => c[0]!).filter((r) => r.ts > down && r.ts < up);
      expect(duringOutage.length, `${device.id}: readings taken while the broker was down`).toBeGreaterThanOrEqual(80);
      expect(duringOutage.every((r) => r.at >= up && r.batch > 1)).toBe(true);
      expect(Math.max(...duringOutage.map((r) => r.ts)) - Math.min(...duringOutage.map((r) => r.ts))).toBeGreaterThan(9_000);
      const ts = readings.map((r) => r.ts);
      expect(ts, `${device.id}: timestamps follow seqs`).toEqual([...ts].sort((a, b) => a - b));
    }
  }, 90_000);
});

describe.each([
  ['our broker', 'ours'],
  ['Debian Mosquitto', 'mosquitto'],
] as const)('fleet on %s', (_name, kind) => {
  it('logs in with each device\'s own credentials, leaves a retained online status, and every acknowledged reading arrives verified', async () => {
    const options = fleetOptions('', 3);
    const credentials = await provisionFleet(options);
    const watcherAuth = { username: kind === 'ours' ? 'svc:admin' : 'watcher', password: 'watcher-secret' };
    const server =
      kind === 'ours'
        ? await startTestBroker({ registryPath: options.registryPath, adminPassword: watcherAuth.password })
        : await startMosquitto({ users: { [watcherAuth.username]: watcherAuth.password, ...Object.fromEntries(credentials.map((c) => [c.deviceId, c.mqttPassword])) } });
    try {
      const watcher = await watch(server.url, watcherAuth);
      const fleet = await startFleet({ ...options, url: server.url });
      await waitFor(() => fleet.summary().perDevice.every((d) => d.acked >= 10), 'readings acknowledged');
      // A subscriber that comes later gets each device's retained status: online.
      const late = await mqtt.connectAsync(server.url, { ...watcherAuth, clientId: `late-${process.pid}` });
      const retained = new Map<string, StatusMessage>();
      late.on('message', (topic, payload) => retained.set(parseTopic(topic)!.deviceId, JSON.parse(payload.toString()) as StatusMessage));
      await late.subscribeAsync(topics.status('+'), { qos: 1 });
      await waitFor(() => retained.size === 3, 'retained statuses');
      await late.endAsync();
      expect([...retained.values()].map((s) => s.state)).toEqual(['online', 'online', 'online']);
      const summary = await fleet.stop();
      await watcher.close();
      expect(summary.acked).toBe(summary.sent);
      for (const device of summary.perDevice) {
        const seqs = new Set((await verifiedReadings(watcher.seen, device.id)).map((r) => r.seq));
        expect(device.ackedReadings.filter(([seq]) => !seqs.has(seq)), `${device.id}: acknowledged but never arrived`).toEqual([]);
      }
    } finally {
      await server.close();
    }
  });
});
