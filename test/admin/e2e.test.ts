/**
 * Provisioning end to end, with the real broker, ingest and store (harness/product.ts) following the
 * registry file at the product's default poll:
 * - a device added through the admin API logs in to the broker and its signed reading is stored;
 *   revoked through the admin API, it is disconnected within the documented bound and refused after;
 * - `sensorpipe devices add --format c-header` is a header the C SDK compiles with (cc, as
 *   test/sdk/c.test.ts builds it, and as C++ for the Arduino sketch), and the payload a program built with
 *   it signs is stored;
 * - `sensorpipe devices add --format env`, sourced by a shell, is all the Python SDK's example needs:
 *   its readings are stored.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceCredentials } from '../../core/registry.ts';
import { signTelemetry } from '../../core/signature.ts';
import { topics } from '../../core/topics.ts';
import { runCli } from '../../harness/cli.ts';
import { startProduct, type Product } from '../../harness/product.ts';
import { waitFor } from '../../harness/publisher.ts';
import { closedByBroker, refusedWith } from '../broker/helpers.ts';
import { startTestAdmin, type TestAdmin } from './helpers.ts';

const run = promisify(execFile);
/** "Disconnected within seconds" (docs/SECURITY.md): held to 5 s once the registry is saved, as test/broker/revoke-cli.test.ts does. */
const REVOCATION_BOUND_MS = 5_000;
const sdk = fileURLToPath(new URL('../../sdk/c/', import.meta.url));
const SOURCES = ['src/sensorpipe.c', 'src/sp_sha256.c', 'src/sp_ed25519.c'].map((f) => join(sdk, f));
const CFLAGS = ['-std=c99', '-Wall', '-Wextra', '-Werror', '-pedantic', '-O2'];
const PYTHON_EXAMPLE = fileURLToPath(new URL('../../sdk/python/examples/bme280_publish.py', import.meta.url));
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

let product: Product;
let admin: TestAdmin;

beforeAll(async () => {
  product = await startProduct({ devices: 1, display: false });
  admin = await startTestAdmin({ registryPath: product.registryPath });
}, 60_000);
afterAll(async () => {
  await admin?.close();
  await product?.close();
});

/** Connects as the device, retrying while the broker has not yet read the registry change (it polls the file). */
async function connectDevice(id: string, password: string): Promise<mqtt.MqttClient> {
  let client: mqtt.MqttClient | undefined;
  await waitFor(
    async () => {
      client = await mqtt.connectAsync(product.broker.url, { clientId: id, username: id, password, reconnectPeriod: 0, connectTimeout: 5_000 }, false).catch(() => undefined);
      return client !== undefined;
    },
    `the broker to let ${id} in`,
    15_000,
    200,
  );
  return client!;
}

describe('a device provisioned through the admin API', () => {
  it('connects, has its signed reading stored, and is disconnected and refused once revoked through the API', async () => {
    const added = await admin.call('POST', '/admin/devices', { body: { id: 'field-1', site: 'Roof' } });
    expect(added.status, added.text).toBe(201);
    const credentials = added.json() as DeviceCredentials;
    if (credentials.signing.alg !== 'hmac-sha256') throw new Error('expected an HMAC device');

    const client = await connectDevice('field-1', credentials.mqttPassword);
    const ts = Date.now();
    const message = signTelemetry({ v: 1, device: 'field-1', readings: [{ seq: 1, ts, values: { temperature: 21.5 } }] }, { alg: 'hmac-sha256', key: Buffer.from(credentials.signing.key, 'base64') });
    await client.publishAsync(topics.telemetry('field-1'), JSON.stringify(message), { qos: 1 });
    await waitFor(async () => (await product.stored('field-1', 'temperature')).length > 0, 'the reading of field-1 in the store', 15_000);
    expect(await product.stored('field-1', 'temperature')).toEqual([{ ts, value: 21.5 }]);

    const revoked = await admin.call('POST', '/admin/devices/field-1/revoke');
    expect(revoked.status, revoked.text).toBe(200);
    // Counted from the API's answer: the registry is saved by then.
    await closedByBroker(client, REVOCATION_BOUND_MS);
    client.end(true);
    expect(await refusedWith(product.broker.url, { clientId: 'field-1', username: 'field-1', password: credentials.mqttPassword })).toBe(5);
  });
});

/** A program built with the SDK and the generated header: prints the id, the password and one signed payload. */
const C_PROGRAM = `#include <stdio.h>
#include <stdlib.h>
#include "sensorpipe.h"
#include "device.h"

static const char *const METRICS[] = {"temperature", "humidity"};

int main(int argc, char **argv) {
  uint64_t next_seq = 0;
  sp_seq_store store = sp_seq_store_in_variable(&next_seq);
  sp_device device;
  sp_reading reading;
  char payload[1024];
  size_t len = 0;
  int err;
  if (argc != 2) return 2;
  err = sp_device_init(&device, DEVICE_ID, SIGNING_ALG, SIGNING_KEY, METRICS, 2, &store);
  if (err == SP_OK) {
    sp_reading_begin(&reading, strtoull(argv[1], NULL, 10));
    err = sp_reading_set(&reading, &device, 0, 19.25);
  }
  if (err == SP_OK) err = sp_reading_set(&reading, &device, 1, 40.5);
  if (err == SP_OK) err = sp_take(&device, &reading);
  if (err == SP_OK) err = sp_payload(&device, &reading, 1, payload, sizeof payload, &len);
  if (err != SP_OK) {
    fprintf(stderr, "%s\\n", sp_strerror(err));
    return 1;
  }
  printf("%s\\n%s\\n%s\\n", DEVICE_ID, MQTT_PASSWORD, payload);
  return 0;
}
`;

describe('devices add --format c-header', () => {
  it.each(['hmac-sha256', 'ed25519'])('is a header the C SDK builds with (%s); the payload it signs is stored', async (alg) => {
    const id = `c-header-${alg === 'ed25519' ? 'ed' : 'hmac'}`;
    const added = await runCli(['devices', 'add', id, '--alg', alg, '--format', 'c-header', '--registry', product.registryPath]);
    expect(added.code, added.stderr).toBe(0);
    const dir = join(product.dir.path, id);
    await run('mkdir', ['-p', dir]);
    await writeFile(join(dir, 'device.h'), added.stdout);
    await writeFile(join(dir, 'main.c'), C_PROGRAM);
    const binary = join(dir, 'main');
    await run('cc', [...CFLAGS, '-I', join(sdk, 'src'), '-I', dir, ...SOURCES, join(dir, 'main.c'), '-o', binary]);
    // The Arduino sketch is C++: the header must compile there too (sensorpipe.h is C++-safe).
    await run('c++', ['-std=c++11', '-Wall', '-Wextra', '-Werror', '-pedantic', '-fsyntax-only', '-I', join(sdk, 'src'), '-x', 'c++', join(dir, 'device.h')]);

    const ts = Date.now();
    const { stdout } = await run(binary, [String(ts)]);
    const [deviceId, password, payload] = stdout.trim().split('\n') as [string, string, string];
    expect(deviceId).toBe(id);
    const client = await connectDevice(deviceId, password);
    await client.publishAsync(topics.telemetry(deviceId), payload, { qos: 1 });
    await client.endAsync();
    await waitFor(async () => (await product.stored(id, 'humidity')).length > 0, `the reading of ${id} in the store`, 15_000);
    expect(await product.stored(id, 'temperature')).toEqual([{ ts, value: 19.25 }]);
    expect(await product.stored(id, 'humidity')).toEqual([{ ts, value: 40.5 }]);
    expect((await product.quarantined()).filter((e) => e.device === id)).toEqual([]);
  });
});

describe('devices add --format env', () => {
  it('is what the Python SDK example reads: sourced by a shell, its readings are stored', async () => {
    const added = await runCli(['devices', 'add', 'py-env', '--format', 'env', '--registry', product.registryPath]);
    expect(added.code, added.stderr).toBe(0);
    const envFile = join(product.dir.path, 'py-env.env');
    await writeFile(envFile, added.stdout, { mode: 0o600 });
    const port = new URL(product.broker.url).port;
    const script = `set -a; . "$1"; set +a; exec ${PYTHON} "$2" --host 127.0.0.1 --port "$3" --fake --interval 0 --print-acked --count 2 --state-dir "$4"`;
    // The broker follows the registry file: retry until it lets the new device in.
    let stdout = '';
    await waitFor(
      async () => {
        const result = await run('bash', ['-c', script, 'bash', envFile, PYTHON_EXAMPLE, port, join(product.dir.path, 'py-env-state')], { env: { PATH: process.env.PATH ?? '', PYTHONDONTWRITEBYTECODE: '1' }, timeout: 30_000 }).catch((err: { stdout?: string }) => ({ stdout: err.stdout ?? '' }));
        stdout = result.stdout;
        return stdout.includes('"acked"');
      },
      'the Python example to publish as py-env',
      30_000,
      500,
    );
    const acked = stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .flatMap((line) => (JSON.parse(line) as { acked: { ts: number; values: { temperature: number } }[] }).acked);
    expect(acked.length).toBeGreaterThanOrEqual(1);
    await waitFor(async () => (await product.stored('py-env', 'temperature')).length >= acked.length, 'the Python readings in the store', 15_000);
    expect(await product.stored('py-env', 'temperature')).toEqual(acked.map((r) => ({ ts: r.ts, value: r.values.temperature })));
  });
});
