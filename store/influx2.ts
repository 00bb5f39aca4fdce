/**
 * InfluxDB adapter over the native 2.x API (org, bucket, token; Flux), with @influxdata/influxdb-client.
 * Same schema as the 1.x adapter (store/SCHEMA.md) and the same line protocol (store/line-protocol.ts),
 * so data written by either reads back through the other.
 *
 * No 2.x server runs on the build machine: the contract suite runs against this adapter only when
 * INFLUX2_URL, INFLUX2_TOKEN, INFLUX2_ORG and INFLUX2_BUCKET are set (test/store/influx2.test.ts).
 * The bucket must exist (creating one needs the separate management API package and an all-access token).
 *
 * The client's own retries are off (maxRetries 0): ingest decides when to retry, through its spool.
 */
import { HttpError, InfluxDB, type QueryApi } from '@influxdata/influxdb-client';
import { SensorpipeError } from '../core/errors.ts';
import { LIMITS } from '../core/limits.ts';
import type { Logger } from '../core/logger.ts';
import type { DeviceMeta } from '../core/schemas.ts';
import { checkBatch, sortRefused } from './points.ts';
import type { DeviceLatestValue, LatestValue, QueryResult, RangeQuery, RawPage, RawPageQuery, RawRow, StoredSeq, StorePoint, TimeSeriesStore, WriteResult } from './port.ts';
import { decodeTagValue, MEASUREMENT, META_TAGS, postNarrowing, retryAfterMs, SEQ_FIELD, toLines, type Line, type PostOutcome } from './line-protocol.ts';
import { planQuery, planRawPage, type PlannedQuery } from './query.ts';
import { DEFAULT_LATEST_WINDOW_MS, distinctSeqs, SeriesBuilder } from './result.ts';

export interface Influx2StoreOptions {
  url: string;
  org: string;
  bucket: string;
  token?: string | undefined;
  writeTimeoutMs?: number;
  queryTimeoutMs?: number;
  logger?: Logger | undefined;
  now?: () => number;
}

function unavailable(message: string, cause?: unknown, details?: Record<string, unknown>): SensorpipeError {
  return new SensorpipeError('STORE_UNAVAILABLE', `influxdb2: ${message}`, details, cause === undefined ? undefined : { cause });
}

/** A Flux string literal. Flux strings also interpolate `${…}`, so `$` is escaped too. */
function fluxString(value: string): string {
  return `"${value.replace(/[\\"$]/g, (c) => `\\${c}`).replace(/\n/g, '\\n').replace(/\r/g, '\\r').replace(/\t/g, '\\t')}"`;
}

/** A Flux time literal (RFC 3339 with milliseconds). */
function fluxTime(ms: number): string {
  return `time(v: ${fluxString(new Date(ms).toISOString())})`;
}

export async function openInflux2Store(options: Influx2StoreOptions): Promise<TimeSeriesStore> {
  return new Influx2Store(options);
}

class Influx2Store implements TimeSeriesStore {
  readonly kind = 'influxdb2' as const;
  private readonly client: InfluxDB;
  private readonly queryApi: QueryApi;
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly options: Influx2StoreOptions) {
    this.client = new InfluxDB({ url: options.url, token: options.token, timeout: options.writeTimeoutMs ?? 10_000 });
    this.queryApi = this.client.getQueryApi(options.org);
    this.now = options.now ?? Date.now;
  }

  private assertOpen(): void {
    if (this.closed) throw unavailable('store is closed');
  }

  async write(points: StorePoint[]): Promise<WriteResult> {
    this.assertOpen();
    const { indexes, refused } = checkBatch(points);
    if (indexes.length > 0) await postNarrowing(points, toLines(points, indexes), (lines) => this.post(lines), refused);
    return { written: points.length - refused.length, refused: sortRefused(refused) };
  }

  private async post(lines: Line[]): Promise<PostOutcome> {
    // A WriteApi per request: its buffer is per instance, and concurrent writes must not share one.
    const api = this.client.getWriteApi(this.options.org, this.options.bucket, 'ms', {
      batchSize: lines.length + 1,
      flushInterval: 0,
      maxRetries: 0,
      maxBufferLines: lines.length + 1,
      // A returned promise becomes flush()'s outcome: reject with the error, so that we classify it (no retry here).
      writeFailed: (error: Error) => Promise.reject(error),
    });
    try {
      api.writeRecords(lines.map((line) => line.text));
      await api.flush();
      return { ok: true };
    } catch (err) {
      if (err instanceof HttpError && (err.statusCode === 400 || err.statusCode === 422)) {
        return { ok: false, message: (err.json as { message?: string } | undefined)?.message ?? err.body ?? err.message };
      }
      // A 429 or 503 may say when to come back: ingest's replay waits that long.
      const retryAfter = err instanceof HttpError ? retryAfterMs(headerText(err.headers?.['retry-after']), this.now()) : undefined;
      throw unavailable(`write failed: ${describe(err)}`, err, retryAfter === undefined ? undefined : { retryAfterMs: retryAfter });
    } finally {
      await api.dispose();
    }
  }

  private async rows(flux: string): Promise<Record<string, unknown>[]> {
    try {
      return await this.queryApi.collectRows<Record<string, unknown>>(flux, (values, meta) => meta.toObject(values));
    } catch (err) {
      throw unavailable(`query failed: ${describe(err)}`, err);
    }
  }

  /**
   * `from |> range |> filter` for our measurement, one device (or all) and the metrics' fields, or only
   * the seq field (every Flux range is bounded).
   */
  private source(device: string | undefined, from: number, to: number, fields: 'metrics' | 'seq' = 'metrics'): string {
    const deviceFilter = device === undefined ? '' : ` and r.device == ${fluxString(device)}`;
    const fieldFilter = ` and r._field ${fields === 'seq' ? '==' : '!='} ${fluxString(SEQ_FIELD)}`;
    return `from(bucket: ${fluxString(this.options.bucket)})
  |> range(start: ${fluxTime(from)}, stop: ${fluxTime(to)})
  |> filter(fn: (r) => r._measurement == ${fluxString(MEASUREMENT)}${deviceFilter}${fieldFilter})`;
  }

  private fieldFilter(metrics: string[] | undefined): string {
    if (metrics === undefined) return '';
    return `\n  |> filter(fn: (r) => ${metrics.map((m) => `r._field == ${fluxString(m)}`).join(' or ')})`;
  }

  async query(input: RangeQuery): Promise<QueryResult> {
    const query = planQuery(input);
    this.assertOpen();
    const builder = new SeriesBuilder(query);
    // Series that differ only in metadata tags are merged per field (see SCHEMA.md).
    const base = `${this.source(query.device, query.from, query.to)}${this.fieldFilter(query.metrics)}
  |> group(columns: ["_field"])`;
    if (query.mode === 'raw') {
      const rows = await this.rows(`${base}\n  |> sort(columns: ["_time"])\n  |> limit(n: ${query.maxPoints + 1})`);
      for (const row of rows) builder.add(String(row._field), { ts: Date.parse(String(row._time)), value: Number(row._value) });
      return builder.result();
    }
    const rows = await this.rows(this.windowFlux(base, query));
    // Rows come as three results (value, lo, hi) per field; join them by field and window start.
    const windows = new Map<string, Map<number, { value?: number; min?: number; max?: number }>>();
    for (const row of rows) {
      const field = String(row._field);
      const ts = Date.parse(String(row._time));
      let byTs = windows.get(field);
      if (byTs === undefined) windows.set(field, (byTs = new Map()));
      const entry = byTs.get(ts) ?? {};
      const value = Number(row._value);
      if (row.result === 'lo') entry.min = value;
      else if (row.result === 'hi') entry.max = value;
      else entry.value = value;
      byTs.set(ts, entry);
    }
    for (const field of [...windows.keys()].sort()) {
      const byTs = windows.get(field)!;
      for (const ts of [...byTs.keys()].sort((a, b) => a - b)) {
        const e = byTs.get(ts)!;
        if (e.value !== undefined && e.min !== undefined && e.max !== undefined) builder.add(field, { ts, value: e.value, min: e.min, max: e.max });
      }
    }
    return builder.result();
  }

  /**
   * A page of raw points: the device's tables merged into one, sorted by (time, field), from after the
   * cursor on. Copies of a point in two tag sets (SCHEMA.md) sort side by side: one is kept, and one
   * that straddles a page boundary is passed over by the cursor. (The client library's collectRows has
   * no way to cancel, so `signal` is not used here; the page is bounded all the same.)
   */
  async rawPage(input: RawPageQuery): Promise<RawPage> {
    const page = planRawPage(input);
    this.assertOpen();
    const after = page.after === undefined
      ? ''
      : `\n  |> filter(fn: (r) => r._time > ${fluxTime(page.after.ts)} or (r._time == ${fluxTime(page.after.ts)} and r._field > ${fluxString(page.after.metric)}))`;
    const rows = await this.rows(`${this.source(page.device, page.from, page.to)}${this.fieldFilter(page.metrics)}${after}
  |> group()
  |> sort(columns: ["_time", "_field"])
  |> limit(n: ${page.limit})
  |> keep(columns: ["_time", "_field", "_value"])`);
    const out: RawRow[] = [];
    for (const row of rows) {
      const point = { ts: Date.parse(String(row._time)), metric: String(row._field), value: Number(row._value) };
      const last = out.at(-1);
      if (last !== undefined && last.ts === point.ts && last.metric === point.metric) out[out.length - 1] = point;
      else out.push(point);
    }
    const last = out.at(-1);
    return rows.length < page.limit || last === undefined ? { rows: out } : { rows: out, next: { ts: last.ts, metric: last.metric } };
  }

  /** Epoch-aligned windows (Flux's default), labelled by their start, empty ones left out. */
  private windowFlux(base: string, query: PlannedQuery): string {
    const every = `${query.every}ms`;
    const agg = (fn: string, name: string) => `${base}\n  |> aggregateWindow(every: ${every}, fn: ${fn}, createEmpty: false, timeSrc: "_start")\n  |> toFloat()\n  |> yield(name: "${name}")`;
    return [agg(query.fn, 'value'), agg('min', 'lo'), agg('max', 'hi')].join('\n');
  }

  async latest(device: string, since?: number): Promise<LatestValue[]> {
    this.assertOpen();
    const rows = await this.rows(`${this.source(device, since ?? this.now() - DEFAULT_LATEST_WINDOW_MS, LIMITS.maxTimestampMs + 1)}
  |> last()
  |> group(columns: ["_field"])
  |> sort(columns: ["_time"], desc: true)
  |> limit(n: 1)`);
    return rows
      .map((row) => ({ metric: String(row._field), ts: Date.parse(String(row._time)), value: Number(row._value) }))
      .sort((a, b) => (a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : 0));
  }

  async latestAll(since?: number): Promise<DeviceLatestValue[]> {
    this.assertOpen();
    const rows = await this.rows(`${this.source(undefined, since ?? this.now() - DEFAULT_LATEST_WINDOW_MS, LIMITS.maxTimestampMs + 1)}
  |> last()
  |> group(columns: ["device", "_field"])
  |> sort(columns: ["_time"], desc: true)
  |> limit(n: 1)`);
    return rows
      .map((row) => ({ device: String(row.device), metric: String(row._field), ts: Date.parse(String(row._time)), value: Number(row._value) }))
      .sort((a, b) => (a.device === b.device ? (a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : 0) : a.device < b.device ? -1 : 1));
  }

  async seqs(device: string, from: number, to: number): Promise<StoredSeq[]> {
    const query = planQuery({ device, from, to, mode: 'raw' });
    this.assertOpen();
    // Not grouped: a copy per tag set (a rewrite across a metadata change) is a table of its own.
    const rows = await this.rows(this.source(query.device, query.from, query.to, 'seq'));
    return distinctSeqs(rows.map((row) => ({ ts: Date.parse(String(row._time)), seq: Number(row._value) })));
  }

  async meta(device: string): Promise<DeviceMeta | undefined> {
    this.assertOpen();
    const rows = await this.rows(`${this.source(device, LIMITS.minTimestampMs, LIMITS.maxTimestampMs + 1)}
  |> last()
  |> group()
  |> sort(columns: ["_time"], desc: true)
  |> limit(n: 1)`);
    const row = rows[0];
    if (row === undefined) return undefined;
    const meta: DeviceMeta = {};
    for (const key of META_TAGS) {
      const value = row[key];
      if (typeof value === 'string' && value !== '') meta[key] = decodeTagValue(value);
    }
    return meta;
  }

  async count(options: { device?: string; from?: number; to?: number } = {}): Promise<number> {
    this.assertOpen();
    const rows = await this.rows(`${this.source(options.device, options.from ?? LIMITS.minTimestampMs, options.to ?? LIMITS.maxTimestampMs + 1)}
  |> group()
  |> count()`);
    return rows.reduce<number>((sum, row) => sum + Number(row._value ?? 0), 0);
  }

  async health(): Promise<{ ok: boolean; detail?: string }> {
    if (this.closed) return { ok: false, detail: 'closed' };
    try {
      const response = await fetch(`${this.options.url.replace(/\/+$/, '')}/ping`, { signal: AbortSignal.timeout(5000) });
      await response.body?.cancel();
      return response.status === 204 || response.ok ? { ok: true } : { ok: false, detail: `ping answered HTTP ${response.status}` };
    } catch (err) {
      return { ok: false, detail: describe(err) };
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

function describe(err: unknown): string {
  if (err instanceof HttpError) return `HTTP ${err.statusCode}${err.body ? `: ${err.body.slice(0, 200)}` : ''}`;
  const error = err as Error & { cause?: { code?: string } };
  return error.cause?.code ?? error.message;
}
