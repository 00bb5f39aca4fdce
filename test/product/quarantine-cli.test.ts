/**
 * `sensorpipe quarantine list` and `replay` (the real CLI, as child processes) on entries a running
 * ingest made from real messages: a device provisioned on the broker's machine before ingest's registry
 * had it (DEVICE_UNKNOWN: what replay is for), and a forged message (READING_BAD_SIGNATURE). Once the
 * device reaches ingest's registry, replay sends its messages through ingest again, which stores them;
 * the forged one stays where it is.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceCredentials } from '../../core/registry.ts';
import { topics } from '../../core/topics.ts';
import type { QuarantineEntry } from '../../ingest/quarantine.ts';
import { runCli } from '../../harness/cli.ts';
import { startProduct, type Product } from '../../harness/product.ts';
import { signedPayload, waitFor, type TestDevice } from '../../harness/publisher.ts';

let product: Product;
let late: TestDevice;
const latePayloads: string[] = [];
let forged: string;
const T = Date.now() - 60_000;

function connectAs(username: string, password: string): Promise<MqttClient> {
  return mqtt.connectAsync(product.broker.url, { clientId: username, username, password, clean: true, reconnectPeriod: 0, connectTimeout: 10_000 }, false);
}

async function counter(name: 'acceptedReadings' | 'duplicates'): Promise<number> {
  return (await product.ingest.metrics[name].get()).values.reduce((sum, v) => sum + v.value, 0);
}

async function rejected(reason: string): Promise<number> {
  return (await product.ingest.metrics.rejected.get()).values.find((v) => v.labels.reason === reason)?.value ?? 0;
}

const quarantine = (args: string[]) => runCli(['quarantine', ...args, '--data-dir', product.dataDir]);

beforeAll(async () => {
  product = await startProduct({ devices: 1, separateIngestRegistry: true, display: false });
  // Provisioned where the broker runs; ingest's registry does not have it yet.
  const added = await runCli(['devices', 'add', 'late-sensor', '--registry', product.registryPath, '--json']);
  expect(added.code).toBe(0);
  const credentials = JSON.parse(added.stdout) as DeviceCredentials;
  late = { id: credentials.deviceId, credentials, key: { alg: 'hmac-sha256', key: Buffer.from((credentials.signing as { key: string }).key, 'base64') } };
  // The broker's own reload, not a loop of logins: on a loaded machine those could outpace its registry
  // poll and get this address banned for failed logins (CI met that once).
  await product.broker.broker.reloadRegistry();
  const client: MqttClient = await connectAs(late.id, credentials.mqttPassword);
  for (let seq = 1; seq <= 2; seq++) {
    const payload = signedPayload(late, [{ seq, ts: T + seq, values: { temperature: 20 + seq } }]);
    latePayloads.push(payload);
    await client.publishAsync(topics.telemetry(late.id), payload, { qos: 1 });
  }
  await client.endAsync();
  const dev = product.devices[0]!;
  forged = signedPayload(dev, [{ seq: 1, ts: T, values: { temperature: 1 } }]).replace('"temperature":1', '"temperature":100');
  const device = await connectAs(dev.id, dev.credentials.mqttPassword);
  await device.publishAsync(topics.telemetry(dev.id), forged, { qos: 1 });
  await device.endAsync();
  await waitFor(async () => (await product.quarantined()).length === 3, 'three quarantine entries', 15_000);
}, 60_000);
afterAll(async () => {
  await product?.close();
});

describe('sensorpipe quarantine list', () => {
  it('prints every entry, oldest first, with its time, reason, device, message and payload', async () => {
    const result = await quarantine(['list']);
    expect(result.code).toBe(0);
    const lines = result.stdout.trimEnd().split('\n');
    expect(lines).toHaveLength(7); // two lines an entry, and the count
    const heads = [lines[0]!, lines[2]!, lines[4]!];
    expect(heads.map((l) => l.split(/\s+/).slice(1, 3))).toEqual([
      ['DEVICE_UNKNOWN', 'late-sensor'],
      ['DEVICE_UNKNOWN', 'late-sensor'],
      ['READING_BAD_SIGNATURE', 'dev-0'],
    ]);
    for (const head of heads) expect(Date.parse(head.split(/\s+/)[0]!)).toBeGreaterThan(T);
    expect(lines[0]).toContain('device is not in the registry');
    expect(lines[4]).toContain("signature does not verify with the device's hmac-sha256 key");
    expect(lines[1]!.trim()).toBe(latePayloads[0]!.slice(0, 200));
    expect(lines[5]!.trim()).toBe(forged.slice(0, 200));
    expect(lines[6]).toBe('3 entries');
  });

  it('--json, filtered by --reason and by --device', async () => {
    const unknown = await quarantine(['list', '--json', '--reason', 'DEVICE_UNKNOWN']);
    expect(unknown.code).toBe(0);
    const { entries, evicted } = JSON.parse(unknown.stdout) as { entries: QuarantineEntry[]; evicted: number };
    expect(evicted).toBe(0);
    expect(entries.map((e) => [e.reason, e.device, e.topic, e.payload])).toEqual(latePayloads.map((p) => ['DEVICE_UNKNOWN', 'late-sensor', topics.telemetry('late-sensor'), p]));

    const byDevice = await quarantine(['list', '--json', '--device', 'dev-0']);
    expect((JSON.parse(byDevice.stdout) as { entries: QuarantineEntry[] }).entries.map((e) => [e.reason, e.payload])).toEqual([['READING_BAD_SIGNATURE', forged]]);

    const none = await quarantine(['list', '--reason', 'PAYLOAD_TOO_LARGE']);
    expect(none.stdout).toBe('0 entries\n');
  });
});

describe('sensorpipe quarantine replay', () => {
  it('refuses to publish without the admin password, naming the setting', async () => {
    const result = await quarantine(['replay', '--mqtt-url', product.broker.url]);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('SENSORPIPE_ADMIN_PASSWORD');
    expect(await product.stored(late.id)).toEqual([]);
  });

  it("sends the DEVICE_UNKNOWN messages through ingest again once it knows the device: stored; the forged one is not replayed", async () => {
    const reloads = () => product.ingestLog.filter((l) => l.msg === 'registry reloaded').length;
    const before = reloads();
    await product.syncIngestRegistry();
    await waitFor(() => reloads() > before, 'ingest to reload its registry', 10_000, 20);
    const accepted = await counter('acceptedReadings');

    // `=`: a random password may start with "-", which parseArgs would not take as the option's value.
    const admin = ['--mqtt-url', product.broker.url, `--admin-password=${product.broker.services.admin.password}`];
    const result = await quarantine(['replay', ...admin]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe('replayed 2 messages (0 skipped: truncated or not telemetry)\n');
    await waitFor(async () => (await product.stored(late.id)).length === 2, "late-sensor's readings stored", 15_000);
    expect(await product.stored(late.id)).toEqual([
      { ts: T + 1, value: 21 },
      { ts: T + 2, value: 22 },
    ]);
    expect((await counter('acceptedReadings')) - accepted).toBe(2);
    // The forged message was left alone: not written, not rejected a second time.
    expect(await product.stored('dev-0')).toEqual([]);
    expect(await rejected('READING_BAD_SIGNATURE')).toBe(1);

    // Replayed again: the same messages are redeliveries now, acknowledged and not written twice.
    const duplicates = await counter('duplicates');
    const again = await quarantine(['replay', '--json', ...admin]);
    expect(JSON.parse(again.stdout)).toEqual({ replayed: 2, skipped: 0 });
    await waitFor(async () => (await counter('duplicates')) - duplicates === 2, 'the second replay counted as duplicates', 15_000);
    expect((await counter('acceptedReadings')) - accepted).toBe(2);
    expect(await product.stored(late.id)).toHaveLength(2);
  });
});
