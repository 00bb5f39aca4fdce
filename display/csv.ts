/**
 * The CSV export of a device's history (`GET /api/devices/{id}/readings?format=csv`), in long format:
 * one row per point, so any set of metrics fits one header.
 *
 * Raw (`mode=raw`): every stored point of the range, whatever its length, streamed from the store a page
 * at a time (the store port's rawPage, keyset-paginated on (ts, metric)), rows in time order. Memory is
 * one page and one chunk, whatever the range: the next page is read only once the last one's rows were
 * taken by the socket (or the compressor), so a slow reader slows the reads instead of filling memory,
 * and a reader that goes away ends them. Each page is a load of its own in the fleet-wide history gate
 * (history-gate.ts): a ten-minute download does not hold a slot for ten minutes, which would lock
 * everyone out after a few downloads; it queues for one per page behind whoever asked first, and once
 * it has started it waits its turn rather than being refused (a refusal would cut a file half sent).
 * The first page is read before the answer starts, so a busy or failed store is still a 503; a failure
 * later can only end the body early, which HTTP reports as an incomplete answer, never a short file.
 *
 * Aggregated (the default): the windows of one query, labelled in the header itself:
 * `time,ts,metric,mean_1m,low_1m,high_1m` names the function and the window of the value column, and
 * the window's envelope (its least and greatest value). A header is what pandas.read_csv and
 * spreadsheets read without options, where a `# aggregated …` comment line would be a data row to a
 * spreadsheet and need `comment='#'` in pandas. The envelope is `low`/`high`, not `min`/`max`, so that
 * `fn=min` does not give two `min_1m` columns (pandas would rename one `min_1m.1`). The file name says
 * which it is too: `{device}-raw-{from}-{to}.csv` or `{device}-aggregated-mean-1m-{from}-{to}.csv`.
 * Rows of both are in time order, the metrics of one time together.
 */
import type { Writable } from 'node:stream';
import type { HistoryParams } from '../core/query.ts';
import type { QueryResult, RawCursor, RawPage, RawRow, TimeSeriesStore } from '../store/index.ts';
import type { HistoryGate } from './history-gate.ts';

/** Points per page read from the store for a raw export. */
export const CSV_PAGE_POINTS = 5000;
/** An aggregated export is compressed from this many rows on (a raw export always, its size unknown). */
export const CSV_COMPRESS_MIN_ROWS = 32;
/** Text handed to the socket at once: big enough to keep it busy, small enough to bound memory. */
const CHUNK_CHARS = 64 * 1024;

/** Where an export goes: the HTTP answer, as display/http.ts sets it up. */
export interface CsvOut {
  /** Sends the status and headers (with `compress`: gzip, when the client takes it); the body goes to the returned stream. */
  begin(headers: Record<string, string>, compress: boolean): Writable;
  /** False for HEAD: the headers are the answer. */
  bodyWanted: boolean;
  /** Aborted once the client has gone. */
  signal: AbortSignal;
  /** The body could not be finished (the store failed mid-way): ends the answer as incomplete. */
  fail(err: unknown): void;
}

/** `60000` → `1m`, `1500` → `1500ms`: the largest unit that divides the window (core/duration.ts reads it back). */
export function windowLabel(ms: number): string {
  for (const [unit, size] of [['w', 604_800_000], ['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms >= size && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}

function isoTime(ts: number): string {
  return new Date(ts).toISOString();
}

/** A file name stamp: basic ISO 8601 (`20260105T120000000Z`): no `:` (not allowed on Windows), no `-` (the separator). */
function stamp(ts: number): string {
  return isoTime(ts).replace(/[-:.]/g, '');
}

/** The export's file name; `label` is `raw` or `aggregated-{fn}-{window}`. Device ids are slugs: safe in a header. */
export function csvFilename(device: string, label: string, from: number, to: number): string {
  return `${device}-${label}-${stamp(from)}-${stamp(to)}.csv`;
}

function csvHeaders(filename: string): Record<string, string> {
  return { 'content-type': 'text/csv; charset=utf-8', 'content-disposition': `attachment; filename="${filename}"` };
}

/** Writes `text`, waiting for the sink to drain (or to be gone: a client that left never drains it). */
export function writeWithBackpressure(sink: Writable, text: string): Promise<void> {
  if (sink.destroyed) return Promise.resolve();
  if (sink.write(text)) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const done = () => {
      sink.off('drain', done);
      sink.off('close', done);
      resolve();
    };
    sink.once('drain', done);
    sink.once('close', done);
  });
}

/** Writes rows in chunks, each once the sink has taken the last; stops early once the client has gone. */
async function writeRows(sink: Writable, signal: AbortSignal, rows: Iterable<string>): Promise<void> {
  let chunk = '';
  for (const row of rows) {
    chunk += row;
    if (chunk.length >= CHUNK_CHARS) {
      await writeWithBackpressure(sink, chunk);
      chunk = '';
      if (signal.aborted) return;
    }
  }
  if (chunk !== '') await writeWithBackpressure(sink, chunk);
}

function* rawLines(rows: readonly RawRow[]): Generator<string> {
  for (const row of rows) yield `${isoTime(row.ts)},${row.ts},${row.metric},${row.value}\n`;
}

export const RAW_CSV_HEADER = 'time,ts,metric,value\n';

/** The header of an aggregated export: the function and window name each value column. */
export function aggregatedCsvHeader(fn: string, every: number): string {
  const window = windowLabel(every);
  return `time,ts,metric,${fn}_${window},low_${window},high_${window}\n`;
}

export interface RawCsvRequest {
  store: Pick<TimeSeriesStore, 'rawPage'>;
  history: HistoryGate;
  params: HistoryParams;
  out: CsvOut;
  pagePoints?: number;
}

/** Streams every raw point of the request's range as CSV (see the header comment). */
export async function sendRawCsv({ store, history, params, out, pagePoints = CSV_PAGE_POINTS }: RawCsvRequest): Promise<void> {
  const { device, metrics, from, to } = params;
  const read = (after: RawCursor | undefined, patient: boolean): Promise<RawPage> =>
    history.run(
      'http',
      () => store.rawPage({ device, ...(metrics === undefined ? {} : { metrics }), from, to, ...(after === undefined ? {} : { after }), limit: pagePoints, signal: out.signal }),
      out.signal,
      { patient },
    );
  let page = await read(undefined, false);
  const sink = out.begin(csvHeaders(csvFilename(device, 'raw', from, to)), true);
  if (!out.bodyWanted) {
    sink.end();
    return;
  }
  try {
    await writeWithBackpressure(sink, RAW_CSV_HEADER);
    for (;;) {
      await writeRows(sink, out.signal, rawLines(page.rows));
      if (out.signal.aborted) return; // the client has gone: read no further
      if (page.next === undefined) break;
      page = await read(page.next, true);
    }
    sink.end();
  } catch (err) {
    if (out.signal.aborted) return;
    out.fail(err);
  }
}

/** Writes one aggregated answer as CSV, labelled (see the header comment). */
export async function sendAggregatedCsv(out: CsvOut, result: QueryResult): Promise<void> {
  const fn = result.fn ?? 'mean';
  const every = result.every ?? 0;
  const rows = result.series.reduce((sum, series) => sum + series.points.length, 0);
  const sink = out.begin(csvHeaders(csvFilename(result.device, `aggregated-${fn}-${windowLabel(every)}`, result.from, result.to)), rows >= CSV_COMPRESS_MIN_ROWS);
  if (!out.bodyWanted) {
    sink.end();
    return;
  }
  await writeWithBackpressure(sink, aggregatedCsvHeader(fn, every));
  // By time, then metric, as a raw export: the windows of one time stay together.
  const lines: [number, string, string][] = [];
  for (const series of result.series) {
    for (const p of series.points) lines.push([p.ts, series.metric, `${isoTime(p.ts)},${p.ts},${series.metric},${p.value},${p.min ?? ''},${p.max ?? ''}\n`]);
  }
  lines.sort((a, b) => a[0] - b[0] || (a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0));
  await writeRows(sink, out.signal, lines.map((line) => line[2]));
  sink.end();
}
