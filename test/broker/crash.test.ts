/**
 * A PUBACK from the broker means the message is kept (issue 14, item 1): `sensorpipe broker` killed
 * with SIGKILL while devices publish — messages in flight, messages queued for ingest's persistent
 * session while it is away, messages being delivered to it while it is there — and started again on
 * its data folder, three times. Every message a device had a PUBACK for reaches ingest's session in the
 * end, with its bytes; the process is the real CLI, as users run it.
 *
 * It bites: with SENSORPIPE_BROKER_WAL=off, or with the PUBACK let out before the message is kept
 * (broker/intake.ts `take` calling `done` first), acknowledged messages go missing and this fails.
 */
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../core/topics.ts';
import { spawnCli, type CliProcess } from '../../harness/cli.ts';
import { freePort } from '../../harness/ports.ts';
import { waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { connect, deviceOptions, makeFleet, type Fleet } from './helpers.ts';
import { startRedis, type RedisServer } from './redis.ts';
import { importRegistryFile } from '../registry/import.ts';

const DEVICES = ['crash-a', 'crash-b', 'crash-c', 'crash-d'];
const INGEST = { username: 'svc:ingest', password: 'ingest-crash-secret', clientId: 'ingest-crash', clean: false };
/** PUBLISHes each device keeps unacknowledged at once. */
const WINDOW = 32;

let fleet: Fleet;
let data: TempDir;
let port: number;
let metricsPort: number;
let child: CliProcess | undefined;

async function startBrokerProcess(redisUrl: string | undefined): Promise<void> {
  // With Redis, the registry lives there too (docs/REGISTRY.md).
  if (redisUrl !== undefined) await importRegistryFile(fleet.registryPath, redisUrl);
  child = await spawnCli(['broker'], {
    ...(redisUrl === undefined ? {} : { SENSORPIPE_REDIS_URL: redisUrl }),
    SENSORPIPE_REGISTRY: fleet.registryPath,
    SENSORPIPE_DATA_DIR: join(data.path, redisUrl === undefined ? 'broker' : 'broker-redis'),
    SENSORPIPE_MQTT_HOST: '127.0.0.1',
    SENSORPIPE_MQTT_PORT: String(port),
    SENSORPIPE_MQTT_WS_PORT: '0',
    SENSORPIPE_BROKER_METRICS_PORT: String(metricsPort),
    SENSORPIPE_INGEST_PASSWORD: INGEST.password,
    // The devices here publish as fast as the broker takes them.
    SENSORPIPE_DEVICE_PUBLISH_RATE: '1000000',
    SENSORPIPE_DEVICE_PUBLISH_BURST: '1000000',
  }, 'broker listening');
}

async function killBroker(): Promise<void> {
  await child!.stop('SIGKILL');
  child = undefined;
}

/** A device publishing numbered messages, WINDOW at a time, until its connection dies; records each PUBACK. */
class Publisher {
  readonly acked = new Set<string>();
  inFlight = 0;
  #next = 0;
  constructor(private readonly id: string) {}

  async run(): Promise<void> {
    let client: MqttClient;
    try {
      client = await connect(`mqtt://127.0.0.1:${port}`, deviceOptions(fleet, this.id));
    } catch {
      return;
    }
    client.on('error', () => {});
    await new Promise<void>((resolve) => {
      const sendOne = (): void => {
        if (!client.connected) return;
        const payload = `${this.id}:${this.#next++}`;
        this.inFlight++;
        client.publish(topics.telemetry(this.id), payload, { qos: 1 }, (err) => {
          this.inFlight--;
          if (err === undefined || err === null) {
            this.acked.add(payload);
            sendOne();
          }
        });
      };
      client.once('close', () => resolve());
      for (let i = 0; i < WINDOW; i++) sendOne();
    });
    client.end(true);
  }
}

let redis: RedisServer;
beforeAll(async () => {
  fleet = await makeFleet(DEVICES);
  data = await tempDir('sensorpipe-broker-crash-');
  redis = await startRedis(data.path);
});

afterAll(async () => {
  await child?.stop('SIGKILL');
  await redis?.stop();
  await fleet?.dir.remove();
  await data?.remove();
});

describe.each([
  { kept: 'its session log', redis: false },
  { kept: 'Redis (the broker alone is killed)', redis: true },
])('sensorpipe broker killed with SIGKILL, sessions in $kept', ({ redis: withRedis }) => {
  it('loses no message it acknowledged: in flight, queued for ingest, or being delivered to it', { timeout: 120_000 }, async () => {
    port = await freePort();
    metricsPort = await freePort();
    const redisUrl = withRedis ? redis.url : undefined;
    const startBroker = () => startBrokerProcess(redisUrl);
    await startBroker();
    // ingest's persistent session, then ingest away: what devices send is queued for it.
    const first = await connect(`mqtt://127.0.0.1:${port}`, { ...INGEST, reconnectPeriod: 0 });
    await first.subscribeAsync(topics.allTelemetry, { qos: 1 });
    await first.endAsync();

    const publishers = DEVICES.map((id) => new Publisher(id));
    const acked = () => publishers.reduce((n, p) => n + p.acked.size, 0);
    const received = new Set<string>();
    const listen = (): MqttClient => {
      const ingest = mqtt.connect(`mqtt://127.0.0.1:${port}`, { ...INGEST, reconnectPeriod: 0 });
      ingest.on('error', () => {});
      ingest.on('message', (_topic, payload) => received.add(payload.toString()));
      // As ingest does: a session the broker no longer has is made again (it would then miss what it queued).
      ingest.on('connect', (connack) => {
        if (!connack.sessionPresent) ingest.subscribe(topics.allTelemetry, { qos: 1 });
      });
      return ingest;
    };

    for (const round of [0, 1, 2]) {
      // Round 1 kills the broker while ingest is connected and taking messages; rounds 0 and 2 while it is away.
      const ingest = round === 1 ? listen() : undefined;
      const runs = publishers.map((p) => p.run());
      const before = acked();
      await waitFor(() => acked() >= before + 1_500, `round ${round}: messages acknowledged`, 60_000, 5);
      if (ingest !== undefined) await waitFor(() => received.size > 0, 'ingest to receive', 30_000, 5);
      const inFlight = publishers.reduce((n, p) => n + p.inFlight, 0);
      await killBroker();
      expect(inFlight, 'publishes were in flight at the kill').toBeGreaterThan(0);
      await Promise.all(runs);
      ingest?.end(true);
      await startBroker();
    }

    const all = publishers.flatMap((p) => [...p.acked]);
    expect(all.length).toBeGreaterThan(4_500);
    const ingest = listen();
    try {
      await waitFor(() => all.every((payload) => received.has(payload)), 'every acknowledged message to reach ingest', 20_000, 100).catch(() => {});
      const missing = all.filter((payload) => !received.has(payload));
      expect(missing.length, `acknowledged but lost, e.g. ${missing.slice(0, 5).join(', ')}`).toBe(0);
    } finally {
      ingest.end(true);
      await killBroker();
    }
  });
});
