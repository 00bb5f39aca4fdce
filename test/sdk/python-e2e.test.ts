/**
 * The Python device library end to end: sdk/python/examples/bme280_publish.py (paho-mqtt, its fake
 * sensor) publishes signed readings through our broker to a running ingest, and every reading it saw
 * acknowledged is in the store with its values — including readings taken while it was offline, sent
 * later as one batch with their original timestamps. A reading signed with a wrong key is quarantined
 * as READING_BAD_SIGNATURE and not stored. Both signature schemes (Ed25519 through `cryptography`).
 *
 * Needs Debian's python3-paho-mqtt and python3-cryptography (CI installs them), run with /usr/bin/python3.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceCredentials } from '../../core/registry.ts';
import { runCli } from '../../harness/cli.ts';
import { startProduct, type Product } from '../../harness/product.ts';
import { waitFor } from '../../harness/publisher.ts';

const EXAMPLE = fileURLToPath(new URL('../../sdk/python/examples/bme280_publish.py', import.meta.url));
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const METRICS = ['temperature', 'humidity', 'pressure'] as const;

interface Reading {
  seq: number;
  ts: number;
  values: Record<(typeof METRICS)[number], number>;
}

let product: Product;
beforeAll(async () => {
  product = await startProduct({ devices: 2, display: false });
}, 60_000);
afterAll(async () => {
  await product?.close();
});

/** Runs the example to completion; returns the batches it printed as acknowledged. */
function runExample(args: string[]): Promise<{ code: number; batches: Reading[][]; stderr: string }> {
  const port = new URL(product.broker.url).port;
  return new Promise((resolve) => {
    execFile(
      PYTHON,
      [EXAMPLE, '--host', '127.0.0.1', '--port', port, '--fake', '--interval', '0', '--print-acked', ...args],
      { env: { PATH: process.env.PATH ?? '', PYTHONDONTWRITEBYTECODE: '1' }, timeout: 60_000 },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : 1;
        const batches = stdout
          .split('\n')
          .filter((line) => line.startsWith('{'))
          .map((line) => (JSON.parse(line) as { acked: Reading[] }).acked);
        resolve({ code, batches, stderr });
      },
    );
  });
}

function keyOf(credentials: DeviceCredentials): string {
  return credentials.signing.alg === 'hmac-sha256' ? credentials.signing.key : credentials.signing.privateKey;
}

/** Waits until every metric of every reading is in the store with its value. */
async function expectStored(device: string, readings: Reading[]): Promise<void> {
  for (const metric of METRICS) {
    const expected = readings.map((r) => ({ ts: r.ts, value: r.values[metric] }));
    await waitFor(async () => (await product.stored(device, metric)).length >= expected.length, `${readings.length} ${metric} points of ${device}`, 15_000);
    expect(await product.stored(device, metric)).toEqual(expected);
  }
}

async function expectBadSignatureQuarantined(device: string, credentials: DeviceCredentials, stateDir: string): Promise<void> {
  const before = (await product.quarantined()).filter((e) => e.reason === 'READING_BAD_SIGNATURE').length;
  const storedBefore = await product.stored(device);
  // Another key of the same length and scheme: the broker lets the device in (its password is right).
  const wrong = Buffer.from(Buffer.from(keyOf(credentials), 'base64').map((b) => b ^ 0xff)).toString('base64');
  const run = await runExample(['--device', device, `--password=${credentials.mqttPassword}`, '--key', wrong, '--alg', credentials.signing.alg, '--count', '1', '--state-dir', stateDir]);
  expect(run.stderr).not.toMatch(/Traceback/);
  expect(run.code).toBe(0); // the broker acknowledged it: the verdict is ingest's
  const [forged] = run.batches.flat();
  expect(forged).toBeDefined();
  await waitFor(async () => (await product.quarantined()).filter((e) => e.reason === 'READING_BAD_SIGNATURE').length > before, 'a READING_BAD_SIGNATURE entry', 15_000);
  const entry = (await product.quarantined()).filter((e) => e.reason === 'READING_BAD_SIGNATURE').at(-1)!;
  expect(entry).toMatchObject({ device, topic: `sensors/${device}/telemetry` });
  expect(JSON.parse(entry.payload)).toMatchObject({ device, readings: [forged] });
  expect(await product.stored(device)).toEqual(storedBefore);
}

describe('sdk/python end to end (paho-mqtt → broker → ingest → store)', () => {
  it('hmac-sha256: readings taken offline go out as one batch later; all are stored with their values; a forged one is quarantined', async () => {
    const [dev] = product.devices as [Product['devices'][number]];
    const stateDir = join(product.dir.path, 'py-hmac');
    const common = ['--device', dev.id, `--password=${dev.credentials.mqttPassword}`, '--key', keyOf(dev.credentials), '--state-dir', stateDir];

    // An outage: three readings into the outbox file, nothing sent; the process ends (a reboot).
    const offline = await runExample([...common, '--offline', '--count', '3']);
    expect(offline.stderr).not.toMatch(/Traceback/);
    expect(offline).toMatchObject({ code: 0, batches: [] });

    // Back online: the buffered three and two new readings.
    const online = await runExample([...common, '--count', '2']);
    expect(online.stderr).not.toMatch(/Traceback/);
    expect(online.code).toBe(0);
    const acked = online.batches.flat();
    expect(acked.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(Math.max(...online.batches.map((b) => b.length))).toBeGreaterThanOrEqual(4); // the backlog went as one batch
    await expectStored(dev.id, acked);

    await expectBadSignatureQuarantined(dev.id, dev.credentials, stateDir);
    expect(await product.rejected('READING_BAD_SIGNATURE')).toBe(1);
  });

  it('ed25519: a device added with --alg ed25519 publishes readings that are stored; a forged one is quarantined', async () => {
    const added = await runCli(['devices', 'add', 'py-ed', '--alg', 'ed25519', '--registry', product.registryPath, '--json']);
    expect(added.code).toBe(0);
    const credentials = JSON.parse(added.stdout) as DeviceCredentials;
    await waitFor(() => product.ingestLog.some((l) => l.msg === 'registry reloaded'), 'ingest to reload its registry', 10_000, 50);
    const stateDir = join(product.dir.path, 'py-ed');
    // The broker picks the new device up at its next registry poll; paho retries the login until then.
    const run = await runExample(['--device', 'py-ed', `--password=${credentials.mqttPassword}`, '--key', keyOf(credentials), '--alg', 'ed25519', '--count', '3', '--state-dir', stateDir]);
    expect(run.stderr).not.toMatch(/Traceback/);
    expect(run.code).toBe(0);
    const acked = run.batches.flat();
    expect(acked.map((r) => r.seq)).toEqual([1, 2, 3]);
    await expectStored('py-ed', acked);

    await expectBadSignatureQuarantined('py-ed', credentials, stateDir);
  });
});
