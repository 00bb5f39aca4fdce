/**
 * What InfluxDB holds, read straight from influxd with InfluxQL (not through our store adapter, which
 * collapses copies): per device, every point in a bounded time range, with how many series hold a
 * point at that time and the seq each copy carries. More than one copy of a (device, ts) is a duplicate
 * — InfluxDB overwrites a rewrite of the same series and time, so a second copy means a second tag set —
 * and so is a seq held at two times (a reading written again elsewhere), which reconcile.ts counts.
 */
import { SEQ_FIELD } from '../store/line-protocol.ts';

export interface StoredReading {
  copies: number;
  /** Field values by metric (of the last copy read); the seq field is not among them. */
  values: Record<string, number>;
  /** The seq field of each copy that has one (store/SCHEMA.md). */
  seqs: number[];
}

/** Per device: stored readings by ts. */
export type StoredByDevice = Map<string, Map<number, StoredReading>>;

interface InfluxAnswer {
  results: { error?: string; partial?: boolean; series?: { tags?: Record<string, string>; columns: string[]; values: (number | null)[][]; partial?: boolean }[] }[];
  error?: string;
}

/** Ten minutes of one device at a few readings a second stays far below any row limit. */
const WINDOW_MS = 10 * 60_000;
const READERS = 4;

async function query(url: string, database: string, q: string): Promise<InfluxAnswer> {
  const params = new URLSearchParams({ q, db: database, epoch: 'ms' });
  const response = await fetch(`${url}/query`, { method: 'POST', body: params, signal: AbortSignal.timeout(30_000) });
  if (!response.ok) throw new Error(`influx query failed: ${response.status} ${await response.text()}`);
  const answer = (await response.json()) as InfluxAnswer;
  const error = answer.error ?? answer.results.find((r) => r.error !== undefined)?.error;
  if (error !== undefined) throw new Error(`influx query failed: ${error}`);
  if (answer.results.some((r) => r.partial || r.series?.some((s) => s.partial))) throw new Error(`influx answered partially: ${q}`);
  return answer;
}

/**
 * Every stored point of each device in [from, to). The range is bounded on both sides and read in
 * windows; pass one wide enough to catch readings stored with wrong clocks (a month back, hours ahead).
 */
export async function readStored(url: string, database: string, devices: string[], from: number, to: number, recentFrom: number): Promise<StoredByDevice> {
  const result: StoredByDevice = new Map();
  // Far from the soak (where only misdated readings could be) one query; around the soak, windows.
  const windows: [number, number][] = [];
  if (recentFrom > from) windows.push([from, recentFrom]);
  for (let start = Math.max(from, recentFrom); start < to; start += WINDOW_MS) windows.push([start, Math.min(to, start + WINDOW_MS)]);
  for (const device of devices) result.set(device, new Map());
  // A few devices at a time: the overload generator adds hundreds of devices, one query per window each.
  let next = 0;
  const worker = async () => {
    while (next < devices.length) await readDevice(devices[next++]!);
  };
  const readDevice = async (device: string) => {
    const byTs = result.get(device)!;
    for (const [start, end] of windows) {
      const answer = await query(url, database, `SELECT * FROM "readings" WHERE "device" = '${device.replace(/'/g, "\\'")}' AND time >= ${start}ms AND time < ${end}ms GROUP BY *`);
      for (const series of answer.results[0]?.series ?? []) {
        const columns = series.columns;
        for (const row of series.values) {
          const ts = row[0] as number;
          const entry = byTs.get(ts) ?? { copies: 0, values: {}, seqs: [] };
          entry.copies++;
          for (let i = 1; i < columns.length; i++) {
            const value = row[i];
            if (typeof value !== 'number') continue;
            if (columns[i] === SEQ_FIELD) entry.seqs.push(value);
            else entry.values[columns[i]!] = value;
          }
          byTs.set(ts, entry);
        }
      }
    }
  };
  await Promise.all(Array.from({ length: READERS }, worker));
  return result;
}
