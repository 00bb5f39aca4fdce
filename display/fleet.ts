/**
 * What the display knows about every device: registry metadata, online state (the retained status
 * topics), newest value per metric (seeded from the store, then from the live feed) and completeness
 * (from ingest). Answers /api/devices; pure state, no I/O.
 */
import type { DeviceAlertsSummary, DevicesQuery, DeviceSummary } from '../core/api.ts';
import { unitsOf, type PayloadFormat } from '../core/mappings.ts';
import type { Registry } from '../core/registry.ts';
import type { CompletenessMessage, DeviceCountsMessage, DeviceMeta, StatusMessage, VerifiedReadings } from '../core/schemas.ts';
import type { DeviceLatestValue } from '../store/index.ts';

interface DeviceState {
  registered: 'active' | 'revoked';
  /** From the registry: a broker-authenticated device's readings are `broker`. */
  trust: DeviceSummary['trust'];
  payload: PayloadFormat | undefined;
  /** A signed device's signature algorithm. */
  alg: 'hmac-sha256' | 'ed25519' | undefined;
  units: Record<string, string> | undefined;
  meta: DeviceMeta;
  state: 'online' | 'offline';
  since: number | null;
  lastSeen: number | null;
  latest: Map<string, { ts: number; value: number }>;
  completeness: DeviceSummary['completeness'];
  /** From ingest's retained pipeline/counts/{id}. */
  counts: DeviceSummary['counts'];
  /** When ingest counted what `counts` holds (ms). */
  countsAt: number | null;
  /** Lower-cased id, site and model, for text search. */
  haystack: string;
}

export class FleetState {
  private readonly devices = new Map<string, DeviceState>();

  /** `alertsOf`: a device's alerts line (display/alerts.ts keeps them), read when a summary is made. */
  constructor(private readonly alertsOf: (id: string) => DeviceAlertsSummary | undefined = () => undefined) {}

  /** Follows the registry: new devices appear, revoked ones are marked, removed ones go. */
  setRegistry(registry: Registry): void {
    const seen = new Set<string>();
    for (const record of registry.list()) {
      seen.add(record.id);
      const device = this.devices.get(record.id) ?? this.newDevice();
      device.registered = record.status;
      device.trust = record.trust === 'broker-authenticated' ? 'broker' : 'signed';
      device.payload = record.payload?.format;
      device.alg = record.signing.alg === 'none' ? undefined : record.signing.alg;
      device.units = unitsOf(record.payload);
      device.meta = record.meta;
      device.haystack = [record.id, record.meta.site ?? '', record.meta.model ?? ''].join('\n').toLowerCase();
      this.devices.set(record.id, device);
    }
    for (const id of this.devices.keys()) if (!seen.has(id)) this.devices.delete(id);
  }

  has(id: string): boolean {
    return this.devices.has(id);
  }

  /** Newest values from the store, taken at start-up; live readings overwrite them. */
  seedLatest(values: DeviceLatestValue[]): void {
    for (const { device: id, metric, ts, value } of values) {
      const device = this.devices.get(id);
      if (device === undefined) continue;
      this.setLatest(device, metric, ts, value);
    }
  }

  /** Applies a status message; returns true when the device's state changed. */
  applyStatus(message: StatusMessage): boolean {
    const device = this.devices.get(message.device);
    if (device === undefined) return false;
    // Retained messages and the device's own status may arrive out of order: the newest wins.
    if (device.since !== null && message.since < device.since) return false;
    const changed = device.state !== message.state;
    device.state = message.state;
    device.since = message.since;
    device.lastSeen = Math.max(device.lastSeen ?? 0, message.since);
    return changed;
  }

  applyReadings(message: VerifiedReadings): void {
    const device = this.devices.get(message.device);
    if (device === undefined) return;
    for (const reading of message.readings) {
      for (const metric in reading.values) this.setLatest(device, metric, reading.ts, reading.values[metric]!);
    }
  }

  applyCompleteness(message: CompletenessMessage): void {
    const device = this.devices.get(message.device);
    if (device !== undefined) device.completeness = { received: message.received, missing: message.missing, ratio: message.ratio };
  }

  applyCounts(message: DeviceCountsMessage): void {
    const device = this.devices.get(message.device);
    // Ingest publishes them in order; a retained copy older than what is shown (a reconnect) changes nothing.
    if (device === undefined || (device.countsAt !== null && message.at < device.countsAt)) return;
    device.counts = { accepted: message.accepted, duplicates: message.duplicates, rejected: message.rejected, since: message.since };
    device.countsAt = message.at;
  }

  list(query: DevicesQuery = {}): { devices: DeviceSummary[]; total: number; online: number } {
    const devices: DeviceSummary[] = [];
    let online = 0;
    const text = query.q?.toLowerCase();
    for (const [id, device] of [...this.devices].sort(([a], [b]) => (a < b ? -1 : 1))) {
      if (device.state === 'online') online++;
      if (query.status === 'revoked' ? device.registered !== 'revoked' : query.status !== undefined && device.state !== query.status) continue;
      if (query.site !== undefined && device.meta.site !== query.site) continue;
      if (query.profile !== undefined && device.meta.profile !== query.profile) continue;
      if (text !== undefined && !device.haystack.includes(text)) continue;
      devices.push(summarise(id, device, this.alertsOf(id)));
    }
    return { devices, total: this.devices.size, online };
  }

  get(id: string): DeviceSummary | undefined {
    const device = this.devices.get(id);
    return device === undefined ? undefined : summarise(id, device, this.alertsOf(id));
  }

  private newDevice(): DeviceState {
    return { registered: 'active', trust: 'signed', alg: undefined, payload: undefined, units: undefined, meta: {}, state: 'offline', since: null, lastSeen: null, latest: new Map(), completeness: null, counts: null, countsAt: null, haystack: '' };
  }

  private setLatest(device: DeviceState, metric: string, ts: number, value: number): void {
    const current = device.latest.get(metric);
    if (current !== undefined && current.ts > ts) return; // a catch-up batch must not roll a value back
    device.latest.set(metric, { ts, value });
    if (device.lastSeen === null || ts > device.lastSeen) device.lastSeen = ts;
  }
}

function summarise(id: string, device: DeviceState, alerts: DeviceAlertsSummary | undefined): DeviceSummary {
  return {
    id,
    registered: device.registered,
    trust: device.trust,
    ...(device.alg === undefined ? {} : { alg: device.alg }),
    ...(device.payload === undefined ? {} : { payload: device.payload }),
    ...(device.units === undefined ? {} : { units: device.units }),
    meta: device.meta,
    state: device.state,
    since: device.since,
    lastSeen: device.lastSeen,
    latest: Object.fromEntries([...device.latest].sort(([a], [b]) => (a < b ? -1 : 1))),
    completeness: device.completeness,
    counts: device.counts,
    ...(alerts === undefined ? {} : { alerts }),
  };
}
