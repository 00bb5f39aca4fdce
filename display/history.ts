/**
 * History for a live subscription, joined to the live feed without gap or overlap.
 *
 * The store lags the live feed a little (ingest publishes a reading when it is verified and writes it
 * within a batch delay), so the last seconds come from a ring of recently verified readings as well as
 * from the store. Raw history is used when the range holds few enough points; otherwise the range is
 * aggregated up to `now - RECENT_MS` and raw after that, so the join with live is always raw and is
 * deduplicated exactly on (metric, ts). The caller drops every held-back live reading whose identity
 * is in `seen`.
 */
import type { LiveHistory, LiveReading } from '../core/live.ts';
import type { AggregateFunction } from '../core/query.ts';
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

export interface JoinedHistory {
  frame: LiveHistory;
  /** `${metric}@${ts}` of every raw point in the frame. */
  seen: Set<string>;
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
    store.query({ ...base, from: rawFrom, to, mode: 'raw', maxPoints: 10_000 }),
  ]);
  return join(request, from, to, tail, aggregated);
}

function join(request: HistoryRequest, from: number, to: number, raw: QueryResult, aggregated: QueryResult | undefined): JoinedHistory {
  const seen = new Set<string>();
  const series = new Map<string, LiveHistory['series'][number]['points']>();
  for (const s of aggregated?.series ?? []) {
    series.set(s.metric, s.points.map((p) => [p.ts, p.value, p.min ?? p.value, p.max ?? p.value] as [number, number, number, number]));
  }
  for (const s of raw.series) {
    const points = series.get(s.metric) ?? [];
    for (const p of s.points) {
      points.push([p.ts, p.value]);
      seen.add(`${s.metric}@${p.ts}`);
    }
    series.set(s.metric, points);
  }
  const frame: LiveHistory = {
    type: 'history',
    id: request.id,
    device: request.device,
    from,
    to,
    mode: aggregated === undefined ? 'raw' : 'aggregate',
    series: [...series].map(([metric, points]) => ({ metric, points })),
  };
  if (aggregated !== undefined) {
    if (aggregated.every !== undefined) frame.every = aggregated.every;
    frame.rawFrom = raw.from;
  }
  return { frame, seen, rawFrom: aggregated === undefined ? Number.NEGATIVE_INFINITY : raw.from };
}

/** Keeps only the given metrics of a reading; undefined when none is left. */
export function filterValues(reading: LiveReading, metrics: ReadonlySet<string> | undefined): LiveReading | undefined {
  if (metrics === undefined) return reading;
  let values: Record<string, number> | undefined;
  for (const metric in reading[3]) if (metrics.has(metric)) (values ??= {})[metric] = reading[3][metric]!;
  return values === undefined ? undefined : [reading[0], reading[1], reading[2], values];
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
): { readings: LiveReading[]; seen: Set<string> } {
  const seen = new Set(history.seen);
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
export function unseen(reading: LiveReading, seen: Set<string>): LiveReading | undefined {
  let values: Record<string, number> | undefined;
  for (const metric in reading[3]) {
    const key = `${metric}@${reading[2]}`;
    if (seen.has(key)) continue;
    seen.add(key);
    (values ??= {})[metric] = reading[3][metric]!;
  }
  return values === undefined ? undefined : [reading[0], reading[1], reading[2], values];
}
