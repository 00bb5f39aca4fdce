/**
 * The display's HTTP API over real HTTP on loopback (a real pipeline: broker, ingest, embedded store,
 * display): methods (405 with Allow, 404 for what does not exist), CORS for the allowed origins
 * (preflight answered or refused, Vary: Origin), and gzip of JSON and CSV answers (not tiny ones; CSV
 * still streamed), with hostile inputs: unknown methods, a foreign origin, Accept-Encoding garbage.
 * Requests go through node:http, not fetch, so the bytes on the wire are what is checked (fetch
 * decompresses by itself and picks its own Accept-Encoding).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { acceptsGzip, COMPRESS_MIN_BYTES } from '../../display/http.ts';
import { startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { bodyJson, bodyText, sendRaw, type RawAnswer } from './http-helpers.ts';

const ALLOWED = 'https://ops.example.com';
const FOREIGN = 'https://evil.example';

let pipeline: TestPipeline;
let port: number;
/** dev-0's history: one reading every 10 s for two hours, ending an hour ago. */
const T0 = Date.now() - 3_600_000;
const POINTS = 720;

beforeAll(async () => {
  pipeline = await startTestPipeline({ devices: 2, displayEnv: { SENSORPIPE_ALLOWED_ORIGINS: ALLOWED } });
  port = pipeline.display.port;
  await pipeline.store.write(Array.from({ length: POINTS }, (_, i) => ({ device: 'dev-0', metric: 'temperature', ts: T0 - 7_200_000 + i * 10_000, value: 20 + (i % 60) / 10 })));
}, 60_000);
afterAll(async () => pipeline?.close());

const send = (method: string, path: string, headers: Record<string, string> = {}) => sendRaw(port, method, path, headers);
const varyOf = (answer: RawAnswer) => String(answer.headers.vary ?? '').split(',').map((v) => v.trim().toLowerCase());

const READINGS = `/api/devices/dev-0/readings?metrics=temperature&from=${T0 - 7_300_000}&to=${T0}`;

describe('methods', () => {
  it.each([
    ['POST', '/api/devices'],
    ['PUT', '/api/devices/dev-0'],
    ['DELETE', '/api/devices/dev-0/readings'],
    ['PATCH', '/healthz'],
    ['PROPFIND', '/api/devices'],
    ['POST', '/metrics'],
  ])('%s %s: 405 METHOD_NOT_ALLOWED with Allow', async (method, path) => {
    const answer = await send(method, path);
    expect(answer.status).toBe(405);
    expect(answer.headers.allow).toBe('GET, HEAD, OPTIONS');
    expect(bodyJson(answer)).toMatchObject({ code: 'METHOD_NOT_ALLOWED' });
  });

  it.each([
    ['POST', '/api/nothing-here'],
    ['DELETE', '/no-such-file.txt'],
    ['OPTIONS', '/api/devices/dev-0/readings/extra'],
  ])('%s %s: a route that does not exist is 404 whatever the method', async (method, path) => {
    const answer = await send(method, path);
    expect(answer.status).toBe(404);
    expect(bodyJson(answer)).toMatchObject({ code: 'NOT_FOUND' });
  });

  it('GET and HEAD still answer', async () => {
    expect((await send('GET', '/api/devices')).status).toBe(200);
    const head = await send('HEAD', '/api/devices');
    expect(head.status).toBe(200);
    expect(head.raw.length).toBe(0);
  });

  it('a plain OPTIONS (no Origin) lists the methods', async () => {
    for (const path of ['/api/devices', '/healthz']) {
      const answer = await send('OPTIONS', path);
      expect(answer.status, path).toBe(204);
      expect(answer.headers.allow).toBe('GET, HEAD, OPTIONS');
      expect(answer.headers['access-control-allow-origin']).toBeUndefined();
    }
  });
});

describe('CORS', () => {
  it('an allowed origin gets Access-Control-Allow-Origin, on answers and on errors', async () => {
    const ok = await send('GET', '/api/devices', { origin: ALLOWED });
    expect(ok.status).toBe(200);
    expect(ok.headers['access-control-allow-origin']).toBe(ALLOWED);
    expect(varyOf(ok)).toContain('origin');
    const missing = await send('GET', '/api/devices/nobody', { origin: ALLOWED });
    expect(missing.status).toBe(404);
    expect(missing.headers['access-control-allow-origin']).toBe(ALLOWED);
  });

  it('no Origin: no CORS headers, but still Vary: Origin (a cache must not reuse it for a browser)', async () => {
    const answer = await send('GET', '/api/devices');
    expect(answer.headers['access-control-allow-origin']).toBeUndefined();
    expect(varyOf(answer)).toContain('origin');
  });

  it('a foreign origin is refused, with no CORS headers', async () => {
    const answer = await send('GET', '/api/devices', { origin: FOREIGN });
    expect(answer.status).toBe(403);
    expect(answer.headers['access-control-allow-origin']).toBeUndefined();
    expect(varyOf(answer)).toContain('origin');
  });

  it('a preflight from an allowed origin is answered', async () => {
    const answer = await send('OPTIONS', READINGS, { origin: ALLOWED, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' });
    expect(answer.status).toBe(204);
    expect(answer.headers['access-control-allow-origin']).toBe(ALLOWED);
    expect(answer.headers['access-control-allow-methods']).toBe('GET, HEAD');
    expect(answer.headers['access-control-allow-headers']).toBe('authorization');
    expect(Number(answer.headers['access-control-max-age'])).toBeGreaterThan(0);
    expect(varyOf(answer)).toContain('origin');
  });

  it.each([FOREIGN, 'null', 'https://ops.example.com.evil.example', 'not a url'])('a preflight from %s is refused', async (origin) => {
    const answer = await send('OPTIONS', '/api/devices', { origin, 'access-control-request-method': 'GET' });
    expect(answer.status).toBe(403);
    expect(bodyJson(answer)).toMatchObject({ code: 'FORBIDDEN' });
    expect(answer.headers['access-control-allow-origin']).toBeUndefined();
    expect(answer.headers['access-control-allow-methods']).toBeUndefined();
  });
});

describe('compression', () => {
  it('JSON readings are gzipped when accepted, and read back the same as uncompressed', async () => {
    const plain = await send('GET', READINGS);
    const zipped = await send('GET', READINGS, { 'accept-encoding': 'gzip' });
    expect(plain.headers['content-encoding']).toBeUndefined();
    expect(zipped.headers['content-encoding']).toBe('gzip');
    expect(varyOf(zipped)).toContain('accept-encoding');
    expect(zipped.raw.length).toBeLessThan(plain.raw.length / 2);
    expect(bodyJson(zipped)).toEqual(bodyJson(plain));
    expect((bodyJson(zipped).series as { points: unknown[] }[])[0]!.points).toHaveLength(POINTS);
  });

  it('CSV is gzipped and still streamed: every row arrives', async () => {
    const csv = `${READINGS}&format=csv&mode=raw`;
    const answer = await send('GET', csv, { 'accept-encoding': 'br;q=1, gzip;q=0.8' });
    expect(answer.status).toBe(200);
    expect(answer.headers['content-encoding']).toBe('gzip');
    expect(answer.headers['transfer-encoding']).toBe('chunked');
    expect(answer.headers['content-length']).toBeUndefined();
    const lines = bodyText(answer).trimEnd().split('\n');
    expect(lines[0]).toBe('time,ts,metric,value');
    expect(lines).toHaveLength(POINTS + 1);
    expect(bodyText(answer)).toBe((await send('GET', csv)).raw.toString('utf8'));
  });

  it('a tiny answer is not compressed', async () => {
    const answer = await send('GET', '/api/devices/dev-1', { 'accept-encoding': 'gzip' });
    expect(answer.status).toBe(200);
    expect(answer.raw.length).toBeLessThan(COMPRESS_MIN_BYTES);
    expect(answer.headers['content-encoding']).toBeUndefined();
    expect(JSON.parse(answer.raw.toString('utf8'))).toMatchObject({ id: 'dev-1' });
  });

  it.each([
    ['gzip refused', 'gzip;q=0'],
    ['identity', 'identity'],
    ['br only', 'br'],
    ['a q that is no number', 'gzip;q=banana'],
    ['separators only', ';;;,,,'],
    ['5000 bytes of x', 'x'.repeat(5000)],
    ['q above 1', 'gzip;q=2'],
    ['anything refused', '*;q=0'],
    ['gzip at q=0.000', 'deflate, gzip;q=0.000'],
    ['a long list ending in gzip', `${'a,'.repeat(600)}gzip`],
  ])('Accept-Encoding garbage (%s): sent uncompressed, and readable', async (_name, acceptEncoding) => {
    const answer = await send('GET', READINGS, { 'accept-encoding': acceptEncoding });
    expect(answer.status).toBe(200);
    expect(answer.headers['content-encoding']).toBeUndefined();
    expect((JSON.parse(answer.raw.toString('utf8')) as { device: string }).device).toBe('dev-0');
  });

  it('errors are not compressed', async () => {
    const answer = await send('GET', '/api/devices/nobody/readings', { 'accept-encoding': 'gzip' });
    expect(answer.status).toBe(404);
    expect(answer.headers['content-encoding']).toBeUndefined();
  });
});

describe('acceptsGzip (Accept-Encoding, RFC 9110 §12.5.3)', () => {
  it.each([
    [undefined, false],
    ['', false],
    ['gzip', true],
    ['GZIP', true],
    ['x-gzip', true],
    ['gzip, deflate, br', true],
    ['br;q=1.0, gzip;q=0.5', true],
    ['*', true],
    ['*;q=0.1', true],
    ['gzip;q=0, *', false],
    ['gzip;q=0', false],
    ['gzip;q=0.000', false],
    ['gzip;q=1.0001', false],
    ['gzip;q=-1', false],
    ['gzip;q=', false],
    ['gzip;level=9', false],
    ['identity', false],
    ['deflate', false],
    [',,;;', false],
    ['\u0000gzip', false],
  ] as const)('%j → %s', (header, expected) => {
    expect(acceptsGzip(header)).toBe(expected);
  });
});
