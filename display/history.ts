/**
 * History for a live subscription, joined to the live feed without gap or overlap.
 *
 * The store lags the live feed a little (ingest publishes a reading when it is verified and writes it
 * within a batch delay), so the last seconds come from a ring of recently verified readings as well as
 * from the store. Raw history is used when the range holds few enough points; otherwise the range is
 * aggregated up to `now - RECENT_MS` and raw after that, so the join with live is always raw and is
 * deduplicated exactly on (metric, ts). The caller drops every held-back live reading whose identity
 * is in `seen`. The raw part after `now - RECENT_MS` holds at most LIVE_HISTORY_RAW_CAP points per
 * metric (core/live.ts): a frame cut there says so (`truncated`, `nextFrom`) instead of ending silently.
 *
 * Those identities are kept for a while per client and device (see readingsAfterHistory), so they are
 * kept small: a history's raw points as one sorted array of timestamps per metric, 8 bytes a point. As
 * `${metric}@${ts}` strings in a Set they took about 130 bytes each: 40 MB for one device's history of
 * 32 metrics × 10,000 points, 800 MB for a subscription's 20 devices, held by one client for 30 s.
 */
import { LIVE_HISTORY_RAW_CAP, withValues, type LiveHistory, type LiveReading } from '../core/live.ts';
import type { AggregateFunction } from '../core/query.ts';
import type { ReadingTrust } from '../core/schemas.ts';
import type { QueryResult, TimeSeriesStore } from '../store/index.ts';

/** How long verified readings are kept in memory for the join: far longer than ingest's write delay. */
export const RECENT_MS = 30_000;
/** Bound on the ring per device, whatever its rate. */
const RECENT_MAX_PER_DEVICE = 5000;

/** Recently verified readings per device, in arrival order. */
export class RecentReadings {
  private readonly byDevice = new Map<string, { at: number; reading: LiveReading }[]>();

  add(device: string, readings: LiveReading[], now: number): void {
    let ring = this.byDevice.get(device);
    if (ring === undefined) this.byDevice.set(device, (ring = []));
    for (const reading of readings) ring.push({ at: now, reading });
    let drop = 0;
    while (drop < ring.length && (ring[drop]!.at < now - RECENT_MS || ring.length - drop > RECENT_MAX_PER_DEVICE)) drop++;
    if (drop > 0) ring.splice(0, drop);
  }

  snapshot(device: string): LiveReading[] {
    return (this.byDevice.get(device) ?? []).map((entry) => entry.reading);
  }

  /** Forgets devices that sent nothing for a while (called now and then). */
  prune(now: number): void {
    for (const [device, ring] of this.byDevice) if ((ring.at(-1)?.at ?? 0) < now - RECENT_MS) this.byDevice.delete(device);
  }
}

export interface HistoryRequest {
  id: string;
  device: string;
  metrics: string[] | undefined;
  from: number;
  /** The subscription's start. */
  now: number;
  /** How far ahead of `now` device clocks may be (ingest's max-future): such readings are history too. */
  aheadMs: number;
  fn: AggregateFunction | undefined;
  maxPoints: number;
}

/**
 * Identities (metric, ts) of readings a client has of one device: a history's raw points (sorted
 * timestamps per metric, shared, never changed) and those sent since (few: the readings of seconds).
 */
export class SeenReadings {
  private readonly added = new Set<string>();

  constructor(private readonly history: ReadonlyMap<string, Float64Array> = new Map()) {}

  /** Points held: what this costs the client (the history's at 8 bytes each). */
  get size(): number {
    let size = this.added.size;
    for (const times of this.history.values()) size += times.length;
    return size;
  }

  has(metric: string, ts: number): boolean {
    const times = this.history.get(metric);
    return (times !== undefined && includes(times, ts)) || this.added.has(`${metric}@${ts}`);
  }

  /** Records (metric, ts); false when it was there already. */
  take(metric: string, ts: number): boolean {
    const times = this.history.get(metric);
    if (times !== undefined && includes(times, ts)) return false;
    const key = `${metric}@${ts}`;
    if (this.added.has(key)) return false;
    this.added.add(key);
    return true;
  }

  /** The same history, with nothing added yet. */
  fork(): SeenReadings {
    return new SeenReadings(this.history);
  }
}

/** Binary search of a sorted array. */
function includes(sorted: Float64Array, value: number): boolean {
  let low = 0;
  let high = sorted.length - 1;
  while (low <= high) {
    const middle = (low + high) >>> 1;
    const at = sorted[middle]!;
    if (at === value) return true;
    if (at < value) low = middle + 1;
    else high = middle - 1;
  }
  return false;
}

export interface JoinedHistory {
  frame: LiveHistory;
  /** (metric, ts) of every raw point in the frame. */
  seen: SeenReadings;
  /** Held-back readings older than this belong to the aggregated part and are not sent live. */
  rawFrom: number;
}

const RAW_LIMIT_MS = 7 * 86_400_000;

export async function loadHistory(store: TimeSeriesStore, request: HistoryRequest): Promise<JoinedHistory> {
  const { device, metrics, from, now, aheadMs, fn, maxPoints } = request;
  const to = now + aheadMs;
  const base = { device, ...(metrics === undefined ? {} : { metrics }), maxPoints };
  if (to - from <= RAW_LIMIT_MS) {
    const raw = await store.query({ ...base, from, to, mode: 'raw' });
    if (!raw.truncated) return join(request, from, to, raw, undefined);
  }
  const rawFrom = Math.max(from + 1, now - RECENT_MS);
  const [aggregated, tail] = await Promise.all([
    store.query({ ...base, from, to: rawFrom, mode: 'aggregate', ...(fn === undefined ? {} : { fn }) }),
    store.query({ ...base, from: rawFrom, to, mode: 'raw', maxPoints: LIVE_HISTORY_RAW_CAP }),
  ]);
  return join(request, from, to, tail, aggregated);
}

function join(request: HistoryRequest, from: number, to: number, raw: QueryResult, aggregated: QueryResult | undefined): JoinedHistory {
  const rawTimes = new Map<string, Float64Array>();
  const series = new Map<string, LiveHistory['series'][number]['points']>();
  // Trust levels per metric, from either query (the aggregated part and the raw tail).
  const trust = new Map<string, Set<ReadingTrust>>();
  for (const s of [...(aggregated?.series ?? []), ...raw.series]) {
    if (s.trust === undefined) continue;
    let levels = trust.get(s.metric);
    if (levels === undefined) trust.set(s.metric, (levels = new Set()));
    for (const level of s.trust) levels.add(level);
  }
  for (const s of aggregated?.series ?? []) {
    series.set(s.metric, s.points.map((p) => [p.ts, p.value, p.min ?? p.value, p.max ?? p.value] as [number, number, number, number]));
  }
  for (const s of raw.series) {
    const points = series.get(s.metric) ?? [];
    const times = new Float64Array(s.points.length);
    for (let i = 0; i < s.points.length; i++) {
      const p = s.points[i]!;
      points.push([p.ts, p.value]);
      times[i] = p.ts;
    }
    series.set(s.metric, points);
    rawTimes.set(s.metric, times.sort()); // the store answers in time order; sorted all the same, for the search
  }
  const frame: LiveHistory = {
    type: 'history',
    id: request.id,
    device: request.device,
    from,
    to,
    mode: aggregated === undefined ? 'raw' : 'aggregate',
    series: [...series].map(([metric, points]) => {
      const levels = trust.get(metric);
      return levels === undefined ? { metric, points } : { metric, points, trust: [...levels].sort() };
    }),
  };
  if (aggregated !== undefined) {
    if (aggregated.every !== undefined) frame.every = aggregated.every;
    frame.rawFrom = raw.from;
  }
  // A raw part the store cut (more points than LIVE_HISTORY_RAW_CAP in the last seconds) is said so,
  // never sent as if it were whole: the frame holds [from, nextFrom) of every series, none after.
  if (raw.truncated) {
    frame.truncated = true;
    if (raw.nextFrom !== undefined) frame.nextFrom = raw.nextFrom;
  }
  return { frame, seen: new SeenReadings(rawTimes), rawFrom: aggregated === undefined ? Number.NEGATIVE_INFINITY : raw.from };
}

/** Keeps only the given metrics of a reading; undefined when none is left. */
export function filterValues(reading: LiveReading, metrics: ReadonlySet<string> | undefined): LiveReading | undefined {
  if (metrics === undefined) return reading;
  let values: Record<string, number> | undefined;
  for (const metric in reading[3]) if (metrics.has(metric)) (values ??= {})[metric] = reading[3][metric]!;
  return values === undefined ? undefined : withValues(reading, values);
}

/**
 * The readings to send live after the history: held-back ones and the ring's, each (metric, ts) once
 * and only if the history does not have it, in timestamp order. `seen` then holds every identity sent
 * so far: live readings that arrive later still pass through it for a while, because under load the
 * live feed can lag the store, and a reading stored before the query may reach the display after it.
 */
export function readingsAfterHistory(
  history: JoinedHistory,
  metrics: ReadonlySet<string> | undefined,
  recent: LiveReading[],
  held: LiveReading[],
): { readings: LiveReading[]; seen: SeenReadings } {
  const seen = history.seen.fork();
  const out: LiveReading[] = [];
  const take = (reading: LiveReading, fromRing: boolean) => {
    if (reading[2] < history.frame.from || (fromRing && reading[2] < history.rawFrom)) return;
    const wanted = metrics === undefined ? reading : filterValues(reading, metrics);
    const fresh = wanted === undefined ? undefined : unseen(wanted, seen);
    if (fresh !== undefined) out.push(fresh);
  };
  for (const reading of recent) take(reading, true);
  for (const reading of held) take(reading, false);
  return { readings: out.sort((a, b) => a[2] - b[2]), seen };
}

/** Drops from a live reading the metrics already sent (by identity); undefined when nothing is left. */
export function unseen(reading: LiveReading, seen: SeenReadings): LiveReading | undefined {
  let values: Record<string, number> | undefined;
  for (const metric in reading[3]) {
    if (!seen.take(metric, reading[2])) continue;
    (values ??= {})[metric] = reading[3][metric]!;
  }
  return values === undefined ? undefined : withValues(reading, values);
}
