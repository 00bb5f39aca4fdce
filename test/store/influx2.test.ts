/**
 * The store contract against the native InfluxDB 2.x adapter. No 2.x server can run on the build
 * machine, so this runs only when INFLUX2_URL, INFLUX2_TOKEN, INFLUX2_ORG and INFLUX2_BUCKET point at
 * one (an existing bucket; use a scratch one: the suite writes test devices into it). Otherwise the
 * report lists one skipped test that says so.
 */
import { describe, expect, it } from 'vitest';
import { openInflux2Store } from '../../store/influx2.ts';
import { describeStoreContract } from './contract.ts';

const url = process.env.INFLUX2_URL;
const token = process.env.INFLUX2_TOKEN;
const org = process.env.INFLUX2_ORG;
const bucket = process.env.INFLUX2_BUCKET;

if (url && token && org && bucket) {
  describeStoreContract('InfluxDB 2.x native API', async () => {
    const open = () => openInflux2Store({ url, token, org, bucket });
    let store = await open();
    return {
      store,
      async reopen() {
        await store.close();
        store = await open();
        return store;
      },
      close: () => store.close(),
    };
  });
} else {
  describe('store contract: InfluxDB 2.x native API', () => {
    it.skip('SKIPPED: no InfluxDB 2.x here; set INFLUX2_URL, INFLUX2_TOKEN, INFLUX2_ORG and INFLUX2_BUCKET to run the contract suite against it', () => {});
  });
}

describe('InfluxDB 2.x adapter: the write path against a fake /api/v2/write (mock: no 2.x server runs here)', () => {
  it('sends ms line protocol with the token, narrows a 400 down to the refused point, and treats 503 as retryable', async () => {
    const { createServer } = await import('node:http');
    const { isSensorpipeError } = await import('../../core/errors.ts');
    const stored: string[] = [];
    const requests: { url: string; auth: string | undefined }[] = [];
    let answer503 = false;
    // Like InfluxDB: writes the good lines of a body, answers 400 when any line was refused.
    const fake = createServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        requests.push({ url: req.url ?? '', auth: req.headers.authorization });
        if (answer503) {
          res.writeHead(503, { 'content-type': 'application/json' }).end('{"code":"unavailable","message":"busy"}');
          return;
        }
        const lines = body.split('\n').filter((l) => l !== '');
        const bad = lines.filter((l) => / conflict=/.test(l) || /,conflict=/.test(l));
        stored.push(...lines.filter((l) => !bad.includes(l)));
        if (bad.length === 0) res.writeHead(204).end();
        else res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'invalid', message: `partial write: field type conflict dropped=${bad.length}` }));
      });
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    const port = (fake.address() as { port: number }).port;
    const store = await openInflux2Store({ url: `http://127.0.0.1:${port}`, token: 'tok', org: 'acme', bucket: 'bkt' });
    try {
      const T = Date.UTC(2026, 0, 5);
      const result = await store.write([
        { device: 'd1', metric: 'temperature', ts: T, value: 1 },
        { device: 'd1', metric: 'conflict', ts: T, value: 2 },
        { device: 'd1', metric: 'temperature', ts: T + 1000, value: 3 },
      ]);
      expect(result.refused.map((r) => r.index)).toEqual([1]);
      expect(result.refused[0]!.message).toMatch(/field type conflict/);
      expect(result.written).toBe(2);
      expect(stored).toContain(`readings,device=d1,trust=signed temperature=1 ${T}`);
      expect(stored).toContain(`readings,device=d1,trust=signed temperature=3 ${T + 1000}`);
      const url = new URL(requests[0]!.url, 'http://x');
      expect([url.pathname, url.searchParams.get('org'), url.searchParams.get('bucket'), url.searchParams.get('precision')]).toEqual(['/api/v2/write', 'acme', 'bkt', 'ms']);
      expect(requests[0]!.auth).toBe('Token tok');

      answer503 = true;
      const err = await store.write([{ device: 'd1', metric: 'temperature', ts: T, value: 1 }]).then(() => undefined, (e: unknown) => e);
      expect(isSensorpipeError(err, 'STORE_UNAVAILABLE')).toBe(true);
    } finally {
      await store.close();
      await new Promise((resolve) => fake.close(resolve));
    }
  });
});
