/**
 * The admin HTTP API, for real: a listener on a free loopback port, real HTTP requests, the registry
 * file it writes. Every operation; the token on every route; hostile input (wrong method, oversize,
 * malformed JSON, a key given twice, __proto__, wrong media type) answered 4xx with its code and never
 * 5xx; a bulk add with one bad row writes nothing; secrets appear once, in the answer that issues them,
 * and never in the log, the registry file or a later answer; failed authentications ban the address.
 */
import { readFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_ROUTES } from '../../admin/routes.ts';
import { ed25519KeyMatches, loadRegistry, verifyKeyOf, verifyMqttPassword, type DeviceCredentials } from '../../core/registry.ts';
import { signTelemetry, verifyTelemetrySignature } from '../../core/signature.ts';
import { TOKEN, startTestAdmin, type Reply, type TestAdmin } from './helpers.ts';

let t: TestAdmin;
/** Every status the server answered in this file: none may be 5xx. */
const statuses: number[] = [];
const req = async (method: string, path: string, options?: Parameters<TestAdmin['call']>[2]): Promise<Reply> => {
  const reply = await t.call(method, path, options);
  statuses.push(reply.status);
  return reply;
};

beforeAll(async () => {
  t = await startTestAdmin();
});
afterAll(async () => {
  await t?.close();
});

function expectError(reply: Reply, status: number, code: string): void {
  expect(reply.status, reply.text).toBe(status);
  expect(reply.json()).toMatchObject({ code });
}

const secretsOf = (c: DeviceCredentials): string[] => [c.mqttPassword, c.signing.alg === 'hmac-sha256' ? c.signing.key : c.signing.privateKey];

describe('admin API operations', () => {
  it('adds a device: 201 with its credentials (no-store), which verify against what the registry keeps', async () => {
    const reply = await req('POST', '/admin/devices', { body: { id: 'boiler-7', site: 'Plant 3, Hall "B"', model: 'TH-200' } });
    expect(reply.status, reply.text).toBe(201);
    expect(reply.headers['cache-control']).toBe('no-store');
    const credentials = reply.json() as DeviceCredentials;
    expect(credentials).toMatchObject({ deviceId: 'boiler-7', signing: { alg: 'hmac-sha256' } });
    const record = (await loadRegistry(t.registryPath)).get('boiler-7')!;
    expect(record.meta).toEqual({ site: 'Plant 3, Hall "B"', model: 'TH-200' });
    expect(verifyMqttPassword(record, credentials.mqttPassword)).toBe(true);
    const signed = signTelemetry({ v: 1, device: 'boiler-7', readings: [{ seq: 1, ts: 1767225600000, values: { temperature: 21.5 } }] }, { alg: 'hmac-sha256', key: Buffer.from((credentials.signing as { key: string }).key, 'base64') });
    expect(verifyTelemetrySignature(signed, verifyKeyOf(record))).toBe(true);
  });

  it('adds an Ed25519 device: the registry keeps only the public key', async () => {
    const reply = await req('POST', '/admin/devices', { body: { id: 'press-12', alg: 'ed25519' } });
    expect(reply.status, reply.text).toBe(201);
    const credentials = reply.json() as DeviceCredentials;
    if (credentials.signing.alg !== 'ed25519') throw new Error('expected ed25519');
    const record = (await loadRegistry(t.registryPath)).get('press-12')!;
    expect(ed25519KeyMatches(record, credentials.signing.privateKey)).toBe(true);
    expect(await readFile(t.registryPath, 'utf8')).not.toContain(credentials.signing.privateKey);
  });

  it('lists and gets devices, without secrets', async () => {
    const list = await req('GET', '/admin/devices');
    expect(list.status).toBe(200);
    expect(list.json().devices.map((d: { id: string }) => d.id)).toEqual(['boiler-7', 'press-12']);
    expect(list.text).not.toMatch(/mqttPassword|privateKey|"key"|"hash"|"salt"/);
    const one = await req('GET', '/admin/devices/press-12');
    expect(one.status).toBe(200);
    expect(one.json()).toMatchObject({ id: 'press-12', status: 'active', alg: 'ed25519', trust: 'signed' });
    expect(one.json().publicKey).toMatch(/^[A-Za-z0-9+/]+=*$/);
  });

  it('updates metadata: a value sets a field, null removes it, the rest stays', async () => {
    const reply = await req('PATCH', '/admin/devices/boiler-7', { body: { site: null, profile: 'env' } });
    expect(reply.status, reply.text).toBe(200);
    expect(reply.json().meta).toEqual({ model: 'TH-200', profile: 'env' });
    expect((await loadRegistry(t.registryPath)).get('boiler-7')!.meta).toEqual({ model: 'TH-200', profile: 'env' });
  });

  it('rotates: new credentials work, the old ones do not; the scheme may change', async () => {
    const before = (await loadRegistry(t.registryPath)).get('boiler-7')!;
    const reply = await req('POST', '/admin/devices/boiler-7/rotate');
    expect(reply.status, reply.text).toBe(200);
    expect(reply.headers['cache-control']).toBe('no-store');
    const fresh = reply.json() as DeviceCredentials;
    const after = (await loadRegistry(t.registryPath)).get('boiler-7')!;
    expect(verifyMqttPassword(after, fresh.mqttPassword)).toBe(true);
    expect(after.mqtt.hash).not.toBe(before.mqtt.hash);
    const toEd = await req('POST', '/admin/devices/boiler-7/rotate', { body: { alg: 'ed25519' } });
    expect(toEd.status, toEd.text).toBe(200);
    expect(toEd.json().signing.alg).toBe('ed25519');
    expect((await loadRegistry(t.registryPath)).get('boiler-7')!.signing.alg).toBe('ed25519');
  });

  it('revokes', async () => {
    await req('POST', '/admin/devices', { body: { id: 'old-meter' } });
    const reply = await req('POST', '/admin/devices/old-meter/revoke');
    expect(reply.status, reply.text).toBe(200);
    expect(reply.json()).toMatchObject({ id: 'old-meter', status: 'revoked' });
    expect((await loadRegistry(t.registryPath)).get('old-meter')!.status).toBe('revoked');
  });

  it('refuses with the stable codes: unknown device, conflict, invalid id or metadata', async () => {
    expectError(await req('GET', '/admin/devices/nobody'), 404, 'DEVICE_UNKNOWN');
    expectError(await req('POST', '/admin/devices/nobody/revoke'), 404, 'DEVICE_UNKNOWN');
    expectError(await req('POST', '/admin/devices/nobody/rotate'), 404, 'DEVICE_UNKNOWN');
    expectError(await req('PATCH', '/admin/devices/nobody', { body: { site: 'x' } }), 404, 'DEVICE_UNKNOWN');
    expectError(await req('POST', '/admin/devices', { body: { id: 'press-12' } }), 409, 'REGISTRY_CONFLICT');
    expectError(await req('POST', '/admin/devices', { body: { id: 'Bad_ID' } }), 400, 'DEVICE_INVALID');
    expectError(await req('POST', '/admin/devices', { body: { id: 'constructor' } }), 400, 'DEVICE_INVALID');
    expectError(await req('POST', '/admin/devices', { body: { id: 'ok-id', site: 'a\u0007b' } }), 400, 'DEVICE_INVALID');
    expectError(await req('POST', '/admin/devices', { body: { id: 'ok-id', alg: 'rsa' } }), 400, 'DEVICE_INVALID');
    expectError(await req('POST', '/admin/devices', { body: { id: 'ok-id', colour: 'red' } }), 400, 'DEVICE_INVALID');
    expectError(await req('POST', '/admin/devices', { body: ['ok-id'] }), 400, 'DEVICE_INVALID');
    expectError(await req('GET', '/admin/devices/Bad_ID'), 400, 'DEVICE_INVALID');
    expectError(await req('GET', '/admin/devices/%zz'), 400, 'DEVICE_INVALID');
    expectError(await req('PATCH', '/admin/devices/press-12', { body: {} }), 400, 'DEVICE_INVALID');
    expectError(await req('PATCH', '/admin/devices/press-12', { body: { status: 'active' } }), 400, 'DEVICE_INVALID');
    expect((await loadRegistry(t.registryPath)).get('ok-id')).toBeUndefined();
  });
});

describe('admin API against hostile input', () => {
  it('needs the token on every route: missing or wrong is 401 with WWW-Authenticate, and changes nothing', async () => {
    const before = await readFile(t.registryPath, 'utf8');
    for (const route of ADMIN_ROUTES) {
      const path = route.path.replace('{id}', 'press-12');
      const body = route.body === undefined ? undefined : route.operationId === 'bulkAddDevices' ? { devices: [{ id: 'sneaky' }] } : route.operationId === 'updateDevice' ? { site: 'x' } : { id: 'sneaky' };
      for (const token of [null, 'wrong-token-Zq81', `${TOKEN}x`, TOKEN.slice(0, -1), '']) {
        const reply = await req(route.method, path, { token, body });
        expect(reply.status, `${route.method} ${path} with ${token === null ? 'no token' : 'a wrong token'}`).toBe(401);
        expect(reply.json()).toMatchObject({ code: 'AUTH_REQUIRED' });
        expect(reply.headers['www-authenticate']).toMatch(/^Bearer/);
      }
      const basic = await req(route.method, path, { token: null, headers: { authorization: `Basic ${Buffer.from(`admin:${TOKEN}`).toString('base64')}` } });
      expect(basic.status).toBe(401);
    }
    expect(await readFile(t.registryPath, 'utf8')).toBe(before);
  });

  it('answers a wrong method 405 with Allow, and an unknown path 404', async () => {
    const del = await req('DELETE', '/admin/devices/press-12');
    expectError(del, 405, 'METHOD_NOT_ALLOWED');
    expect(del.headers.allow).toBe('GET, PATCH');
    const put = await req('PUT', '/admin/devices');
    expectError(put, 405, 'METHOD_NOT_ALLOWED');
    expect(put.headers.allow).toBe('GET, POST');
    const getBulk = await req('GET', '/admin/devices/_bulk');
    expectError(getBulk, 405, 'METHOD_NOT_ALLOWED');
    expect(getBulk.headers.allow).toBe('POST');
    expectError(await req('GET', '/admin/devices/press-12/revoke'), 405, 'METHOD_NOT_ALLOWED');
    expectError(await req('GET', '/admin'), 404, 'NOT_FOUND');
    expectError(await req('GET', '/admin/devices/press-12/keys'), 404, 'NOT_FOUND');
    expectError(await req('GET', '/api/devices'), 404, 'NOT_FOUND');
    expectError(await req('GET', '//admin/devices'), 404, 'NOT_FOUND');
  });

  it('refuses bodies that are too large (413), by their Content-Length or as they arrive (chunked)', async () => {
    const big = JSON.stringify({ id: 'big-one', site: 'x'.repeat(70 * 1024) });
    expectError(await req('POST', '/admin/devices', { body: big, contentType: 'application/json' }), 413, 'PAYLOAD_TOO_LARGE');
    // Chunked: no Content-Length to refuse it by, so it is counted while it arrives.
    const chunked = await new Promise<Reply>((resolve, reject) => {
      const r = httpRequest({ host: '127.0.0.1', port: t.admin.port, method: 'POST', path: '/admin/devices/_bulk', headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'text/csv', 'transfer-encoding': 'chunked' } }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text, json: () => JSON.parse(text) }));
      });
      r.on('error', reject);
      r.write('id\n');
      for (let i = 0; i < 200; i++) r.write(`${'a'.repeat(40)}-${i}\n`.repeat(10));
      r.end();
    });
    statuses.push(chunked.status);
    expectError(chunked, 413, 'PAYLOAD_TOO_LARGE');
    expect((await loadRegistry(t.registryPath)).get('big-one')).toBeUndefined();
  });

  it.each([
    ['not JSON', '{"id": "half-'],
    ['empty', ' '],
    ['a key given twice', '{"id":"twice-a","id":"twice-b"}'],
    ['a key given twice, deeper', '{"devices":[{"id":"twice-c","site":"a","site":"b"}]}'],
    ['__proto__', '{"id":"proto-a","__proto__":{"admin":true}}'],
    ['__proto__ with an escape', '{"id":"proto-b","\\u005f_proto__":{"admin":true}}'],
    ['not UTF-8', Buffer.from([0x7b, 0x22, 0x69, 0x64, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d])],
    ['a byte-order mark', `\ufeff{"id":"bom-a"}`],
    ['nested too deep', `{"id":"deep-a","site":${'['.repeat(20)}${']'.repeat(20)}}`],
  ])('refuses %s with 400 PAYLOAD_INVALID and writes nothing', async (_what, body) => {
    const before = await readFile(t.registryPath, 'utf8');
    const path = typeof body === 'string' && body.includes('devices') ? '/admin/devices/_bulk' : '/admin/devices';
    expectError(await req('POST', path, { body, contentType: 'application/json' }), 400, 'PAYLOAD_INVALID');
    expect(await readFile(t.registryPath, 'utf8')).toBe(before);
    expect(Object.prototype).not.toHaveProperty('admin');
  });

  it('refuses a body of the wrong media type (415), a body where none is taken, and a missing body', async () => {
    expectError(await req('POST', '/admin/devices', { body: '{"id":"typed-a"}', contentType: 'text/plain' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(await req('POST', '/admin/devices', { body: '{"id":"typed-b"}', contentType: null }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(await req('POST', '/admin/devices', { body: '{"id":"typed-c"}', contentType: 'application/json; charset=latin1' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(await req('POST', '/admin/devices', { body: 'id\ntyped-d\n', contentType: 'text/csv' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(await req('GET', '/admin/devices', { body: '{"x":1}', contentType: 'application/json' }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(await req('POST', '/admin/devices/press-12/revoke', { body: { now: true } }), 415, 'UNSUPPORTED_MEDIA_TYPE');
    expectError(await req('POST', '/admin/devices'), 400, 'PAYLOAD_INVALID');
    const ok = await req('POST', '/admin/devices', { body: '{"id":"typed-e"}', contentType: 'Application/JSON; charset=UTF-8' });
    expect(ok.status, ok.text).toBe(201);
  });

  it('answers a few hundred random requests (paths, methods, media types, bodies) with 2xx–4xx, and the registry stays readable', async () => {
    let state = 0x5eed1234;
    const random = (n: number) => {
      state ^= state << 13;
      state ^= state >>> 17;
      state ^= state << 5;
      return (state >>> 0) % n;
    };
    const pick = <T,>(items: readonly T[]): T => items[random(items.length)]!;
    const segments = ['admin', 'devices', '_bulk', 'press-12', 'nobody', 'revoke', 'rotate', 'openapi.json', '%', '%zz', '%E2%82', '..', '.', '', '__proto__', 'constructor', 'Bad_ID', 'x'.repeat(300), '?a=1', '#x', ';', 'devices:bulk'];
    const bodies = [undefined, '', '{}', '[]', 'null', '1', '"x"', '{"id":"fz-1"}', '{"id":"fz-2","id":"fz-3"}', '{"__proto__":{"x":1}}', 'id\nfz-4\n', 'id,site\n"fz-5\n', '{"devices":[{"id":"fz-6"},{"id":"fz-6"}]}', '{"site":null}', '{"alg":"ed25519"}', '\u0000', '{"id":"fz-7","site":"' + 'é'.repeat(40) + '"}'];
    const types = [null, 'application/json', 'text/csv', 'text/plain', 'application/json; charset=utf-16', 'multipart/form-data; boundary=x', ';;;'];
    for (let i = 0; i < 300; i++) {
      const path = `/${Array.from({ length: 1 + random(4) }, () => pick(segments)).join('/')}`;
      const reply = await req(pick(['GET', 'POST', 'PATCH', 'PUT', 'DELETE', 'OPTIONS']), path, { body: pick(bodies), contentType: pick(types) });
      expect(reply.status, `${path}: ${reply.text.slice(0, 200)}`).toBeLessThan(500);
      expect(reply.status).toBeGreaterThanOrEqual(200);
      expect(() => reply.json()).not.toThrow();
    }
    await expect(loadRegistry(t.registryPath)).resolves.toBeDefined();
  });

  it('never answered 5xx in this file', () => {
    expect(statuses.length).toBeGreaterThan(50);
    expect(statuses.filter((s) => s >= 500)).toEqual([]);
  });
});

describe('bulk add', () => {
  it('adds every device of a JSON file and answers a credentials file (attachment, no-store)', async () => {
    const reply = await req('POST', '/admin/devices/_bulk', { body: { devices: [{ id: 'bulk-a', site: 'North' }, { id: 'bulk-b', alg: 'ed25519' }, { id: 'bulk-c' }] } });
    expect(reply.status, reply.text).toBe(201);
    expect(reply.headers['cache-control']).toBe('no-store');
    expect(reply.headers['content-disposition']).toMatch(/^attachment; filename="sensorpipe-credentials-.*\.json"$/);
    const { devices } = reply.json() as { devices: DeviceCredentials[] };
    expect(devices.map((d) => d.deviceId)).toEqual(['bulk-a', 'bulk-b', 'bulk-c']);
    const registry = await loadRegistry(t.registryPath);
    for (const c of devices) expect(verifyMqttPassword(registry.get(c.deviceId)!, c.mqttPassword)).toBe(true);
    expect(registry.get('bulk-a')!.meta).toEqual({ site: 'North' });
  });

  it('adds every device of a CSV file (quoted fields, CRLF) and answers CSV when asked', async () => {
    const csv = 'id,site,model,alg\r\ncsv-a,"Plant 3, Hall ""B""",TH-200,\r\ncsv-b,,,ed25519\r\n';
    const reply = await req('POST', '/admin/devices/_bulk', { body: csv, contentType: 'text/csv; charset=utf-8', headers: { accept: 'text/csv' } });
    expect(reply.status, reply.text).toBe(201);
    expect(reply.headers['content-type']).toMatch(/^text\/csv/);
    expect(reply.headers['content-disposition']).toMatch(/\.csv"$/);
    const [header, ...rows] = reply.text.trim().split('\r\n');
    expect(header).toBe('device_id,mqtt_username,mqtt_password,alg,signing_key,public_key');
    expect(rows.map((r) => r.split(',')[0])).toEqual(['csv-a', 'csv-b']);
    const registry = await loadRegistry(t.registryPath);
    expect(registry.get('csv-a')!.meta).toEqual({ site: 'Plant 3, Hall "B"', model: 'TH-200' });
    for (const row of rows) {
      const [id, , password] = row.split(',');
      expect(verifyMqttPassword(registry.get(id!)!, password!)).toBe(true);
    }
    expect(registry.get('csv-b')!.signing.alg).toBe('ed25519');
  });

  it.each([
    ['an invalid id in the third row', 'application/json', JSON.stringify({ devices: [{ id: 'good-1' }, { id: 'good-2' }, { id: 'BAD ROW' }, { id: 'good-3' }] }), 400, 'DEVICE_INVALID', /devices\[2\]/],
    ['an id listed twice', 'application/json', JSON.stringify({ devices: [{ id: 'good-1' }, { id: 'good-2' }, { id: 'good-1' }] }), 400, 'DEVICE_INVALID', /listed twice/],
    ['an id already registered', 'application/json', JSON.stringify({ devices: [{ id: 'good-1' }, { id: 'press-12' }] }), 409, 'REGISTRY_CONFLICT', /press-12/],
    ['a bad metadata value in CSV', 'text/csv', 'id,site\ngood-1,ok\ngood-2,"bell\u0007"\n', 400, 'DEVICE_INVALID', /CSV row 3/],
    ['a CSV row with a field too many', 'text/csv', 'id,site\ngood-1,ok\ngood-2,a,b\n', 400, 'DEVICE_INVALID', /CSV row 3/],
    ['an unknown CSV column', 'text/csv', 'id,colour\ngood-1,red\n', 400, 'DEVICE_INVALID', /colour/],
    ['an unclosed quote', 'text/csv', 'id,site\ngood-1,"open\n', 400, 'DEVICE_INVALID', /quoted/],
    ['no devices', 'application/json', '{"devices":[]}', 400, 'DEVICE_INVALID', /no device/],
    ['another top-level key', 'application/json', '{"devices":[{"id":"good-1"}],"dryRun":false}', 400, 'DEVICE_INVALID', /devices/],
  ])('with %s adds nothing at all', async (_what, type, body, status, code, message) => {
    const before = await readFile(t.registryPath, 'utf8');
    const reply = await req('POST', '/admin/devices/_bulk', { body, contentType: type });
    expectError(reply, status, code);
    expect(reply.json().message).toMatch(message);
    expect(await readFile(t.registryPath, 'utf8')).toBe(before);
    expect((await loadRegistry(t.registryPath)).get('good-1')).toBeUndefined();
  });
});

describe('broker-authenticated devices (trust level, payload mapping)', () => {
  it('adds one with its mapping: an MQTT password and no signing key; rotate issues a new password only', async () => {
    const added = await req('POST', '/admin/devices', { body: { id: 'plug-1', trust: 'broker-authenticated', payload: { format: 'tasmota' }, site: 'Desk' } });
    expect(added.status, added.text).toBe(201);
    expect(added.json()).toEqual({ deviceId: 'plug-1', mqttPassword: expect.any(String), trust: 'broker-authenticated' });
    const record = (await loadRegistry(t.registryPath)).get('plug-1')!;
    expect(verifyMqttPassword(record, added.json().mqttPassword)).toBe(true);
    expect((await req('GET', '/admin/devices/plug-1')).json()).toMatchObject({ trust: 'broker-authenticated', alg: 'none' });
    const rotated = await req('POST', '/admin/devices/plug-1/rotate');
    expect(rotated.status, rotated.text).toBe(200);
    expect(rotated.json()).toEqual({ deviceId: 'plug-1', mqttPassword: expect.any(String), trust: 'broker-authenticated' });
    expect(verifyMqttPassword((await loadRegistry(t.registryPath)).get('plug-1')!, rotated.json().mqttPassword)).toBe(true);
    expectError(await req('POST', '/admin/devices/plug-1/rotate', { body: { alg: 'ed25519' } }), 400, 'DEVICE_INVALID');
  });

  it('refuses a trust level and mapping that do not go together with DEVICE_INVALID, never 5xx', async () => {
    expectError(await req('POST', '/admin/devices', { body: { id: 'plug-2', trust: 'broker-authenticated' } }), 400, 'DEVICE_INVALID');
    expectError(await req('POST', '/admin/devices', { body: { id: 'plug-2', payload: { format: 'flat-json' } } }), 400, 'DEVICE_INVALID');
    expectError(await req('POST', '/admin/devices', { body: { id: 'plug-2', trust: 'broker-authenticated', payload: { format: 'flat-json' }, alg: 'ed25519' } }), 400, 'DEVICE_INVALID');
    expectError(await req('POST', '/admin/devices', { body: { id: 'plug-2', trust: 'broker-authenticated', payload: { format: 'xml' } } }), 400, 'DEVICE_INVALID');
    expect((await loadRegistry(t.registryPath)).get('plug-2')).toBeUndefined();
  });

  it('bulk adds them from CSV (trust and payload columns); a row the registry itself refuses writes nothing', async () => {
    const csv = 'id,trust,payload\nplug-3,broker-authenticated,flat-json\nplug-4,broker-authenticated,"{""format"":""pointers"",""metrics"":{""temperature"":""/t""}}"\nsigned-5,,\n';
    const reply = await req('POST', '/admin/devices/_bulk', { body: csv, contentType: 'text/csv', headers: { accept: 'text/csv' } });
    expect(reply.status, reply.text).toBe(201);
    expect(reply.text).toMatch(/^plug-3,plug-3,[^,]+,none,,\r$/m);
    const registry = await loadRegistry(t.registryPath);
    expect(registry.get('plug-4')!.payload).toEqual({ format: 'pointers', metrics: { temperature: '/t' } });
    expect(registry.get('signed-5')!.signing.alg).toBe('hmac-sha256');

    // Each row passes the schema; the third is refused by the registry (a signed device with a mapping).
    const before = await readFile(t.registryPath, 'utf8');
    const bad = await req('POST', '/admin/devices/_bulk', { body: { devices: [{ id: 'plug-6', trust: 'broker-authenticated', payload: { format: 'tasmota' } }, { id: 'plug-7' }, { id: 'plug-8', payload: { format: 'tasmota' } }] } });
    expectError(bad, 400, 'DEVICE_INVALID');
    expect(bad.json().message).toMatch(/devices\[2\]/);
    expect(await readFile(t.registryPath, 'utf8')).toBe(before);
  });
});

describe('secrets and the log', () => {
  it('shows each secret once, in the answer that issued it, and never in the log, a later answer or the registry file', async () => {
    const issued: string[] = [];
    const add = await req('POST', '/admin/devices', { body: { id: 'secret-a', alg: 'ed25519' } });
    issued.push(...secretsOf(add.json() as DeviceCredentials));
    const rotate = await req('POST', '/admin/devices/secret-a/rotate', { body: { alg: 'hmac-sha256' } });
    issued.push(...secretsOf(rotate.json() as DeviceCredentials));
    const bulk = await req('POST', '/admin/devices/_bulk', { body: 'id\nsecret-b\nsecret-c\n', contentType: 'text/csv' });
    for (const c of (bulk.json() as { devices: DeviceCredentials[] }).devices) issued.push(...secretsOf(c));
    const wrongToken = 'not-the-admin-token-Hx7pQ2';
    await req('GET', '/admin/devices', { token: wrongToken });
    expect(issued).toHaveLength(8);

    const later = [await req('GET', '/admin/devices'), await req('GET', '/admin/devices/secret-a'), await req('GET', '/admin/devices/secret-b')];
    const registryFile = await readFile(t.registryPath, 'utf8');
    const log = t.logText();
    for (const secret of [...issued, TOKEN, wrongToken]) {
      expect(log, 'the log').not.toContain(secret);
      for (const reply of later) expect(reply.text).not.toContain(secret);
    }
    // The registry keeps a verifier for the MQTT password and, for Ed25519, only the public key (an HMAC key is shared by nature).
    const notStored = [add.json().mqttPassword, add.json().signing.privateKey, rotate.json().mqttPassword, ...(bulk.json() as { devices: DeviceCredentials[] }).devices.map((c) => c.mqttPassword)];
    for (const secret of notStored) expect(registryFile).not.toContain(secret);
  });

  it('logs every request once: method, route, device, outcome, status', () => {
    const lines = t.logLines().filter((l) => l.msg === 'admin request');
    expect(lines.length).toBe(statuses.length);
    expect(lines).toContainEqual(expect.objectContaining({ method: 'POST', route: '/admin/devices', device: 'boiler-7', outcome: 'ok', status: 201 }));
    expect(lines).toContainEqual(expect.objectContaining({ method: 'POST', route: '/admin/devices/{id}/revoke', device: 'old-meter', outcome: 'ok', status: 200 }));
    expect(lines).toContainEqual(expect.objectContaining({ method: 'GET', route: '/admin/devices/{id}', device: 'nobody', outcome: 'DEVICE_UNKNOWN', status: 404 }));
    expect(lines).toContainEqual(expect.objectContaining({ method: 'GET', outcome: 'AUTH_REQUIRED', status: 401 }));
    expect(lines).toContainEqual(expect.objectContaining({ method: 'DELETE', route: '/admin/devices/{id}', outcome: 'METHOD_NOT_ALLOWED', status: 405 }));
  });
});

describe('failed authentications', () => {
  it('ban the address after the configured number, even for the right token then; other addresses are not affected', async () => {
    const strict = await startTestAdmin({ server: { authFailures: 3, authBanMs: 60_000 } });
    try {
      for (let i = 0; i < 3; i++) expectError(await strict.call('GET', '/admin/devices', { token: `wrong-${i}-xxxxxxxxxxxx` }), 401, 'AUTH_REQUIRED');
      const banned = await strict.call('GET', '/admin/devices');
      expectError(banned, 429, 'LIMIT_EXCEEDED');
      expect(Number(banned.headers['retry-after'])).toBeGreaterThan(50);
      // Another address (127.0.0.2 is loopback too on Linux) is not banned.
      const other = await new Promise<number>((resolve, reject) => {
        const r = httpRequest({ host: '127.0.0.1', localAddress: '127.0.0.2', port: strict.admin.port, path: '/admin/devices', headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        r.on('error', reject);
        r.end();
      });
      expect(other).toBe(200);
      expect(strict.logLines()).toContainEqual(expect.objectContaining({ msg: 'admin API: address banned after failed authentications', address: '127.0.0.1' }));
    } finally {
      await strict.close();
    }
  });
});
