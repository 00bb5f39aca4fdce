/** The store contract against the embedded DuckDB store, plus what only the embedded store does. */
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { describe, expect, it } from 'vitest';
import { openEmbeddedStore } from '../../store/embedded.ts';
import { embeddedStorePath, openStore } from '../../store/index.ts';
import { tempDir } from '../../harness/tmp.ts';
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

  it('opens a file written before readings had a seq column: its rows read back, new ones carry their seq', async () => {
    const dir = await tempDir('sensorpipe-store-');
    const path = join(dir.path, 'old.duckdb');
    try {
      // The table as the first releases created it (store/embedded.ts before the seq column).
      const old = await DuckDBInstance.create(path);
      const connection = await old.connect();
      await connection.run('CREATE TABLE readings (device VARCHAR NOT NULL, metric VARCHAR NOT NULL, ts BIGINT NOT NULL, value DOUBLE NOT NULL)');
      await connection.run(`INSERT INTO readings VALUES ('d1', 'temperature', ${T0}, 20.5)`);
      connection.closeSync();
      old.closeSync();

      const store = await openEmbeddedStore({ path });
      await store.write([{ device: 'd1', metric: 'temperature', ts: T0 + 1000, value: 21.5, seq: 2 }]);
      // A rewrite of the old row (the slow path) gives it its seq.
      await store.write([{ device: 'd1', metric: 'humidity', ts: T0, value: 40, seq: 1 }, { device: 'd1', metric: 'temperature', ts: T0, value: 20.5, seq: 1 }]);
      const answer = await store.query({ device: 'd1', metrics: ['temperature'], from: T0, to: T0 + 2000, mode: 'raw' });
      expect(answer.series[0]!.points).toEqual([
        { ts: T0, value: 20.5 },
        { ts: T0 + 1000, value: 21.5 },
      ]);
      expect(await store.seqs('d1', T0, T0 + 2000)).toEqual([
        { ts: T0, seq: 1 },
        { ts: T0 + 1000, seq: 2 },
      ]);
      await store.close();
    } finally {
      await dir.remove();
    }
  });

  it('reads a broker-authenticated device\'s readings after a reopen, with their trust, and a signed one\'s as signed', async () => {
    const dir = await tempDir('sensorpipe-store-');
    const path = join(dir.path, 'trust.duckdb');
    try {
      let store = await openEmbeddedStore({ path });
      await store.write([
        { device: 'plain', metric: 'temperature', ts: T0, value: 1 },
        { device: 'thirdparty', metric: 'temperature', ts: T0, value: 2, trust: 'broker' },
        { device: 'thirdparty', metric: 'temperature', ts: T0 + 1000, value: 3, trust: 'broker' },
      ]);
      await store.close();
      // Which devices have broker rows is known again from the file, not from the writes of this process.
      store = await openEmbeddedStore({ path });
      const raw = await store.query({ device: 'thirdparty', from: T0, to: T0 + 60_000, mode: 'raw' });
      expect(raw.series).toEqual([{ metric: 'temperature', points: [{ ts: T0, value: 2 }, { ts: T0 + 1000, value: 3 }], trust: ['broker'] }]);
      const windows = await store.query({ device: 'thirdparty', from: T0, to: T0 + 60_000, every: 60_000 });
      expect(windows.series).toEqual([{ metric: 'temperature', points: [{ ts: T0, value: 2.5, min: 2, max: 3 }], trust: ['broker'] }]);
      expect((await store.rawPage({ device: 'thirdparty', from: T0, to: T0 + 60_000 })).rows).toEqual([
        { ts: T0, metric: 'temperature', value: 2 },
        { ts: T0 + 1000, metric: 'temperature', value: 3 },
      ]);
      expect(await store.latest('thirdparty', T0)).toEqual([{ metric: 'temperature', ts: T0 + 1000, value: 3 }]);
      // A signed device's reading written now, beside it: still signed; then a broker one for it.
      await store.write([{ device: 'plain', metric: 'temperature', ts: T0 + 1000, value: 4 }]);
      expect((await store.query({ device: 'plain', from: T0, to: T0 + 60_000, mode: 'raw' })).series[0]!.trust).toEqual(['signed']);
      await store.write([{ device: 'plain', metric: 'humidity', ts: T0 + 2000, value: 5, trust: 'broker' }]);
      const mixed = await store.query({ device: 'plain', from: T0, to: T0 + 60_000, mode: 'raw' });
      expect(mixed.series.map((s) => [s.metric, s.trust, s.points.length])).toEqual([['humidity', ['broker'], 1], ['temperature', ['signed'], 2]]);
      await store.close();
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

describe('embedded store after a crash', () => {
  it('keeps every write that resolved before the process was killed (SIGKILL, no close)', async () => {
    const { spawn } = await import('node:child_process');
    const dir = await tempDir('sensorpipe-store-');
    const path = join(dir.path, 'store.duckdb');
    try {
      // A child process writes 20 batches, reports each one that resolved, and is killed mid-way.
      const script = `
        import { openEmbeddedStore } from ${JSON.stringify(new URL('../../store/embedded.ts', import.meta.url).pathname)};
        const store = await openEmbeddedStore({ path: ${JSON.stringify(path)} });
        for (let b = 0; b < 1000; b++) {
          const batch = [];
          for (let i = 0; i < 1000; i++) batch.push({ device: 'crash', metric: 'temperature', ts: ${T0} + (b * 1000 + i) * 1000, value: i });
          await store.write(batch);
          process.stdout.write('ok ' + b + '\\n');
        }`;
      const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let acked = -1;
      let errors = '';
      child.stderr.on('data', (chunk: Buffer) => (errors += chunk.toString()));
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => {
          for (const line of chunk.toString().split('\n')) if (line.startsWith('ok ')) acked = Number(line.slice(3));
          if (acked >= 20 && child.exitCode === null) {
            child.kill('SIGKILL');
            resolve();
          }
        });
        child.once('exit', (code) => (acked >= 20 ? resolve() : reject(new Error(`child exited (${code}) early: ${errors}`))));
      });
      await new Promise((resolve) => (child.exitCode !== null || child.signalCode !== null ? resolve(undefined) : child.once('exit', resolve)));
      const store = await openEmbeddedStore({ path });
      try {
        // Every acknowledged batch is there (a batch in flight at the kill may or may not be).
        expect(await store.count({ device: 'crash' })).toBeGreaterThanOrEqual((acked + 1) * 1000);
        // Identity survives recovery too: rewriting an acknowledged batch does not duplicate it.
        const before = await store.count({ device: 'crash' });
        const batch = Array.from({ length: 1000 }, (_, i) => ({ device: 'crash', metric: 'temperature', ts: T0 + i * 1000, value: i }));
        await store.write(batch);
        expect(await store.count({ device: 'crash' })).toBe(before);
      } finally {
        await store.close();
      }
    } finally {
      await dir.remove();
    }
  }, 60_000);
});

describe('instrumentStore', () => {
  it('counts written and refused points, times calls and counts errors by code', async () => {
    const { Registry } = await import('prom-client');
    const { instrumentStore } = await import('../../store/metrics.ts');
    const dir = await tempDir('sensorpipe-store-');
    const registry = new Registry();
    const store = instrumentStore(await openEmbeddedStore({ path: join(dir.path, 's.duckdb') }), registry);
    try {
      await store.write([
        { device: 'm1', metric: 'temperature', ts: T0, value: 1 },
        { device: 'm1', metric: 'temperature', ts: T0 + 1, value: Number.NaN },
      ]);
      await expectCode(store.query({ device: 'm1', from: T0 + 1, to: T0 }), 'QUERY_RANGE_INVALID');
      const text = await registry.metrics();
      expect(text).toContain('sensorpipe_store_points_total{outcome="written",adapter="embedded"} 1');
      expect(text).toContain('sensorpipe_store_points_total{outcome="refused",adapter="embedded"} 1');
      expect(text).toContain('sensorpipe_store_errors_total{operation="query_aggregate",code="QUERY_RANGE_INVALID",adapter="embedded"} 1');
      expect(text).toMatch(/sensorpipe_store_operation_seconds_count\{operation="write",adapter="embedded"\} 1/);
    } finally {
      await store.close();
      await dir.remove();
    }
  });

  it('counts each call once per registry, however often and wherever the store was wrapped', async () => {
    const { Registry } = await import('prom-client');
    const { instrumentStore } = await import('../../store/metrics.ts');
    const dir = await tempDir('sensorpipe-store-');
    const store = await openEmbeddedStore({ path: join(dir.path, 's.duckdb') });
    // As in `sensorpipe start`: one store, ingest's registry and the display's.
    const ingestRegistry = new Registry();
    const displayRegistry = new Registry();
    const writesIn = async (registry: InstanceType<typeof Registry>) =>
      (await registry.getSingleMetric('sensorpipe_store_points_total')?.get())?.values.find((v) => v.labels.outcome === 'written')?.value ?? 0;
    try {
      const display = instrumentStore(store, displayRegistry);
      const ingest = instrumentStore(store, ingestRegistry);
      const ingestAgain = instrumentStore(ingest, ingestRegistry);
      // Handed the display's wrapper, ingest still counts only in its own registry.
      const ingestFromDisplay = instrumentStore(display, ingestRegistry);
      await ingest.write([{ device: 'm1', metric: 'temperature', ts: T0, value: 1 }]);
      await ingestAgain.write([{ device: 'm1', metric: 'temperature', ts: T0 + 1, value: 2 }]);
      await ingestFromDisplay.write([{ device: 'm1', metric: 'temperature', ts: T0 + 2, value: 3 }]);
      expect(await writesIn(ingestRegistry)).toBe(3);
      expect(await writesIn(displayRegistry)).toBe(0);
      await display.latest('m1');
      const displayText = await displayRegistry.metrics();
      expect(displayText).toMatch(/sensorpipe_store_operation_seconds_count\{operation="latest",adapter="embedded"\} 1/);
      expect(displayText).not.toContain('operation="write"');
      expect(await ingestRegistry.metrics()).toMatch(/sensorpipe_store_operation_seconds_count\{operation="write",adapter="embedded"\} 3/);
    } finally {
      await store.close();
      await dir.remove();
    }
  });
});

describe('embedded store and other processes', () => {
  it('refuses a file another process holds open with STORE_UNAVAILABLE naming the file', async () => {
    const { spawn } = await import('node:child_process');
    const dir = await tempDir('sensorpipe-store-');
    const path = join(dir.path, 'store.duckdb');
    const script = `
      import { openEmbeddedStore } from ${JSON.stringify(new URL('../../store/embedded.ts', import.meta.url).pathname)};
      const store = await openEmbeddedStore({ path: ${JSON.stringify(path)} });
      process.stdout.write('open\\n');
      process.stdin.on('end', async () => { await store.close(); process.exit(0); });
      process.stdin.resume();`;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { stdio: ['pipe', 'pipe', 'pipe'] });
    try {
      await new Promise<void>((resolve, reject) => {
        child.stdout.on('data', (chunk: Buffer) => chunk.toString().includes('open') && resolve());
        child.once('exit', (code) => reject(new Error(`holder exited early (${code})`)));
      });
      const err = await openEmbeddedStore({ path }).then(
        async (store) => {
          await store.close();
          return undefined;
        },
        (e: unknown) => e,
      );
      expect((err as { code?: string } | undefined)?.code).toBe('STORE_UNAVAILABLE');
      expect((err as Error).message).toContain(path);
    } finally {
      const exited = new Promise((resolve) => (child.exitCode !== null ? resolve(undefined) : child.once('exit', resolve)));
      child.stdin.end();
      await exited;
      await dir.remove();
    }
  }, 60_000);
});
