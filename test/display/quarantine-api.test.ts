/**
 * GET /api/quarantine over real HTTP against a real pipeline (our broker, ingest writing its quarantine,
 * the embedded store, the display reading the same files): newest first, each entry with its reason's
 * text and payload excerpt; filters by device and reason; pages by `before` without losing or repeating
 * an entry; hostile query strings answered 400 QUERY_INVALID naming the parameter; HEAD, OPTIONS, 405,
 * gzip as on the other routes; the viewer token; a quarantine folder that does not exist. Also the
 * device list's counts, as ingest published them.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { QuarantineResponseSchema, type QuarantineResponse } from '../../core/api.ts';
import { ERROR_CODES } from '../../core/errors.ts';
import { createLogger } from '../../core/logger.ts';
import { signTelemetry } from '../../core/signature.ts';
import { startDisplay, type RunningDisplay } from '../../display/index.ts';
import { displayConfig, startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { DevicePublisher, signedPayload, waitFor } from '../../harness/publisher.ts';
import { bodyJson, sendRaw } from './http-helpers.ts';

const ALLOWED = 'https://ops.example.com';
const TOKEN = 'viewer-token-for-quarantine';

let pipeline: TestPipeline;
let guarded: RunningDisplay;
let publishers: DevicePublisher[];
/** Rejections sent: dev-0 gets 6 bad signatures, dev-1 one replay and one bad signature. */
const BAD_SIGNATURES_DEV0 = 6;

async function get(path: string, port = pipeline.display.port, headers: Record<string, string> = {}) {
  const answer = await sendRaw(port, 'GET', path, headers);
  return { ...answer, body: bodyJson(answer) };
}

async function page(query: string): Promise<QuarantineResponse> {
  const answer = await get(`/api/quarantine${query}`);
  expect(answer.status).toBe(200);
  return QuarantineResponseSchema.parse(answer.body);
}

beforeAll(async () => {
  pipeline = await startTestPipeline({ devices: 3, displayEnv: { SENSORPIPE_ALLOWED_ORIGINS: ALLOWED } });
  publishers = [await DevicePublisher.connect(pipeline.broker.url, pipeline.devices[0]!), await DevicePublisher.connect(pipeline.broker.url, pipeline.devices[1]!)];
  const [dev0, dev1] = pipeline.devices as [(typeof pipeline.devices)[0], (typeof pipeline.devices)[0]];
  const now = Date.now();
  // One at a time, so that their order in the quarantine is the order sent.
  for (let i = 0; i < BAD_SIGNATURES_DEV0; i++) {
    await publishers[0]!.sendRaw(JSON.stringify(signTelemetry({ v: 1, device: dev0.id, readings: [{ seq: 100 + i, ts: now, values: { temperature: i } }] }, dev1.key)));
    await waitFor(async () => (await pipeline.ingest.metrics.rejected.get()).values.reduce((s, v) => s + v.value, 0) === i + 1, `rejection ${i + 1}`, 10_000);
  }
  await publishers[1]!.sendRaw(signedPayload(dev1, [{ seq: 1, ts: now, values: { temperature: 1 } }]));
  await publishers[1]!.sendRaw(signedPayload(dev1, [{ seq: 1, ts: now, values: { temperature: 2 } }])); // a replay
  await publishers[1]!.sendRaw(JSON.stringify(signTelemetry({ v: 1, device: dev1.id, readings: [{ seq: 2, ts: now, values: { t: 1 } }] }, dev0.key)));
  await waitFor(async () => (await page('?limit=1000')).entries.length === BAD_SIGNATURES_DEV0 + 2, 'every rejection in the quarantine', 10_000);
  // A second display on the same broker: with a viewer token, reading a folder that does not exist.
  guarded = await startDisplay({
    config: displayConfig(pipeline.broker, join(pipeline.dir.path, 'data'), { SENSORPIPE_VIEWER_TOKEN: TOKEN, SENSORPIPE_DISPLAY_QUARANTINE_DIR: join(pipeline.dir.path, 'no-such-folder') }),
    registryPath: pipeline.registryPath,
    store: pipeline.store,
    logger: createLogger({ level: 'silent' }),
  });
}, 90_000);

afterAll(async () => {
  await guarded?.close();
  for (const p of publishers ?? []) await p.close();
  await pipeline?.close();
});

describe('GET /api/quarantine', () => {
  it('lists rejections newest first, each with its reason text, payload excerpt and size', async () => {
    const all = await page('');
    expect(all.available).toBe(true);
    expect(all.next).toBeNull();
    expect(all.evicted).toBe(0);
    expect(all.entries.map((e) => [e.device, e.reason])).toEqual([
      ['dev-1', 'READING_BAD_SIGNATURE'],
      ['dev-1', 'READING_REPLAYED'],
      ...Array.from({ length: BAD_SIGNATURES_DEV0 }, () => ['dev-0', 'READING_BAD_SIGNATURE']),
    ]);
    const ats = all.entries.map((e) => e.at);
    expect([...ats].sort((a, b) => b - a)).toEqual(ats);
    const newestOfDev0 = all.entries[2]!;
    expect(newestOfDev0.reasonText).toBe(ERROR_CODES.READING_BAD_SIGNATURE.text);
    expect(newestOfDev0.topic).toBe('sensors/dev-0/telemetry');
    expect(newestOfDev0.message).toContain('signature does not verify');
    expect(newestOfDev0.encoding).toBe('utf8');
    expect(newestOfDev0.truncated).toBe(false);
    expect(JSON.parse(newestOfDev0.payload)).toMatchObject({ device: 'dev-0', readings: [{ seq: 100 + BAD_SIGNATURES_DEV0 - 1 }] });
    expect(newestOfDev0.bytes).toBe(Buffer.byteLength(newestOfDev0.payload));
  });

  it('filters by device and by reason', async () => {
    expect((await page('?device=dev-1')).entries.map((e) => e.reason)).toEqual(['READING_BAD_SIGNATURE', 'READING_REPLAYED']);
    expect((await page('?reason=READING_REPLAYED')).entries.map((e) => e.device)).toEqual(['dev-1']);
    expect((await page('?reason=READING_BAD_SIGNATURE&device=dev-0')).entries).toHaveLength(BAD_SIGNATURES_DEV0);
    expect((await page('?device=dev-2')).entries).toEqual([]);
    expect((await page('?reason=PAYLOAD_TOO_LARGE')).entries).toEqual([]);
  });

  it('pages by `before`: every entry exactly once, newest first', async () => {
    const all = (await page('')).entries;
    const seen: typeof all = [];
    let before: string | null = '';
    let pages = 0;
    while (before !== null) {
      const p = await page(`?limit=3${before === '' ? '' : `&before=${encodeURIComponent(before)}`}`);
      expect(p.entries.length).toBeLessThanOrEqual(3);
      seen.push(...p.entries);
      before = p.next;
      pages++;
    }
    expect(pages).toBe(3);
    expect(seen).toEqual(all);
    // A bare time: only entries older than it.
    const cut = all[3]!.at;
    expect((await page(`?before=${cut}`)).entries.every((e) => e.at < cut)).toBe(true);
    expect((await page('?before=0')).entries).toEqual([]);
  });

  it.each([
    ['limit=0', 'limit'],
    ['limit=1001', 'limit'],
    ['limit=-1', 'limit'],
    ['limit=1e3', 'limit'],
    ['limit=abc', 'limit'],
    ['reason=NOT_A_REASON', 'reason'],
    ['reason=QUERY_INVALID', 'reason'],
    ['device=Dev-0', 'device'],
    ['device=../../etc/passwd', 'device'],
    ['device=%3Cscript%3E', 'device'],
    ['before=yesterday', 'before'],
    ['before=1:-1', 'before'],
    ['before=99999999999999999', 'before'],
    ['before=1:2:3', 'before'],
    ['limit=1&limit=2', 'limit'],
    ['evil=1', 'evil'],
    ['__proto__=x', '__proto__'],
  ])('?%s is 400 QUERY_INVALID naming %s', async (query, param) => {
    const { status, body } = await get(`/api/quarantine?${query}`);
    expect(status).toBe(400);
    expect(body.code).toBe('QUERY_INVALID');
    expect(String(body.message).startsWith(param)).toBe(true);
  });

  it('answers HEAD, OPTIONS and 405 like the other routes, and gzips a large answer', async () => {
    const head = await sendRaw(pipeline.display.port, 'HEAD', '/api/quarantine');
    expect(head.status).toBe(200);
    expect(head.raw.length).toBe(0);
    const post = await sendRaw(pipeline.display.port, 'POST', '/api/quarantine');
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe('GET, HEAD, OPTIONS');
    const preflight = await sendRaw(pipeline.display.port, 'OPTIONS', '/api/quarantine', { origin: ALLOWED, 'access-control-request-method': 'GET' });
    expect(preflight.status).toBe(204);
    expect(preflight.headers['access-control-allow-origin']).toBe(ALLOWED);
    const gz = await get('/api/quarantine', pipeline.display.port, { 'accept-encoding': 'gzip', origin: ALLOWED });
    expect(gz.headers['content-encoding']).toBe('gzip');
    expect(gz.headers['access-control-allow-origin']).toBe(ALLOWED);
    expect(QuarantineResponseSchema.parse(gz.body).entries).toHaveLength(BAD_SIGNATURES_DEV0 + 2);
  });

  it('asks for the viewer token when one is set, and answers an absent folder with an empty, unavailable list', async () => {
    const refused = await get('/api/quarantine', guarded.port);
    expect(refused.status).toBe(401);
    expect(refused.body.code).toBe('AUTH_REQUIRED');
    const answer = await get('/api/quarantine', guarded.port, { authorization: `Bearer ${TOKEN}` });
    expect(answer.status).toBe(200);
    expect(answer.body).toEqual({ available: false, entries: [], next: null, evicted: 0 });
  });
});

describe('counts in GET /api/devices', () => {
  it('carries what ingest counted per device, and the trust level with its algorithm', async () => {
    await waitFor(async () => {
      const devices = (await get('/api/devices')).body.devices as { id: string; counts: { rejected: Record<string, number> } | null }[];
      return devices.find((d) => d.id === 'dev-0')?.counts?.rejected.READING_BAD_SIGNATURE === BAD_SIGNATURES_DEV0 && devices.find((d) => d.id === 'dev-1')?.counts?.rejected.READING_REPLAYED === 1;
    }, 'counts in the device list', 10_000);
    const devices = (await get('/api/devices')).body.devices as { id: string; alg?: string; trust: string; counts: unknown }[];
    expect(devices.find((d) => d.id === 'dev-0')).toMatchObject({ trust: 'signed', alg: 'hmac-sha256', counts: { accepted: 0, duplicates: 0, rejected: { READING_BAD_SIGNATURE: BAD_SIGNATURES_DEV0 } } });
    expect(devices.find((d) => d.id === 'dev-1')).toMatchObject({ counts: { accepted: 1, duplicates: 0, rejected: { READING_BAD_SIGNATURE: 1, READING_REPLAYED: 1 } } });
    // dev-2 sent nothing: ingest has no counts for it.
    expect(devices.find((d) => d.id === 'dev-2')?.counts).toBeNull();
  });
});
