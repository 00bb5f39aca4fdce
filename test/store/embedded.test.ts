/** The store contract against the embedded DuckDB store, plus what only the embedded store does. */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openEmbeddedStore } from '../../store/embedded.ts';
import { embeddedStorePath, openStore } from '../../store/index.ts';
import { tempDir } from '../harness/tmp.ts';
import { describeStoreContract, expectCode, T0 } from './contract.ts';

describeStoreContract('embedded (DuckDB)', async () => {
  const dir = await tempDir('sensorpipe-store-');
  const path = join(dir.path, 'store.duckdb');
  let store = await openEmbeddedStore({ path });
  return {
    store,
    async reopen() {
      await store.close();
      store = await openEmbeddedStore({ path });
      return store;
    },
    async close() {
      await store.close();
      await dir.remove();
    },
  };
});

describe('embedded store', () => {
  it('is what openStore opens when no InfluxDB is configured, in a file under the data folder', async () => {
    const dir = await tempDir('sensorpipe-store-');
    try {
      const store = await openStore({ dataDir: dir.path });
      expect(store.kind).toBe('embedded');
      await store.write([{ device: 'd1', metric: 'temperature', ts: T0, value: 1 }]);
      await store.close();
      const again = await openEmbeddedStore({ path: embeddedStorePath(dir.path) });
      expect(await again.count()).toBe(1);
      await again.close();
    } finally {
      await dir.remove();
    }
  });

  it('refuses calls after close with a retryable error, and closes twice without harm', async () => {
    const dir = await tempDir('sensorpipe-store-');
    try {
      const store = await openEmbeddedStore({ path: join(dir.path, 's.duckdb') });
      await store.close();
      await store.close();
      await expectCode(store.write([{ device: 'd1', metric: 'temperature', ts: T0, value: 1 }]), 'STORE_UNAVAILABLE');
      expect((await store.health()).ok).toBe(false);
    } finally {
      await dir.remove();
    }
  });

  it('shares one store between opens of the same file in one process, and releases the file after the last close', async () => {
    const dir = await tempDir('sensorpipe-store-');
    const path = join(dir.path, 's.duckdb');
    try {
      const first = await openEmbeddedStore({ path });
      const second = await openEmbeddedStore({ path });
      await first.write([{ device: 'd1', metric: 'temperature', ts: T0, value: 1 }]);
      // The second handle knows the point exists: a rewrite through it replaces instead of duplicating.
      await second.write([{ device: 'd1', metric: 'temperature', ts: T0, value: 2 }]);
      await first.close();
      expect(await second.count()).toBe(1);
      await second.close();
      await expectCode(second.count(), 'STORE_UNAVAILABLE');
      const third = await openEmbeddedStore({ path });
      expect((await third.query({ device: 'd1', metrics: ['temperature'], from: T0, to: T0 + 1, mode: 'raw' })).series[0]!.points).toEqual([{ ts: T0, value: 2 }]);
      await third.close();
    } finally {
      await dir.remove();
    }
  });
});
