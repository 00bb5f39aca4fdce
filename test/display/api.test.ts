/**
 * The display's HTTP API against a real pipeline (our broker, ingest, the embedded store, real devices):
 * the device list with live status and values, history raw and aggregated, CSV, relative times, hostile
 * parameters, the viewer token and Origin checks.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.ts';
import { startDisplay, type RunningDisplay } from '../../display/index.ts';
import { DevicePublisher, waitFor } from '../../harness/publisher.ts';
import { displayConfig, startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';

let pipeline: TestPipeline;
let base: string;
let publisher: DevicePublisher;
/** History written straight to the store: dev-0, one reading every 10 s for two hours before T0. */
const T0 = Math.floor((Date.now() - 3_600_000) / 3_600_000) * 3_600_000;
const HISTORY = Array.from({ length: 720 }, (_, i) => ({ ts: T0 - 7_200_000 + i * 10_000, temperature: 20 + (i % 60) / 10, humidity: 40 + (i % 7) }));

beforeAll(async () => {
  pipeline = await startTestPipeline({ devices: 3 });
  base = pipeline.display.url;
  await pipeline.store.write(HISTORY.flatMap((h) => [
    { device: 'dev-0', metric: 'temperature', ts: h.ts, value: h.temperature },
    { device: 'dev-0', metric: 'humidity', ts: h.ts, value: h.humidity },
  ]));
  publisher = await DevicePublisher.connect(pipeline.broker.url, pipeline.devices[1]!);
}, 60_000);
afterAll(async () => {
  await publisher?.close();
  await pipeline?.close();
});

const get = async (path: string, init?: RequestInit) => {
  const response = await fetch(`${base}${path}`, init);
  const text = await response.text();
  let body: unknown = text;
  if (response.headers.get('content-type')?.includes('json')) body = JSON.parse(text);
  return { status: response.status, body: body as Record<string, unknown> & { code?: string }, text, headers: response.headers };
};

describe('GET /api/devices', () => {
  it('lists every registered device with metadata, online state, last seen and latest values', async () => {
    await publisher.send({ temperature: 21.25, humidity: 55 });
    await waitFor(async () => {
      const { body } = await get('/api/devices');
      const dev1 = (body.devices as { id: string; state: string; latest: Record<string, { value: number }> }[]).find((d) => d.id === 'dev-1');
      return dev1?.state === 'online' && dev1.latest.temperature?.value === 21.25;
    }, 'dev-1 online with its reading', 10_000);
    const { status, body } = await get('/api/devices');
    expect(status).toBe(200);
    expect(body.total).toBe(3);
    expect(body.online).toBe(1);
    const devices = body.devices as { id: string; meta: { site: string }; state: string; lastSeen: number | null; latest: Record<string, { ts: number; value: number }> }[];
    expect(devices.map((d) => d.id)).toEqual(['dev-0', 'dev-1', 'dev-2']);
    const dev1 = devices[1]!;
    expect(dev1.meta.site).toBe('site 1');
    expect(dev1.latest.humidity?.value).toBe(55);
    expect(dev1.lastSeen).toBeGreaterThanOrEqual(publisher.acked.at(-1)!.ts); // the reading, or the broker's status if later
    expect(dev1.lastSeen).toBeLessThanOrEqual(Date.now());
    expect(devices[0]!.state).toBe('offline');
  });

  it('filters by status, site, profile and text', async () => {
    const ids = async (query: string) => ((await get(`/api/devices?${query}`)).body.devices as { id: string }[]).map((d) => d.id);
    expect(await ids('status=online')).toEqual(['dev-1']);
    expect(await ids('status=offline')).toEqual(['dev-0', 'dev-2']);
    expect(await ids('site=site%202')).toEqual(['dev-2']);
    expect(await ids('profile=env')).toHaveLength(3);
    expect(await ids('q=DEV-2')).toEqual(['dev-2']);
    expect(await ids('q=nothing-like-it')).toEqual([]);
  });

  it.each([
    ['status=sleeping', 'QUERY_INVALID'],
    ['colour=red', 'QUERY_INVALID'],
    [`q=${'x'.repeat(100)}`, 'QUERY_INVALID'],
    ['site=%0Aevil', 'QUERY_INVALID'],
  ])('answers 400 to ?%s', async (query, code) => {
    const { status, body } = await get(`/api/devices?${query}`);
    expect(status).toBe(400);
    expect(body.code).toBe(code);
  });
});

describe('GET /api/devices/:id/readings', () => {
  it('returns raw history for a range, exactly', async () => {
    const from = T0 - 600_000;
    const { status, body } = await get(`/api/devices/dev-0/readings?metrics=temperature&from=${from}&to=${T0}&mode=raw`);
    expect(status).toBe(200);
    const series = body.series as { metric: string; points: { ts: number; value: number }[] }[];
    const expected = HISTORY.filter((h) => h.ts >= from && h.ts < T0);
    expect(series).toHaveLength(1);
    expect(series[0]!.points).toEqual(expected.map((h) => ({ ts: h.ts, value: h.temperature })));
  });

  it('aggregates into windows with the min/max envelope', async () => {
    const from = T0 - 7_200_000;
    const { body } = await get(`/api/devices/dev-0/readings?metrics=temperature&from=${from}&to=${T0}&fn=max&every=10m`);
    expect(body.mode).toBe('aggregate');
    expect(body.every).toBe(600_000);
    const points = (body.series as { points: { ts: number; value: number; min: number; max: number }[] }[])[0]!.points;
    expect(points).toHaveLength(12);
    for (const p of points) {
      const inWindow = HISTORY.filter((h) => h.ts >= p.ts && h.ts < p.ts + 600_000).map((h) => h.temperature);
      expect(p.value).toBe(Math.max(...inWindow));
      expect(p.min).toBe(Math.min(...inWindow));
      expect(p.max).toBe(Math.max(...inWindow));
    }
  });

  it('reads relative times and downsamples to maxPoints', async () => {
    const { status, body } = await get('/api/devices/dev-0/readings?from=-4h&to=now&maxPoints=50');
    expect(status).toBe(200);
    expect(body.to as number).toBeGreaterThan(Date.now() - 10_000);
    expect((body.to as number) - (body.from as number)).toBe(4 * 3_600_000);
    const series = body.series as { metric: string; points: unknown[] }[];
    expect(series.map((s) => s.metric).sort()).toEqual(['humidity', 'temperature']);
    for (const s of series) {
      expect(s.points.length).toBeGreaterThan(0);
      expect(s.points.length).toBeLessThanOrEqual(50);
    }
  });

  it('streams CSV, raw and aggregated', async () => {
    const raw = await get(`/api/devices/dev-0/readings?metrics=temperature,humidity&from=${T0 - 60_000}&to=${T0}&mode=raw&format=csv`);
    expect(raw.status).toBe(200);
    expect(raw.headers.get('content-type')).toMatch(/^text\/csv/);
    expect(raw.headers.get('content-disposition')).toMatch(/^attachment; filename="dev-0-/);
    const lines = raw.text.trim().split('\n');
    expect(lines[0]).toBe('time,ts,metric,value');
    const last = HISTORY.at(-1)!;
    expect(lines).toContain(`${new Date(last.ts).toISOString()},${last.ts},temperature,${last.temperature}`);
    expect(lines).toHaveLength(1 + 6 * 2);
    const agg = await get(`/api/devices/dev-0/readings?metrics=humidity&from=${T0 - 3_600_000}&to=${T0}&every=1h&fn=min&format=csv`);
    expect(agg.text.trim().split('\n')).toEqual(['time,ts,metric,min_1h,low_1h,high_1h', `${new Date(T0 - 3_600_000).toISOString()},${T0 - 3_600_000},humidity,40,40,46`]);
  });

  it.each([
    ['reversed range', `from=${Date.now()}&to=${Date.now() - 1000}`, 400, 'QUERY_RANGE_INVALID'],
    ['ten-year raw range', 'from=-3650d&to=now&mode=raw', 400, 'QUERY_RANGE_INVALID'],
    ['unknown function', 'fn=median', 400, 'QUERY_FUNCTION_UNKNOWN'],
    ['window of zero', 'every=0', 400, 'QUERY_RANGE_INVALID'],
    ['huge maxPoints', 'maxPoints=100000000', 400, 'QUERY_INVALID'],
    ['injection in a metric name', `metrics=${encodeURIComponent('temperature" OR 1=1 --')}`, 400, 'QUERY_INVALID'],
    ['injection in a metric list', `metrics=${encodeURIComponent("temperature'); DROP MEASUREMENT readings; --")}`, 400, 'QUERY_INVALID'],
    ['unreadable time', 'from=yesterday', 400, 'QUERY_RANGE_INVALID'],
    ['unknown parameter', 'limit=5', 400, 'QUERY_INVALID'],
    ['unknown format', 'format=xml', 400, 'QUERY_INVALID'],
  ])('answers %s with %i %s', async (_what, query, status, code) => {
    const response = await get(`/api/devices/dev-0/readings?${query}`);
    expect(response.status).toBe(status);
    expect(response.body.code).toBe(code);
  });

  it.each([
    ["an injection in the id", `/api/devices/${encodeURIComponent("dev-0' OR device =~ /.*/ --")}/readings`, 400, 'QUERY_INVALID'],
    ['an unknown device', '/api/devices/no-such-device/readings', 404, 'NOT_FOUND'],
    ['an unknown route', '/api/everything', 404, 'NOT_FOUND'],
  ])('answers %s with %i', async (_what, path, status, code) => {
    const response = await get(path);
    expect(response.status).toBe(status);
    expect(response.body.code).toBe(code);
  });

  it('is read-only: anything but GET is refused', async () => {
    const response = await get('/api/devices', { method: 'POST', body: '{}' });
    expect(response.status).toBe(405);
    expect(response.body.code).toBe('METHOD_NOT_ALLOWED');
    expect(response.headers.get('allow')).toBe('GET, HEAD, OPTIONS');
  });
});

describe('parameters a route does not take', () => {
  it.each([
    // GET /api/devices/{id} read the history parameters and ignored them (issue 19 follow-up).
    ['/api/devices/dev-0?from=-1h', 'from'],
    ['/api/devices/dev-0?metrics=temperature&maxPoints=5', 'metrics'],
    ['/api/devices/dev-0?format=csv', 'format'],
    ['/api/devices/dev-0?device=dev-1', 'device'],
    ['/api/devices/dev-0?colour=', 'colour'],
    ['/api/devices/no-such-device?q=x', 'q'],
    ['/api/devices?format=csv', 'format'],
    ['/api/devices?from=-1h', 'from'],
    ['/api/devices?colour=', 'colour'],
    [`/api/devices?${'x'.repeat(300)}=1`, 'x'.repeat(64)],
    ['/api/devices/dev-0/readings?colour=red', 'colour'],
    ['/api/devices/dev-0/readings?device=dev-1', 'device'],
    ['/api/devices/dev-0/readings?limit=', 'limit'],
    ['/api/alerts?from=-1h', 'from'],
    ['/api/alerts?format=csv', 'format'],
    ['/api/quarantine?q=dev-0', 'q'],
    ['/api/quarantine?__proto__=1', '__proto__'],
    ['/api/openapi.json?v=2', 'v'],
    ['/api/asyncapi.json?format=yaml', 'format'],
    // Given twice: refused on the routes without a schema as on the others.
    ['/api/devices/dev-0?token=a&token=a', 'token'],
    ['/api/openapi.json?token=a&token=b', 'token'],
  ])('%s is 400 QUERY_INVALID naming %s', async (path, param) => {
    const { status, body } = await get(path);
    expect(status).toBe(400);
    expect(body).toMatchObject({ code: 'QUERY_INVALID', details: { param } });
    expect(String(body.message)).toContain(param.slice(0, 10));
  });

  it('each route still takes its own parameters and the token', async () => {
    for (const path of [
      '/api/devices/dev-0',
      '/api/devices/dev-0?token=t',
      '/api/devices?status=offline&site=site%200&profile=env&q=dev&token=t',
      '/api/devices?q=',
      `/api/devices/dev-0/readings?metrics=temperature&from=${T0 - 60_000}&to=${T0}&mode=raw&maxPoints=5&format=json&token=t`,
      `/api/devices/dev-0/readings?from=${T0 - 3_600_000}&to=${T0}&fn=max&every=10m`,
      '/api/alerts?device=dev-0&limit=5&token=t',
      '/api/quarantine?device=dev-0&reason=READING_BAD_SIGNATURE&limit=5&token=t',
      '/api/openapi.json?token=t',
      '/api/asyncapi.json',
    ]) {
      const { status, body } = await get(path);
      expect(status, `${path}: ${JSON.stringify(body).slice(0, 200)}`).toBe(200);
    }
    // The device's own answer is the device, whatever its id's route.
    expect((await get('/api/devices/dev-0')).body).toMatchObject({ id: 'dev-0' });
    expect(await get('/api/devices/NOT_A_DEVICE')).toMatchObject({ status: 400, body: { code: 'QUERY_INVALID', details: { param: 'device' } } });
  });
});

describe('health and metrics', () => {
  it('reports the broker link and the store', async () => {
    const { status, body } = await get('/healthz');
    expect(status).toBe(200);
    expect(body).toMatchObject({ ok: true, broker: true, store: true });
    const metrics = await get('/metrics');
    expect(metrics.text).toMatch(/sensorpipe_display_http_requests_total\{route="\/api\/devices",status="400"\} [1-9]/);
    expect(metrics.text).toMatch(/sensorpipe_display_feed_messages_total\{kind="verified"\} [1-9]/);
  });
});

describe('with a viewer token', () => {
  let guarded: RunningDisplay;
  beforeAll(async () => {
    guarded = await startDisplay({
      config: displayConfig(pipeline.broker, pipeline.dir.path, { SENSORPIPE_VIEWER_TOKEN: 'let-me-see', SENSORPIPE_ALLOWED_ORIGINS: 'https://ops.example.com' }),
      registryPath: pipeline.registryPath,
      store: pipeline.store,
      logger: createLogger({ level: 'silent' }),
    });
    await guarded.feed.ready; // /healthz reports the broker link: 503 until it is up
  });
  afterAll(async () => guarded?.close());

  it('requires the token on the API (header or ?token=) and checks the Origin', async () => {
    const at = (path: string, headers: Record<string, string> = {}) => fetch(`${guarded.url}${path}`, { headers }).then(async (r) => ({ status: r.status, body: (await r.json()) as { code?: string } }));
    expect(await at('/api/devices')).toMatchObject({ status: 401, body: { code: 'AUTH_REQUIRED' } });
    expect(await at('/api/devices', { authorization: 'Bearer guess' })).toMatchObject({ status: 401, body: { code: 'AUTH_REQUIRED' } });
    expect((await at('/api/devices', { authorization: 'Bearer let-me-see' })).status).toBe(200);
    expect((await at('/api/devices?token=let-me-see')).status).toBe(200);
    expect(await at('/api/devices?token=let-me-see', { origin: 'https://evil.example' })).toMatchObject({ status: 403, body: { code: 'FORBIDDEN' } });
    expect((await at('/api/devices?token=let-me-see', { origin: 'https://ops.example.com' })).status).toBe(200);
    expect((await at('/api/devices?token=let-me-see', { origin: guarded.url })).status).toBe(200);
    // Health stays open for probes, and tells nothing about devices.
    expect((await at('/healthz')).status).toBe(200);
  });

  it('starts with the latest values the store holds (dev-0 never connected; its history was written before this display started)', async () => {
    const body = (await (await fetch(`${guarded.url}/api/devices?q=dev-0`, { headers: { authorization: 'Bearer let-me-see' } })).json()) as { devices: { latest: Record<string, { ts: number; value: number }> }[] };
    expect(body.devices[0]!.latest.temperature).toEqual({ ts: HISTORY.at(-1)!.ts, value: HISTORY.at(-1)!.temperature });
  });
});
