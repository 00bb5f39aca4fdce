/**
 * The simulated fleet against real brokers: deterministic signals, signatures that verify with core/,
 * each fault producing exactly the bad message it names, and offline buffering across a broker outage.
 */
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { decodeTelemetry } from '../../core/decode.ts';
import { createLogger } from '../../core/logger.ts';
import { loadRegistry, verifyKeyOf } from '../../core/registry.ts';
import { verifyTelemetrySignature } from '../../core/signature.ts';
import { parseTopic, topics } from '../../core/topics.ts';
import { parseFaults, startFleet, type Fleet } from '../../firmware-sim/index.ts';
import { SeqBook } from '../../firmware-sim/seq-book.ts';
import { SignalGenerator } from '../../firmware-sim/signals.ts';
import { startBareAedes, type BareBroker } from '../harness/aedes.ts';
import { startMosquitto } from '../harness/mosquitto.ts';
import { waitFor } from '../harness/publisher.ts';
import { tempDir, type TempDir } from '../harness/tmp.ts';

const logger = createLogger({ level: 'silent' });
let dir: TempDir;
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  await dir.remove();
});

interface Seen {
  topic: string;
  payload: Buffer;
}

async function watch(url: string): Promise<{ seen: Seen[]; close(): Promise<void> }> {
  const seen: Seen[] = [];
  const client = await mqtt.connectAsync(url, { clientId: `watcher-${Math.random()}` });
  client.on('message', (topic, payload) => seen.push({ topic, payload }));
  await client.subscribeAsync('sensors/#', { qos: 1 });
  return { seen, close: () => client.endAsync() };
}

function fleetOn(url: string, devices: number, faults = '', intervalMs = 50): Promise<Fleet> {
  return startFleet({
    url,
    devices,
    intervalMs,
    profile: 'mixed',
    seed: 42,
    faults: parseFaults(faults),
    stateDir: join(dir.path, 'sim'),
    registryPath: join(dir.path, 'registry.json'),
    bufferLimit: 10_000,
    maxBatch: 100,
    logger,
  });
}

describe('seq book', () => {
  it('never reuses a seq across a restart, even under concurrent takes', async () => {
    const path = join(dir.path, 'seqs.json');
    let book = await SeqBook.open(path);
    const first = await Promise.all(Array.from({ length: 20 }, () => book.take('d')));
    expect(first).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    await book.close();
    book = await SeqBook.open(path);
    expect(await book.take('d')).toBeGreaterThan(20);
    await book.close();
  });
});

describe('signals', () => {
  it('are the same for the same seed and differ for another', () => {
    const ts = Array.from({ length: 50 }, (_, i) => Date.UTC(2026, 0, 1) + i * 1000);
    const run = (seed: number) => {
      const g = new SignalGenerator('env', seed);
      return ts.map((t) => g.next(t));
    };
    expect(run(7)).toEqual(run(7));
    expect(run(7)).not.toEqual(run(8));
    for (const values of run(7)) expect(Object.keys(values).sort()).toEqual(['co2', 'humidity', 'pressure', 'temperature']);
  });
});

describe('fleet on a real broker', () => {
  let broker: BareBroker;
  beforeEach(async () => {
    broker = await startBareAedes();
  });
  afterEach(async () => {
    await broker.close();
  });

  it('signs every reading so that core/ verifies it with the registry key, and retains an online status', async () => {
    const watcher = await watch(broker.url);
    const fleet = await fleetOn(broker.url, 3);
    await waitFor(() => fleet.summary().acked >= 30, 'readings');
    const summary = await fleet.stop();
    await watcher.close();
    const registry = await loadRegistry(join(dir.path, 'registry.json'));
    const telemetry = watcher.seen.filter((m) => parseTopic(m.topic)?.kind === 'telemetry');
    expect(telemetry.length).toBeGreaterThanOrEqual(30);
    for (const m of telemetry) {
      const decoded = decodeTelemetry(m.payload);
      if (!decoded.ok) throw new Error(decoded.message);
      expect(verifyTelemetrySignature(decoded.value, verifyKeyOf(registry.get(decoded.value.device)!))).toBe(true);
    }
    const statuses = watcher.seen.filter((m) => parseTopic(m.topic)?.kind === 'status').map((m) => JSON.parse(m.payload.toString()) as { state: string });
    expect(statuses.some((s) => s.state === 'online')).toBe(true);
    expect(summary.sent).toBe(summary.acked);
  });

  it('produces exactly the bad message each fault names', async () => {
    const watcher = await watch(broker.url);
    const faults = 'bad-signature@sim-0000,non-json@sim-0001,clock-ahead@sim-0002,clock-behind@sim-0003,foreign-topic@sim-0004,dropout@sim-0005,replay@sim-0006';
    const fleet = await fleetOn(broker.url, 8, faults, 10);
    await waitFor(() => fleet.devices[6]!.report().faultMessages.replay !== undefined, 'a replay', 60_000);
    const summary = await fleet.stop();
    await watcher.close();
    const registry = await loadRegistry(join(dir.path, 'registry.json'));
    const byDevice = (id: string) => summary.perDevice.find((d) => d.id === id)!;
    const on = (id: string) => watcher.seen.filter((m) => m.topic === topics.telemetry(id));

    const verifies = (m: Seen) => {
      const d = decodeTelemetry(m.payload);
      return d.ok && verifyTelemetrySignature(d.value, verifyKeyOf(registry.get(d.value.device)!));
    };
    // bad-signature: exactly its counted messages fail verification, at the seqs it reported.
    const forged = on('sim-0000').filter((m) => !verifies(m));
    expect(forged.length).toBe(byDevice('sim-0000').faultMessages['bad-signature']!.count);
    // non-json: that many payloads that are not JSON.
    expect(on('sim-0001').filter((m) => !decodeTelemetry(m.payload).ok).length).toBe(byDevice('sim-0001').faultMessages['non-json']!.count);
    // clock faults: signed correctly, timestamps an hour ahead / 30 days back.
    const skewed = (id: string, test: (ts: number) => boolean) => on(id).filter((m) => verifies(m) && (JSON.parse(m.payload.toString()) as { readings: { ts: number }[] }).readings.some((r) => test(r.ts)));
    expect(skewed('sim-0002', (ts) => ts > Date.now() + 30 * 60_000).length).toBe(byDevice('sim-0002').faultMessages['clock-ahead']!.count);
    expect(skewed('sim-0003', (ts) => ts < Date.now() - 29 * 86_400_000).length).toBe(byDevice('sim-0003').faultMessages['clock-behind']!.count);
    // foreign-topic: its own signed message on its neighbour's topic.
    const foreign = on('sim-0005').filter((m) => (JSON.parse(m.payload.toString()) as { device: string }).device === 'sim-0004');
    expect(foreign.length).toBe(byDevice('sim-0004').faultMessages['foreign-topic']!.count);
    // dropout: the skipped seqs never appear.
    const dropped = new Set(byDevice('sim-0005').faultMessages.dropout!.seqs);
    const sentSeqs = on('sim-0005').flatMap((m) => (JSON.parse(m.payload.toString()) as { device: string; readings: { seq: number }[] }).device === 'sim-0005' ? (JSON.parse(m.payload.toString()) as { readings: { seq: number }[] }).readings.map((r) => r.seq) : []);
    expect(dropped.size).toBeGreaterThan(0);
    for (const seq of sentSeqs) expect(dropped.has(seq)).toBe(false);
    // replay: a byte-for-byte copy of its first message, sent again.
    const replayed = on('sim-0006');
    expect(replayed.filter((m) => m.payload.equals(replayed[0]!.payload)).length).toBe(1 + byDevice('sim-0006').faultMessages.replay!.count);
    // A device without faults sends nothing bad.
    expect(on('sim-0007').filter((m) => !verifies(m)).map((m) => m.payload.toString().slice(0, 300))).toEqual([]);
  }, 90_000);

  it('buffers through a 10 s broker outage and delivers every reading once, with its original timestamp', async () => {
    const port = broker.port;
    const watcher = await watch(broker.url);
    const fleet = await fleetOn(broker.url, 3, '', 100);
    await waitFor(() => fleet.summary().acked >= 15, 'readings before the outage');
    await watcher.close();
    await broker.close();
    await waitFor(() => fleet.summary().buffered >= 30, 'readings buffered during the outage', 20_000);
    await new Promise((resolve) => setTimeout(resolve, 10_000 - 3_000));
    broker = await startBareAedes(port);
    await waitFor(() => fleet.summary().buffered === 0 && fleet.devices.every((d) => d.connected), 'buffer sent', 60_000);
    await waitFor(() => fleet.summary().acked === fleet.summary().sent, 'everything acknowledged', 30_000);
    const summary = await fleet.stop();
    for (const device of summary.perDevice) {
      const seqs = device.ackedReadings.map(([seq]) => seq).sort((a, b) => a - b);
      expect(new Set(seqs).size, `${device.id}: no seq twice`).toBe(seqs.length);
      expect(seqs, `${device.id}: no seq missing`).toEqual(Array.from({ length: seqs.length }, (_, i) => seqs[0]! + i));
      // Timestamps are when each reading was taken: spread over the outage, not bunched at reconnection.
      const ts = device.ackedReadings.map(([, t]) => t);
      expect(Math.max(...ts) - Math.min(...ts)).toBeGreaterThan(9_000);
    }
    expect(summary.droppedFromBuffer).toBe(0);
  }, 90_000);
});

describe('fleet on Mosquitto', () => {
  it('publishes and gets acknowledged by Debian Mosquitto too', async () => {
    const mosquitto = await startMosquitto();
    try {
      const fleet = await fleetOn(mosquitto.url, 3);
      await waitFor(() => fleet.summary().acked >= 20, 'readings acknowledged by mosquitto');
      const summary = await fleet.stop();
      expect(summary.acked).toBe(summary.sent);
    } finally {
      await mosquitto.close();
    }
  });
});
