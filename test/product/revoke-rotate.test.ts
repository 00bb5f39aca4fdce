/**
 * Revocation and rotation end to end: `sensorpipe devices revoke|rotate` (the real CLI) changes the
 * registry file under a running broker, ingest, store and display (all real, on loopback, the broker at
 * the product's default registry poll), while real MQTT.js devices publish signed readings.
 *
 * The bound: a revoked device is "disconnected within seconds and refused from then on"
 * (docs/SECURITY.md, README); the broker checks the registry every SENSORPIPE_REGISTRY_POLL (1 s by
 * default, docs/BROKER.md) and ingest every 0.5 s. Held to 5 s from the moment the command has saved the
 * file, as test/broker/revoke-cli.test.ts holds the broker alone.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceSummary } from '../../core/api.ts';
import type { DeviceCredentials } from '../../core/registry.ts';
import { topics } from '../../core/topics.ts';
import { runCli } from '../../harness/cli.ts';
import { LiveTestClient } from '../../harness/pipeline.ts';
import { startProduct, type Product } from '../../harness/product.ts';
import { signedPayload, waitFor, type TestDevice } from '../../harness/publisher.ts';

const REVOCATION_BOUND_MS = 5_000;

let product: Product;
let live: LiveTestClient;

beforeAll(async () => {
  product = await startProduct({ devices: 4 });
  live = await LiveTestClient.connect(`${product.display!.url.replace('http', 'ws')}/live`);
  live.send({ type: 'subscribe', id: 'all', devices: '*' });
  await live.next((f) => f.type === 'subscribed');
}, 60_000);
afterAll(async () => {
  await live?.close();
  await product?.close();
});

function device(index: number): TestDevice {
  return product.devices[index]!;
}

/** Connects as a device; `reconnect` makes MQTT.js keep trying, as firmware does. */
function connectDevice(id: string, password: string, reconnect = false): Promise<MqttClient> {
  return mqtt.connectAsync(product.broker.url, { clientId: id, username: id, password, clean: true, reconnectPeriod: reconnect ? 200 : 0, connectTimeout: 10_000 }, false);
}

/** The CONNACK return code a fresh connection with these credentials gets (fails if it is accepted). */
async function refusedWith(id: string, password: string): Promise<number> {
  try {
    const client = await connectDevice(id, password);
    await client.endAsync();
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'number') return code;
    throw err;
  }
  throw new Error(`${id} was let in`);
}

/** Resolves with the time the broker closed the client's connection. */
function closedAt(client: MqttClient): Promise<number> {
  return new Promise((resolve) => (client.connected ? client.once('close', () => resolve(Date.now())) : resolve(Date.now())));
}

async function displayedDevice(id: string): Promise<DeviceSummary> {
  const response = await fetch(`${product.display!.url}/api/devices/${id}`);
  return (await response.json()) as DeviceSummary;
}

/** Seqs of the entries quarantined for a device under a reason (each entry one single-reading message). */
async function quarantinedSeqs(id: string, reason: string): Promise<number[]> {
  return (await product.quarantined())
    .filter((e) => e.device === id && e.reason === reason)
    .map((e) => (JSON.parse(e.payload) as { readings: { seq: number }[] }).readings[0]!.seq);
}

function liveSeqs(id: string): number[] {
  return live.readings().filter((r) => r.device === id).map((r) => r.seq);
}

async function storedTs(id: string): Promise<number[]> {
  return (await product.stored(id)).map((p) => p.ts);
}

describe('revocation end to end', () => {
  it("cuts a publishing device off within the bound: disconnected, refused, its later readings neither stored nor shown, marked revoked", async () => {
    const dev = device(0);
    const client = await connectDevice(dev.id, dev.credentials.mqttPassword, true);
    const sent: { seq: number; ts: number; sentAt: number }[] = [];
    const acked = new Set<number>();
    let seq = 0;
    let lastTs = 0;
    // Firmware: a reading every 50 ms, QoS 1, whatever happens to the connection.
    const timer = setInterval(() => {
      const reading = { seq: ++seq, ts: (lastTs = Math.max(Date.now(), lastTs + 1)), values: { temperature: seq } };
      sent.push({ seq: reading.seq, ts: reading.ts, sentAt: Date.now() });
      client.publish(topics.telemetry(dev.id), signedPayload(dev, [reading]), { qos: 1 }, (err) => {
        if (!err) acked.add(reading.seq);
      });
    }, 50);
    const disconnected = closedAt(client);
    try {
      await waitFor(async () => (await storedTs(dev.id)).length >= 5 && liveSeqs(dev.id).length >= 5, 'readings stored and shown before the revoke');
      const result = await runCli(['devices', 'revoke', dev.id, '--registry', product.registryPath]);
      expect(result.code).toBe(0);
      const revokedAt = Date.now(); // the file is saved before the command exits
      const deadline = revokedAt + REVOCATION_BOUND_MS;

      const cutOff = await Promise.race([disconnected, new Promise<undefined>((resolve) => setTimeout(resolve, REVOCATION_BOUND_MS))]);
      expect(cutOff, 'the broker disconnects the revoked device within the bound').toBeDefined();
      await waitFor(async () => {
        const summary = await displayedDevice(dev.id);
        return summary.registered === 'revoked' && summary.state === 'offline';
      }, 'the display to show the device revoked and offline', Math.max(0, deadline - Date.now()));
      expect(await refusedWith(dev.id, dev.credentials.mqttPassword)).toBe(5); // notAuthorized, from then on

      // Keep publishing past the bound: nothing sent after the disconnect gets through.
      await waitFor(() => sent.some((s) => s.sentAt > deadline), 'readings sent after the bound', 10_000, 20);
      clearInterval(timer);
      const lastAcked = Math.max(...acked);
      expect(sent.find((s) => s.seq === lastAcked)!.sentAt).toBeLessThanOrEqual(cutOff!);

      // Every reading the broker acknowledged is stored, or quarantined as DEVICE_REVOKED (ingest saw
      // the revoke before the broker did): never dropped silently.
      const storedOrRevoked = async () => {
        const stored = new Set(await storedTs(dev.id));
        const revoked = new Set(await quarantinedSeqs(dev.id, 'DEVICE_REVOKED'));
        return sent.filter((s) => stored.has(s.ts) || revoked.has(s.seq)).map((s) => s.seq);
      };
      await waitFor(async () => {
        const accounted = new Set(await storedOrRevoked());
        return [...acked].every((s) => accounted.has(s));
      }, 'every acknowledged reading stored or quarantined');
      expect(await product.rejected('DEVICE_REVOKED')).toBe((await quarantinedSeqs(dev.id, 'DEVICE_REVOKED')).length);

      const stored = new Set(await storedTs(dev.id));
      const after = sent.filter((s) => s.sentAt > cutOff!);
      expect(after.length).toBeGreaterThan(0);
      expect(after.filter((s) => stored.has(s.ts))).toEqual([]);
      // The display showed exactly the stored readings: none after the revoke took effect.
      const storedSeqs = sent.filter((s) => stored.has(s.ts)).map((s) => s.seq);
      await waitFor(() => liveSeqs(dev.id).length >= storedSeqs.length, 'the stored readings live');
      expect(liveSeqs(dev.id)).toEqual(storedSeqs);
    } finally {
      clearInterval(timer);
      client.end(true);
    }
  });

  it('refuses readings still in flight when their device is revoked (DEVICE_REVOKED): quarantined, counted, not stored, not shown', async () => {
    const dev = device(1);
    const marker = device(2);
    await product.stopIngest();
    // ingest is down: the broker keeps the device's readings for ingest's session.
    const client = await connectDevice(dev.id, dev.credentials.mqttPassword);
    const ts = Date.now();
    for (let seq = 1; seq <= 3; seq++) await client.publishAsync(topics.telemetry(dev.id), signedPayload(dev, [{ seq, ts: ts + seq, values: { temperature: seq } }]), { qos: 1 });
    const disconnected = closedAt(client);
    const result = await runCli(['devices', 'revoke', dev.id, '--registry', product.registryPath]);
    expect(result.code).toBe(0);
    const cutOff = await Promise.race([disconnected, new Promise<undefined>((resolve) => setTimeout(resolve, REVOCATION_BOUND_MS))]);
    expect(cutOff, 'the broker disconnects the revoked device within the bound').toBeDefined();
    client.end(true);

    await product.startIngest();
    await waitFor(async () => (await quarantinedSeqs(dev.id, 'DEVICE_REVOKED')).length === 3, 'the three readings quarantined as DEVICE_REVOKED', 15_000);
    expect((await quarantinedSeqs(dev.id, 'DEVICE_REVOKED')).sort()).toEqual([1, 2, 3]);
    expect(await product.rejected('DEVICE_REVOKED')).toBe(3);
    // A reading of another device sent afterwards is stored and shown: by then ingest has handled the
    // revoked device's readings, and neither the store nor the display has them.
    const other = await connectDevice(marker.id, marker.credentials.mqttPassword);
    await other.publishAsync(topics.telemetry(marker.id), signedPayload(marker, [{ seq: 1, ts: Date.now(), values: { temperature: 7 } }]), { qos: 1 });
    await waitFor(async () => liveSeqs(marker.id).includes(1) && (await storedTs(marker.id)).length === 1, 'the later reading of another device stored and shown');
    expect(await storedTs(dev.id)).toEqual([]);
    expect(liveSeqs(dev.id)).toEqual([]);
    await other.endAsync();
  });
});

describe('rotation end to end', () => {
  it('stops the old password and, within the bound, the old signing key; the new ones work', async () => {
    const dev = device(3);
    const old = await connectDevice(dev.id, dev.credentials.mqttPassword);
    let seq = 0;
    let lastTs = 0;
    const send = async (client: MqttClient, key: TestDevice, value: number) => {
      const reading = { seq: ++seq, ts: (lastTs = Math.max(Date.now(), lastTs + 1)), values: { temperature: value } };
      await client.publishAsync(topics.telemetry(dev.id), signedPayload(key, [reading]), { qos: 1 });
      return reading;
    };
    const before = await send(old, dev, 1);
    await waitFor(async () => (await storedTs(dev.id)).includes(before.ts), 'a reading before the rotation stored');

    const disconnected = closedAt(old);
    const result = await runCli(['devices', 'rotate', dev.id, '--registry', product.registryPath, '--json']);
    expect(result.code).toBe(0);
    const rotatedAt = Date.now();
    const fresh = JSON.parse(result.stdout) as DeviceCredentials;
    const rotated: TestDevice = { id: dev.id, credentials: fresh, key: { alg: 'hmac-sha256', key: Buffer.from((fresh.signing as { key: string }).key, 'base64') } };
    const cutOff = await Promise.race([disconnected, new Promise<undefined>((resolve) => setTimeout(resolve, REVOCATION_BOUND_MS))]);
    expect(cutOff, 'the broker disconnects the old credentials within the bound').toBeDefined();
    old.end(true);
    expect(await refusedWith(dev.id, dev.credentials.mqttPassword)).toBe(4); // bad user name or password
    const client = await connectDevice(dev.id, fresh.mqttPassword);

    // A device that kept its old signing key (or someone who stole it): its readings stop verifying
    // within the bound, and stay refused.
    const oldKeyed: number[] = [];
    await waitFor(
      async () => {
        oldKeyed.push((await send(client, dev, 100 + oldKeyed.length)).seq);
        return (await quarantinedSeqs(dev.id, 'READING_BAD_SIGNATURE')).length > 0;
      },
      'a reading signed with the old key refused',
      Math.max(0, rotatedAt + REVOCATION_BOUND_MS - Date.now()),
      100,
    );
    for (let i = 0; i < 3; i++) oldKeyed.push((await send(client, dev, 200 + i)).seq);
    const good = await send(client, rotated, 42);
    await waitFor(async () => (await storedTs(dev.id)).includes(good.ts) && liveSeqs(dev.id).includes(good.seq), 'the new key reading stored and shown');
    await waitFor(async () => (await quarantinedSeqs(dev.id, 'READING_BAD_SIGNATURE')).length >= 4, 'the later old-key readings refused');

    const refused = await quarantinedSeqs(dev.id, 'READING_BAD_SIGNATURE');
    const firstRefused = Math.min(...refused);
    // Once refused, every later old-key reading is refused too; none of them is stored or shown.
    expect(refused.sort((a, b) => a - b)).toEqual(oldKeyed.filter((s) => s >= firstRefused));
    expect(await product.rejected('READING_BAD_SIGNATURE')).toBe(refused.length);
    const storedValues = (await product.stored(dev.id)).map((p) => p.value);
    expect(storedValues.filter((v) => v >= 200)).toEqual([]);
    expect(storedValues).toContain(42);
    expect(liveSeqs(dev.id).filter((s) => refused.includes(s))).toEqual([]);
    expect(liveSeqs(dev.id)).toContain(good.seq);
    await client.endAsync();
  });
});
