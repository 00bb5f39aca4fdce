/**
 * `sensorpipe devices add --trust broker-authenticated --payload …`: the registry gets the trust level
 * and the mapping, the output has an MQTT password and no signing key, and hostile flags (a bad JSON
 * pointer, a mapping on a signed device, --alg on an unsigned one, not JSON) are refused, with the
 * admin API's DEVICE_INVALID for a bad device and CONFIG_INVALID for a bad flag, and leave the registry
 * as it was.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRegistry, trustOf } from '../../core/registry.ts';
import { runCli } from '../../harness/cli.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let dir: TempDir;
let registry: string;

beforeAll(async () => {
  dir = await tempDir('trust-cli-');
  registry = join(dir.path, 'registry.json');
});
afterAll(async () => {
  await dir?.remove();
});

const add = (...args: string[]) => runCli(['devices', 'add', ...args, '--registry', registry]);

describe('sensorpipe devices add: trust and payload flags', () => {
  it('adds a Tasmota plug: an MQTT password, no signing key', async () => {
    const result = await add('plug-1', '--trust', 'broker-authenticated', '--payload', 'tasmota', '--site', 'kitchen');
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toMatch(/mqtt password: \S{43}/);
    expect(result.stdout).not.toMatch(/signing key:|private key:/);
    const record = (await loadRegistry(registry)).get('plug-1')!;
    expect(trustOf(record)).toBe('broker-authenticated');
    expect(record.payload).toEqual({ format: 'tasmota' });
    expect(record.signing).toEqual({ alg: 'none' });
    expect(record.meta).toEqual({ site: 'kitchen' });
  });

  it('adds a pointer mapping given as JSON, and prints JSON credentials without a key', async () => {
    const result = await add('gw-1', '--trust', 'broker-authenticated', '--payload', 'pointers', '--pointers', '{"temperature":"/AM2301/Temperature","power":{"pointer":"/ENERGY/Power","unit":"W"}}', '--pointers-ts', '{"pointer":"/Time","format":"iso8601"}', '--format', 'json');
    expect(result.code, result.stderr).toBe(0);
    expect(Object.keys(JSON.parse(result.stdout) as object).sort()).toEqual(['deviceId', 'mqttPassword', 'trust']);
    expect((await loadRegistry(registry)).get('gw-1')!.payload).toEqual({
      format: 'pointers',
      metrics: { temperature: '/AM2301/Temperature', power: { pointer: '/ENERGY/Power', unit: 'W' } },
      ts: { pointer: '/Time', format: 'iso8601' },
    });
  });

  it('rotates a broker-authenticated device\'s MQTT password (it has no key)', async () => {
    const before = (await loadRegistry(registry)).get('plug-1')!.mqtt.hash;
    const result = await runCli(['devices', 'rotate', 'plug-1', '--registry', registry, '--format', 'json']);
    expect(result.code, result.stderr).toBe(0);
    expect(Object.keys(JSON.parse(result.stdout) as object).sort()).toEqual(['deviceId', 'mqttPassword', 'trust']);
    const record = (await loadRegistry(registry)).get('plug-1')!;
    expect(record.mqtt.hash).not.toBe(before);
    expect(record.signing).toEqual({ alg: 'none' });
  });

  it.each([
    ['a pointer without its slash', ['bad-1', '--trust', 'broker-authenticated', '--payload', 'pointers', '--pointers', '{"temperature":"AM2301/Temperature"}'], /JSON pointer/, 'DEVICE_INVALID'],
    ['pointers that are not JSON', ['bad-2', '--trust', 'broker-authenticated', '--payload', 'pointers', '--pointers', '{temperature:/t}'], /--pointers is not JSON/, 'CONFIG_INVALID'],
    ['a bad metric name', ['bad-3', '--trust', 'broker-authenticated', '--payload', 'pointers', '--pointers', '{"Temp C":"/t"}'], /payload.metrics.Temp C: Invalid key/, 'DEVICE_INVALID'],
    ['33 metrics', ['bad-4', '--trust', 'broker-authenticated', '--payload', 'pointers', '--pointers', JSON.stringify(Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`m${i}`, `/m${i}`])))], /at most 32/, 'DEVICE_INVALID'],
    ['a mapping on a signed device', ['bad-5', '--payload', 'flat-json'], /broker-authenticated devices only/, 'DEVICE_INVALID'],
    ['no mapping', ['bad-6', '--trust', 'broker-authenticated'], /needs a payload mapping/, 'DEVICE_INVALID'],
    ['--alg on an unsigned device', ['bad-7', '--trust', 'broker-authenticated', '--payload', 'flat-json', '--alg', 'ed25519'], /no signing key/, 'DEVICE_INVALID'],
    ['an unknown format', ['bad-8', '--trust', 'broker-authenticated', '--payload', 'csv'], /payload/, 'CONFIG_INVALID'],
    ['--pointers without --payload pointers', ['bad-9', '--trust', 'broker-authenticated', '--payload', 'tasmota', '--pointers', '{"t":"/t"}'], /go with --payload pointers/, 'CONFIG_INVALID'],
  ])('refuses %s, and changes nothing', async (_name, args, message, code) => {
    const before = await readFile(registry, 'utf8');
    const result = await add(...args);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain(code);
    expect(result.stderr).toMatch(message);
    expect(await readFile(registry, 'utf8')).toBe(before);
  });
});
