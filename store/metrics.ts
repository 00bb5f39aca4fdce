/**
 * Prometheus metrics around the store port: one wrapper for every adapter and every process, so that
 * latency, volume and errors are measured the same way whichever store is configured (the style guide:
 * metrics wrap ports, they are not sprinkled through adapters). Each component wraps the store it is
 * given into its own registry once — ingest in ingest/index.ts, the display in display/index.ts — and
 * serves that registry at /metrics.
 */
import { Counter, Histogram, type Registry } from 'prom-client';
import { isSensorpipeError } from '../core/errors.ts';
import type { TimeSeriesStore } from './port.ts';

const SECONDS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

type StoreMetrics = ReturnType<typeof registerStoreMetrics>;

/** The store's metrics in `registry`, created on first use: a registry holds one set, however many wrappers. */
export function createStoreMetrics(registry: Registry): StoreMetrics {
  let metrics = metricsByRegistry.get(registry);
  if (metrics === undefined) metricsByRegistry.set(registry, (metrics = registerStoreMetrics(registry)));
  return metrics;
}

function registerStoreMetrics(registry: Registry) {
  const registers = [registry];
  return {
    seconds: new Histogram({ name: 'sensorpipe_store_operation_seconds', help: 'Store call latency, by operation and adapter.', labelNames: ['operation', 'adapter'] as const, buckets: SECONDS, registers }),
    points: new Counter({ name: 'sensorpipe_store_points_total', help: 'Points written or refused by the store, by outcome.', labelNames: ['outcome', 'adapter'] as const, registers }),
    errors: new Counter({ name: 'sensorpipe_store_errors_total', help: 'Failed store calls, by operation and error code.', labelNames: ['operation', 'code', 'adapter'] as const, registers }),
  };
}

type StoreOperation = Exclude<keyof TimeSeriesStore, 'kind'>;

/** The whole port or the part of it a component uses (ingest: write and health), naming its adapter. */
export type StorePart = Pick<TimeSeriesStore, 'kind'> & Partial<Pick<TimeSeriesStore, StoreOperation>>;

/** What instrumentStore returns for `S`: the same operations, measured. */
export type Instrumented<S extends StorePart> = Pick<S, 'kind' | (keyof S & StoreOperation)>;

const metricsByRegistry = new WeakMap<Registry, StoreMetrics>();
/** Wrapper → the store it measures. */
const innerOf = new WeakMap<object, StorePart>();

/**
 * A store that records every call in `registry`; behaves exactly like `store` otherwise. A call is
 * counted once, in the registry of the wrapper it was made through: a store that is already a wrapper
 * is unwrapped first, so wrapping it again (into the same registry or another: `sensorpipe start`
 * hands one store to ingest and the display) neither counts a call twice nor in the wrong registry.
 */
export function instrumentStore<S extends StorePart>(store: S, registry: Registry): Instrumented<S> {
  const inner = (innerOf.get(store) ?? store) as S;
  const metrics = createStoreMetrics(registry);
  const adapter = inner.kind;
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
  // Only the operations `store` has; each called as a method of `store` (adapters are classes).
  const wrapper: StorePart = { kind: inner.kind };
  if (inner.write)
    wrapper.write = async (points) => {
      const result = await timed('write', () => inner.write!(points));
      metrics.points.inc({ outcome: 'written', adapter }, result.written);
      if (result.refused.length > 0) metrics.points.inc({ outcome: 'refused', adapter }, result.refused.length);
      return result;
    };
  if (inner.query) wrapper.query = (query) => timed(query.mode === 'raw' ? 'query_raw' : 'query_aggregate', () => inner.query!(query));
  if (inner.rawPage) wrapper.rawPage = (query) => timed('raw_page', () => inner.rawPage!(query));
  if (inner.latest) wrapper.latest = (device, since) => timed('latest', () => inner.latest!(device, since));
  if (inner.latestAll) wrapper.latestAll = (since) => timed('latest_all', () => inner.latestAll!(since));
  if (inner.seqs) wrapper.seqs = (device, from, to) => timed('seqs', () => inner.seqs!(device, from, to));
  if (inner.meta) wrapper.meta = (device) => timed('meta', () => inner.meta!(device));
  if (inner.count) wrapper.count = (options) => timed('count', () => inner.count!(options));
  if (inner.health) wrapper.health = () => timed('health', () => inner.health!());
  if (inner.close) wrapper.close = () => inner.close!();
  innerOf.set(wrapper, inner);
  return wrapper as Instrumented<S>;
}
