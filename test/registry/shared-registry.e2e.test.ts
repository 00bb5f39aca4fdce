/**
 * One registry in Redis shared by separate processes, end to end: a real redis-server (Debian package),
 * two `sensorpipe broker` processes, one `sensorpipe ingest` and one `sensorpipe display` process with
 * SENSORPIPE_REDIS_URL, real MQTT.js devices. A change made through a store instance on another "machine"
 * (this test process) is enforced by all of them within 2 s, the bound of issue 18:
 *   - a revoke: both brokers disconnect their device and refuse it, ingest quarantines its readings
 *     as DEVICE_REVOKED, the display's API shows it revoked;
 *   - an add: both brokers let the new device in, ingest accepts its reading, the display lists it;
 *   - a rotation: the old password is refused, the old signing key no longer verifies at ingest.
 * And the way there: `sensorpipe broker` refuses an empty Redis next to a registry file that lists devices,
 * `sensorpipe registry import` moves them, and Redis down at start is a clear error.
 *
 * Ingest's refusals are probed through the admin account (which may publish anywhere), with the device's
 * own signature: a reading in flight at the moment of the change, which the broker can no longer stop.
 */
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSensorpipeError } from '../../core/errors.ts';
import { Registry, loadRegistry, saveRegistry, type DeviceCredentials } from '../../core/registry.ts';
import { RedisRegistryStore } from '../../core/registry-redis.ts';
import { topics } from '../../core/topics.ts';
import { runCli, spawnCli, type CliProcess } from '../../harness/cli.ts';
import { freePort } from '../../harness/ports.ts';
import { signedPayload, waitFor, type TestDevice } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { closedByBroker, metricValue, refusedWith } from '../broker/helpers.ts';
import { startRedis, type RedisServer } from '../broker/redis.ts';

/** Issue 18: an add, revoke or rotate made anywhere is enforced everywhere within 2 s. */
const PROPAGATION_MS = 2_000;
const INGEST_PASSWORD = 'ingest-shared-registry-secret';
const ADMIN_PASSWORD = 'admin-shared-registry-secret';
const DISPLAY_PASSWORD = 'display-shared-registry-secret';

let dir: TempDir;
let redis: RedisServer;
let registryFile: string;
const creds = new Map<string, DeviceCredentials>();
const processes: CliProcess[] = [];
const clients: MqttClient[] = [];

beforeAll(async () => {
  dir = await tempDir('sensorpipe-shared-registry-');
  redis = await startRedis(dir.path);
  // The registry as it was before Redis: a file.
  registryFile = join(dir.path, 'registry.json');
  const registry = new Registry();
  for (const id of ['dev-a', 'dev-b', 'rot-c']) creds.set(id, registry.add(id, { meta: { site: 'lab' } }));
  await saveRegistry(registryFile, registry);
});

afterAll(async () => {
  for (const client of clients) client.end(true);
  for (const p of processes) await p.stop('SIGTERM');
  await redis?.stop();
  await dir?.remove();
});

function commonEnv(name: string): Record<string, string> {
  return {
    SENSORPIPE_REDIS_URL: redis.url,
    SENSORPIPE_REGISTRY: registryFile,
    SENSORPIPE_DATA_DIR: join(dir.path, name),
    SENSORPIPE_LOG_LEVEL: 'info',
  };
}

function brokerEnv(name: string): Record<string, string> {
  return {
    ...commonEnv(name),
    SENSORPIPE_MQTT_HOST: '127.0.0.1',
    SENSORPIPE_MQTT_PORT: '0',
    SENSORPIPE_MQTT_WS_PORT: '0',
    SENSORPIPE_BROKER_METRICS_PORT: '0',
    SENSORPIPE_INGEST_PASSWORD: INGEST_PASSWORD,
    SENSORPIPE_ADMIN_PASSWORD: ADMIN_PASSWORD,
    SENSORPIPE_DISPLAY_PASSWORD: DISPLAY_PASSWORD,
    // Logins tried before a new device has propagated fail; every client here shares one address.
    SENSORPIPE_MQTT_LOGIN_FAILURES: '100000',
  };
}

interface BrokerProcess {
  url: string;
  metricsUrl: string;
  process: CliProcess;
}

async function startBrokerProcess(name: string): Promise<BrokerProcess> {
  const process = await spawnCli(['broker'], brokerEnv(name), 'broker listening');
  processes.push(process);
  const port = /"ports":\{"mqtt":(\d+)/.exec(process.stderr())?.[1];
  const metricsPort = /"ports":\{[^}]*"metrics":(\d+)/.exec(process.stderr())?.[1];
  if (port === undefined || metricsPort === undefined) throw new Error(`no ports in the broker's log: ${process.stderr().slice(-2000)}`);
  return { url: `mqtt://127.0.0.1:${port}`, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, process };
}

function connectDevice(url: string, id: string, password: string): Promise<MqttClient> {
  return mqtt.connectAsync(url, { clientId: id, username: id, password, reconnectPeriod: 0, connectTimeout: 10_000, clean: true }, false).then((client) => {
    clients.push(client);
    return client;
  });
}

function testDevice(credentials: DeviceCredentials): TestDevice {
  return { id: credentials.deviceId, credentials, key: { alg: 'hmac-sha256', key: Buffer.from((credentials.signing as { key: string }).key, 'base64') } };
}

describe('moving the registry into Redis', () => {
  it('`sensorpipe broker` refuses an empty Redis while the registry file lists devices; `sensorpipe registry import` moves them', async () => {
    const refused = await runCli(['broker'], { env: brokerEnv('refused') });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/CONFIG_INVALID: the device registry is in Redis .* lists 3 devices: move them with `sensorpipe registry import --from /);

    const imported = await runCli(['registry', 'import', '--from', registryFile, '--json'], { env: { SENSORPIPE_REDIS_URL: redis.url } });
    expect(imported.code, imported.stderr).toBe(0);
    expect(JSON.parse(imported.stdout)).toMatchObject({ devices: 3, version: 1 });
    const again = await runCli(['registry', 'import', '--from', registryFile], { env: { SENSORPIPE_REDIS_URL: redis.url } });
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('REGISTRY_CONFLICT');
    const status = await runCli(['registry', 'status', '--json'], { env: { SENSORPIPE_REDIS_URL: redis.url, SENSORPIPE_REGISTRY: registryFile } });
    expect(JSON.parse(status.stdout)).toMatchObject({ store: 'redis', devices: 3, active: 3 });
    // And back: what Redis holds, as a file again.
    const exportedTo = join(dir.path, 'exported.json');
    const exported = await runCli(['registry', 'export', '--to', exportedTo], { env: { SENSORPIPE_REDIS_URL: redis.url } });
    expect(exported.code, exported.stderr).toBe(0);
    expect((await loadRegistry(exportedTo)).list()).toEqual((await loadRegistry(registryFile)).list());
  });

  it('Redis down at start: `sensorpipe broker` and `sensorpipe ingest` exit 1 with REGISTRY_UNAVAILABLE naming the URL', async () => {
    const deadUrl = `redis://127.0.0.1:${await freePort()}`;
    const broker = await runCli(['broker'], { env: { ...brokerEnv('dead-broker'), SENSORPIPE_REDIS_URL: deadUrl } });
    expect(broker.code).toBe(1);
    expect(broker.stderr).toContain(`sensorpipe: REGISTRY_UNAVAILABLE: the device registry is in Redis (SENSORPIPE_REDIS_URL), and ${deadUrl}`);
    const ingest = await runCli(['ingest'], { env: { ...commonEnv('dead-ingest'), SENSORPIPE_REDIS_URL: deadUrl, SENSORPIPE_INGEST_METRICS_PORT: '0', SENSORPIPE_INGEST_PASSWORD: INGEST_PASSWORD } });
    expect(ingest.code).toBe(1);
    expect(ingest.stderr).toContain('REGISTRY_UNAVAILABLE');
  });
});

describe('two brokers, an ingest and a display on one registry in Redis', () => {
  let brokerA: BrokerProcess;
  let brokerB: BrokerProcess;
  let ingestMetrics: string;
  let displayUrl: string;
  /** The display's registry state of a device (undefined: it does not know the device). */
  const displayed = async (id: string): Promise<string | undefined> => {
    const response = await fetch(`${displayUrl}/api/devices/${id}`);
    return response.ok ? ((await response.json()) as { registered: string }).registered : undefined;
  };
  let writer: RedisRegistryStore;
  let adminA: MqttClient;
  const seqs = new Map<string, number>();

  const metric = async (name: string, labels = '') => metricValue(await (await fetch(ingestMetrics)).text(), name, labels);
  /** A reading signed with `key`'s signing key for `id`, published by the admin account (not the device). */
  const probe = async (id: string, key: TestDevice) => {
    const seq = (seqs.get(id) ?? 1000) + 1;
    seqs.set(id, seq);
    await adminA.publishAsync(topics.telemetry(id), signedPayload({ ...key, id }, [{ seq, ts: Date.now(), values: { temperature: seq } }]), { qos: 1 });
  };
  /** Probes every 100 ms until ingest counts a rejection with `reason`; resolves with the time it took from `since`. */
  const probeUntilRejected = async (id: string, key: TestDevice, reason: string, since: number): Promise<number> => {
    const before = await metric('sensorpipe_ingest_rejected_total', `reason="${reason}"`);
    await waitFor(async () => {
      if ((await metric('sensorpipe_ingest_rejected_total', `reason="${reason}"`)) > before) return true;
      await probe(id, key);
      return false;
    }, `ingest to reject ${id} with ${reason}`, PROPAGATION_MS * 3, 100);
    return Date.now() - since;
  };

  beforeAll(async () => {
    writer = new RedisRegistryStore({ url: redis.url });
    // Imported by the first test already, unless it was left out (-t).
    await writer.importRegistry(await loadRegistry(registryFile)).catch((err: unknown) => {
      if (!isSensorpipeError(err, 'REGISTRY_CONFLICT')) throw err;
    });
    brokerA = await startBrokerProcess('broker-a');
    brokerB = await startBrokerProcess('broker-b');
    const ingest = await spawnCli(['ingest'], {
      ...commonEnv('ingest'),
      SENSORPIPE_MQTT_URL: brokerA.url,
      SENSORPIPE_INGEST_PASSWORD: INGEST_PASSWORD,
      SENSORPIPE_INGEST_METRICS_PORT: '0',
    }, 'ingest running');
    processes.push(ingest);
    const metricsPort = /"metricsPort":(\d+)/.exec(ingest.stderr())?.[1];
    ingestMetrics = `http://127.0.0.1:${metricsPort}/metrics`;
    await waitFor(async () => (await fetch(`http://127.0.0.1:${metricsPort}/healthz`)).ok, 'ingest connected to broker A', 30_000);
    const display = await spawnCli(['display'], {
      ...commonEnv('display'),
      SENSORPIPE_MQTT_URL: brokerB.url,
      SENSORPIPE_DISPLAY_PASSWORD: DISPLAY_PASSWORD,
      SENSORPIPE_HTTP_HOST: '127.0.0.1',
      SENSORPIPE_HTTP_PORT: '0',
    }, 'display running');
    processes.push(display);
    displayUrl = /"url":"(http:\/\/127\.0\.0\.1:\d+)"/.exec(display.stderr())![1]!;
    adminA = await mqtt.connectAsync(brokerA.url, { clientId: 'admin-probe', username: 'svc:admin', password: ADMIN_PASSWORD, reconnectPeriod: 0 }, false);
    clients.push(adminA);
  }, 90_000);

  afterAll(async () => {
    await writer?.close();
  });

  it('a revoke, through another store instance or `sensorpipe devices revoke`: both brokers disconnect and refuse the devices, ingest quarantines their readings (DEVICE_REVOKED), the display shows them revoked, within 2 s', async () => {
    const devA = await connectDevice(brokerA.url, 'dev-a', creds.get('dev-a')!.mqttPassword);
    const devB = await connectDevice(brokerB.url, 'dev-b', creds.get('dev-b')!.mqttPassword);
    // Both devices' readings reach ingest (dev-b's from broker B, through Redis) and are accepted.
    const accepted = await metric('sensorpipe_ingest_accepted_messages_total');
    await devA.publishAsync(topics.telemetry('dev-a'), signedPayload(testDevice(creds.get('dev-a')!), [{ seq: 1, ts: Date.now(), values: { temperature: 1 } }]), { qos: 1 });
    await devB.publishAsync(topics.telemetry('dev-b'), signedPayload(testDevice(creds.get('dev-b')!), [{ seq: 1, ts: Date.now(), values: { temperature: 1 } }]), { qos: 1 });
    await waitFor(async () => (await metric('sensorpipe_ingest_accepted_messages_total')) >= accepted + 2, 'both readings accepted', 20_000);

    const closedA = closedByBroker(devA, PROPAGATION_MS * 5).then(() => Date.now());
    const closedB = closedByBroker(devB, PROPAGATION_MS * 5).then(() => Date.now());
    // dev-a through a store instance, dev-b through the CLI (on yet another "machine").
    await writer.update((registry) => registry.revoke('dev-a'));
    const revokedAt = Date.now();
    expect((await closedA) - revokedAt, 'broker A disconnected dev-a').toBeLessThanOrEqual(PROPAGATION_MS);
    const cli = await runCli(['devices', 'revoke', 'dev-b'], { env: { SENSORPIPE_REDIS_URL: redis.url, SENSORPIPE_REGISTRY: registryFile } });
    expect(cli.code, cli.stderr).toBe(0);
    const revokedByCliAt = Date.now();
    expect((await closedB) - revokedByCliAt, 'broker B disconnected dev-b').toBeLessThanOrEqual(PROPAGATION_MS);
    const rejectedIn = await probeUntilRejected('dev-b', testDevice(creds.get('dev-b')!), 'DEVICE_REVOKED', revokedByCliAt);
    expect(rejectedIn, 'ingest refuses the revoked device').toBeLessThanOrEqual(PROPAGATION_MS);
    await waitFor(async () => (await displayed('dev-a')) === 'revoked' && (await displayed('dev-b')) === 'revoked', 'the display to show both revoked', 5_000, 50);
    expect(Date.now() - revokedByCliAt, 'the display shows them revoked').toBeLessThanOrEqual(PROPAGATION_MS);
    for (const url of [brokerA.url, brokerB.url]) {
      for (const id of ['dev-a', 'dev-b']) expect(await refusedWith(url, { clientId: id, username: id, password: creds.get(id)!.mqttPassword })).toBe(5);
    }
  });

  it('a device added through another store instance is let in by both brokers, accepted by ingest and listed by the display within 2 s', async () => {
    expect(await displayed('newcomer')).toBeUndefined();
    const added = await writer.update((registry) => registry.add('newcomer', { meta: { site: 'lab' } }));
    const addedAt = Date.now();
    await waitFor(async () => (await displayed('newcomer')) === 'active', 'the display to list the new device', 5_000, 50);
    const connected: MqttClient[] = [];
    for (const url of [brokerA.url, brokerB.url]) {
      await waitFor(async () => {
        const client = await connectDevice(url, 'newcomer', added.mqttPassword).catch(() => undefined);
        if (client === undefined) return false;
        connected.push(client);
        return true;
      }, `newcomer let in by ${url}`, PROPAGATION_MS * 3, 100);
      // The same client id on the other broker takes the session over: one connection at a time.
      if (url === brokerA.url) await connected[0]!.endAsync();
    }
    expect(Date.now() - addedAt, 'both brokers let the new device in').toBeLessThanOrEqual(PROPAGATION_MS);
    const accepted = await metric('sensorpipe_ingest_accepted_messages_total');
    const unknown = await metric('sensorpipe_ingest_rejected_total', 'reason="DEVICE_UNKNOWN"');
    await connected[1]!.publishAsync(topics.telemetry('newcomer'), signedPayload(testDevice(added), [{ seq: 1, ts: Date.now(), values: { temperature: 21.5 } }]), { qos: 1 });
    await waitFor(async () => (await metric('sensorpipe_ingest_accepted_messages_total')) > accepted, 'ingest to accept the new device', 20_000);
    expect(await metric('sensorpipe_ingest_rejected_total', 'reason="DEVICE_UNKNOWN"')).toBe(unknown);
  });

  it("a rotation: the old password is refused by both brokers, the old key no longer verifies at ingest (within 2 s), the new ones work", async () => {
    const old = creds.get('rot-c')!;
    const oldClient = await connectDevice(brokerA.url, 'rot-c', old.mqttPassword);
    const closed = closedByBroker(oldClient, PROPAGATION_MS * 5);
    const fresh = await writer.update((registry) => registry.rotate('rot-c'));
    const rotatedAt = Date.now();
    await closed;
    expect(Date.now() - rotatedAt, 'broker A disconnected the old credentials').toBeLessThanOrEqual(PROPAGATION_MS);
    const rejectedIn = await probeUntilRejected('rot-c', testDevice(old), 'READING_BAD_SIGNATURE', rotatedAt);
    expect(rejectedIn, 'ingest refuses the old key').toBeLessThanOrEqual(PROPAGATION_MS);
    for (const url of [brokerA.url, brokerB.url]) expect(await refusedWith(url, { clientId: 'rot-c', username: 'rot-c', password: old.mqttPassword })).toBe(4);

    const renewed = await connectDevice(brokerB.url, 'rot-c', fresh.mqttPassword);
    const accepted = await metric('sensorpipe_ingest_accepted_messages_total');
    await renewed.publishAsync(topics.telemetry('rot-c'), signedPayload(testDevice(fresh), [{ seq: 5000, ts: Date.now(), values: { temperature: 3 } }]), { qos: 1 });
    await waitFor(async () => (await metric('sensorpipe_ingest_accepted_messages_total')) > accepted, 'the new key accepted', 20_000);
  });

  it('each process reports its registry on /metrics', async () => {
    for (const url of [ingestMetrics, brokerA.metricsUrl, brokerB.metricsUrl, `${displayUrl}/metrics`]) {
      const text = await (await fetch(url)).text();
      expect(metricValue(text, 'sensorpipe_registry_connected'), url).toBe(1);
      expect(metricValue(text, 'sensorpipe_registry_devices'), url).toBe(4);
      expect(metricValue(text, 'sensorpipe_registry_reloads_total'), url).toBeGreaterThanOrEqual(4); // start, revoke, add, rotate
      expect(metricValue(text, 'sensorpipe_registry_errors_total', 'code="REGISTRY_CORRUPT"'), url).toBe(0);
    }
  });
});
