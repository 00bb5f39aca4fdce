/**
 * InfluxDB adapter over the 1.x HTTP API: `/write` (line protocol, ms precision) and `/query` (InfluxQL).
 * Works with InfluxDB 1.x natively and with 2.x/3.x through their 1.x-compatible endpoints (token auth).
 * Schema: store/SCHEMA.md.
 *
 * The `influx` library does the escaping (line protocol and InfluxQL), but requests go out through
 * fetch, not its client. Not for speed — bench/store.ts measures its writePoints on par with raw HTTP —
 * but for control: on a network error or a 5xx its pool retries, then disables the host behind its own
 * exponential backoff ("No host available"), which would hide from ingest when the store is back; and
 * narrowing a partial write down to the refused points needs to post exact subsets of our own lines
 * (with tag values encoded as store/line-protocol.ts explains) and read the 400's body.
 *
 * Errors: connection refused, timeouts, 401/403/404 (credentials, a missing database: fixable without
 * changing the data), 413, 429 and 5xx are STORE_UNAVAILABLE (retryable). A 400/422 means some lines were
 * refused: InfluxDB 1.x writes the rest ("partial write … dropped=N") without naming the refused ones, so
 * the adapter re-writes smaller groups (idempotent) until it has the exact points, and lists those.
 */
import influx from 'influx';
import { LIMITS } from '../core/limits.ts';
import { SensorpipeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { DeviceMeta } from '../core/schemas.ts';
import { checkBatch, sortRefused } from './points.ts';
import type { DeviceLatestValue, LatestValue, QueryResult, RangeQuery, RawPage, RawPageQuery, RawRow, StoredSeq, StorePoint, TimeSeriesStore, WriteResult } from './port.ts';
import { TRUST_TAG, decodeTagValue, MEASUREMENT, META_TAGS, postNarrowing, retryAfterMs, SEQ_FIELD, toLines, type Line, type PostOutcome } from './line-protocol.ts';
import { isAfter, planQuery, planRawPage } from './query.ts';
import { DEFAULT_LATEST_WINDOW_MS, distinctSeqs, SeriesBuilder } from './result.ts';

const { escape } = influx;

export interface InfluxStoreOptions {
  url: string;
  database: string;
  /** 2.x/3.x token (sent as `Authorization: Token …`). */
  token?: string | undefined;
  /** 1.x user and password (sent as HTTP Basic auth). */
  username?: string | undefined;
  password?: string | undefined;
  /** Retention policy to write to and read from; default: the database's default policy. */
  retentionPolicy?: string | undefined;
  /** Create the database at start when the server allows it (1.x). Default true. */
  createDatabase?: boolean;
  writeTimeoutMs?: number;
  queryTimeoutMs?: number;
  logger?: Logger | undefined;
  now?: () => number;
}

interface InfluxSeries {
  name?: string;
  tags?: Record<string, string>;
  columns: string[];
  values?: unknown[][];
}
interface InfluxAnswer {
  results?: { statement_id?: number; series?: InfluxSeries[]; error?: string }[];
  error?: string;
}


/** Every InfluxQL range is bounded on both sides: an open `GROUP BY time()` fills windows up to now(). */
const TIME_MIN = LIMITS.minTimestampMs;
const TIME_MAX = LIMITS.maxTimestampMs + 1;

function unavailable(message: string, cause?: unknown, details?: Record<string, unknown>): SensorpipeError {
  return new SensorpipeError('STORE_UNAVAILABLE', `influxdb: ${message}`, details, cause === undefined ? undefined : { cause });
}

/** InfluxQL identifier ("…") and string literal ('…'). */
const ident = (name: string): string => escape.quoted(name);
const literal = (value: string): string => escape.stringLit(value);

export async function openInfluxStore(options: InfluxStoreOptions): Promise<TimeSeriesStore> {
  const store = new InfluxStore(options);
  if (options.createDatabase !== false) await store.ensureDatabase().catch(() => {});
  return store;
}

export class InfluxStore implements TimeSeriesStore {
  readonly kind = 'influxdb' as const;
  private readonly base: string;
  private readonly headers: Record<string, string> = {};
  private readonly writeTimeoutMs: number;
  private readonly queryTimeoutMs: number;
  private readonly now: () => number;
  private closed = false;

  constructor(private readonly options: InfluxStoreOptions) {
    this.base = options.url.replace(/\/+$/, '');
    if (options.token !== undefined) this.headers.authorization = `Token ${options.token}`;
    else if (options.username !== undefined) this.headers.authorization = `Basic ${Buffer.from(`${options.username}:${options.password ?? ''}`).toString('base64')}`;
    this.writeTimeoutMs = options.writeTimeoutMs ?? 10_000;
    this.queryTimeoutMs = options.queryTimeoutMs ?? 30_000;
    this.now = options.now ?? Date.now;
  }

  private assertOpen(): void {
    if (this.closed) throw unavailable('store is closed');
  }

  /** CREATE DATABASE is idempotent in 1.x; 2.x/3.x answer with an error, which is fine (the bucket exists). */
  async ensureDatabase(): Promise<void> {
    const rp = this.options.retentionPolicy;
    const statement = `CREATE DATABASE ${ident(this.options.database)}`;
    await this.influxql(statement, { post: true, db: false });
    if (rp !== undefined) {
      // Created with an infinite duration if missing; operators change it with ALTER RETENTION POLICY.
      await this.influxql(`CREATE RETENTION POLICY ${ident(rp)} ON ${ident(this.options.database)} DURATION INF REPLICATION 1`, { post: true, db: false }).catch(() => {});
    }
  }

  // ---- writes ---------------------------------------------------------------------------------------

  async write(points: StorePoint[]): Promise<WriteResult> {
    this.assertOpen();
    const { indexes, refused } = checkBatch(points);
    if (indexes.length > 0) {
      const lines = toLines(points, indexes);
      await postNarrowing(points, lines, (subset) => this.post(subset), refused);
    }
    return { written: points.length - refused.length, refused: sortRefused(refused) };
  }

  private writeUrl(): string {
    const params = new URLSearchParams({ db: this.options.database, precision: 'ms' });
    if (this.options.retentionPolicy !== undefined) params.set('rp', this.options.retentionPolicy);
    return `${this.base}/write?${params}`;
  }

  private async post(lines: Line[], retriedAfterCreate = false): Promise<PostOutcome> {
    let body = '';
    for (const line of lines) body += `${line.text}\n`;
    let response: Response;
    try {
      response = await fetch(this.writeUrl(), {
        method: 'POST',
        headers: { ...this.headers, 'content-type': 'text/plain; charset=utf-8' },
        body,
        signal: AbortSignal.timeout(this.writeTimeoutMs),
      });
    } catch (err) {
      throw unavailable(`write failed: ${describeFetchError(err)}`, err);
    }
    if (response.status === 204 || response.ok) {
      await response.body?.cancel();
      return { ok: true };
    }
    const text = (await response.text().catch(() => '')).slice(0, 500);
    const message = errorText(text) ?? `HTTP ${response.status}`;
    if (response.status === 404 && /database not found/i.test(message) && !retriedAfterCreate && this.options.createDatabase !== false) {
      await this.ensureDatabase().catch(() => {});
      return this.post(lines, true);
    }
    if (response.status === 400 || response.status === 422) return { ok: false, message };
    if (response.status === 413 && lines.length > 1) {
      const half = Math.ceil(lines.length / 2);
      const first = await this.post(lines.slice(0, half));
      const second = await this.post(lines.slice(half));
      return first.ok ? second : first;
    }
    // A 429 or 503 may say when to come back (InfluxDB Cloud and 2.x do): ingest's replay waits that long.
    const retryAfter = retryAfterMs(response.headers.get('retry-after'), this.now());
    throw unavailable(`write answered HTTP ${response.status}: ${message}`, undefined, retryAfter === undefined ? undefined : { retryAfterMs: retryAfter });
  }

  // ---- queries --------------------------------------------------------------------------------------

  /** Runs InfluxQL statements (separated by `;`) and returns the parsed answer; timestamps in ms. */
  private async influxql(q: string, options: { post?: boolean; db?: boolean; signal?: AbortSignal | undefined } = {}): Promise<InfluxAnswer> {
    const params = new URLSearchParams({ q, epoch: 'ms' });
    if (options.db !== false) params.set('db', this.options.database);
    if (options.db !== false && this.options.retentionPolicy !== undefined) params.set('rp', this.options.retentionPolicy);
    let response: Response;
    // A caller that has gone (a CSV download closed) cancels its query: influxd stops it with the connection.
    const signal = options.signal === undefined ? AbortSignal.timeout(this.queryTimeoutMs) : AbortSignal.any([AbortSignal.timeout(this.queryTimeoutMs), options.signal]);
    try {
      response = options.post === true
        ? await fetch(`${this.base}/query`, { method: 'POST', headers: { ...this.headers, 'content-type': 'application/x-www-form-urlencoded' }, body: params, signal })
        : await fetch(`${this.base}/query?${params}`, { headers: this.headers, signal });
    } catch (err) {
      throw unavailable(`query failed: ${describeFetchError(err)}`, err);
    }
    const text = await response.text().catch(() => '');
    if (!response.ok) throw unavailable(`query answered HTTP ${response.status}: ${errorText(text) ?? text.slice(0, 200)}`);
    let answer: InfluxAnswer;
    try {
      answer = JSON.parse(text) as InfluxAnswer;
    } catch (err) {
      throw unavailable('query answer is not JSON', err);
    }
    const failed = answer.error ?? answer.results?.find((r) => r.error !== undefined)?.error;
    if (failed !== undefined && !/database not found/i.test(failed)) throw unavailable(`query error: ${failed}`);
    return answer;
  }

  private timeRange(from: number, to: number): string {
    return `time >= ${from}ms AND time < ${to}ms`;
  }

  private deviceFilter(device: string): string {
    return `device = ${literal(device)}`;
  }

  /** Field keys of the measurement (all metrics ever written, by any device). */
  private async fieldKeys(): Promise<string[]> {
    const answer = await this.influxql(`SHOW FIELD KEYS FROM ${ident(MEASUREMENT)}`);
    const values = answer.results?.[0]?.series?.[0]?.values ?? [];
    return values.map((row) => String(row[0])).filter((key) => key !== SEQ_FIELD).sort();
  }

  /**
   * Trust levels come with the values (tag `trust`; none: signed): raw statements and each metric's
   * `min` statement are grouped by it, one series per level, which are merged back here. A separate
   * `count() GROUP BY trust` per metric cost bench/store.ts's query a fifth more (29.6 → 36.8 ms).
   */
  async query(input: RangeQuery): Promise<QueryResult> {
    const query = planQuery(input);
    this.assertOpen();
    const metrics = query.metrics ?? (await this.fieldKeys());
    const builder = new SeriesBuilder(query);
    if (metrics.length === 0) return builder.result();
    builder.withTrust();
    const where = `${this.deviceFilter(query.device)} AND ${this.timeRange(query.from, query.to)}`;
    const from = `FROM ${ident(MEASUREMENT)} WHERE ${where}`;
    const byTrust = ident(TRUST_TAG);
    if (query.mode === 'raw') {
      // LIMIT is per series (per trust level): the merge keeps the first maxPoints + 1 of them all.
      const answer = await this.influxql(metrics.map((m) => `SELECT ${ident(m)} ${from} GROUP BY ${byTrust} ORDER BY time ASC LIMIT ${query.maxPoints + 1}`).join('; '));
      metrics.forEach((metric, i) => {
        for (const [ts, value] of this.mergedByTrust(builder, metric, answer, i, (a, b) => b)) builder.add(metric, { ts, value });
      });
      return builder.result();
    }
    // One statement per aggregate: influxd 1.6 answers `mean; min; max` as three statements about a
    // third faster than one `SELECT mean(), min(), max()` (measured: ~80 vs ~110 ms over 86,400 points).
    // Windows align to the epoch (no offset), as in the embedded store; a window's time is its start.
    // `min` alone is grouped by trust: a window's min is the least of its levels' mins, where a mean or
    // a last could not be put back together.
    const fns = [...new Set([query.fn, 'min', 'max'])];
    const statements = metrics.flatMap((m) => fns.map((fn) => `SELECT ${fn}(${ident(m)}) ${from} GROUP BY time(${query.every}ms)${fn === 'min' ? `, ${byTrust}` : ''} fill(none)`));
    const answer = await this.influxql(statements.join('; '));
    metrics.forEach((metric, i) => {
      const columns = fns.map((fn, j) => {
        const statement = i * fns.length + j;
        return new Map<number, unknown>(fn === 'min' ? this.mergedByTrust(builder, metric, answer, statement, Math.min) : this.rowsOf(answer, statement).map((row) => [row[0] as number, row[1]]));
      });
      const [picked, lows, highs] = [columns[0]!, columns[fns.indexOf('min')]!, columns[fns.indexOf('max')]!];
      for (const [ts, value] of picked) {
        const min = lows.get(ts);
        const max = highs.get(ts);
        if (typeof value === 'number' && typeof min === 'number' && typeof max === 'number') builder.add(metric, { ts, value, min, max });
      }
    });
    return builder.result();
  }

  /**
   * A statement grouped by the trust tag, back as one series of (ts, value) in time order: rows of one
   * time in two levels' series are combined by `combine`. Records each level that has rows as the
   * metric's trust.
   */
  private mergedByTrust(builder: SeriesBuilder, metric: string, answer: InfluxAnswer, statement: number, combine: (a: number, b: number) => number): [number, number][] {
    const series = answer.results?.find((r) => (r.statement_id ?? 0) === statement)?.series ?? [];
    const byTs = new Map<number, number>();
    for (const one of series) {
      let any = false;
      for (const [ts, value] of one.values ?? []) {
        if (typeof ts !== 'number' || typeof value !== 'number') continue;
        any = true;
        const had = byTs.get(ts);
        byTs.set(ts, had === undefined ? value : combine(had, value));
      }
      if (any) builder.addTrust(metric, one.tags?.[TRUST_TAG]);
    }
    const rows = [...byTs];
    // One level's rows come in order already; only a merge of two needs sorting.
    if (series.length > 1) rows.sort((a, b) => a[0] - b[0]);
    return rows;
  }

  /** Rows of one statement's answer (one series: not grouped by tags). */
  private rowsOf(answer: InfluxAnswer, statement: number): unknown[][] {
    return answer.results?.find((r) => (r.statement_id ?? 0) === statement)?.series?.[0]?.values ?? [];
  }

  /**
   * A page of raw points. InfluxDB's rows are wide (one per time and tag set, a column per field), so a
   * page is read by time: `LIMIT` rows from the cursor's time on, turned into points in (ts, metric)
   * order. A full answer may end inside a time (its other tag sets cut off): that time's points are
   * left to the next page, which starts again at it and skips what the cursor has passed.
   */
  async rawPage(input: RawPageQuery): Promise<RawPage> {
    const page = planRawPage(input);
    this.assertOpen();
    const metrics = page.metrics ?? (await this.fieldKeys());
    if (metrics.length === 0) return { rows: [] };
    const from = page.after === undefined ? page.from : Math.max(page.from, page.after.ts);
    // Rows hold up to one point per metric: ask for about `limit` points' worth.
    let rowLimit = Math.max(1, Math.ceil(page.limit / metrics.length));
    for (;;) {
      const statement = `SELECT ${metrics.map(ident).join(', ')} FROM ${ident(MEASUREMENT)} WHERE ${this.deviceFilter(page.device)} AND ${this.timeRange(from, page.to)} ORDER BY time ASC LIMIT ${rowLimit}`;
      const series = (await this.influxql(statement, { signal: input.signal })).results?.[0]?.series?.[0];
      const values = series?.values ?? [];
      const columns = metrics.map((m) => series?.columns.indexOf(m) ?? -1);
      const full = values.length >= rowLimit;
      const lastTs = values.at(-1)?.[0];
      // A full answer of one time alone cannot be cut before it: read that time with more rows.
      if (full && typeof lastTs === 'number' && values[0]?.[0] === lastTs) {
        rowLimit *= 4;
        continue;
      }
      // Points by (ts, metric); a time held by two tag sets gives a metric twice: keep the later row's.
      const byKey = new Map<string, RawRow>();
      for (const row of values) {
        const ts = row[0];
        if (typeof ts !== 'number' || (full && ts === lastTs)) continue;
        metrics.forEach((metric, k) => {
          const value = row[columns[k]!];
          if (typeof value === 'number' && isAfter(ts, metric, page.after)) byKey.set(`${ts}\u0000${metric}`, { ts, metric, value });
        });
      }
      const rows = [...byKey.values()].sort((a, b) => a.ts - b.ts || (a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : 0));
      // Rows of wide rows (or of a read grown below) may be more than a page: the cursor can stop anywhere.
      if (rows.length > page.limit) {
        const kept = rows.slice(0, page.limit);
        const last = kept.at(-1)!;
        return { rows: kept, next: { ts: last.ts, metric: last.metric } };
      }
      if (!full) return { rows };
      const last = rows.at(-1);
      // Nothing new before the cut time (the rows were the cursor's own time): read further.
      if (last === undefined) {
        rowLimit *= 4;
        continue;
      }
      // The next page starts at the cut time (lastTs), none of whose points are taken yet.
      return { rows, next: { ts: last.ts, metric: last.metric } };
    }
  }

  async latest(device: string, since?: number): Promise<LatestValue[]> {
    this.assertOpen();
    const metrics = await this.fieldKeys();
    if (metrics.length === 0) return [];
    const where = `${this.deviceFilter(device)} AND ${this.timeRange(since ?? this.now() - DEFAULT_LATEST_WINDOW_MS, TIME_MAX)}`;
    // One statement per field: last(*) would report one shared time for all fields.
    const answer = await this.influxql(metrics.map((m) => `SELECT last(${ident(m)}) FROM ${ident(MEASUREMENT)} WHERE ${where}`).join('; '));
    const values: LatestValue[] = [];
    metrics.forEach((metric, i) => {
      const row = answer.results?.find((r) => (r.statement_id ?? 0) === i)?.series?.[0]?.values?.[0];
      if (row !== undefined && typeof row[1] === 'number') values.push({ metric, ts: row[0] as number, value: row[1] });
    });
    return values;
  }

  async latestAll(since?: number): Promise<DeviceLatestValue[]> {
    this.assertOpen();
    const metrics = await this.fieldKeys();
    if (metrics.length === 0) return [];
    const where = this.timeRange(since ?? this.now() - DEFAULT_LATEST_WINDOW_MS, TIME_MAX);
    // GROUP BY device merges a device's series that differ only in metadata tags.
    const answer = await this.influxql(metrics.map((m) => `SELECT last(${ident(m)}) FROM ${ident(MEASUREMENT)} WHERE ${where} GROUP BY "device"`).join('; '));
    const values: DeviceLatestValue[] = [];
    metrics.forEach((metric, i) => {
      const result = answer.results?.find((r) => (r.statement_id ?? 0) === i);
      for (const series of result?.series ?? []) {
        const row = series.values?.[0];
        const device = series.tags?.device;
        if (row !== undefined && device !== undefined && typeof row[1] === 'number') values.push({ device, metric, ts: row[0] as number, value: row[1] });
      }
    });
    return values.sort((a, b) => (a.device === b.device ? (a.metric < b.metric ? -1 : a.metric > b.metric ? 1 : 0) : a.device < b.device ? -1 : 1));
  }

  async meta(device: string): Promise<DeviceMeta | undefined> {
    this.assertOpen();
    const answer = await this.influxql(`SELECT * FROM ${ident(MEASUREMENT)} WHERE ${this.deviceFilter(device)} AND ${this.timeRange(TIME_MIN, TIME_MAX)} ORDER BY time DESC LIMIT 1`);
    const series = answer.results?.[0]?.series?.[0];
    const row = series?.values?.[0];
    if (series === undefined || row === undefined) return undefined;
    const meta: DeviceMeta = {};
    for (const key of META_TAGS) {
      const value = row[series.columns.indexOf(key)];
      if (typeof value === 'string' && value !== '') meta[key] = decodeTagValue(value);
    }
    return meta;
  }

  async count(options: { device?: string; from?: number; to?: number } = {}): Promise<number> {
    this.assertOpen();
    let where = this.timeRange(options.from ?? TIME_MIN, options.to ?? TIME_MAX);
    if (options.device !== undefined) where = `${this.deviceFilter(options.device)} AND ${where}`;
    const answer = await this.influxql(`SELECT count(*) FROM ${ident(MEASUREMENT)} WHERE ${where}`);
    const series = answer.results?.[0]?.series?.[0];
    const row = series?.values?.[0] ?? [];
    // count(*) gives one count per field: count_<metric>. Points are (device, metric, ts), so sum them
    // (the seq field is not a point).
    let sum = 0;
    for (let i = 1; i < row.length; i++) if (series?.columns[i] !== `count_${SEQ_FIELD}` && typeof row[i] === 'number') sum += row[i] as number;
    return sum;
  }

  async seqs(device: string, from: number, to: number): Promise<StoredSeq[]> {
    const query = planQuery({ device, from, to, mode: 'raw' });
    this.assertOpen();
    // GROUP BY *: a copy per tag set (a rewrite across a metadata change) comes back as its own series.
    const answer = await this.influxql(`SELECT ${ident(SEQ_FIELD)} FROM ${ident(MEASUREMENT)} WHERE ${this.deviceFilter(query.device)} AND ${this.timeRange(query.from, query.to)} GROUP BY *`);
    const rows: StoredSeq[] = [];
    for (const series of answer.results?.[0]?.series ?? []) {
      for (const [ts, seq] of series.values ?? []) if (typeof ts === 'number' && typeof seq === 'number') rows.push({ ts, seq });
    }
    return distinctSeqs(rows);
  }

  async health(): Promise<{ ok: boolean; detail?: string }> {
    if (this.closed) return { ok: false, detail: 'closed' };
    try {
      const response = await fetch(`${this.base}/ping`, { headers: this.headers, signal: AbortSignal.timeout(5000) });
      await response.body?.cancel();
      if (response.status !== 204 && !response.ok) return { ok: false, detail: `ping answered HTTP ${response.status}` };
      return { ok: true };
    } catch (err) {
      return { ok: false, detail: describeFetchError(err) };
    }
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/** InfluxDB answers errors as {"error": "..."}. */
function errorText(body: string): string | undefined {
  try {
    const parsed = JSON.parse(body) as { error?: unknown; message?: unknown };
    if (typeof parsed.error === 'string') return parsed.error;
    if (typeof parsed.message === 'string') return parsed.message;
  } catch {
    // not JSON
  }
  return body.trim() === '' ? undefined : body.trim().slice(0, 300);
}

/** fetch hides the reason (ECONNREFUSED, timeout) in `cause`. */
function describeFetchError(err: unknown): string {
  const error = err as Error & { cause?: { code?: string; message?: string } };
  if (error.name === 'TimeoutError') return 'timed out';
  return error.cause?.code ?? error.cause?.message ?? error.message;
}
