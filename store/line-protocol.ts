/**
 * Line protocol for our InfluxDB schema (store/SCHEMA.md): measurement `readings`, tags `device`, `model`,
 * `profile`, `site`, one float field per metric, millisecond timestamps. Points of one device, one time
 * and one tag set share a line, so a reading with 4 metrics is one line of 4 fields.
 *
 * Escaping uses the `influx` library (space, comma, equals). InfluxDB 1.x cannot carry every string in a
 * tag value, though: it does not unescape `\\` (a backslash before a space, comma or equals sign, or at
 * the end, breaks the line) and it has no escape for a newline. Such values — any value holding a
 * backslash or a control character, or starting with our marker — are written as the marker `%:`
 * followed by the value percent-encoded (encodeURIComponent), and decoded on the way back. Every other
 * value (spaces, commas, quotes, non-ASCII…) is stored as is, so Grafana shows it as written.
 */
import influx from 'influx';
import type { DeviceMeta } from '../core/schemas.ts';
import type { StorePoint } from './port.ts';

const { escape } = influx;

export const MEASUREMENT = 'readings';
export const META_TAGS = ['model', 'profile', 'site'] as const satisfies readonly (keyof DeviceMeta)[];

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

function tagSet(point: StorePoint): string {
  let tags = `device=${escape.tag(point.device)}`;
  const meta = point.meta;
  if (meta !== undefined) {
    for (const key of META_TAGS) {
      const value = meta[key];
      if (value !== undefined) tags += `,${key}=${escape.tag(encodeTagValue(value))}`;
    }
  }
  return tags;
}

/**
 * Groups points into lines (same device, tags and time). `indexes` selects which points of `points` to
 * write. Metric names are lowercase slugs and device ids are slugs (checked before), so only tag
 * values really need escaping; they are escaped anyway.
 */
export function toLines(points: readonly StorePoint[], indexes: readonly number[]): Line[] {
  const byKey = new Map<string, { tags: string; ts: number; fields: string[]; indexes: number[] }>();
  for (const i of indexes) {
    const point = points[i]!;
    const tags = tagSet(point);
    const key = `${tags} ${point.ts}`;
    let line = byKey.get(key);
    if (line === undefined) {
      line = { tags, ts: point.ts, fields: [], indexes: [] };
      byKey.set(key, line);
    }
    // String(number) is the shortest text that parses back to the same double (integers stay floats: no `i`).
    line.fields.push(`${escape.tag(point.metric)}=${String(point.value)}`);
    line.indexes.push(i);
  }
  const lines: Line[] = [];
  for (const line of byKey.values()) lines.push({ text: `${MEASUREMENT},${line.tags} ${line.fields.join(',')} ${line.ts}`, indexes: line.indexes });
  return lines;
}

/** Splits a line of several fields into one line per field (to find which field a store refuses). */
export function splitFields(points: readonly StorePoint[], line: Line): Line[] {
  return line.indexes.map((i) => toLines(points, [i])[0]!);
}
