/**
 * The rejections that can only come from outside ingest, each end to end once: a real MQTT.js client
 * publishes through our broker to a running ingest (embedded store), and the message ends up in the
 * quarantine under its reason, counted on ingest's /metrics under that reason, and not in the store.
 *
 * How each can arise past our broker, which lets a device publish only on its own telemetry topic and
 * only while the broker's registry knows it and calls it active:
 * - DEVICE_UNKNOWN, DEVICE_REVOKED: ingest's registry is not the broker's. Processes on two machines
 *   each read their own registry file (Redis shares one, docs/SCALING.md), so a device provisioned or
 *   revoked on the broker's machine is known to one before the other. Here ingest has its own copy.
 *   (DEVICE_REVOKED also arises with one registry, for readings in flight at the revoke:
 *   test/product/revoke-rotate.test.ts.)
 * - TOPIC_INVALID: ingest subscribes to sensors/+/telemetry, so the topic's device part is what can be
 *   wrong. No device can publish there (its id is a valid slug, and it may use only its own topic), but
 *   the admin account may publish anywhere (docs/BROKER.md: for tools; `sensorpipe quarantine replay`
 *   publishes as admin), and so may anyone on a third-party broker without our ACL.
 * - PAYLOAD_TOO_LARGE: the broker takes packets up to SENSORPIPE_MQTT_MAX_PACKET (512 KiB by default),
 *   the protocol's payload limit is 256 KiB (core/limits.ts): a device's own message in between reaches
 *   ingest. This one is otherwise valid (signed, within the schema's counts), so only the size refuses it.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LIMITS } from '../../core/limits.ts';
import type { DeviceCredentials } from '../../core/registry.ts';
import { topics } from '../../core/topics.ts';
import { runCli } from '../../harness/cli.ts';
import { startProduct, type Product } from '../../harness/product.ts';
import { signedPayload, waitFor, type TestDevice } from '../../harness/publisher.ts';

let product: Product;
beforeAll(async () => {
  product = await startProduct({ devices: 3, separateIngestRegistry: true, display: false });
}, 60_000);
afterAll(async () => {
  await product?.close();
});

/** ingest's /metrics, as an operator scrapes it: the rejected count under one reason. */
async function rejectedOnMetrics(reason: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${product.ingest.metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`sensorpipe_ingest_rejected_total{reason="${reason}"}`));
  return line === undefined ? 0 : Number(line.split(' ').pop());
}

function connectAs(username: string, password: string, clientId = username): Promise<MqttClient> {
  return mqtt.connectAsync(product.broker.url, { clientId, username, password, clean: true, reconnectPeriod: 0, connectTimeout: 10_000 }, false);
}

/** Waits for the single quarantine entry under `reason`, and for the count on /metrics. */
async function expectQuarantinedOnce(reason: string) {
  await waitFor(async () => (await product.quarantined()).some((e) => e.reason === reason), `a ${reason} entry in the quarantine`, 15_000);
  const entries = (await product.quarantined()).filter((e) => e.reason === reason);
  expect(entries).toHaveLength(1);
  expect(await rejectedOnMetrics(reason)).toBe(1);
  return entries[0]!;
}

function credentialsToDevice(credentials: DeviceCredentials): TestDevice {
  return { id: credentials.deviceId, credentials, key: { alg: 'hmac-sha256', key: Buffer.from((credentials.signing as { key: string }).key, 'base64') } };
}

describe('rejections end to end', () => {
  it('DEVICE_UNKNOWN: a device the broker knows and ingest does not yet', async () => {
    const added = await runCli(['devices', 'add', 'newcomer', '--registry', product.registryPath, '--json']);
    expect(added.code).toBe(0);
    const newcomer = credentialsToDevice(JSON.parse(added.stdout) as DeviceCredentials);
    // The broker lets it in once it has reloaded its registry.
    let client: MqttClient | undefined;
    await waitFor(async () => (client = await connectAs(newcomer.id, newcomer.credentials.mqttPassword).catch(() => undefined)) !== undefined, 'the broker to let the new device in', 10_000, 100);
    const payload = signedPayload(newcomer, [{ seq: 1, ts: Date.now(), values: { temperature: 21.5 } }]);
    await client!.publishAsync(topics.telemetry(newcomer.id), payload, { qos: 1 });
    const entry = await expectQuarantinedOnce('DEVICE_UNKNOWN');
    expect(entry).toMatchObject({ device: 'newcomer', topic: topics.telemetry('newcomer'), payload, truncated: false });
    expect(await product.stored('newcomer')).toEqual([]);
    await client!.endAsync();
  });

  it("DEVICE_REVOKED: revoked in ingest's registry while the broker still lets it in", async () => {
    const [dev] = product.devices as [TestDevice];
    const reloads = () => product.ingestLog.filter((l) => l.msg === 'registry reloaded').length;
    const before = reloads();
    const revoked = await runCli(['devices', 'revoke', dev.id, '--registry', product.ingestRegistryPath]);
    expect(revoked.code).toBe(0);
    await waitFor(() => reloads() > before, 'ingest to reload its registry', 10_000, 20);
    const client = await connectAs(dev.id, dev.credentials.mqttPassword);
    const payload = signedPayload(dev, [{ seq: 1, ts: Date.now(), values: { temperature: 3 } }]);
    await client.publishAsync(topics.telemetry(dev.id), payload, { qos: 1 });
    const entry = await expectQuarantinedOnce('DEVICE_REVOKED');
    expect(entry).toMatchObject({ device: dev.id, topic: topics.telemetry(dev.id), payload });
    expect(entry.message).toMatch(/revoked/);
    expect(await product.stored(dev.id)).toEqual([]);
    await client.endAsync();
  });

  it('TOPIC_INVALID: a well-formed message on a telemetry topic whose device part is no device id', async () => {
    const dev = product.devices[1]!;
    const admin = await connectAs(product.broker.services.admin.username, product.broker.services.admin.password, 'admin-tool');
    const topic = `sensors/${dev.id.toUpperCase()}/telemetry`; // what a tool typing the id by hand sends
    const payload = signedPayload(dev, [{ seq: 1, ts: Date.now(), values: { temperature: 5 } }]);
    await admin.publishAsync(topic, payload, { qos: 1 });
    const entry = await expectQuarantinedOnce('TOPIC_INVALID');
    expect(entry).toMatchObject({ topic, device: dev.id, payload });
    expect(await product.stored(dev.id)).toEqual([]);
    await admin.endAsync();
  });

  it("PAYLOAD_TOO_LARGE: a device's own signed message over the protocol's limit, under the broker's", async () => {
    const dev = product.devices[2]!;
    const client = await connectAs(dev.id, dev.credentials.mqttPassword);
    // A catch-up batch at the schema's limits: 1000 readings of 10 long-named metrics, signed.
    const t0 = Date.now() - 1_000_000;
    const values = (i: number) => Object.fromEntries(Array.from({ length: 10 }, (_, m) => [`long_metric_name_${m}`, i + m / 7]));
    const readings = Array.from({ length: LIMITS.maxReadingsPerMessage }, (_, i) => ({ seq: i + 1, ts: t0 + i * 1000, values: values(i) }));
    const payload = signedPayload(dev, readings);
    const bytes = Buffer.byteLength(payload);
    expect(bytes).toBeGreaterThan(LIMITS.maxPayloadBytes);
    expect(bytes).toBeLessThan(512 * 1024);
    await client.publishAsync(topics.telemetry(dev.id), payload, { qos: 1 });
    const entry = await expectQuarantinedOnce('PAYLOAD_TOO_LARGE');
    expect(entry).toMatchObject({ device: dev.id, topic: topics.telemetry(dev.id), payloadBytes: bytes, truncated: true });
    expect(entry.payload).toBe(payload.slice(0, 4096)); // the first SENSORPIPE_QUARANTINE_PAYLOAD (4 KiB) bytes, ASCII here
    expect(await product.stored(dev.id, 'long_metric_name_0')).toEqual([]);
    await client.endAsync();
  });
});
