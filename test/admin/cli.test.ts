/**
 * `sensorpipe devices` and the admin API are one implementation: the same input is refused with the
 * same code by both (the real CLI as a child process, the real API on a loopback port, each on its own
 * registry file). The CLI's output formats (text, json and its --json alias, env, c-header), get,
 * update, and bulk (CSV or JSON, all or nothing, --out never overwriting a file); and `sensorpipe
 * admin` as a process: off without a token, serving with one, exiting 0 on SIGTERM.
 */
import { readFile, stat, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRegistry, verifyMqttPassword, type DeviceCredentials } from '../../core/registry.ts';
import { runCli, spawnCli } from '../../harness/cli.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { TOKEN, call, startTestAdmin, type TestAdmin } from './helpers.ts';

let dir: TempDir;
let cliRegistry: string;
let api: TestAdmin;
const cli = (...args: string[]) => runCli([...args, '--registry', cliRegistry]);

beforeAll(async () => {
  dir = await tempDir('sensorpipe-admin-cli-');
  cliRegistry = join(dir.path, 'cli-registry.json');
  api = await startTestAdmin({ registryPath: join(dir.path, 'api-registry.json') });
  // The same starting point on both sides.
  expect((await cli('devices', 'add', 'taken-1')).code).toBe(0);
  expect((await api.call('POST', '/admin/devices', { body: { id: 'taken-1' } })).status).toBe(201);
});
afterAll(async () => {
  await api?.close();
  await dir?.remove();
});

/** The code of a CLI failure, from `sensorpipe: CODE: message`. */
const cliCode = (stderr: string) => /^sensorpipe: ([A-Z_]+):/m.exec(stderr)?.[1];

describe('the CLI and the admin API refuse the same input with the same code', () => {
  const cases: { what: string; args: string[]; method: string; path: string; body?: unknown; code: string }[] = [
    { what: 'an invalid id', args: ['add', 'Bad_ID'], method: 'POST', path: '/admin/devices', body: { id: 'Bad_ID' }, code: 'DEVICE_INVALID' },
    { what: 'a reserved id', args: ['add', 'prototype'], method: 'POST', path: '/admin/devices', body: { id: 'prototype' }, code: 'DEVICE_INVALID' },
    { what: 'an id too long', args: ['add', 'x'.repeat(60)], method: 'POST', path: '/admin/devices', body: { id: 'x'.repeat(60) }, code: 'DEVICE_INVALID' },
    { what: 'metadata with a control character', args: ['add', 'dev-c', '--site', 'a\u0007b'], method: 'POST', path: '/admin/devices', body: { id: 'dev-c', site: 'a\u0007b' }, code: 'DEVICE_INVALID' },
    { what: 'an existing id', args: ['add', 'taken-1'], method: 'POST', path: '/admin/devices', body: { id: 'taken-1' }, code: 'REGISTRY_CONFLICT' },
    { what: 'revoking an unknown device', args: ['revoke', 'nobody'], method: 'POST', path: '/admin/devices/nobody/revoke', code: 'DEVICE_UNKNOWN' },
    { what: 'rotating an unknown device', args: ['rotate', 'nobody'], method: 'POST', path: '/admin/devices/nobody/rotate', code: 'DEVICE_UNKNOWN' },
    { what: 'getting an unknown device', args: ['get', 'nobody'], method: 'GET', path: '/admin/devices/nobody', code: 'DEVICE_UNKNOWN' },
    { what: 'updating an unknown device', args: ['update', 'nobody', '--site', 'x'], method: 'PATCH', path: '/admin/devices/nobody', body: { site: 'x' }, code: 'DEVICE_UNKNOWN' },
    { what: 'an update that changes nothing', args: ['update', 'taken-1'], method: 'PATCH', path: '/admin/devices/taken-1', body: {}, code: 'DEVICE_INVALID' },
    { what: 'removing an unknown field', args: ['update', 'taken-1', '--unset', 'colour'], method: 'PATCH', path: '/admin/devices/taken-1', body: { colour: null }, code: 'DEVICE_INVALID' },
  ];
  it.each(cases)('$what: $code', async ({ args, method, path, body, code }) => {
    const fromCli = await cli('devices', ...args);
    expect(fromCli.code).toBe(1);
    expect(cliCode(fromCli.stderr), fromCli.stderr).toBe(code);
    const fromApi = await api.call(method, path, body === undefined ? {} : { body });
    expect(fromApi.json().code, fromApi.text).toBe(code);
  });

  it('a bulk file with one bad row: DEVICE_INVALID from both, nothing written by either', async () => {
    const csv = 'id,site\nbulk-ok-1,A\nNOT OK,B\nbulk-ok-2,C\n';
    await writeFile(join(dir.path, 'bad.csv'), csv);
    const before = await readFile(cliRegistry, 'utf8');
    const fromCli = await cli('devices', 'bulk', join(dir.path, 'bad.csv'));
    expect(cliCode(fromCli.stderr), fromCli.stderr).toBe('DEVICE_INVALID');
    expect(fromCli.stderr).toContain('CSV row 3');
    expect(await readFile(cliRegistry, 'utf8')).toBe(before);
    const fromApi = await api.call('POST', '/admin/devices/_bulk', { body: csv, contentType: 'text/csv' });
    expect(fromApi.json()).toMatchObject({ code: 'DEVICE_INVALID' });
    expect(fromApi.json().message).toContain('CSV row 3');
    expect((await loadRegistry(api.registryPath)).get('bulk-ok-1')).toBeUndefined();
  });
});

describe('sensorpipe devices', () => {
  it('prints credentials as text, json (and --json), env or a C header, for add and rotate', async () => {
    const text = await cli('devices', 'add', 'fmt-text');
    expect(text.stdout).toMatch(/^device: +fmt-text$/m);
    expect(text.stdout).toMatch(/shown once/);
    const json = JSON.parse((await cli('devices', 'add', 'fmt-json', '--json')).stdout) as DeviceCredentials;
    expect(json.deviceId).toBe('fmt-json');
    expect(JSON.parse((await cli('devices', 'add', 'fmt-json2', '--format', 'json')).stdout)).toMatchObject({ deviceId: 'fmt-json2' });
    const env = (await cli('devices', 'add', 'fmt-env', '--alg', 'ed25519', '--format', 'env')).stdout;
    const vars = Object.fromEntries(env.split('\n').filter((l) => /^[A-Z_]+=/.test(l)).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    expect(Object.keys(vars)).toEqual(['SENSORPIPE_DEVICE_ID', 'SENSORPIPE_MQTT_PASSWORD', 'SENSORPIPE_ALG', 'SENSORPIPE_SIGNING_KEY']);
    expect(vars.SENSORPIPE_ALG).toBe('ed25519');
    for (const value of Object.values(vars)) expect(value).toMatch(/^[A-Za-z0-9+/=_-]+$/); // nothing a shell would need quoted
    const registry = await loadRegistry(cliRegistry);
    expect(verifyMqttPassword(registry.get('fmt-env')!, vars.SENSORPIPE_MQTT_PASSWORD!)).toBe(true);
    const header = (await cli('devices', 'rotate', 'fmt-text', '--format', 'c-header')).stdout;
    expect(header).toMatch(/^static const char \*DEVICE_ID = "fmt-text";/m);
    expect(header).toMatch(/^static const char \*MQTT_PASSWORD = "[A-Za-z0-9_-]+";$/m);
    expect(header).toMatch(/^static const sp_alg SIGNING_ALG = SP_HMAC_SHA256;$/m);
    expect(header).toMatch(/^static const uint8_t SIGNING_KEY\[32\] = \{/m);
    const password = /MQTT_PASSWORD = "([^"]+)"/.exec(header)![1]!;
    expect(verifyMqttPassword((await loadRegistry(cliRegistry)).get('fmt-text')!, password)).toBe(true);
    const both = await cli('devices', 'add', 'fmt-both', '--json', '--format', 'env');
    expect(cliCode(both.stderr)).toBe('CONFIG_INVALID');
    expect((await cli('devices', 'add', 'fmt-bad', '--format', 'yaml')).code).toBe(1);
    expect((await loadRegistry(cliRegistry)).get('fmt-both')).toBeUndefined();
  });

  it('gets and updates a device', async () => {
    expect((await cli('devices', 'add', 'meta-1', '--site', 'North', '--model', 'M1')).code).toBe(0);
    const updated = await cli('devices', 'update', 'meta-1', '--device-profile', 'env', '--unset', 'model', '--json');
    expect(updated.code, updated.stderr).toBe(0);
    expect(JSON.parse(updated.stdout)).toMatchObject({ id: 'meta-1', meta: { site: 'North', profile: 'env' } });
    const got = JSON.parse((await cli('devices', 'get', 'meta-1', '--json')).stdout);
    expect(got.meta).toEqual({ site: 'North', profile: 'env' });
    expect(got).not.toHaveProperty('mqtt');
  });

  it('bulk adds a JSON or CSV file, writing the credentials to a new file of mode 0600 that it never overwrites', async () => {
    await writeFile(join(dir.path, 'fleet.json'), JSON.stringify({ devices: [{ id: 'fleet-1', site: 'A' }, { id: 'fleet-2', alg: 'ed25519' }] }));
    const out = join(dir.path, 'fleet-credentials.csv');
    const result = await cli('devices', 'bulk', join(dir.path, 'fleet.json'), '--format', 'csv', '--out', out);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toBe('');
    expect((await stat(out)).mode & 0o777).toBe(0o600);
    const rows = (await readFile(out, 'utf8')).trim().split('\r\n').slice(1).map((r) => r.split(','));
    expect(rows.map((r) => r[0])).toEqual(['fleet-1', 'fleet-2']);
    const registry = await loadRegistry(cliRegistry);
    for (const row of rows) expect(verifyMqttPassword(registry.get(row[0]!)!, row[2]!)).toBe(true);

    // --out exists: refused before the registry is touched, so no secret is lost.
    await writeFile(join(dir.path, 'more.csv'), 'id\nfleet-3\n');
    const before = await readFile(cliRegistry, 'utf8');
    const again = await cli('devices', 'bulk', join(dir.path, 'more.csv'), '--out', out);
    expect(cliCode(again.stderr)).toBe('CONFIG_INVALID');
    expect(await readFile(cliRegistry, 'utf8')).toBe(before);
    const json = await cli('devices', 'bulk', join(dir.path, 'more.csv'));
    expect(JSON.parse(json.stdout).devices.map((d: DeviceCredentials) => d.deviceId)).toEqual(['fleet-3']);
  });

  it('refuses a bulk JSON file with a key given twice or __proto__, like the API', async () => {
    for (const [name, text] of [['twice.json', '{"devices":[{"id":"dup-1","id":"dup-2"}]}'], ['proto.json', '{"devices":[{"id":"proto-1","__proto__":{}}]}']] as const) {
      await writeFile(join(dir.path, name), text);
      const result = await cli('devices', 'bulk', join(dir.path, name));
      expect(cliCode(result.stderr), name).toBe('PAYLOAD_INVALID');
      expect((await api.call('POST', '/admin/devices/_bulk', { body: text, contentType: 'application/json' })).json().code).toBe('PAYLOAD_INVALID');
    }
  });
});

describe('sensorpipe admin', () => {
  it('is off without a token: CONFIG_INVALID naming the variable', async () => {
    const result = await runCli(['admin', '--registry', cliRegistry, '--admin-port', '0'], { env: { SENSORPIPE_ADMIN_TOKEN: '' } });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/CONFIG_INVALID.*SENSORPIPE_ADMIN_TOKEN/);
    const short = await runCli(['admin', '--registry', cliRegistry, '--admin-port', '0'], { env: { SENSORPIPE_ADMIN_TOKEN: 'short' } });
    expect(short.stderr).toMatch(/CONFIG_INVALID.*at least 16/);
    expect(short.stderr).not.toContain('short"');
  });

  it('names the option when its port is taken', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = blocker.address() as AddressInfo;
      const result = await runCli(['admin', '--registry', cliRegistry, '--admin-port', String(port)], { env: { SENSORPIPE_ADMIN_TOKEN: TOKEN } });
      expect(result.code).toBe(1);
      expect(result.stderr).toMatch(new RegExp(`CONFIG_INVALID: port ${port} .*SENSORPIPE_ADMIN_PORT`));
      expect(result.stderr).not.toContain(TOKEN);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });

  it('serves the registry the CLI writes, and exits 0 on SIGTERM', async () => {
    const process = await spawnCli(['admin', '--registry', cliRegistry, '--admin-port', '0'], { SENSORPIPE_ADMIN_TOKEN: TOKEN }, 'admin API listening');
    try {
      const port = Number(/"url":"http:\/\/127\.0\.0\.1:(\d+)\/admin"/.exec(process.stderr())![1]);
      const list = await call(port, 'GET', '/admin/devices');
      expect(list.status).toBe(200);
      expect(list.json().devices.map((d: { id: string }) => d.id)).toContain('fleet-1');
      const added = await call(port, 'POST', '/admin/devices', { body: { id: 'via-process' } });
      expect(added.status).toBe(201);
      expect((await cli('devices', 'get', 'via-process', '--json')).stdout).toContain('"status":"active"');
      expect(process.stderr()).not.toContain(TOKEN);
      expect(process.stderr()).not.toContain((added.json() as DeviceCredentials).mqttPassword);
    } finally {
      await process.stop('SIGTERM');
    }
    expect(process.child.exitCode).toBe(0);
  });
});
