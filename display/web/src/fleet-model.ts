/**
 * The fleet overview's state, apart from the DOM: one entry per device, updated by the API snapshot and
 * by live frames, and the filter that decides which devices are shown. Pure, so it is unit-tested.
 */
import type { DeviceSummary } from '../../../core/api.ts';

export interface LatestValue {
  ts: number;
  value: number;
}

export interface FleetDevice {
  id: string;
  registered: 'active' | 'revoked';
  /** `broker`: a broker-authenticated device, whose readings are unsigned (marked in the table). */
  trust: 'signed' | 'broker';
  /** Units a pointers mapping gives the device's metrics (shown instead of the built-in table's). */
  units: Record<string, string>;
  site: string;
  model: string;
  profile: string;
  state: 'online' | 'offline';
  /** When `state` began (ms), if known. */
  since: number | null;
  lastSeen: number | null;
  latest: Map<string, LatestValue>;
  completeness: number | null;
  /** Readings accepted, duplicates, rejections by reason, from ingest (null until reported). */
  counts: DeviceSummary['counts'];
  /** Lower-cased id, site and model: what the search box matches against. */
  searchText: string;
}

export interface FleetFilter {
  text: string;
  status: '' | 'online' | 'offline' | 'revoked';
  site: string;
  profile: string;
}

export const NO_FILTER: FleetFilter = { text: '', status: '', site: '', profile: '' };

export function emptyDevice(id: string): FleetDevice {
  return { id, registered: 'active', trust: 'signed', units: {}, site: '', model: '', profile: '', state: 'offline', since: null, lastSeen: null, latest: new Map(), completeness: null, counts: null, searchText: id };
}

/** Newer wins: a value only replaces one with an older (or equal) timestamp, whichever path it came by. */
export function applyValue(device: FleetDevice, metric: string, ts: number, value: number): boolean {
  const current = device.latest.get(metric);
  if (current !== undefined && current.ts > ts) return false;
  device.latest.set(metric, { ts, value });
  if (device.lastSeen === null || ts > device.lastSeen) device.lastSeen = ts;
  return true;
}

/** A status change; an older one (a snapshot taken before a live frame) does not undo a newer. */
export function applyStatus(device: FleetDevice, state: 'online' | 'offline', since: number | null): void {
  if (since !== null && device.since !== null && since < device.since) return;
  device.state = state;
  device.since = since;
  if (since !== null && (device.lastSeen === null || since > device.lastSeen)) device.lastSeen = since;
}

/** Folds an API summary into the device (a snapshot may be older than the live values already shown). */
export function applySummary(device: FleetDevice, summary: DeviceSummary): void {
  device.registered = summary.registered;
  device.trust = summary.trust === 'broker' ? 'broker' : 'signed';
  device.units = summary.units ?? {};
  device.site = summary.meta.site ?? '';
  device.model = summary.meta.model ?? '';
  device.profile = summary.meta.profile ?? '';
  applyStatus(device, summary.state, summary.since);
  device.completeness = summary.completeness?.ratio ?? null;
  device.counts = summary.counts ?? null;
  device.searchText = `${device.id} ${device.site} ${device.model}`.toLowerCase();
  for (const [metric, latest] of Object.entries(summary.latest)) applyValue(device, metric, latest.ts, latest.value);
  if (summary.lastSeen !== null && (device.lastSeen === null || summary.lastSeen > device.lastSeen)) device.lastSeen = summary.lastSeen;
}

export function matchesFilter(device: FleetDevice, filter: FleetFilter): boolean {
  if (filter.text !== '' && !device.searchText.includes(filter.text.toLowerCase())) return false;
  if (filter.status === 'revoked' ? device.registered !== 'revoked' : filter.status !== '' && device.state !== filter.status) return false;
  if (filter.site !== '' && device.site !== filter.site) return false;
  if (filter.profile !== '' && device.profile !== filter.profile) return false;
  return true;
}
