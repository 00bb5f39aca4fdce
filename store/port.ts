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
import type { AggregateFunction } from '../core/query.ts';
import type { DeviceMeta, ReadingTrust } from '../core/schemas.ts';

/** One value of one metric of one device at one time. Identity: (device, metric, ts). */
export interface StorePoint {
  /** A device id (core DeviceIdSchema: lowercase slug). */
  device: string;
  /** A metric name (core MetricNameSchema). */
  metric: string;
  /** Milliseconds since the Unix epoch, an integer within 2000..2100. Stored with ms precision. */
  ts: number;
  /** A finite double; read back bit-exact. */
  value: number;
  /**
   * The device's sequence number of the reading this point belongs to (core/PROTOCOL.md), stored with
   * the reading (store/SCHEMA.md) so that a reading written twice at two times shows as a (device, seq)
   * held twice. Optional: points written without one (older spool records, other writers) are stored
   * without. Not part of the identity; when one time holds metrics of two readings, the last one's seq wins.
   */
  seq?: number;
  /**
   * Registry metadata, stored as InfluxDB tags / the embedded store's device_meta. Any string of 1..64
   * characters round-trips (store/SCHEMA.md). Not part of the identity.
   */
  meta?: DeviceMeta;
  /**
   * `broker`: a reading of a broker-authenticated device (core/PROTOCOL.md §7), stored with trust
   * `broker` (InfluxDB tag `trust`, the embedded store's `trust` column). Absent: signed, stored with
   * trust `signed`. Not part of the identity: a point written again takes the trust it is written with.
   */
  trust?: 'broker';
}

export interface WriteResult {
  /** Points durable in the store now: points.length - refused.length. */
  written: number;
  /**
   * Points refused for good (a non-finite value, a bad name, a field type conflict in InfluxDB), each
   * once, by index into the written array, in index order. Quarantine these; do not retry them.
   */
  refused: { index: number; message: string }[];
}

/** The aggregations (defined in core/query.ts, which the display's HTTP parameters share). */
export { AGGREGATE_FUNCTIONS, type AggregateFunction } from '../core/query.ts';

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
  /**
   * Most points per series (default 1000, at most 10,000). Aggregation picks (or grows) the window so
   * that the epoch-aligned windows over [from, to) number at most this; raw queries stop here and set
   * `truncated` and `nextFrom` (for any number of raw points, read pages: `rawPage`).
   */
  maxPoints?: number;
}

/** A place in a device's raw points, which are ordered by (ts, metric): a page starts after it. */
export interface RawCursor {
  ts: number;
  metric: string;
}

/**
 * One page of a device's raw points over [from, to), in (ts, metric) order. Any range a query may span
 * (store/query.ts QUERY_LIMITS.maxRangeMs) is read this way, page by page, each a bounded read: the
 * raw CSV export.
 */
export interface RawPageQuery {
  device: string;
  /** Metrics to return; all of the device's metrics when omitted. */
  metrics?: string[];
  from: number;
  /** Exclusive. */
  to: number;
  /** The previous page's `next`: this page holds only points after it. */
  after?: RawCursor;
  /** Most points in the page (default QUERY_LIMITS.defaultPageSize, at most maxPageSize). */
  limit?: number;
  /** Cancels the read (where the adapter can) once its caller has gone, e.g. a closed download. */
  signal?: AbortSignal | undefined;
}

export interface RawRow {
  ts: number;
  metric: string;
  value: number;
}

export interface RawPage {
  /** Each (ts, metric) once, in (ts, metric) order, all after the query's `after`. */
  rows: RawRow[];
  /** Where the next page starts (its `after`); absent when no point is left in the range. */
  next?: RawCursor;
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
  /**
   * The trust levels of the series' readings in the range, sorted (`["broker"]`, `["signed"]` or both).
   * Readings stored before trust levels existed are `signed`. Left out for a series without points, and
   * by adapters that cannot tell (the InfluxDB 2.x native adapter).
   */
  trust?: ReadingTrust[];
}

export interface QueryResult {
  device: string;
  from: number;
  to: number;
  mode: 'raw' | 'aggregate';
  fn?: AggregateFunction;
  /** Window length actually used (ms), for aggregates. */
  every?: number;
  /**
   * True when a raw query had more points than maxPoints in a series and was cut: the answer then holds
   * every point of [from, nextFrom), of every series, and none after.
   */
  truncated: boolean;
  /** With `truncated`: where to ask again (as `from`) for the rest; the first time left out. */
  nextFrom?: number;
  series: Series[];
}

export interface LatestValue {
  metric: string;
  ts: number;
  value: number;
}

export interface DeviceLatestValue extends LatestValue {
  device: string;
}

/** A reading's seq as stored at its time. */
export interface StoredSeq {
  ts: number;
  seq: number;
}

/**
 * Every method rejects only with a SensorpipeError: STORE_UNAVAILABLE (retryable: the store is down,
 * timed out, or answered 401/403/404/413/429/5xx) or, for queries, QUERY_INVALID / QUERY_RANGE_INVALID /
 * QUERY_FUNCTION_UNKNOWN (bad parameters; see store/query.ts). Use isRetryableStoreError to decide.
 */
export interface TimeSeriesStore {
  readonly kind: 'influxdb' | 'influxdb2' | 'embedded';
  /**
   * Writes a batch; resolves once every point not in `refused` is durable. Idempotent: points already
   * stored with the same identity are overwritten (within one batch, the last occurrence wins), so a
   * batch that failed with STORE_UNAVAILABLE is retried whole.
   */
  write(points: StorePoint[]): Promise<WriteResult>;
  /**
   * One device's history over [from, to): raw points, or epoch-aligned windows (start time as `ts`)
   * with `fn` and the min/max envelope. Windows and metrics without data are left out, never filled;
   * named metrics with no data come back as empty series, in the order named.
   */
  query(query: RangeQuery): Promise<QueryResult>;
  /**
   * One page of raw points (see RawPageQuery): read page after page with `after: page.next` until a
   * page has no `next`; together they hold every point of the range once. A page may hold fewer points
   * than `limit` (even none) and still have a `next`.
   */
  rawPage(query: RawPageQuery): Promise<RawPage>;
  /** Newest value per metric of one device (from `since` on, default 30 days ago), sorted by metric. */
  latest(device: string, since?: number): Promise<LatestValue[]>;
  /**
   * Newest value per (device, metric) of every device with data since `since` (default 30 days ago),
   * sorted by device then metric: the fleet overview in one call instead of one per device.
   */
  latestAll(since?: number): Promise<DeviceLatestValue[]>;
  /**
   * The seqs stored with one device's readings in [from, to) (a raw range: at most 7 days), by ts then
   * seq, one row per distinct (ts, seq). A time comes back twice only when it holds two readings' seqs:
   * in InfluxDB a copy per tag set (store/SCHEMA.md), or, anywhere, metrics of two readings of one time.
   * Readings stored without a seq are left out.
   */
  seqs(device: string, from: number, to: number): Promise<StoredSeq[]>;
  /** The metadata tags last written for a device (as stored), or undefined. */
  meta(device: string): Promise<DeviceMeta | undefined>;
  /** Number of stored points, optionally of one device, in [from, to). */
  count(options?: { device?: string; from?: number; to?: number }): Promise<number>;
  /** Probes the store; never rejects. */
  health(): Promise<{ ok: boolean; detail?: string }>;
  /** Releases connections and files; later calls reject with STORE_UNAVAILABLE. Idempotent. */
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
