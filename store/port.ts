/**
 * The time-series store port: what ingest writes through and the display reads through. Adapters:
 * InfluxDB (1.x API; 2.x/3.x through their 1.x compatibility API) and an embedded DuckDB file.
 * One contract suite (test/store/contract.ts) runs against every adapter.
 *
 * A point's identity is (device, metric, ts): writing it again leaves one point with the last value.
 * Errors: a thrown SensorpipeError with code STORE_UNAVAILABLE is retryable (ingest spools the batch);
 * points refused for good come back in `refused` (ingest quarantines exactly those) and the rest of the
 * batch is written.
 */
import { isSensorpipeError } from '../core/errors.ts';
import type { DeviceMeta } from '../core/schemas.ts';

export interface StorePoint {
  device: string;
  metric: string;
  /** Milliseconds since the Unix epoch. */
  ts: number;
  value: number;
  meta?: DeviceMeta;
}

export interface WriteResult {
  written: number;
  refused: { index: number; message: string }[];
}

export const AGGREGATE_FUNCTIONS = ['mean', 'min', 'max', 'last', 'count'] as const;
export type AggregateFunction = (typeof AGGREGATE_FUNCTIONS)[number];

export interface RangeQuery {
  device: string;
  /** Metrics to return; all of the device's metrics when omitted. */
  metrics?: string[];
  from: number;
  /** Exclusive. */
  to: number;
  /** `raw` returns stored points; otherwise windows of `every` ms (chosen from the range when omitted). */
  mode?: 'raw' | 'aggregate';
  every?: number;
  fn?: AggregateFunction;
  /** Most points per series (default 1000). Aggregation picks a window that respects it. */
  maxPoints?: number;
}

/** One window (or one raw point). `min`/`max` are the envelope of the window, so spikes stay visible. */
export interface SeriesPoint {
  ts: number;
  value: number;
  min?: number;
  max?: number;
}

export interface Series {
  metric: string;
  points: SeriesPoint[];
}

export interface QueryResult {
  device: string;
  from: number;
  to: number;
  mode: 'raw' | 'aggregate';
  fn?: AggregateFunction;
  /** Window length actually used (ms), for aggregates. */
  every?: number;
  /** True when a raw query had more points than maxPoints and was cut. */
  truncated: boolean;
  series: Series[];
}

export interface LatestValue {
  metric: string;
  ts: number;
  value: number;
}

export interface TimeSeriesStore {
  readonly kind: 'influxdb' | 'influxdb2' | 'embedded';
  write(points: StorePoint[]): Promise<WriteResult>;
  query(query: RangeQuery): Promise<QueryResult>;
  /** Newest value per metric of one device (from `since` on, to keep it cheap). */
  latest(device: string, since?: number): Promise<LatestValue[]>;
  /** The metadata tags last written for a device (as stored), or undefined. */
  meta(device: string): Promise<DeviceMeta | undefined>;
  /** Number of stored points, optionally of one device, in [from, to). */
  count(options?: { device?: string; from?: number; to?: number }): Promise<number>;
  health(): Promise<{ ok: boolean; detail?: string }>;
  close(): Promise<void>;
}

/**
 * True when a store error means "try the same thing later" (ingest spools), false when retrying cannot
 * help (bad query). Errors that are not SensorpipeErrors (a bug, an unexpected library error) count as
 * retryable: spooling a good point is recoverable, quarantining it is not.
 */
export function isRetryableStoreError(err: unknown): boolean {
  return isSensorpipeError(err) ? err.disposition === 'retry' : true;
}
