/**
 * Redis lost while the pipeline runs, with the registry (and the broker's sessions) in Redis: a real
 * redis-server (Debian package) behind a proxy that the test cuts, a `sensorpipe broker` and a
 * `sensorpipe ingest` process reaching Redis only through it, and an admin on another "machine" that
 * still reaches Redis directly. While Redis is away both processes stay up, keep their registry and say
 * so on /metrics; a revoke made meanwhile is enforced once Redis is back (the reload after the reconnect:
 * its notification was lost).
 */
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry, type DeviceCredentials } from '../../core/registry.ts';
import { RedisRegistryStore } from '../../core/registry-redis.ts';
import { topics } from '../../core/topics.ts';
import { spawnCli, type CliProcess } from '../../harness/cli.ts';
import { signedPayload, waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { closedByBroker, metricValue } from '../broker/helpers.ts';
import { startRedis, type RedisServer } from '../broker/redis.ts';
import { startProxy, type CuttableProxy } from './proxy.ts';

const INGEST_PASSWORD = 'ingest-outage-secret';

let dir: TempDir;
let redis: RedisServer;
let proxy: CuttableProxy;
let writer: RedisRegistryStore;
let broker: CliProcess;
let ingest: CliProcess;
let brokerUrl: string;
let brokerMetrics: string;
let ingestMetrics: string;
const creds = new Map<string, DeviceCredentials>();
const clients: MqttClient[] = [];

beforeAll(async () => {
  dir = await tempDir('sensorpipe-redis-outage-');
  redis = await startRedis(dir.path);
  const target = new URL(redis.url);
  proxy = await startProxy({ host: target.hostname, port: Number(target.port) });
  writer = new RedisRegistryStore({ url: redis.url });
  const registry = new Registry();
  for (const id of ['steady', 'doomed']) creds.set(id, registry.add(id));
  await writer.importRegistry(registry);
  const common = { SENSORPIPE_REDIS_URL: proxy.url, SENSORPIPE_REGISTRY: join(dir.path, 'none.json'), SENSORPIPE_INGEST_PASSWORD: INGEST_PASSWORD, SENSORPIPE_LOG_LEVEL: 'info' };
  broker = await spawnCli(['broker'], {
    ...common,
    SENSORPIPE_DATA_DIR: join(dir.path, 'broker'),
    SENSORPIPE_MQTT_HOST: '127.0.0.1',
    SENSORPIPE_MQTT_PORT: '0',
    SENSORPIPE_MQTT_WS_PORT: '0',
    SENSORPIPE_BROKER_METRICS_PORT: '0',
  }, 'broker listening');
  const ports = /"ports":\{"mqtt":(\d+)[^}]*"metrics":(\d+)/.exec(broker.stderr())!;
  brokerUrl = `mqtt://127.0.0.1:${ports[1]}`;
  brokerMetrics = `http://127.0.0.1:${ports[2]}/metrics`;
  ingest = await spawnCli(['ingest'], { ...common, SENSORPIPE_DATA_DIR: join(dir.path, 'ingest'), SENSORPIPE_MQTT_URL: brokerUrl, SENSORPIPE_INGEST_METRICS_PORT: '0' }, 'ingest running');
  ingestMetrics = `http://127.0.0.1:${/"metricsPort":(\d+)/.exec(ingest.stderr())![1]}/metrics`;
}, 90_000);

afterAll(async () => {
  for (const client of clients) client.end(true);
  await ingest?.stop('SIGTERM');
  await broker?.stop('SIGTERM');
  await writer?.close();
  await proxy?.close();
  await redis?.stop();
  await dir?.remove();
});

const metric = async (url: string, name: string, labels = '') => metricValue(await (await fetch(url)).text(), name, labels);

function connectDevice(id: string): Promise<MqttClient> {
  const { mqttPassword } = creds.get(id)!;
  return mqtt.connectAsync(brokerUrl, { clientId: id, username: id, password: mqttPassword, reconnectPeriod: 0, connectTimeout: 10_000 }, false).then((client) => {
    clients.push(client);
    return client;
  });
}

describe('Redis lost while the broker and ingest run', () => {
  it('both stay up with their registry and report it; a revoke made meanwhile is enforced once Redis is back', async () => {
    const doomed = await connectDevice('doomed');
    const closed = closedByBroker(doomed, 30_000).then(() => Date.now());
    await waitFor(async () => (await metric(ingestMetrics, 'sensorpipe_registry_connected')) === 1, 'ingest following the registry', 10_000);
    const reloadsBefore = await metric(ingestMetrics, 'sensorpipe_registry_reloads_total');

    proxy.cut();
    for (const url of [brokerMetrics, ingestMetrics]) {
      await waitFor(async () => (await metric(url, 'sensorpipe_registry_connected')) === 0, `${url} to report Redis lost`, 10_000);
      expect(await metric(url, 'sensorpipe_registry_errors_total', 'code="REGISTRY_UNAVAILABLE"'), url).toBeGreaterThanOrEqual(1);
      expect(await metric(url, 'sensorpipe_registry_devices'), url).toBe(2);
    }
    // A change the two cannot hear of: its notification is lost for them.
    await writer.update((registry) => registry.revoke('doomed'));
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(broker.child.exitCode, 'the broker is still running').toBeNull();
    expect(ingest.child.exitCode, 'ingest is still running').toBeNull();
    expect(doomed.connected, 'the broker still has its last registry').toBe(true);

    proxy.restore();
    const restoredAt = Date.now();
    // ioredis waits up to 2 s between attempts; then the reload after the reconnect finds the revoke.
    const closedAt = await closed;
    expect(closedAt - restoredAt).toBeLessThanOrEqual(10_000);
    await waitFor(async () => (await metric(ingestMetrics, 'sensorpipe_registry_reloads_total')) > reloadsBefore && (await metric(ingestMetrics, 'sensorpipe_registry_connected')) === 1, 'ingest to reload after the reconnect', 10_000);
    expect(await metric(brokerMetrics, 'sensorpipe_registry_connected')).toBe(1);

    // The pipeline works again: the other device's reading is accepted.
    const steady = await connectDevice('steady');
    const accepted = await metric(ingestMetrics, 'sensorpipe_ingest_accepted_messages_total');
    const key = { id: 'steady', credentials: creds.get('steady')!, key: { alg: 'hmac-sha256' as const, key: Buffer.from((creds.get('steady')!.signing as { key: string }).key, 'base64') } };
    await steady.publishAsync(topics.telemetry('steady'), signedPayload(key, [{ seq: 1, ts: Date.now(), values: { temperature: 20 } }]), { qos: 1 });
    await waitFor(async () => (await metric(ingestMetrics, 'sensorpipe_ingest_accepted_messages_total')) > accepted, 'a reading accepted after the outage', 20_000);
  });
});
