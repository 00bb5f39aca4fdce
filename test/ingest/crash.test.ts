/**
 * kill -9 of a real ingest process while it is known to hold readings it has not made durable, then a
 * restart: every reading the devices had acknowledged by the broker is in the store exactly once, with
 * its value. The broker is ours (registry logins, ACL, its session log), as users run it.
 *
 * "Known to hold": ingest reaches influxd through a loopback HTTP proxy that this test controls. Just
 * before the kill the proxy holds ingest's writes: one batch is then on the wire to the store (received
 * from the broker, not stored, not acknowledged), and the messages behind it wait in ingest's memory.
 * Acknowledging any of them before its write resolved would lose it at the kill.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry, saveRegistry } from '../../core/registry.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { CLI_PATH } from '../../harness/cli.ts';
import { influxQuery, startInfluxd, type InfluxServer } from '../../harness/influxd.ts';
import { DevicePublisher, provision, waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

/**
 * An HTTP proxy in front of influxd that forwards everything, except that while `hold` is on, write
 * requests are kept unanswered (and not forwarded) until `dropHeld`.
 */
interface StoreProxy {
  url: string;
  /** Write requests held so far (unanswered). */
  readonly held: number;
  hold(): void;
  /** Closes the connections of the held writes (their sender is gone) and forwards writes again. */
  dropHeld(): void;
  close(): Promise<void>;
}

async function startStoreProxy(target: string): Promise<StoreProxy> {
  let holding = false;
  const held: ServerResponse[] = [];
  const forward = async (req: IncomingMessage, res: ServerResponse, body: Buffer) => {
    try {
      const headers: Record<string, string> = {};
      for (const [name, value] of Object.entries(req.headers)) if (typeof value === 'string' && name !== 'host' && name !== 'content-length') headers[name] = value;
      const answer = await fetch(`${target}${req.url ?? '/'}`, { method: req.method, headers, body: req.method === 'GET' || req.method === 'HEAD' ? undefined : new Uint8Array(body) });
      const text = Buffer.from(await answer.arrayBuffer());
      res.writeHead(answer.status, { 'content-type': answer.headers.get('content-type') ?? 'application/octet-stream' });
      res.end(text);
    } catch {
      res.destroy();
    }
  };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      if (holding && req.url?.startsWith('/write')) held.push(res);
      else void forward(req, res, Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    get held() {
      return held.length;
    },
    hold() {
      holding = true;
    },
    dropHeld() {
      holding = false;
      for (const res of held.splice(0)) res.destroy();
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

let influx: InfluxServer;
let proxy: StoreProxy;
let broker: TestBroker | undefined;
let dir: TempDir;
beforeAll(async () => {
  influx = await startInfluxd();
  proxy = await startStoreProxy(influx.url);
  dir = await tempDir();
}, 60_000);
afterAll(async () => {
  await broker?.close();
  await proxy?.close();
  await influx?.close();
  await dir?.remove();
});

let ingestLog = '';

/** Starts `sensorpipe ingest` and resolves once it is subscribed (or has resumed its session). */
async function startIngestProcess(env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, [CLI_PATH, 'ingest'], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      ingestLog += chunk.toString();
      if (/"msg":"(subscribed|session resumed[^"]*)"/.test(ingestLog)) resolve();
    });
    child.once('exit', (code) => reject(new Error(`ingest exited with ${code}:\n${ingestLog.slice(-2000)}`)));
  });
  ingestLog = '';
  return child;
}

/** A device's stored readings as `ts=temperature`, asked of influxd directly (not through the proxy). */
async function storedReadings(database: string, device: string): Promise<string[]> {
  const answer = (await influxQuery(influx.url, `SELECT temperature FROM readings WHERE device = '${device}' AND time > 0 AND time < now() + 1d`, database)) as {
    results: { series?: { values: [number, number][] }[] }[];
  };
  return (answer.results[0]?.series?.[0]?.values ?? []).map(([ts, value]) => `${ts}=${value}`);
}

async function storedTimestamps(database: string, device: string): Promise<number[]> {
  return (await storedReadings(database, device)).map((reading) => Number(reading.split('=')[0]));
}

describe('ingest crash', () => {
  it('loses and duplicates nothing acknowledged across kill -9 with a write in flight and a restart', async () => {
    const registry = new Registry();
    const devices = provision(registry, 5);
    const registryPath = join(dir.path, 'registry.json');
    await saveRegistry(registryPath, registry);
    // Each device publishes every ~5 ms here, above the default per-device rate.
    const started = await startTestBroker({ registryPath, publishRate: 1_000, publishBurst: 1_000 });
    broker = started;
    const database = `crash_${process.pid}`;
    const env = {
      SENSORPIPE_DATA_DIR: join(dir.path, 'data'),
      SENSORPIPE_REGISTRY: registryPath,
      SENSORPIPE_MQTT_URL: started.url,
      SENSORPIPE_INGEST_PASSWORD: started.services.ingest.password,
      SENSORPIPE_INFLUX_URL: proxy.url,
      SENSORPIPE_INFLUX_DATABASE: database,
      SENSORPIPE_INGEST_METRICS_PORT: '0',
      SENSORPIPE_LOG_LEVEL: 'info',
    };
    let ingest = await startIngestProcess(env);
    const publishers = await Promise.all(devices.map((d) => DevicePublisher.connect(started.url, d)));
    // Wait until ingest is subscribed and writing: the first reading of device 0 is in the store.
    await publishers[0]!.send({ temperature: 0 });
    await waitFor(async () => (await storedTimestamps(database, devices[0]!.id)).length === 1, 'ingest up', 30_000, 100);

    let running = true;
    let base = Date.now();
    const streams = publishers.map(async (p, i) => {
      while (running) {
        await p.send({ temperature: i + Math.random() }, base++);
        await new Promise((resolve) => setTimeout(resolve, 5));
      }
    });
    const acked = () => publishers.reduce((n, p) => n + p.acked.length, 0);
    // The stream is being stored: every device has readings in the store.
    await waitFor(async () => (await Promise.all(devices.map((d) => storedTimestamps(database, d.id)))).every((ts) => ts.length >= 10), 'the stream stored', 30_000, 100);

    // A batch on the wire to the store, and the messages behind it in ingest's memory: then kill -9.
    proxy.hold();
    await waitFor(() => proxy.held >= 1, 'a write from ingest held on its way to the store', 30_000, 5);
    const atHold = acked();
    await waitFor(() => acked() >= atHold + 25, 'more readings published behind the held write (in ingest, or queued for it at the broker)', 30_000, 5);
    ingest.kill('SIGKILL');
    await new Promise((resolve) => ingest.once('exit', resolve));
    proxy.dropHeld();

    // Devices keep publishing while ingest is down; the broker keeps the messages for its session.
    const atKill = publishers.map((p) => p.acked.length);
    await waitFor(() => publishers.every((p, i) => p.acked.length >= atKill[i]! + 10), 'readings published while ingest is down', 30_000, 10);
    ingest = await startIngestProcess(env);
    // The restarted ingest stores what was published after it came back, for every device.
    const restartedAt = base;
    await waitFor(
      async () => (await Promise.all(devices.map((d) => storedTimestamps(database, d.id)))).every((ts) => ts.some((t) => t > restartedAt + 50)),
      'readings published after the restart stored',
      60_000,
      100,
    );
    running = false;
    await Promise.all(streams);

    for (const p of publishers) {
      const expected = [...p.acked].sort((x, y) => x.ts - y.ts).map((r) => `${r.ts}=${r.values.temperature}`);
      const newest = Math.max(...p.acked.map((r) => r.ts));
      // Ingest writes in the order it receives, and the broker sends what it kept before anything new:
      // once a device's newest reading is stored, so is everything it will ever store of that device.
      await waitFor(async () => (await storedTimestamps(database, p.device.id)).includes(newest), `${p.device.id}'s newest reading stored`, 60_000, 200);
      const stored = await storedReadings(database, p.device.id);
      expect(stored).toEqual(expected); // every acknowledged reading, once, with its value, and nothing else
    }
    expect(acked()).toBeGreaterThan(100);
    ingest.kill('SIGTERM');
    const code = await new Promise<number | null>((resolve) => ingest.once('exit', resolve));
    expect(code).toBe(0);
    await Promise.all(publishers.map((p) => p.close()));
  }, 180_000);
});
