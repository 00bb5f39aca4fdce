/**
 * The display's /healthz and /metrics (core/ops-http.ts, as every process answers them) against a real
 * pipeline: the health fields and status codes, the display's security headers on both, and the store
 * calls the display makes counted on its own /metrics. And its logs: a child logger per /live client
 * and per HTTP request, naming it, never with the query string (a token may be in it).
 */
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.ts';
import { startDisplay } from '../../display/index.ts';
import { LiveTestClient, displayConfig, startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { freePort } from '../../harness/ports.ts';

let pipeline: TestPipeline;

beforeAll(async () => {
  pipeline = await startTestPipeline({ devices: 1 });
}, 60_000);
afterAll(async () => pipeline?.close());

const expectDisplayHeaders = (headers: Headers) => {
  expect(headers.get('x-content-type-options')).toBe('nosniff');
  expect(headers.get('x-frame-options')).toBe('DENY');
  expect(headers.get('content-security-policy')).toMatch(/frame-ancestors 'none'/);
  expect(headers.get('cache-control')).toBe('no-store');
};

describe('/healthz', () => {
  it('answers 200 with the broker link, the store and the client count, with the display headers', async () => {
    const response = await fetch(`${pipeline.display.url}/healthz`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toBe('application/json; charset=utf-8');
    expectDisplayHeaders(response.headers);
    expect(await response.json()).toEqual({ ok: true, broker: true, store: true, clients: 0 });
  });

  it('answers 503 when the display cannot reach the broker', async () => {
    const nowhere = await freePort();
    const display = await startDisplay({
      config: displayConfig(pipeline.broker, pipeline.dir.path, { SENSORPIPE_MQTT_URL: `mqtt://127.0.0.1:${nowhere}` }),
      registryPath: pipeline.registryPath,
      store: pipeline.store,
      logger: createLogger({ level: 'silent' }),
    });
    try {
      const response = await fetch(`${display.url}/healthz`);
      expect(response.status).toBe(503);
      expect(await response.json()).toEqual({ ok: false, broker: false, store: true, clients: 0 });
    } finally {
      await display.close();
    }
  });
});

describe('/metrics', () => {
  it('counts the store calls the display makes, on its own registry, with the display headers', async () => {
    const history = await fetch(`${pipeline.display.url}/api/devices/dev-0/readings?from=-1h&mode=raw`);
    expect(history.status).toBe(200);
    const response = await fetch(`${pipeline.display.url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toMatch(/^text\/plain/);
    expectDisplayHeaders(response.headers);
    const text = await response.text();
    expect(text).toMatch(/sensorpipe_store_operation_seconds_count\{operation="query_raw",adapter="embedded"\} [1-9]/);
    expect(text).toMatch(/sensorpipe_store_operation_seconds_count\{operation="latest_all",adapter="embedded"\} 1\n/);
    expect(text).toMatch(/sensorpipe_display_http_requests_total\{route="\/api\/devices\/:id\/readings",status="200"\} 1\n/);
  });
});

describe('logs', () => {
  it('names the /live client or the request each line is about', async () => {
    const lines: Record<string, unknown>[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        for (const line of chunk.toString('utf8').split('\n')) if (line !== '') lines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    });
    const display = await startDisplay({
      config: displayConfig(pipeline.broker, pipeline.dir.path, { SENSORPIPE_VIEWER_TOKEN: 'log-viewer-secret' }),
      registryPath: pipeline.registryPath,
      store: pipeline.store,
      logger: createLogger({ level: 'debug', destination }),
    });
    try {
      const base = display.url.replace('http', 'ws');
      await expect(LiveTestClient.connect(`${base}/live?token=wrong-secret`)).rejects.toThrow('HTTP 401');
      const noisy = await LiveTestClient.connect(`${base}/live?token=log-viewer-secret`);
      for (let i = 0; i < 10; i++) noisy.send('nonsense');
      await noisy.closed;
      const refused = lines.find((l) => l.msg === 'live upgrade refused');
      expect(refused).toMatchObject({ component: 'display', request: expect.any(Number), method: 'GET', path: '/live', address: '127.0.0.1', code: 'AUTH_REQUIRED' });
      const dropped = lines.find((l) => l.msg === 'live client disconnected');
      expect(dropped).toMatchObject({ component: 'display', client: expect.any(Number), address: '127.0.0.1', reason: 'bad-frames' });
      // Every line about that client carries its id; no line anywhere carries a token.
      expect(lines.filter((l) => l.client === dropped!.client).map((l) => l.msg)).toEqual(expect.arrayContaining(['live client connected', 'live frame refused', 'live client disconnected']));
      expect(JSON.stringify(lines)).not.toMatch(/secret/);
    } finally {
      await display.close();
    }
  });
});
