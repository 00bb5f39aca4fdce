/**
 * The soak's fault proxy between ingest and influxd, with the store adapter ingest uses on one side and
 * a real influxd on the other: each fault looks to the adapter like the failure it stands for (a
 * retryable STORE_UNAVAILABLE, with Retry-After for 429), a partition holds a write until it heals, and
 * with no fault the proxy changes nothing.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isSensorpipeError, type SensorpipeError } from '../../core/errors.ts';
import { influxQuery, startInfluxd, type InfluxServer } from '../../harness/influxd.ts';
import { startInfluxFaultProxy, type InfluxFaultProxy } from '../../soak/influx-fault-proxy.ts';
import { openInfluxStore } from '../../store/influx1.ts';
import type { StorePoint, TimeSeriesStore } from '../../store/port.ts';

let influx: InfluxServer;
let proxy: InfluxFaultProxy;
const database = `proxy_${randomUUID().slice(0, 8)}`;
const T0 = Date.UTC(2026, 0, 1);

beforeAll(async () => {
  influx = await startInfluxd();
  await influxQuery(influx.url, `CREATE DATABASE ${database}`);
  proxy = await startInfluxFaultProxy(influx.url, { retryAfterSeconds: 3 });
}, 60_000);
afterAll(async () => {
  await proxy?.close();
  await influx?.close();
});

const point = (i: number): StorePoint => ({ device: 'proxied', metric: 'temperature', ts: T0 + i * 1000, value: i, seq: i });
const failure = (promise: Promise<unknown>) => promise.then(() => undefined, (err: unknown) => err as SensorpipeError);

async function through(writeTimeoutMs: number, run: (store: TimeSeriesStore) => Promise<void>): Promise<void> {
  const store = await openInfluxStore({ url: proxy.url, database, createDatabase: false, writeTimeoutMs });
  try {
    await run(store);
  } finally {
    await store.close();
  }
}

describe('influx fault proxy', () => {
  it('with no fault, forwards writes and queries unchanged', async () => {
    await through(5000, async (store) => {
      expect(await store.write([point(1)])).toEqual({ written: 1, refused: [] });
      expect(await store.seqs('proxied', T0, T0 + 10_000)).toEqual([{ ts: T0 + 1000, seq: 1 }]);
    });
    expect(proxy.counts.forwarded).toBeGreaterThanOrEqual(2);
  });

  it('answers 500 and 429 (with Retry-After): retryable, nothing written', async () => {
    await through(5000, async (store) => {
      proxy.set('500');
      const e500 = await failure(store.write([point(2)]));
      proxy.set('429');
      const e429 = await failure(store.write([point(2)]));
      proxy.set(undefined);
      expect(isSensorpipeError(e500, 'STORE_UNAVAILABLE') && e500.message).toContain('HTTP 500');
      expect(isSensorpipeError(e429, 'STORE_UNAVAILABLE') && e429.message).toContain('HTTP 429');
      expect(e429?.details?.retryAfterMs).toBe(3000);
      expect(await store.seqs('proxied', T0 + 2000, T0 + 3000)).toEqual([]);
    });
  });

  it('hangs: takes the request and never answers, so the write times out; afterwards writes go through', async () => {
    await through(400, async (store) => {
      proxy.set('hang');
      const hung = proxy.counts.hung;
      const err = await failure(store.write([point(3)]));
      expect(isSensorpipeError(err, 'STORE_UNAVAILABLE') && err.message).toMatch(/timed out/);
      expect(proxy.counts.hung).toBe(hung + 1);
      proxy.set(undefined);
      expect(await store.write([point(3)])).toEqual({ written: 1, refused: [] });
    });
  });

  it('partitions: a write in flight waits while both sides are up, and completes once it heals', async () => {
    await through(400, async (short) => {
      proxy.set('partition');
      // A write that gives up while partitioned fails like a timeout…
      expect((await failure(short.write([point(4)])))?.message).toMatch(/timed out/);
    });
    await through(10_000, async (store) => {
      // …one that is still waiting when the partition heals gets through.
      let settled = false;
      const write = store.write([point(5)]).finally(() => (settled = true));
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(settled).toBe(false);
      expect(proxy.counts.heldBytes).toBeGreaterThan(0);
      proxy.set(undefined);
      expect(await write).toEqual({ written: 1, refused: [] });
      expect(await store.seqs('proxied', T0 + 5000, T0 + 6000)).toEqual([{ ts: T0 + 5000, seq: 5 }]);
    });
  });

  it('closes the connection, rather than answering, when influxd is down', async () => {
    await influx.stop();
    try {
      await through(5000, async (store) => {
        const failed = proxy.counts.upstreamFailed;
        const err = await failure(store.write([point(6)]));
        expect(isSensorpipeError(err, 'STORE_UNAVAILABLE')).toBe(true);
        expect(err?.message).not.toContain('HTTP');
        expect(proxy.counts.upstreamFailed).toBeGreaterThan(failed);
      });
    } finally {
      await influx.start();
    }
  });
});
