/**
 * The C device library end to end: sdk/c/examples/linux_mosquitto (the library and Debian's
 * libmosquitto) publishes signed readings through our broker to ingest, and every reading is found in
 * the store with its timestamp and values. A second run on the same seq file (a reboot) continues the
 * count, and ingest stores that run too (a reused seq would be quarantined as a replay). An Ed25519
 * device provisioned with `sensorpipe devices add --alg ed25519` is stored as well. A reading signed
 * with a wrong key is quarantined as READING_BAD_SIGNATURE and not stored.
 *
 * Needs `cc` and libmosquitto-dev (Debian); without them this file fails rather than skips.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DeviceCredentials } from '../../core/registry.ts';
import { runCli } from '../../harness/cli.ts';
import { startProduct, type Product } from '../../harness/product.ts';
import { waitFor, type TestDevice } from '../../harness/publisher.ts';

const run = promisify(execFile);
const sdk = new URL('../../sdk/c/', import.meta.url).pathname;
const SOURCES = ['src/sensorpipe.c', 'src/sp_sha256.c', 'src/sp_ed25519.c', 'examples/linux_mosquitto/sensorpipe_publish.c'].map((f) => join(sdk, f));

interface SentReading {
  seq: number;
  ts: number;
  temperature: number;
  humidity: number;
}

let product: Product;
let publisher: string;

beforeAll(async () => {
  product = await startProduct({ devices: 2, display: false });
  publisher = join(product.dir.path, 'sensorpipe_publish');
  await run('cc', ['-std=c99', '-Wall', '-Wextra', '-Werror', '-pedantic', '-O2', '-I', join(sdk, 'src'), ...SOURCES, '-lmosquitto', '-o', publisher]);
}, 120_000);
afterAll(async () => {
  await product?.close();
});

function hmacKeyHex(device: TestDevice): string {
  if (device.key.alg !== 'hmac-sha256') throw new Error('an HMAC test device was expected');
  return device.key.key.toString('hex');
}

/** Runs the C publisher; resolves with its exit code and the readings it says it sent. */
async function publish(device: string, password: string, alg: string, keyHex: string, seqFile: string, count: number) {
  const { port } = new URL(product.broker.url);
  const args = ['127.0.0.1', port, device, password, alg, keyHex, join(product.dir.path, seqFile), String(count)];
  let stdout: string;
  let code = 0;
  try {
    ({ stdout } = await run(publisher, args, { timeout: 20_000 }));
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    code = typeof e.code === 'number' ? e.code : -1;
    stdout = `${e.stdout ?? ''}${e.stderr ?? ''}`;
  }
  const readings: SentReading[] = [...stdout.matchAll(/^reading (\d+) (\d+) temperature=(\S+) humidity=(\S+)$/gm)].map((m) => ({
    seq: Number(m[1]),
    ts: Number(m[2]),
    temperature: Number(m[3]),
    humidity: Number(m[4]),
  }));
  return { code, stdout, readings };
}

async function expectStored(device: string, sent: SentReading[]) {
  const want = (metric: 'temperature' | 'humidity') => sent.map((r) => ({ ts: r.ts, value: r[metric] })).sort((a, b) => a.ts - b.ts);
  await waitFor(async () => (await product.stored(device, 'humidity')).length >= sent.length, `${sent.length} readings of ${device} in the store`, 15_000);
  expect(await product.stored(device, 'temperature')).toEqual(want('temperature'));
  expect(await product.stored(device, 'humidity')).toEqual(want('humidity'));
}

describe('C device library end to end (libmosquitto → broker → ingest → store)', () => {
  it('stores every reading with its values, across a reboot (seq kept in the store file)', async () => {
    const [device] = product.devices as [TestDevice];
    const first = await publish(device.id, device.credentials.mqttPassword, 'hmac-sha256', hmacKeyHex(device), 'dev-0.seq', 6);
    expect(first.code, first.stdout).toBe(0);
    expect(first.readings.map((r) => r.seq)).toEqual([0, 1, 2, 3, 4, 5]);
    expect(first.stdout).toMatch(/^acked 3 \(4 readings\)$/m); // sent as batches of up to 4
    await expectStored(device.id, first.readings);

    const afterReboot = await publish(device.id, device.credentials.mqttPassword, 'hmac-sha256', hmacKeyHex(device), 'dev-0.seq', 3);
    expect(afterReboot.code, afterReboot.stdout).toBe(0);
    expect(afterReboot.readings.map((r) => r.seq)).toEqual([6, 7, 8]);
    await expectStored(device.id, [...first.readings, ...afterReboot.readings]);
    expect(await product.quarantined()).toEqual([]);
  });

  it('an Ed25519 device (devices add --alg ed25519) is stored too', async () => {
    const added = await runCli(['devices', 'add', 'edge-ed', '--alg', 'ed25519', '--registry', product.registryPath, '--json']);
    expect(added.code, added.stderr).toBe(0);
    const credentials = JSON.parse(added.stdout) as DeviceCredentials;
    if (credentials.signing.alg !== 'ed25519') throw new Error('expected an ed25519 device');
    const seedHex = Buffer.from(credentials.signing.privateKey, 'base64').toString('hex');
    // The broker and ingest follow the registry file: retry until the broker lets the new device in.
    let result: Awaited<ReturnType<typeof publish>> | undefined;
    await waitFor(
      async () => {
        result = await publish('edge-ed', credentials.mqttPassword, 'ed25519', seedHex, 'edge-ed.seq', 3);
        return result.code !== 3;
      },
      'the broker to let the new device in',
      20_000,
      250,
    );
    expect(result!.code, result!.stdout).toBe(0);
    await expectStored('edge-ed', result!.readings);
    expect((await product.quarantined()).filter((e) => e.device === 'edge-ed')).toEqual([]);
  });

  it('a reading signed with a wrong key is quarantined as READING_BAD_SIGNATURE and not stored', async () => {
    const device = product.devices[1]!;
    const right = hmacKeyHex(device);
    const wrong = (right[0] === '0' ? '1' : '0') + right.slice(1);
    const sent = await publish(device.id, device.credentials.mqttPassword, 'hmac-sha256', wrong, 'dev-1.seq', 1);
    expect(sent.code, sent.stdout).toBe(0); // the broker acknowledges it: only ingest can check a signature
    await waitFor(async () => (await product.quarantined()).some((e) => e.device === device.id), 'a quarantine entry for dev-1', 15_000);
    const entries = (await product.quarantined()).filter((e) => e.device === device.id);
    expect(entries.map((e) => e.reason)).toEqual(['READING_BAD_SIGNATURE']);
    expect(await product.rejected('READING_BAD_SIGNATURE')).toBe(1);
    expect(await product.stored(device.id, 'temperature')).toEqual([]);
  });
});
