/**
 * The device registry through the real CLI: add, list, revoke and rotate round trip; the file holds no
 * plaintext secret and has mode 0600; a corrupted file is reported and never overwritten.
 */
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { loadRegistry, verifyKeyOf, verifyMqttPassword, ed25519KeyMatches, type DeviceCredentials } from '../../core/registry.ts';
import { signTelemetry, verifyTelemetrySignature } from '../../core/signature.ts';
import { runCli } from '../../harness/cli.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let dir: TempDir;
let registryPath: string;
const cli = (...args: string[]) => runCli([...args, '--registry', registryPath]);

beforeEach(async () => {
  dir = await tempDir();
  registryPath = join(dir.path, 'registry.json');
});
afterEach(async () => {
  await dir.remove();
});

async function add(id: string, ...flags: string[]): Promise<DeviceCredentials> {
  const result = await cli('devices', 'add', id, '--json', ...flags);
  expect(result.stderr).toBe('');
  expect(result.code).toBe(0);
  return JSON.parse(result.stdout) as DeviceCredentials;
}

describe('sensorpipe devices', () => {
  it('adds, lists, rotates and revokes through the CLI', async () => {
    const boiler = await add('boiler-7', '--site', 'Plant 3, Hall "B"', '--model', 'TH-200');
    const press = await add('press-12', '--alg', 'ed25519');

    const list = await cli('devices', 'list', '--json');
    expect(JSON.parse(list.stdout)).toMatchObject([
      { id: 'boiler-7', status: 'active', alg: 'hmac-sha256', meta: { site: 'Plant 3, Hall "B"', model: 'TH-200' } },
      { id: 'press-12', status: 'active', alg: 'ed25519' },
    ]);

    let registry = await loadRegistry(registryPath);
    const boilerRecord = registry.get('boiler-7')!;
    expect(verifyMqttPassword(boilerRecord, boiler.mqttPassword)).toBe(true);
    expect(verifyMqttPassword(boilerRecord, `${boiler.mqttPassword}x`)).toBe(false);
    expect(verifyMqttPassword(registry.get('press-12')!, boiler.mqttPassword)).toBe(false);
    expect(press.signing.alg === 'ed25519' && ed25519KeyMatches(registry.get('press-12')!, press.signing.privateKey)).toBe(true);

    // A message signed with the printed key verifies with what the registry holds.
    const body = { v: 1 as const, device: 'press-12', readings: [{ seq: 1, ts: Date.UTC(2026, 0, 1), values: { current: 3.5 } }] };
    const signed = press.signing.alg === 'ed25519' ? signTelemetry(body, { alg: 'ed25519', privateKey: Buffer.from(press.signing.privateKey, 'base64') }) : undefined;
    expect(verifyTelemetrySignature(signed!, verifyKeyOf(registry.get('press-12')!))).toBe(true);

    const rotated = JSON.parse((await cli('devices', 'rotate', 'boiler-7', '--json')).stdout) as DeviceCredentials;
    registry = await loadRegistry(registryPath);
    expect(verifyMqttPassword(registry.get('boiler-7')!, rotated.mqttPassword)).toBe(true);
    expect(verifyMqttPassword(registry.get('boiler-7')!, boiler.mqttPassword)).toBe(false);
    expect(rotated.signing).not.toEqual(boiler.signing);

    const revoke = await cli('devices', 'revoke', 'press-12');
    expect(revoke.code).toBe(0);
    registry = await loadRegistry(registryPath);
    expect(registry.get('press-12')?.status).toBe('revoked');
    expect(registry.get('press-12')?.revokedAt).toBeDefined();
  });

  it('keeps no plaintext MQTT secret in the file, and the file is private (0600)', async () => {
    const hmac = await add('dev-a');
    const ed = await add('dev-b', '--alg', 'ed25519');
    const file = await readFile(registryPath, 'utf8');
    expect(file).not.toContain(hmac.mqttPassword);
    expect(file).not.toContain(ed.mqttPassword);
    expect(file).not.toContain(Buffer.from(hmac.mqttPassword, 'base64url').toString('base64'));
    if (ed.signing.alg === 'ed25519') expect(file).not.toContain(ed.signing.privateKey);
    expect((await stat(registryPath)).mode & 0o777).toBe(0o600);
  });

  it('refuses bad input with a clear error and a non-zero exit', async () => {
    await add('dev-a');
    const cases: [string[], RegExp][] = [
      [['devices', 'add', 'dev-a'], /REGISTRY_CONFLICT/],
      // A bad id or metadata value is DEVICE_INVALID, as the admin API answers it (admin/devices.ts).
      [['devices', 'add', 'Bad_ID'], /DEVICE_INVALID.*lowercase slug/],
      [['devices', 'add', 'x'.repeat(60)], /DEVICE_INVALID/],
      [['devices', 'add', 'dev-c', '--alg', 'rsa'], /CONFIG_INVALID.*--alg/],
      [['devices', 'add', 'dev-c', '--site', 'a\u0007b'], /DEVICE_INVALID.*control characters/],
      [['devices', 'revoke', 'nobody'], /DEVICE_UNKNOWN/],
      [['devices', 'rotate'], /needs a device id/],
      [['devices', 'explode'], /unknown devices action/],
      [['devices', 'list', '--no-such-flag'], /CONFIG_INVALID/],
    ];
    for (const [args, message] of cases) {
      const result = await cli(...args);
      expect(result.code, args.join(' ')).not.toBe(0);
      expect(result.stderr, args.join(' ')).toMatch(message);
      expect(result.stderr, args.join(' ')).not.toMatch(/at .*\.ts:\d+/); // a message, not a stack trace
    }
  });

  it('reports a corrupted registry and never overwrites it', async () => {
    const corruptFiles = [
      '{"format":"sensorpipe-registry","version":1,"devices":[{"id":',
      '[]',
      '{"format":"sensorpipe-registry","version":1,"devices":[{"id":"x"}]}',
      '',
    ];
    for (const [i, corrupt] of corruptFiles.entries()) {
      await writeFile(registryPath, corrupt, { mode: 0o600 });
      await expect(loadRegistry(registryPath)).rejects.toMatchObject({ code: 'REGISTRY_CORRUPT' });
      // Through the real CLI for two of them (each spawn costs half a second).
      const commands = i < 2 ? [['devices', 'add', 'dev-z'], ['devices', 'list']] : [];
      for (const args of commands) {
        const result = await cli(...args);
        expect(result.code, `${args.join(' ')} on ${JSON.stringify(corrupt)}`).toBe(1);
        expect(result.stderr).toMatch(/REGISTRY_CORRUPT.*left untouched/);
      }
      expect(await readFile(registryPath, 'utf8')).toBe(corrupt);
    }
  });

  it('loses no change when several commands edit the registry at once', async () => {
    const ids = Array.from({ length: 8 }, (_, i) => `dev-${i}`);
    const results = await Promise.all(ids.map((id) => cli('devices', 'add', id, '--json')));
    expect(results.map((r) => r.code)).toEqual(ids.map(() => 0));
    expect((await loadRegistry(registryPath)).list().map((d) => d.id).sort()).toEqual(ids.sort());
  });
});
