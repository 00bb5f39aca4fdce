/**
 * Line protocol for our InfluxDB schema (store/SCHEMA.md): measurement `readings`, tags `device`, `model`,
 * `profile`, `site`, `trust` (`signed` or `broker`), one float field per metric, millisecond timestamps. Points of one device, one time
 * and one tag set share a line, so a reading with 4 metrics is one line of 4 fields.
 *
 * Escaping uses the `influx` library (space, comma, equals). InfluxDB 1.x cannot carry every string in a
 * tag value, though: it does not unescape `\\` (a backslash before a space, comma or equals sign, or at
 * the end, breaks the line) and it has no escape for a newline. Such values — any value holding a
 * backslash or a control character, or starting with our marker — are written as the marker `%:`
 * followed by the value percent-encoded (encodeURIComponent), and decoded on the way back. Every other
 * value (spaces, commas, quotes, non-ASCII…) is stored as is, so Grafana shows it as written.
 *
 * A reading's seq goes on its line as the integer field `reading-seq` (SEQ_FIELD). The name cannot be a
 * metric's — metric names are lowercase letters, digits and underscores (core/limits.ts) — so it never
 * collides with one, and, unlike a `_`-prefixed name, InfluxDB 2.x/3.x do not reserve it.
 */
import influx from 'influx';
import type { DeviceMeta } from '../core/schemas.ts';
import type { StorePoint } from './port.ts';

const { escape } = influx;

export const MEASUREMENT = 'readings';
export const META_TAGS = ['model', 'profile', 'site'] as const satisfies readonly (keyof DeviceMeta)[];
/** The integer field that holds a reading's seq (store/SCHEMA.md); not a metric. */
export const SEQ_FIELD = 'reading-seq';
/**
 * The tag that says how a reading was authenticated: `signed` or `broker` (core/PROTOCOL.md §7). Last
 * in the tag set (tags sorted by key), so a broker tag set is the signed one with another last value.
 */
export const TRUST_TAG = 'trust';
const SIGNED_SUFFIX = `,${TRUST_TAG}=signed`;
const BROKER_SUFFIX = `,${TRUST_TAG}=broker`;

const ENCODED_PREFIX = '%:';
const NEEDS_ENCODING = /[\\\u0000-\u001f\u007f]/;

/** The tag value as written: plain when line protocol carries it intact, else `%:` + percent-encoding. */
export function encodeTagValue(value: string): string {
  if (NEEDS_ENCODING.test(value) || value.startsWith(ENCODED_PREFIX)) return ENCODED_PREFIX + encodeURIComponent(value);
  return value;
}

/** The inverse of encodeTagValue, for values read back from InfluxDB. */
export function decodeTagValue(stored: string): string {
  if (!stored.startsWith(ENCODED_PREFIX)) return stored;
  try {
    return decodeURIComponent(stored.slice(ENCODED_PREFIX.length));
  } catch {
    return stored; // written by someone else; show it as stored
  }
}

/** One line: its text and the indexes (into the caller's batch) of the points whose fields it holds. */
export interface Line {
  text: string;
  indexes: number[];
}

/**
 * Tag sets by (device, site, model, profile): escaping and encoding cost more than the rest of a line,
 * and a batch holds few distinct tag sets. Looked up first by the metadata object itself (ingest hands
 * the registry's object to every point of a device, so this is usually a hit without building a key),
 * then by value. Bounded: cleared when it grows past TAG_CACHE_MAX.
 */
const tagsByMeta = new WeakMap<DeviceMeta, Map<string, string>>();
const tagsByValue = new Map<string, string>();
const TAG_CACHE_MAX = 10_000;

/** Broker tag sets by their signed tag set (broker-authenticated devices are few). */
const brokerTags = new Map<string, string>();

/** The tag set of a point, with its trust: cached, so the trust tag costs a signed point nothing. */
function tagSet(point: StorePoint): string {
  const signed = signedTagSet(point);
  if (point.trust === undefined) return signed;
  let tags = brokerTags.get(signed);
  if (tags === undefined) {
    tags = signed.slice(0, -SIGNED_SUFFIX.length) + BROKER_SUFFIX;
    if (brokerTags.size >= TAG_CACHE_MAX) brokerTags.clear();
    brokerTags.set(signed, tags);
  }
  return tags;
}

function signedTagSet(point: StorePoint): string {
  const meta = point.meta;
  const byDevice = meta === undefined ? undefined : tagsByMeta.get(meta);
  const hit = byDevice?.get(point.device);
  if (hit !== undefined) return hit;
  // Empty meta values are refused before this point, so '' can stand for "absent".
  const key = meta === undefined ? point.device : `${point.device}\u0000${meta.model ?? ''}\u0000${meta.profile ?? ''}\u0000${meta.site ?? ''}`;
  let tags = tagsByValue.get(key);
  if (tags === undefined) {
    tags = `device=${escape.tag(point.device)}`;
    if (meta !== undefined) {
      for (const name of META_TAGS) {
        const value = meta[name];
        if (value !== undefined) tags += `,${name}=${escape.tag(encodeTagValue(value))}`;
      }
    }
    tags += SIGNED_SUFFIX;
    if (tagsByValue.size >= TAG_CACHE_MAX) tagsByValue.clear();
    tagsByValue.set(key, tags);
  }
  if (meta !== undefined) {
    if (byDevice === undefined) tagsByMeta.set(meta, new Map([[point.device, tags]]));
    else if (byDevice.size < 64) byDevice.set(point.device, tags);
  }
  return tags;
}

/**
 * Turns points into lines. Consecutive points of one device, tag set and time (the metrics of one
 * reading) share a line; others get their own. Grouping only neighbours is enough, and allocates
 * nothing per point: InfluxDB merges the fields of several lines with the same series and time, so two
 * lines for one reading store exactly what one line would. `indexes` selects the points to write.
 * Metric names are checked lowercase slugs (a-z, 0-9, _), which line protocol carries unescaped.
 */
export function toLines(points: readonly StorePoint[], indexes: readonly number[]): Line[] {
  const lines: Line[] = [];
  let head = '';
  let ts = Number.NaN;
  let fields = '';
  let seq: number | undefined;
  let members: number[] = [];
  // The seq field goes last: the seq of the line's last point that has one (the last reading written wins).
  const line = () => `${MEASUREMENT},${head} ${fields}${seq === undefined ? '' : `,${SEQ_FIELD}=${seq}i`} ${ts}`;
  for (const i of indexes) {
    const point = points[i]!;
    const tags = tagSet(point);
    if (point.ts === ts && tags === head) {
      // String(number) is the shortest text that parses back to the same double (integers stay floats).
      fields += `,${point.metric}=${String(point.value)}`;
      if (point.seq !== undefined) seq = point.seq;
      members.push(i);
      continue;
    }
    if (members.length > 0) lines.push({ text: line(), indexes: members });
    head = tags;
    ts = point.ts;
    fields = `${point.metric}=${String(point.value)}`;
    seq = point.seq;
    members = [i];
  }
  if (members.length > 0) lines.push({ text: line(), indexes: members });
  return lines;
}

/** Splits a line of several fields into one line per field (to find which field a store refuses). */
export function splitFields(points: readonly StorePoint[], line: Line): Line[] {
  return line.indexes.map((i) => toLines(points, [i])[0]!);
}

/** Outcome of posting lines: written, or refused for good (a retryable failure throws instead). */
export type PostOutcome = { ok: true } | { ok: false; message: string };

/**
 * Posts lines; when the server refuses some (HTTP 400/422), narrows down to the exact refused points by
 * re-posting halves, then single fields of a refused line. Safe because writes are idempotent: lines
 * the server already took are simply written again. With k bad points in n lines this costs about
 * 2·k·log2(n) extra requests, paid only when a batch holds bad points.
 */
export async function postNarrowing(
  points: readonly StorePoint[],
  lines: Line[],
  post: (lines: Line[]) => Promise<PostOutcome>,
  refused: { index: number; message: string }[],
): Promise<void> {
  const outcome = await post(lines);
  if (outcome.ok) return;
  if (lines.length === 1) {
    const line = lines[0]!;
    if (line.indexes.length === 1) {
      refused.push({ index: line.indexes[0]!, message: outcome.message });
      return;
    }
    // A refused line is refused whole; find out which of its fields caused it.
    for (const single of splitFields(points, line)) await postNarrowing(points, [single], post, refused);
    return;
  }
  const half = Math.ceil(lines.length / 2);
  await postNarrowing(points, lines.slice(0, half), post, refused);
  await postNarrowing(points, lines.slice(half), post, refused);
}

/**
 * Milliseconds to wait from a Retry-After header (RFC 9110 §10.2.3: delay-seconds or an HTTP date), or
 * undefined when there is none or it does not parse. Shared by the InfluxDB adapters, which hand it to
 * ingest as the error's `retryAfterMs`.
 */
export function retryAfterMs(header: string | null | undefined, now: number): number | undefined {
  if (header === null || header === undefined) return undefined;
  const text = header.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  // An HTTP date always ends in GMT; Date.parse alone takes almost anything ("-5" is a date to V8).
  const at = text.endsWith('GMT') ? Date.parse(text) : Number.NaN;
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}
