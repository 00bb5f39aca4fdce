/**
 * Server frames from /live, checked by hand. The schemas in core/live.ts are the contract; importing
 * zod into the page would triple the bundle, so the page imports only their types and checks here the
 * few properties it relies on. A frame that fails is dropped (and logged), never half-applied.
 */
import type { LiveServerFrame } from '../../../core/live.ts';

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);
const isString = (value: unknown): value is string => typeof value === 'string';
const isNumber = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value);

/** [device, seq, ts, values], and a fifth element "broker" for an unsigned reading (core/live.ts). */
function isReading(item: unknown): boolean {
  return Array.isArray(item) && (item.length === 4 || (item.length === 5 && item[4] === 'broker')) && isString(item[0]) && isNumber(item[1]) && isNumber(item[2]) && isObject(item[3]);
}

function isHistoryPoint(point: unknown): boolean {
  return Array.isArray(point) && (point.length === 2 || point.length === 4) && point.every(isNumber);
}

function isSeries(series: unknown): boolean {
  return isObject(series) && isString(series.metric) && Array.isArray(series.points) && series.points.every(isHistoryPoint);
}

const CHECKS: Record<LiveServerFrame['type'], (frame: Json) => boolean> = {
  welcome: (f) => isNumber(f.serverTime),
  subscribed: (f) => isString(f.id),
  unsubscribed: (f) => isString(f.id),
  history: (f) =>
    isString(f.id) && isString(f.device) && isNumber(f.from) && isNumber(f.to) && Array.isArray(f.series) && f.series.every(isSeries) &&
    (f.truncated === undefined || f.truncated === true) && (f.nextFrom === undefined || isNumber(f.nextFrom)),
  readings: (f) => Array.isArray(f.items) && f.items.every(isReading),
  status: (f) => isString(f.device) && (f.state === 'online' || f.state === 'offline') && isNumber(f.since),
  error: (f) => isString(f.code) && isString(f.message),
};

/** The frame, or null when it is not JSON or not a frame this page understands. */
export function parseServerFrame(text: string): LiveServerFrame | null {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (!isObject(value) || !isString(value.type) || !Object.hasOwn(CHECKS, value.type)) return null;
  const check = CHECKS[value.type as LiveServerFrame['type']];
  return check(value) ? (value as unknown as LiveServerFrame) : null;
}
