/**
 * The fan-out: readings from the pipeline are collected per device until the next tick; then every
 * client gets one `readings` frame with what it subscribed to. Clients that take everything unfiltered
 * share serialised fragments (a frame is built from per-device JSON made once per tick), so a thousand
 * viewers of the fleet cost one serialisation, not a thousand.
 *
 * A client whose socket does not drain (more than `slowBytes` unsent, whatever frames filled it) is
 * conflated: it keeps only the newest value per device and metric and the newest status per device,
 * the readings it missed are counted, and it gets the newest values once it drains, when the frames it
 * sent meanwhile are taken up again too (`drained`, live-protocol.ts). One that stays slow for `stuckMs`
 * is disconnected (liveness.ts). Nothing a slow client does delays the frames of others: sends never
 * wait, and nothing more than one conflated value per (device, metric) is kept for it.
 *
 * This runs for every client on every tick (1,000 viewers × 50 ticks/s): no closures, allocations or
 * indirections per client or per reading beyond the frame itself.
 */
import { LIVE_CLOSE, withValues, type LiveReading, type LiveServerFrame } from '../core/live.ts';
import { filterValues, unseen } from './history.ts';
import type { LiveClient } from './live-client.ts';
import type { Liveness } from './liveness.ts';
import type { DisplayMetrics } from './metrics.ts';

/**
 * Keeps only the newest value per (device, metric) of `reading` in `merged`; an older catch-up reading
 * never replaces a newer value. Returns how many values it replaced (the readings a slow client lost).
 */
export function conflate(merged: Map<string, LiveReading>, reading: LiveReading): number {
  let replaced = 0;
  for (const metric in reading[3]) {
    const key = `${reading[0]}\u0000${metric}`;
    const previous = merged.get(key);
    if (previous !== undefined) {
      if (previous[2] > reading[2]) continue;
      replaced++;
    }
    merged.set(key, withValues(reading, { [metric]: reading[3][metric]! }));
  }
  return replaced;
}

export class FanOut {
  /** Readings received since the last tick, by device. */
  private pending = new Map<string, LiveReading[]>();

  constructor(
    private readonly liveness: Liveness,
    private readonly options: {
      slowBytes: number;
      stuckMs: number;
      metrics: DisplayMetrics;
      /** A slow client is under the mark again (called once per slow spell, never on the hot path). */
      drained(client: LiveClient): void;
    },
  ) {}

  /** Queues a device's readings for the next tick. */
  add(device: string, readings: LiveReading[]): void {
    const pending = this.pending.get(device);
    if (pending === undefined) this.pending.set(device, readings);
    else for (const r of readings) pending.push(r);
  }

  /** Sends every open client what it gets of the readings since the last tick. */
  tick(): void {
    const readings = this.pending;
    this.pending = new Map();
    const now = Date.now();
    let fragments: Map<string, string> | undefined;
    let wholeFleetFrame: string | undefined;
    const fragmentOf = (device: string): string => {
      fragments ??= new Map();
      let fragment = fragments.get(device);
      if (fragment === undefined) {
        fragment = readings.get(device)!.map((r) => JSON.stringify(r)).join(',');
        fragments.set(device, fragment);
      }
      return fragment;
    };
    let totalReadings = 0;
    for (const list of readings.values()) totalReadings += list.length;

    for (const client of this.liveness.clients) {
      if (client.ws.readyState !== client.ws.OPEN) continue;
      // Slow: more than slowBytes unsent (see liveness.ts). Checked here, inline, on every tick.
      const slow = client.ws.bufferedAmount > this.options.slowBytes;
      if (slow) {
        client.slowSince ??= now;
        if (now - client.slowSince > this.options.stuckMs) {
          this.liveness.disconnect(client, 'slow', LIVE_CLOSE.slow, 'too slow: frames were not read');
          continue;
        }
      } else if (client.slowSince !== undefined) this.options.drained(client);
      // Statuses wait while the client is slow: the newest per device, sent once it drained.
      if (client.statuses.size > 0 && !slow) {
        for (const frame of client.statuses.values()) client.send(frame);
        client.statuses.clear();
      }

      if (client.simple && !slow && client.merged.size === 0 && client.carry.length === 0) {
        if (readings.size === 0) continue;
        if (client.wildcard) {
          wholeFleetFrame ??= `{"type":"readings","items":[${[...readings.keys()].map(fragmentOf).join(',')}]}`;
          client.sendRaw(wholeFleetFrame, totalReadings);
        } else {
          const parts: string[] = [];
          let count = 0;
          const mine = client.explicitDevices();
          // Walk the smaller side: a viewer of one device, or a tick with few devices.
          const candidates = mine.size < readings.size ? mine : readings.keys();
          for (const device of candidates) {
            const list = readings.get(device);
            if (list === undefined || !mine.has(device)) continue;
            parts.push(fragmentOf(device));
            count += list.length;
          }
          if (parts.length > 0) client.sendRaw(`{"type":"readings","items":[${parts.join(',')}]}`, count);
        }
        continue;
      }
      this.tickOne(client, readings, slow);
    }
  }

  /** The general path: filters, holds, `latest` subscriptions and conflation. */
  private tickOne(client: LiveClient, readings: Map<string, LiveReading[]>, slow: boolean): void {
    const items: LiveReading[] = client.carry;
    client.carry = [];
    const now = Date.now();
    for (const [device, sent] of client.sent) {
      if (sent.until < now) {
        client.sent.delete(device);
        client.changed();
      }
    }
    for (const [device, list] of readings) {
      const effective = client.effective(device);
      if (effective === null) continue;
      const held = client.holds.get(device);
      const seen = client.sent.get(device)?.seen;
      for (const reading of list) {
        let filtered = filterValues(reading, effective.metrics);
        if (filtered !== undefined && seen !== undefined) filtered = unseen(filtered, seen);
        if (filtered === undefined) continue;
        if (held !== undefined) held.push(filtered);
        else if (effective.latest) conflate(client.merged, filtered); // by request: nothing lost, nothing counted
        else items.push(filtered);
      }
    }
    if (slow) {
      let lost = 0;
      for (const reading of items) lost += conflate(client.merged, reading);
      if (lost > 0) {
        client.conflated += lost;
        this.options.metrics.liveConflated.inc(lost);
      }
      return;
    }
    for (const reading of client.merged.values()) items.push(reading);
    client.merged.clear();
    if (items.length === 0) return;
    const frame: LiveServerFrame = { type: 'readings', items };
    if (client.conflated > 0) {
      frame.conflated = client.conflated;
      client.conflated = 0;
    }
    client.sendRaw(JSON.stringify(frame), items.length);
  }
}
