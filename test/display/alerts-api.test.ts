/**
 * Alerts on the display against a real pipeline (our broker, ingest, the embedded store, the display)
 * and a real MQTT client logged in as svc:admin publishing retained alert states on alerts/{device}, as
 * the alerts component does (the display does not care who publishes): GET /api/alerts shows them, the
 * device list carries each device's alerts line, a cleared retained message removes them, a display
 * started later reads them from the broker alone, and invalid messages are counted on /metrics by
 * reason and change nothing. /api/alerts has the API's treatment: token, HEAD, OPTIONS, 405, CORS, gzip,
 * validated parameters.
 */
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertsResponseSchema, DevicesResponseSchema, type AlertsResponse } from '../../core/api.ts';
import { createLogger } from '../../core/logger.ts';
import { loadRegistry, saveRegistry } from '../../core/registry.ts';
import { topics } from '../../core/topics.ts';
import { startDisplay } from '../../display/index.ts';
import { displayConfig, startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { waitFor } from '../../harness/publisher.ts';
import { event, rule, stateMessage } from './alerts-helpers.ts';
import { bodyText, sendRaw } from './http-helpers.ts';

const TOKEN = 'alerts-viewer-token';
const ALLOWED = 'https://ops.example.com';
let pipeline: TestPipeline;
let admin: MqttClient;
const now = Date.now();

beforeAll(async () => {
  pipeline = await startTestPipeline({ devices: 3, displayEnv: { SENSORPIPE_VIEWER_TOKEN: TOKEN, SENSORPIPE_ALLOWED_ORIGINS: ALLOWED } });
  const { username, password } = pipeline.broker.services.admin;
  admin = await mqtt.connectAsync(pipeline.broker.url, { username, password, clientId: 'test-alerts-admin', protocolVersion: 4 });
}, 60_000);
afterAll(async () => {
  // Retained states would outlive the test in a persistent broker; this one is thrown away, but tidy anyway.
  await admin?.endAsync();
  await pipeline?.close();
});

const publish = (device: string, payload: string | Buffer) => admin.publishAsync(topics.alerts(device), payload, { qos: 1, retain: true });

async function get(path: string, headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` }) {
  const response = await fetch(`${pipeline.display.url}${path}`, { headers });
  return { status: response.status, headers: response.headers, body: (await response.json()) as Record<string, unknown> };
}

async function alerts(query = ''): Promise<AlertsResponse> {
  const { status, body } = await get(`/api/alerts${query}`);
  expect(status).toBe(200);
  return AlertsResponseSchema.parse(body);
}

async function invalidCount(reason: string): Promise<number> {
  const text = await (await fetch(`${pipeline.display.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`sensorpipe_display_alert_states_invalid_total{reason="${reason}"}`));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

const HOT = rule({ rule: 'hot', state: 'firing', severity: 'critical', since: now - 60_000, value: 31.5 });
const dev1State = stateMessage('dev-1', [HOT, rule({ rule: 'cold', kind: 'below', threshold: 5, state: 'ok' })], [
  event({ device: 'dev-1', at: now - 60_000, state: 'firing', severity: 'critical' }),
  event({ device: 'dev-1', at: now - 120_000, state: 'resolved' }),
], now);

describe('alert states from MQTT', () => {
  it('a retained state shows on /api/alerts, in the device list and per device', async () => {
    await publish('dev-1', JSON.stringify(dev1State));
    await waitFor(async () => (await alerts()).firing === 1, 'dev-1 firing on /api/alerts', 10_000);
    const list = await alerts();
    expect(list.active).toEqual([{ ...HOT, device: 'dev-1' }]);
    expect(list.recent.map((e) => e.state)).toEqual(['firing', 'resolved']);

    const devices = DevicesResponseSchema.parse((await get('/api/devices')).body).devices;
    expect(devices.find((d) => d.id === 'dev-1')?.alerts).toEqual({ firing: 1, pending: 0, worst: 'critical' });
    expect(devices.find((d) => d.id === 'dev-0')?.alerts).toBeUndefined();

    const one = await alerts('?device=dev-1');
    expect(one.rules?.map((r) => r.rule)).toEqual(['hot', 'cold']);
    expect((await alerts('?device=dev-0')).rules).toEqual([]);
  });

  it('a display started later reads the retained state from the broker alone', async () => {
    const logger = createLogger({ level: 'silent' });
    const display = await startDisplay({ config: displayConfig(pipeline.broker, pipeline.dir.path), registryPath: pipeline.registryPath, store: pipeline.store, logger });
    try {
      await display.feed.ready;
      await waitFor(() => display.alerts.list().firing === 1, 'the new display has the retained state', 10_000);
      expect(display.alerts.list().active[0]?.rule).toBe('hot');
    } finally {
      await display.close();
    }
  });

  it('a state refused while its device was unknown is read again once the device is registered', async () => {
    const before = await invalidCount('DEVICE_UNKNOWN');
    await publish('late-1', JSON.stringify(stateMessage('late-1', [rule({ rule: 'late', state: 'pending', since: now })], [], now)));
    await waitFor(async () => (await invalidCount('DEVICE_UNKNOWN')) === before + 1, 'late-1 refused as unknown', 10_000);
    const registry = await loadRegistry(pipeline.registryPath);
    registry.add('late-1', { meta: { site: 'late' } });
    await saveRegistry(pipeline.registryPath, registry);
    // 404 until the display reloaded its registry; then the state the broker sent again.
    await waitFor(async () => {
      const { status, body } = await get('/api/alerts?device=late-1');
      return status === 200 && AlertsResponseSchema.parse(body).active.length === 1;
    }, 'late-1 state read again after the registry reload', 20_000);
    expect((await alerts('?device=late-1')).active[0]?.rule).toBe('late');
    await publish('late-1', Buffer.alloc(0));
    await waitFor(async () => (await alerts()).pending === 0, 'late-1 cleared', 10_000);
  });

  it('an empty retained payload clears the device', async () => {
    await publish('dev-2', JSON.stringify(stateMessage('dev-2', [rule({ state: 'pending', since: now })], [], now)));
    await waitFor(async () => (await alerts()).pending === 1, 'dev-2 pending', 10_000);
    await publish('dev-2', Buffer.alloc(0));
    await waitFor(async () => (await alerts()).pending === 0, 'dev-2 cleared', 10_000);
    const devices = DevicesResponseSchema.parse((await get('/api/devices')).body).devices;
    expect(devices.find((d) => d.id === 'dev-2')?.alerts).toBeUndefined();
    expect((await alerts()).firing).toBe(1); // dev-1's untouched
  });

  it.each([
    ['not JSON', 'dev-1', '{"v":1,', 'PAYLOAD_INVALID'],
    ['markup in a rule id', 'dev-1', JSON.stringify({ ...dev1State, rules: [{ ...HOT, rule: '<script>alert(1)</script>' }] }), 'PAYLOAD_INVALID'],
    ["another device's state on dev-1's topic", 'dev-1', JSON.stringify(stateMessage('dev-0', [rule({ state: 'firing' })])), 'TOPIC_DEVICE_MISMATCH'],
    ['a device not in the registry', 'ghost-9', JSON.stringify(stateMessage('ghost-9', [rule({ state: 'firing' })])), 'DEVICE_UNKNOWN'],
  ])('%s is counted as %s and ignored', async (_name, device, payload, reason) => {
    const before = await invalidCount(reason);
    await publish(device, payload);
    await waitFor(async () => (await invalidCount(reason)) === before + 1, `${reason} counted`, 10_000);
    const list = await alerts();
    expect(list.active).toEqual([{ ...HOT, device: 'dev-1' }]);
    expect(list.active.some((a) => a.device === 'ghost-9')).toBe(false);
    // Put dev-1's good state back (the bad message replaced it as the retained one on the broker).
    if (device === 'dev-1') await publish('dev-1', JSON.stringify(dev1State));
  });
});

const send = (method: string, path: string, headers: Record<string, string> = {}) => sendRaw(pipeline.display.port, method, path, headers);

describe('GET /api/alerts over HTTP', () => {
  const auth = { authorization: `Bearer ${TOKEN}` };

  it('needs the viewer token', async () => {
    const { status, body } = await get('/api/alerts', {});
    expect(status).toBe(401);
    expect(body.code).toBe('AUTH_REQUIRED');
  });

  it.each([
    ['?limit=0', 400, 'QUERY_INVALID'],
    ['?limit=9999', 400, 'QUERY_INVALID'],
    ['?limit=ten', 400, 'QUERY_INVALID'],
    ['?limit=1&limit=2', 400, 'QUERY_INVALID'],
    ['?device=NOT%20A%20DEVICE', 400, 'QUERY_INVALID'],
    ['?since=yesterday', 400, 'QUERY_INVALID'],
    ['?device=dev-99', 404, 'NOT_FOUND'],
  ])('answers %s with %i %s', async (query, status, code) => {
    const answer = await get(`/api/alerts${query}`);
    expect(answer.status).toBe(status);
    expect(answer.body.code).toBe(code);
  });

  it('limits the lists', async () => {
    const list = await alerts('?limit=1');
    expect(list.recent).toHaveLength(1);
    expect(list.recent[0]?.state).toBe('firing');
  });

  it('HEAD answers without a body; other methods are 405 with Allow; OPTIONS is a CORS preflight', async () => {
    const head = await send('HEAD', '/api/alerts', auth);
    expect(head.status).toBe(200);
    expect(head.raw.length).toBe(0);
    const post = await send('POST', '/api/alerts', auth);
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD, OPTIONS');
    const preflight = await send('OPTIONS', '/api/alerts', { origin: ALLOWED, 'access-control-request-method': 'GET' });
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-methods']).toBe('GET, HEAD');
    const foreign = await send('OPTIONS', '/api/alerts', { origin: 'https://evil.example' });
    expect(foreign.status).toBe(403);
  });

  it('an allowed origin may read it (CORS), and a big answer is gzipped', async () => {
    // Enough rules for an answer well over the compression threshold.
    const many = Array.from({ length: 30 }, (_, i) => rule({ rule: `r${i}`, state: 'firing', since: now - i }));
    await publish('dev-0', JSON.stringify(stateMessage('dev-0', many, [], now)));
    await waitFor(async () => (await alerts()).firing === 31, 'dev-0 firing 30 rules', 10_000);
    const answer = await send('GET', '/api/alerts', { ...auth, origin: ALLOWED, 'accept-encoding': 'gzip' });
    expect(answer.status).toBe(200);
    expect(answer.headers['access-control-allow-origin']).toBe(ALLOWED);
    expect(answer.headers['content-encoding']).toBe('gzip');
    expect(String(answer.headers.vary).toLowerCase()).toContain('origin');
    const body = AlertsResponseSchema.parse(JSON.parse(bodyText(answer)));
    expect(body.firing).toBe(31);
    await publish('dev-0', Buffer.alloc(0));
    await waitFor(async () => (await alerts()).firing === 1, 'dev-0 cleared', 10_000);
  });
});
