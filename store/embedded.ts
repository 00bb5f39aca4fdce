/**
 * The embedded store: one DuckDB file under the data folder, the zero-set-up default.
 *
 * Table `readings(device, metric, ts BIGINT ms, value DOUBLE, seq BIGINT)`, no primary key:
 * DuckDB's ART index makes `INSERT OR REPLACE` about 6x slower than a plain append (48k vs 300k
 * points/s measured here). Idempotency comes from a per-series high-water mark instead: a point newer
 * than everything stored for its (device, metric) cannot exist yet and is appended directly (the common
 * case: live data; see appendCommitted); any other point takes the slow path — delete the same
 * identities, insert, in one transaction. Writes are serialised (one writer; DuckDB also locks the file against other processes).
 * Reads use their own connection, so a long write never blocks the dashboard.
 *
 * Trust (core/PROTOCOL.md §7): signed readings live in `readings`, broker-authenticated ones in
 * `broker_readings` (same columns), and the view `readings_all(device, metric, ts, value, seq, trust)`
 * joins them, its `trust` column 'signed' or 'broker'. Two tables rather than a column: a column appended
 * per row costs the signed hot path a native call per point (see META_TABLE), where this costs it
 * nothing. An identity lives in one table at most: a rewrite deletes it from both. A device's history
 * reads the view only if the device has ever had broker rows (`brokerDevices`, kept in memory): reading
 * `readings` alone, and knowing its trust without asking, took bench/store.ts's query from ~8 to ~5 ms.
 */
import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { DuckDBInstance, type DuckDBConnection, type DuckDBValue } from '@duckdb/node-api';
import { SensorpipeError, isSensorpipeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { DeviceMeta } from '../core/schemas.ts';
import { checkBatch, sortRefused } from './points.ts';
import type { DeviceLatestValue, LatestValue, QueryResult, RangeQuery, RawPage, RawPageQuery, StoredSeq, StorePoint as Point, TimeSeriesStore, WriteResult } from './port.ts';
import { planQuery, planRawPage, type PlannedQuery } from './query.ts';
import { DEFAULT_LATEST_WINDOW_MS, distinctSeqs, SeriesBuilder } from './result.ts';

export interface EmbeddedStoreOptions {
  /** The DuckDB file; its folder is created if missing. */
  path: string;
  logger?: Logger | undefined;
  now?: () => number;
}

/**
 * `seq` is the reading's seq on each of its points' rows (NULL when written without one). It was added
 * after the first files were written: opening an older file adds the column (ALTER TABLE, at the end, so
 * both tables keep one column order).
 */
const COLUMNS = '(device VARCHAR NOT NULL, metric VARCHAR NOT NULL, ts BIGINT NOT NULL, value DOUBLE NOT NULL, seq BIGINT)';
/**
 * Metadata lives in its own small table, not on every row: it changes rarely, and each appended column
 * costs a native call per row (7 columns → 4 took bench/store.ts from ~290k to ~440k points/s here).
 */
const META_TABLE = 'CREATE TABLE IF NOT EXISTS device_meta (device VARCHAR PRIMARY KEY, site VARCHAR, model VARCHAR, profile VARCHAR)';

/** Every reading with its trust: what queries read (and what a user of the file queries). */
const ALL_READINGS_VIEW = `CREATE OR REPLACE VIEW readings_all AS
  SELECT device, metric, ts, value, seq, 'signed' AS trust FROM readings
  UNION ALL SELECT device, metric, ts, value, seq, 'broker' AS trust FROM broker_readings`;

type ReadingsTable = 'readings' | 'broker_readings';

function metaKey(meta: DeviceMeta): string {
  return `${meta.site ?? ''}\u0000${meta.model ?? ''}\u0000${meta.profile ?? ''}`;
}

function unavailable(message: string, cause: unknown): SensorpipeError {
  return new SensorpipeError('STORE_UNAVAILABLE', `embedded store: ${message}: ${(cause as Error)?.message ?? String(cause)}`, undefined, { cause });
}

function seriesKey(device: string, metric: string): string {
  return `${device}\u0000${metric}`;
}

/**
 * Stores open in this process, by file. DuckDB's file lock is per process, so a second DuckDBInstance on
 * the same file in the same process would be let in and the two would overwrite each other's work.
 * Instead, every open of one file shares one store (with one writer and one set of high-water marks);
 * the file is closed when the last handle is.
 */
const openFiles = new Map<string, { store: Promise<EmbeddedStore>; handles: number }>();

export async function openEmbeddedStore(options: EmbeddedStoreOptions): Promise<TimeSeriesStore> {
  const key = resolve(options.path);
  let entry = openFiles.get(key);
  if (entry === undefined) {
    entry = { store: openFile(options), handles: 0 };
    openFiles.set(key, entry);
    entry.store.catch(() => openFiles.delete(key));
  }
  entry.handles += 1;
  let store: EmbeddedStore;
  try {
    store = await entry.store;
  } catch (err) {
    entry.handles -= 1;
    throw err;
  }
  const shared = entry;
  let closed = false;
  const handle: TimeSeriesStore = {
    kind: 'embedded',
    write: (points) => (closed ? Promise.reject(closedError()) : store.write(points)),
    query: (query) => (closed ? Promise.reject(closedError()) : store.query(query)),
    rawPage: (query) => (closed ? Promise.reject(closedError()) : store.rawPage(query)),
    latest: (device, since) => (closed ? Promise.reject(closedError()) : store.latest(device, since)),
    latestAll: (since) => (closed ? Promise.reject(closedError()) : store.latestAll(since)),
    seqs: (device, from, to) => (closed ? Promise.reject(closedError()) : store.seqs(device, from, to)),
    meta: (device) => (closed ? Promise.reject(closedError()) : store.meta(device)),
    count: (opts) => (closed ? Promise.reject(closedError()) : store.count(opts)),
    health: () => (closed ? Promise.resolve({ ok: false, detail: 'closed' }) : store.health()),
    async close() {
      if (closed) return;
      closed = true;
      shared.handles -= 1;
      if (shared.handles === 0) {
        openFiles.delete(key);
        await store.close();
      }
    },
  };
  return handle;
}

function closedError(): SensorpipeError {
  return new SensorpipeError('STORE_UNAVAILABLE', 'embedded store is closed');
}

async function openFile(options: EmbeddedStoreOptions): Promise<EmbeddedStore> {
  let instance: DuckDBInstance;
  try {
    await mkdir(dirname(options.path), { recursive: true });
    instance = await DuckDBInstance.create(options.path);
  } catch (err) {
    throw unavailable(`cannot open ${options.path}`, err);
  }
  const writer = await instance.connect();
  const reader = await instance.connect();
  try {
    await writer.run(`CREATE TABLE IF NOT EXISTS readings ${COLUMNS}`);
    await writer.run('ALTER TABLE readings ADD COLUMN IF NOT EXISTS seq BIGINT');
    await writer.run(`CREATE TABLE IF NOT EXISTS broker_readings ${COLUMNS}`);
    await writer.run(ALL_READINGS_VIEW);
    await writer.run(`CREATE TEMP TABLE IF NOT EXISTS rewrite ${COLUMNS}`);
    await writer.run(META_TABLE);
    const store = new EmbeddedStore(instance, writer, reader, options);
    await store.loadHighWaterMarks();
    return store;
  } catch (err) {
    writer.closeSync();
    reader.closeSync();
    instance.closeSync();
    throw unavailable('cannot prepare the database', err);
  }
}

class EmbeddedStore implements TimeSeriesStore {
  readonly kind = 'embedded' as const;
  /** Greatest ts stored per (device, metric). */
  private readonly highWater = new Map<string, number>();
  /**
   * Devices that may have rows in `broker_readings` (every one that has; one whose broker rows were all
   * rewritten as signed may stay: a superset only costs its reads the view). Loaded at open, added to
   * before a write of broker rows begins, so a read never misses committed ones.
   */
  private readonly brokerDevices = new Set<string>();
  /** device → metaKey of the metadata stored for it. */
  private readonly storedMeta = new Map<string, string>();
  private writeChain: Promise<unknown> = Promise.resolve();
  private closed = false;
  private readonly now: () => number;

  constructor(
    private readonly instance: DuckDBInstance,
    private readonly writer: DuckDBConnection,
    private readonly reader: DuckDBConnection,
    private readonly options: EmbeddedStoreOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  async loadHighWaterMarks(): Promise<void> {
    const result = await this.writer.runAndReadAll('SELECT device, metric, max(ts) FROM readings_all GROUP BY ALL');
    for (const [device, metric, ts] of result.getRows()) this.highWater.set(seriesKey(String(device), String(metric)), Number(ts));
    const brokers = await this.writer.runAndReadAll('SELECT DISTINCT device FROM broker_readings');
    for (const [device] of brokers.getRows()) this.brokerDevices.add(String(device));
    const metas = await this.writer.runAndReadAll('SELECT device, site, model, profile FROM device_meta');
    for (const [device, site, model, profile] of metas.getRows()) {
      this.storedMeta.set(String(device), metaKey({ site: site === null ? undefined : String(site), model: model === null ? undefined : String(model), profile: profile === null ? undefined : String(profile) }));
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new SensorpipeError('STORE_UNAVAILABLE', 'embedded store is closed');
  }

  write(points: readonly Point[]): Promise<WriteResult> {
    // One writer at a time: the high-water marks must match what is committed.
    const run = this.writeChain.then(() => this.writeNow(points));
    this.writeChain = run.catch(() => {});
    return run;
  }

  private async writeNow(points: readonly Point[]): Promise<WriteResult> {
    this.assertOpen();
    const { indexes, refused } = checkBatch(points);
    const appendNow: Point[] = [];
    const rewrite: Point[] = [];
    // Broker-authenticated readings (rare, slow): their own lists, so the signed ones cost nothing more.
    let brokerAppend: Point[] | undefined;
    let brokerRewrite: Point[] | undefined;
    const batchHigh = new Map<string, number>();
    const batchMeta = new Map<string, DeviceMeta>();
    let lastMeta: DeviceMeta | undefined;
    let lastMetaDevice: string | undefined;
    for (const i of indexes) {
      const point = points[i]!;
      // The metadata of a device's last point in the batch is its current metadata.
      if (point.meta !== undefined && (point.meta !== lastMeta || point.device !== lastMetaDevice)) {
        batchMeta.set(point.device, point.meta);
        lastMeta = point.meta;
        lastMetaDevice = point.device;
      }
      const key = seriesKey(point.device, point.metric);
      const high = this.highWater.get(key);
      if (point.trust !== undefined) {
        if (high === undefined || point.ts > high) (brokerAppend ??= []).push(point);
        else (brokerRewrite ??= []).push(point);
      } else if (high === undefined || point.ts > high) appendNow.push(point);
      else rewrite.push(point);
      if (point.ts > (batchHigh.get(key) ?? -Infinity)) batchHigh.set(key, point.ts);
    }
    for (const point of brokerAppend ?? []) this.brokerDevices.add(point.device);
    for (const point of brokerRewrite ?? []) this.brokerDevices.add(point.device);
    try {
      if (appendNow.length > 0) await this.appendCommitted('readings', appendNow);
      if (rewrite.length > 0) await this.rewrite('readings', rewrite);
      if (brokerAppend !== undefined) await this.appendCommitted('broker_readings', brokerAppend);
      if (brokerRewrite !== undefined) await this.rewrite('broker_readings', brokerRewrite);
      await this.saveMeta(batchMeta);
    } catch (err) {
      if (isSensorpipeError(err)) throw err;
      this.options.logger?.warn({ err: (err as Error).message }, 'embedded store write failed');
      throw unavailable('write failed', err);
    }
    // Only after the commit: a failed write must not make later points skip the rewrite check.
    for (const [key, ts] of batchHigh) if (ts > (this.highWater.get(key) ?? -Infinity)) this.highWater.set(key, ts);
    return { written: points.length - refused.length, refused: sortRefused(refused) };
  }

  /**
   * Appends new points to `readings` without committing on the event loop. An appender left to itself
   * commits in flushSync, on the calling thread: the WAL write and sync, and now and then a checkpoint.
   * Writing 5,000-point batches here, that held the event loop 4–8 ms a batch and up to 80 ms (a
   * checkpoint); ~17 ms a batch under bench/ingest.ts at 10,000 readings/s, each one a stall of the live
   * feed. Inside an explicit transaction the appender's flush only adds the rows to it (~1 ms), and the
   * COMMIT runs on DuckDB's threads. Durable once it resolves, as before.
   */
  private async appendCommitted(table: ReadingsTable, points: readonly Point[]): Promise<void> {
    await this.writer.run('BEGIN TRANSACTION');
    try {
      await this.append(table, points);
      await this.writer.run('COMMIT');
    } catch (err) {
      await this.writer.run('ROLLBACK').catch(() => {});
      throw err;
    }
  }

  /** Appends rows with DuckDB's appender (one transaction per call, unless one is open). */
  private async append(table: ReadingsTable | 'rewrite', points: readonly Point[]): Promise<void> {
    const appender = await this.writer.createAppender(table, table === 'rewrite' ? 'main' : null, table === 'rewrite' ? 'temp' : null);
    try {
      for (const p of points) {
        appender.appendVarchar(p.device);
        appender.appendVarchar(p.metric);
        appender.appendBigInt(BigInt(p.ts));
        appender.appendDouble(p.value);
        if (p.seq === undefined) appender.appendNull();
        else appender.appendBigInt(BigInt(p.seq));
        appender.endRow();
      }
      appender.flushSync();
    } finally {
      appender.closeSync();
    }
  }

  /** Stores metadata that differs from what is stored (rare: a device's registry entry changed). */
  private async saveMeta(batchMeta: Map<string, DeviceMeta>): Promise<void> {
    for (const [device, meta] of batchMeta) {
      const key = metaKey(meta);
      if (this.storedMeta.get(device) === key) continue;
      await this.writer.run('INSERT OR REPLACE INTO device_meta VALUES ($1, $2, $3, $4)', [device, meta.site ?? null, meta.model ?? null, meta.profile ?? null]);
      this.storedMeta.set(device, key);
    }
  }

  /** Points that may already exist: replace them by identity (in either table), atomically, into `table`. */
  private async rewrite(table: ReadingsTable, points: readonly Point[]): Promise<void> {
    await this.writer.run('DELETE FROM temp.main.rewrite');
    await this.append('rewrite', points);
    let minTs = Infinity;
    let maxTs = -Infinity;
    for (const p of points) {
      if (p.ts < minTs) minTs = p.ts;
      if (p.ts > maxTs) maxTs = p.ts;
    }
    await this.writer.run('BEGIN TRANSACTION');
    try {
      // The ts bounds let DuckDB skip row groups by their min/max (zone maps) before the join.
      for (const from of ['readings', 'broker_readings'] as const) {
        await this.writer.run(
          `DELETE FROM ${from} USING temp.main.rewrite AS r
           WHERE ${from}.ts BETWEEN $1 AND $2 AND ${from}.ts = r.ts AND ${from}.device = r.device AND ${from}.metric = r.metric`,
          [BigInt(minTs), BigInt(maxTs)],
        );
      }
      await this.writer.run(`INSERT INTO ${table} (device, metric, ts, value, seq) SELECT device, metric, ts, value, seq FROM temp.main.rewrite`);
      await this.writer.run('COMMIT');
    } catch (err) {
      await this.writer.run('ROLLBACK').catch(() => {});
      throw err;
    }
  }

  async query(input: RangeQuery): Promise<QueryResult> {
    const query = planQuery(input);
    this.assertOpen();
    try {
      return query.mode === 'raw' ? await this.queryRaw(query) : await this.queryWindows(query);
    } catch (err) {
      throw unavailable('query failed', err);
    }
  }

  private whereClause(query: PlannedQuery): { sql: string; params: DuckDBValue[] } {
    const params: DuckDBValue[] = [query.device, BigInt(query.from), BigInt(query.to)];
    let sql = 'device = $1 AND ts >= $2 AND ts < $3';
    if (query.metrics !== undefined) sql += ` AND metric IN (${this.slots(params, query.metrics)})`;
    return { sql, params };
  }

  /** Adds values as parameters and returns their placeholders ($4, $5, …). */
  private slots(params: DuckDBValue[], values: readonly string[]): string {
    return values
      .map((value) => {
        params.push(value);
        return `$${params.length}`;
      })
      .join(', ');
  }

  /** Where a device's readings are read from: `readings` alone unless it may have broker rows. */
  private hasBrokerRows(device: string): boolean {
    return this.brokerDevices.has(device);
  }

  private async queryRaw(query: PlannedQuery): Promise<QueryResult> {
    const where = this.whereClause(query);
    const broker = this.hasBrokerRows(query.device);
    // One more than maxPoints per metric, so that `truncated` is exact.
    const result = await this.reader.runAndReadAll(
      `SELECT metric, ts, value${broker ? ', trust' : ''} FROM ${broker ? 'readings_all' : 'readings'} WHERE ${where.sql}
       QUALIFY row_number() OVER (PARTITION BY metric ORDER BY ts) <= ${query.maxPoints + 1}
       ORDER BY metric, ts`,
      where.params,
    );
    const builder = new SeriesBuilder(query);
    const [metrics = [], times = [], values = [], trusts = []] = result.getColumns() as [string[]?, bigint[]?, number[]?, string[]?];
    for (let i = 0; i < metrics.length; i++) builder.add(metrics[i]!, { ts: Number(times[i]), value: values[i]! });
    if (broker) {
      builder.withTrust();
      for (let i = 0; i < metrics.length; i++) builder.addTrust(metrics[i]!, trusts[i]);
    } else builder.trustOfAll('signed');
    return builder.result();
  }

  private async queryWindows(query: PlannedQuery): Promise<QueryResult> {
    const where = this.whereClause(query);
    const every = query.every;
    const pick = { mean: 'avg(value)', min: 'min(value)', max: 'max(value)', last: 'arg_max(value, ts)', count: 'count(*)::DOUBLE' }[query.fn];
    const broker = this.hasBrokerRows(query.device);
    // A device with broker rows: each window's trust levels ride along ('broker' < 'signed').
    const result = await this.reader.runAndReadAll(
      `SELECT metric, (ts // ${every}) * ${every} AS w, ${pick} AS v, min(value) AS lo, max(value) AS hi${broker ? ', min(trust), max(trust)' : ''}
       FROM ${broker ? 'readings_all' : 'readings'} WHERE ${where.sql} GROUP BY metric, w ORDER BY metric, w`,
      where.params,
    );
    const builder = new SeriesBuilder(query);
    const [metrics = [], windows = [], picked = [], lows = [], highs = [], lowTrust = [], highTrust = []] = result.getColumns() as [string[]?, bigint[]?, number[]?, number[]?, number[]?, string[]?, string[]?];
    for (let i = 0; i < metrics.length; i++) {
      builder.add(metrics[i]!, { ts: Number(windows[i]), value: picked[i]!, min: lows[i]!, max: highs[i]! });
    }
    if (broker) {
      builder.withTrust();
      for (let i = 0; i < metrics.length; i++) {
        builder.addTrust(metrics[i]!, lowTrust[i]);
        builder.addTrust(metrics[i]!, highTrust[i]);
      }
    } else builder.trustOfAll('signed');
    return builder.result();
  }

  async rawPage(input: RawPageQuery): Promise<RawPage> {
    const page = planRawPage(input);
    this.assertOpen();
    const params: DuckDBValue[] = [page.device, BigInt(page.from), BigInt(page.to)];
    let where = 'device = $1 AND ts >= $2 AND ts < $3';
    if (page.metrics !== undefined) where += ` AND metric IN (${this.slots(params, page.metrics)})`;
    if (page.after !== undefined) {
      params.push(BigInt(page.after.ts), page.after.metric);
      where += ` AND (ts > $${params.length - 1} OR (ts = $${params.length - 1} AND metric > $${params.length}))`;
    }
    try {
      // The (ts, metric) key is unique across both tables (one identity, one row), so the order is total.
      const result = await this.reader.runAndReadAll(
        `SELECT ts, metric, value FROM ${this.hasBrokerRows(page.device) ? 'readings_all' : 'readings'} WHERE ${where} ORDER BY ts, metric LIMIT ${page.limit}`,
        params,
      );
      const [times = [], metrics = [], values = []] = result.getColumns() as [bigint[]?, string[]?, number[]?];
      const rows = metrics.map((metric, i) => ({ ts: Number(times[i]), metric, value: values[i]! }));
      const last = rows.at(-1);
      return rows.length < page.limit || last === undefined ? { rows } : { rows, next: { ts: last.ts, metric: last.metric } };
    } catch (err) {
      throw unavailable('raw page failed', err);
    }
  }

  async latest(device: string, since?: number): Promise<LatestValue[]> {
    this.assertOpen();
    try {
      const result = await this.reader.runAndReadAll(
        `SELECT metric, max(ts), arg_max(value, ts) FROM ${this.hasBrokerRows(device) ? 'readings_all' : 'readings'} WHERE device = $1 AND ts >= $2 GROUP BY metric ORDER BY metric`,
        [device, BigInt(since ?? this.now() - DEFAULT_LATEST_WINDOW_MS)],
      );
      return result.getRows().map(([metric, ts, value]) => ({ metric: String(metric), ts: Number(ts), value: Number(value) }));
    } catch (err) {
      throw unavailable('latest failed', err);
    }
  }

  async latestAll(since?: number): Promise<DeviceLatestValue[]> {
    this.assertOpen();
    try {
      const result = await this.reader.runAndReadAll(
        'SELECT device, metric, max(ts), arg_max(value, ts) FROM readings_all WHERE ts >= $1 GROUP BY device, metric ORDER BY device, metric',
        [BigInt(since ?? this.now() - DEFAULT_LATEST_WINDOW_MS)],
      );
      return result.getRows().map(([device, metric, ts, value]) => ({ device: String(device), metric: String(metric), ts: Number(ts), value: Number(value) }));
    } catch (err) {
      throw unavailable('latestAll failed', err);
    }
  }

  async seqs(device: string, from: number, to: number): Promise<StoredSeq[]> {
    const query = planQuery({ device, from, to, mode: 'raw' });
    this.assertOpen();
    try {
      const result = await this.reader.runAndReadAll('SELECT DISTINCT ts, seq FROM readings WHERE device = $1 AND ts >= $2 AND ts < $3 AND seq IS NOT NULL', [
        query.device,
        BigInt(query.from),
        BigInt(query.to),
      ]);
      return distinctSeqs(result.getRows().map(([ts, seq]) => ({ ts: Number(ts), seq: Number(seq) })));
    } catch (err) {
      throw unavailable('seqs failed', err);
    }
  }

  async meta(device: string): Promise<DeviceMeta | undefined> {
    this.assertOpen();
    try {
      const result = await this.reader.runAndReadAll('SELECT site, model, profile FROM device_meta WHERE device = $1', [device]);
      const row = result.getRows()[0];
      if (row === undefined) {
        // A device written without metadata still exists.
        const any = await this.reader.runAndReadAll('SELECT 1 FROM readings_all WHERE device = $1 LIMIT 1', [device]);
        return any.getRows().length > 0 ? {} : undefined;
      }
      const meta: DeviceMeta = {};
      if (row[0] !== null) meta.site = String(row[0]);
      if (row[1] !== null) meta.model = String(row[1]);
      if (row[2] !== null) meta.profile = String(row[2]);
      return meta;
    } catch (err) {
      throw unavailable('meta failed', err);
    }
  }

  async count(options: { device?: string; from?: number; to?: number } = {}): Promise<number> {
    this.assertOpen();
    const params: DuckDBValue[] = [];
    const where: string[] = ['true'];
    if (options.device !== undefined) where.push(`device = ${this.slots(params, [options.device])}`);
    if (options.from !== undefined) {
      params.push(BigInt(options.from));
      where.push(`ts >= $${params.length}`);
    }
    if (options.to !== undefined) {
      params.push(BigInt(options.to));
      where.push(`ts < $${params.length}`);
    }
    try {
      const result = await this.reader.runAndReadAll(`SELECT count(*) FROM readings_all WHERE ${where.join(' AND ')}`, params);
      return Number(result.getRows()[0]?.[0] ?? 0);
    } catch (err) {
      throw unavailable('count failed', err);
    }
  }

  async health(): Promise<{ ok: boolean; detail?: string }> {
    if (this.closed) return { ok: false, detail: 'closed' };
    try {
      await this.reader.run('SELECT 1');
      return { ok: true };
    } catch (err) {
      return { ok: false, detail: (err as Error).message };
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.writeChain;
    this.writer.closeSync();
    this.reader.closeSync();
    // Closing the instance checkpoints the WAL into the file and releases the file lock.
    this.instance.closeSync();
  }
}
