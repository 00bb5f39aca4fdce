/**
 * The chaos schedule: what strikes the pipeline, and when. Planned up front from a seed (the same seed
 * gives the same plan), then run against the live processes through the actions the soak supplies.
 *
 * Every kind strikes at least once, at random
 * moments inside the chaos window; strikes on the same target never overlap (the broker is not
 * restarted while it is still down; the influx link has one fault at a time), strikes on different
 * targets may (ingest killed while InfluxDB is down is exactly the kind of moment we want).
 */
import { prng } from '../firmware-sim/signals.ts';

export const CHAOS_KINDS = [
  'influxd-restart',
  'ingest-kill',
  'broker-restart',
  'devices-cut',
  'ingest-link-cut',
  'viewer-freeze',
  'influxd-kill',
  'influxd-500',
  'influxd-429',
  'influxd-hang',
  'influxd-partition',
  'overload',
  // Last, so that it was added without changing the draws of the others (the same seed, the same plan as before).
  'broker-kill',
  // The alerts component (after broker-kill, for the same reason).
  'alerts-kill',
  'webhook-down',
] as const;
export type ChaosKind = (typeof CHAOS_KINDS)[number];

export interface ChaosEvent {
  kind: ChaosKind;
  /** Milliseconds after the soak started. */
  at: number;
  /** How long the target stays down or frozen (0 for a cut). */
  durationMs: number;
  /** devices-cut: share of the connections cut; viewer-freeze: which viewer. */
  fraction?: number;
  viewer?: number;
}

interface KindSpec {
  target: string;
  /** Strikes per minute of chaos window (at least one in any case). */
  perMinute: number;
  durationMs: [number, number];
}

const SPECS: Record<ChaosKind, KindSpec> = {
  // Issue 6's outage is 30 s; shorter ones too, so a restart can fall into a replay of the spool.
  'influxd-restart': { target: 'influxd', perMinute: 0.4, durationMs: [3_000, 30_000] },
  'ingest-kill': { target: 'ingest', perMinute: 0.6, durationMs: [300, 5_000] },
  // Devices back off (0.5 s doubling, up to 30 s) and buffer meanwhile.
  'broker-restart': { target: 'broker', perMinute: 0.35, durationMs: [500, 6_000] },
  'devices-cut': { target: 'devices', perMinute: 1, durationMs: [0, 0] },
  'ingest-link-cut': { target: 'ingest', perMinute: 0.4, durationMs: [0, 0] },
  // The display calls a client stuck after 15 s and pings every 15 s: some freezes outlast that.
  'viewer-freeze': { target: 'viewer', perMinute: 0.6, durationMs: [5_000, 40_000] },
  // SIGKILL: no shutdown, restarted on the same data (its WAL is fsynced before it answers a write).
  'influxd-kill': { target: 'influxd', perMinute: 0.3, durationMs: [1_000, 15_000] },
  // Through the fault proxy between ingest and influxd (influx-fault-proxy.ts), one fault at a time;
  // ingest's writes time out after 10 s, so some hangs and partitions outlast a write or two.
  'influxd-500': { target: 'influx-link', perMinute: 0.25, durationMs: [3_000, 20_000] },
  'influxd-429': { target: 'influx-link', perMinute: 0.25, durationMs: [3_000, 20_000] },
  'influxd-hang': { target: 'influx-link', perMinute: 0.2, durationMs: [5_000, 30_000] },
  'influxd-partition': { target: 'influx-link', perMinute: 0.2, durationMs: [5_000, 30_000] },
  // Issue 14: 30 s of extra load, once (perMinute 0: the one strike every kind gets).
  overload: { target: 'load', perMinute: 0, durationMs: [30_000, 30_000] },
  'broker-kill': { target: 'broker', perMinute: 0.35, durationMs: [500, 6_000] },
  // SIGKILL of `sensorpipe alerts` right after it logged an event (soak/alerts.ts), back 1–3 s later:
  // a restart must neither fire again what was firing nor lose a delivery.
  'alerts-kill': { target: 'alerts', perMinute: 1, durationMs: [1_000, 3_000] },
  // The flapping webhook receiver refuses connections. At least 10 s, twice the isolation limit
  // (soak/run.ts): an outage a shared delivery queue would make the healthy receiver wait through.
  'webhook-down': { target: 'webhook', perMinute: 1, durationMs: [10_000, 25_000] },
};
/** Quiet time between two strikes on the same target, after the first one ended. */
const SAME_TARGET_GAP_MS = 4_000;

export interface ChaosWindow {
  fromMs: number;
  toMs: number;
  viewers: number;
}

export function planChaos(seed: number, window: ChaosWindow): ChaosEvent[] {
  const random = prng(seed ^ 0xc4a05);
  const between = ([low, high]: [number, number]) => Math.round(low + random() * (high - low));
  const span = window.toMs - window.fromMs;
  const planned: ChaosEvent[] = [];
  for (const kind of CHAOS_KINDS) {
    const spec = SPECS[kind];
    const count = Math.max(1, Math.round((span / 60_000) * spec.perMinute));
    for (let i = 0; i < count; i++) {
      const event: ChaosEvent = { kind, at: window.fromMs + Math.round(random() * span), durationMs: between(spec.durationMs) };
      if (kind === 'devices-cut') event.fraction = [0.25, 0.5, 1][Math.floor(random() * 3)]!;
      if (kind === 'viewer-freeze') event.viewer = Math.floor(random() * window.viewers);
      planned.push(event);
    }
  }
  // Per target, in time order: push a strike back until the previous one ended; drop what no longer
  // fits the window, but never the only strike of its kind.
  planned.sort((a, b) => a.at - b.at);
  const busyUntil = new Map<string, number>();
  const kept: ChaosEvent[] = [];
  for (const event of planned) {
    const target = SPECS[event.kind].target;
    event.at = Math.max(event.at, busyUntil.get(target) ?? 0);
    const fits = event.at + event.durationMs <= window.toMs;
    if (!fits && kept.some((e) => e.kind === event.kind)) continue;
    kept.push(event);
    busyUntil.set(target, event.at + event.durationMs + SAME_TARGET_GAP_MS);
  }
  return kept.sort((a, b) => a.at - b.at);
}

export function targetOf(kind: ChaosKind): string {
  return SPECS[kind].target;
}

/** What the soak does for each kind of strike. `down` ones stop a thing, wait, and bring it back. */
export type ChaosActions = Record<ChaosKind, (event: ChaosEvent) => Promise<string | undefined>>;

export interface ChaosRecord {
  kind: ChaosKind;
  /** Seconds after the soak started: when it struck, and when the target was back. */
  atS: number;
  endS: number;
  detail?: string;
  error?: string;
}

export interface ChaosRun {
  records: ChaosRecord[];
  /** Stops scheduling new strikes and waits for those under way to finish (targets back up). */
  stop(): Promise<void>;
}

/** Runs the plan against the clock (t = 0 at `soakStart`); strikes on one target run one after another. */
export function runChaos(plan: ChaosEvent[], actions: ChaosActions, soakStart: number, onRecord: (record: ChaosRecord) => void = () => {}): ChaosRun {
  const records: ChaosRecord[] = [];
  const chains = new Map<string, Promise<void>>();
  const timers: NodeJS.Timeout[] = [];
  const seconds = () => Math.round((Date.now() - soakStart) / 100) / 10;
  for (const event of plan) {
    timers.push(
      setTimeout(() => {
        const target = targetOf(event.kind);
        const previous = chains.get(target) ?? Promise.resolve();
        chains.set(
          target,
          previous.then(async () => {
            const record: ChaosRecord = { kind: event.kind, atS: seconds(), endS: 0 };
            try {
              const detail = await actions[event.kind](event);
              if (detail !== undefined) record.detail = detail;
            } catch (err) {
              record.error = (err as Error).message.slice(0, 500);
            }
            record.endS = seconds();
            records.push(record);
            onRecord(record);
          }),
        );
      }, Math.max(0, soakStart + event.at - Date.now())),
    );
  }
  return {
    records,
    stop: async () => {
      for (const timer of timers) clearTimeout(timer);
      await Promise.all(chains.values());
    },
  };
}
