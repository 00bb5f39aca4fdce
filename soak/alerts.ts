/**
 * The alerts component's part in the soak: the rules file it runs (chosen to fire and resolve often
 * under the soak's fleet), the `alerts-kill` strike's timing (right after an event is logged), the drain
 * at the end (both outboxes empty, nothing new logged), and the alert log read back with the
 * component's own reader.
 */
import { watch } from 'node:fs';
import { AlertLog } from '../alerts/alert-log.ts';
import type { AlertEvent } from '../core/alerts.ts';
import { scrape } from './scrape.ts';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What `silent` waits for: the soak checks that the devices-cut strike makes it fire. */
export const SILENT_AFTER_MS = 700;
/** The rejections rule's window: a bad signature fires it, and it resolves this long after. */
const REJECTIONS_WINDOW_MS = 3_000;

export interface SoakWebhook {
  url: string;
  secret: string;
  severities?: ('info' | 'warning' | 'critical')[];
}

/**
 * The soak's rules, every one limited to the fleet's devices (not the overload generator's, whose
 * 600 devices at 10 readings a second would turn a noise rule into thousands of events in 30 s).
 * Measured on the simulator's signals (firmware-sim/signals.ts) over 2 minutes of 40 devices:
 *  - `temp-jitter` (info): temperature changing faster than 0.3 °C/s over 2 s, clear at 0.1: the env
 *    devices' noise (σ 0.15) crosses it ~70 times, and it resolves a reading or two later;
 *  - `vibration-high` (warning): vibration_rms above 5, clear at 4: the industrial devices' events and
 *    the `spike` device (sim-0001, its first metric tenfold every 20th reading, ~12 times);
 *  - `bad-signatures` (critical): a READING_BAD_SIGNATURE rejection within 3 s: the `bad-signature`
 *    device (sim-0005) every 5 s, resolving 3 s later;
 *  - `quiet` (critical): no reading for 0.7 s on the first 16 devices: a devices-cut, an ingest kill or
 *    broker restart (devices reconnect after 0.25–0.5 s and send their buffer), resolving on the next reading.
 * The flapping webhook does not want `info`, so filters are exercised too.
 */
export function soakAlertRules(fleet: string[], webhooks: SoakWebhook[]): string {
  const devices = { devices: fleet };
  const rules = [
    { id: 'temp-jitter', kind: 'rate', metric: 'temperature', threshold: 0.3, clear: 0.1, per: 's', window: '2s', severity: 'info', selector: devices },
    { id: 'vibration-high', kind: 'above', metric: 'vibration_rms', threshold: 5, clear: 4, severity: 'warning', selector: devices },
    { id: 'bad-signatures', kind: 'rejections', reasons: ['READING_BAD_SIGNATURE'], threshold: 0, window: `${REJECTIONS_WINDOW_MS}ms`, severity: 'critical', selector: devices },
    { id: 'quiet', kind: 'silent', after: `${SILENT_AFTER_MS}ms`, severity: 'critical', selector: { devices: fleet.slice(0, 16) } },
  ];
  // A 10 s timeout: the flapping receiver's slow answers (1–3 s) are seen as delivered, never timed out.
  return `${JSON.stringify({ rules, webhooks: webhooks.map((w) => ({ ...w, timeout: '10s' })) }, null, 2)}\n`;
}

/**
 * The healthy webhook's longest wait from an event to its delivery. Half the shortest webhook-down
 * outage (10 s, chaos.ts): with one delivery queue for both receivers, an event logged as the flapping
 * one goes down waits for it to come back, so this cannot hold; with a loop each, the healthy one's
 * deliveries take milliseconds to a second or two when the machine is at its busiest.
 */
export const ISOLATION_LIMIT_MS = 5_000;
/** Fewer alert events than this in a soak, and the alerts checks proved too little (2 min give hundreds). */
export const MIN_ALERT_EVENTS = 40;

/** After the fleet stops, the rules still change for this long (silence fires, rejections resolve). */
export const ALERTS_SETTLE_MS = SILENT_AFTER_MS + REJECTIONS_WINDOW_MS + 2_000;

/**
 * Resolves true on the next write to `path` (an event appended to the alert log), false after
 * `timeoutMs` without one. The kill that follows lands between the log's append and the outboxes' own
 * appends as often as the machine allows: the crash the outboxes' catch-up is there for.
 */
export function untilFileWritten(path: string, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let watcher: ReturnType<typeof watch> | undefined;
    const done = (written: boolean) => {
      clearTimeout(timer);
      watcher?.close();
      resolve(written);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    try {
      watcher = watch(path, () => done(true));
      watcher.on('error', () => undefined);
    } catch {
      // No log yet: the timeout decides.
    }
  });
}

/** Sum of every series of a metric (labels may split it). */
function total(metrics: Record<string, number>, name: string): number | undefined {
  let sum: number | undefined;
  for (const [key, value] of Object.entries(metrics)) if (key === name || key.startsWith(`${name}{`)) sum = (sum ?? 0) + value;
  return sum;
}

/**
 * Waits until the alerts process has nothing left in its webhook outboxes and has logged nothing new for
 * three polls in a row, from `notBefore` on (the rules settle after the fleet stopped). Bounded.
 */
export async function waitForAlertsDrain(metricsUrl: string, notBefore: number, timeoutMs: number): Promise<boolean> {
  await sleep(Math.max(0, notBefore - Date.now()));
  const deadline = Date.now() + timeoutMs;
  let quiet = 0;
  let lastEvents: number | undefined;
  while (Date.now() < deadline) {
    const m = await scrape(metricsUrl);
    const depth = m === undefined ? undefined : total(m, 'sensorpipe_alerts_webhook_queue_depth');
    const events = m === undefined ? undefined : (total(m, 'sensorpipe_alerts_events_total') ?? 0);
    quiet = depth === 0 && events !== undefined && events === lastEvents ? quiet + 1 : 0;
    lastEvents = events;
    if (quiet >= 3) return true;
    await sleep(1000);
  }
  return false;
}

/** The alert log (and its rotated file) as the alerts component reads it back at start. */
export async function readAlertLog(path: string): Promise<{ events: AlertEvent[]; skippedLines: number }> {
  const log = await AlertLog.open({ path, maxBytes: Number.MAX_SAFE_INTEGER });
  const events = [...log.all()];
  await log.close();
  return { events, skippedLines: log.skippedLines };
}
