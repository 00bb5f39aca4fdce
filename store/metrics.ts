/**
 * Prometheus metrics around the store port: one wrapper for every adapter, so that latency, volume and
 * errors are measured the same way whichever store is configured (the style guide: metrics wrap ports,
 * they are not sprinkled through adapters). ingest already measures its own writes; the display (or any
 * process) wraps its store with `instrumentStore(store, registry)` and serves the registry at /metrics.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import { isSensorpipeError } from '../core/errors.ts';
import type { TimeSeriesStore } from './port.ts';

const SECONDS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export function createStoreMetrics(registry: Registry) {
  const registers = [registry];
  return {
    seconds: new Histogram({ name: 'sensorpipe_store_operation_seconds', help: 'Store call latency, by operation and adapter.', labelNames: ['operation', 'adapter'] as const, buckets: SECONDS, registers }),
    points: new Counter({ name: 'sensorpipe_store_points_total', help: 'Points written or refused by the store, by outcome.', labelNames: ['outcome', 'adapter'] as const, registers }),
    errors: new Counter({ name: 'sensorpipe_store_errors_total', help: 'Failed store calls, by operation and error code.', labelNames: ['operation', 'code', 'adapter'] as const, registers }),
  };
}

/** A store that records every call in `registry`; behaves exactly like `store` otherwise. */
export function instrumentStore(store: TimeSeriesStore, registry: Registry): TimeSeriesStore {
  const metrics = createStoreMetrics(registry);
  const adapter = store.kind;
  async function timed<T>(operation: string, call: () => Promise<T>): Promise<T> {
    const end = metrics.seconds.startTimer({ operation, adapter });
    try {
      return await call();
    } catch (err) {
      metrics.errors.inc({ operation, code: isSensorpipeError(err) ? err.code : 'INTERNAL', adapter });
      throw err;
    } finally {
      end();
    }
  }
  return {
    kind: store.kind,
    async write(points) {
      const result = await timed('write', () => store.write(points));
      metrics.points.inc({ outcome: 'written', adapter }, result.written);
      if (result.refused.length > 0) metrics.points.inc({ outcome: 'refused', adapter }, result.refused.length);
      return result;
    },
    query: (query) => timed(query.mode === 'raw' ? 'query_raw' : 'query_aggregate', () => store.query(query)),
    latest: (device, since) => timed('latest', () => store.latest(device, since)),
    latestAll: (since) => timed('latest_all', () => store.latestAll(since)),
    meta: (device) => timed('meta', () => store.meta(device)),
    count: (options) => timed('count', () => store.count(options)),
    health: () => timed('health', () => store.health()),
    close: () => store.close(),
  };
}
