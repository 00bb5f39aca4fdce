/**
 * The display's view of alerts: the newest alert state message (core/alerts.ts) of every registered
 * device, as the alerts component keeps it retained on alerts/{device}. Answers GET /api/alerts and the
 * `alerts` line of each device summary. The display does not care who published a message: every one
 * is outside input, decoded strictly and checked against the topic's device and the registry; a bad one
 * is counted under its reason (core/errors.ts codes), logged, and changes nothing. An empty retained
 * payload clears the device's state (the retained message was deleted). Pure state apart from the
 * metrics and the log; no I/O.
 *
 * Bounded: one message per registered device (the schema bounds a message: 256 rules, 20 events), and
 * devices that leave the registry are dropped (`registryChanged`). A state that arrived before its
 * device was in the registry was refused; when the device shows up, `registryChanged` says so, and the
 * display subscribes again to have the broker send the retained states once more.
 */
import { ALERTS_DEFAULT_LIMIT, worstSeverity, type ActiveAlert, type AlertsQuery, type AlertsResponse, type DeviceAlertsSummary } from '../core/api.ts';
import { AlertStateMessageSchema, type AlertEvent, type AlertStateMessage } from '../core/alerts.ts';
import { decodeMessage } from '../core/decode.ts';
import type { RejectReason } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { DisplayMetrics } from './metrics.ts';

/** Bigger than the largest valid message (256 rules and 20 events of at most ~0.8 KB each are ~100 KB). */
export const MAX_ALERT_STATE_BYTES = 256 * 1024;
/** Unregistered devices whose state was refused, remembered so that their registration can ask for it again. */
const MAX_UNKNOWN_REMEMBERED = 1000;

export type AlertStateOutcome = 'set' | 'cleared' | 'stale' | Extract<RejectReason, 'PAYLOAD_TOO_LARGE' | 'PAYLOAD_INVALID' | 'TOPIC_DEVICE_MISMATCH' | 'DEVICE_UNKNOWN'>;

export interface AlertBoardOptions {
  /** Only a registered device's state is kept (as for status and completeness). */
  isRegistered(device: string): boolean;
  metrics: Pick<DisplayMetrics, 'alertStatesInvalid' | 'alertDevices'>;
  logger: Logger;
}

/** The fleet-wide lists, sorted once per change rather than once per request. */
interface Sorted {
  active: ActiveAlert[];
  recent: AlertEvent[];
  firing: number;
  pending: number;
}

export class AlertBoard {
  private readonly states = new Map<string, AlertStateMessage>();
  /** Devices whose state was refused as DEVICE_UNKNOWN (at most MAX_UNKNOWN_REMEMBERED). */
  private readonly refusedUnknown = new Set<string>();
  private sorted: Sorted | undefined;

  constructor(private readonly options: AlertBoardOptions) {}

  /** A message from alerts/{device}: decoded, checked and kept, or counted and ignored. */
  receive(device: string, payload: Uint8Array): AlertStateOutcome {
    const { outcome, detail } = this.read(device, payload);
    if (outcome !== 'set' && outcome !== 'cleared' && outcome !== 'stale') {
      this.options.metrics.alertStatesInvalid.inc({ reason: outcome });
      this.options.logger.warn({ device, reason: outcome, detail, bytes: payload.byteLength }, 'alert state message ignored');
    }
    return outcome;
  }

  private read(device: string, payload: Uint8Array): { outcome: AlertStateOutcome; detail?: string } {
    if (payload.byteLength === 0) {
      // The retained message was deleted: the alerts component no longer speaks for this device.
      this.refusedUnknown.delete(device);
      if (this.states.delete(device)) this.changed();
      return { outcome: 'cleared' };
    }
    if (!this.options.isRegistered(device)) {
      if (this.refusedUnknown.size < MAX_UNKNOWN_REMEMBERED) this.refusedUnknown.add(device);
      return { outcome: 'DEVICE_UNKNOWN' };
    }
    // As ingest decodes telemetry: a key given twice or a dropped member makes the message invalid.
    const decoded = decodeMessage(payload, AlertStateMessageSchema, MAX_ALERT_STATE_BYTES);
    if (!decoded.ok) return { outcome: decoded.code === 'PAYLOAD_TOO_LARGE' ? 'PAYLOAD_TOO_LARGE' : 'PAYLOAD_INVALID', detail: decoded.message };
    const message = decoded.value;
    // Every rule and event must be the topic's device's: a message may not speak for another device.
    if (message.device !== device || message.recent.some((event) => event.device !== device)) return { outcome: 'TOPIC_DEVICE_MISMATCH' };
    // The retained copy (sent on subscribing) and a fresh one may cross: the newer state wins.
    const current = this.states.get(device);
    if (current !== undefined && message.at < current.at) return { outcome: 'stale' };
    this.states.set(device, message);
    this.changed();
    return { outcome: 'set' };
  }

  /**
   * After each registry reload: drops the state of devices that left it, and returns true when a
   * device whose state was refused as unknown is registered now (its retained state should be read again).
   */
  registryChanged(): boolean {
    let dropped = false;
    for (const device of this.states.keys()) {
      if (!this.options.isRegistered(device)) {
        this.states.delete(device);
        dropped = true;
      }
    }
    if (dropped) this.changed();
    let replay = false;
    for (const device of this.refusedUnknown) {
      if (this.options.isRegistered(device)) {
        this.refusedUnknown.delete(device);
        replay = true;
      }
    }
    return replay;
  }

  /** The alerts line of a device summary; undefined before any state of the device was received. */
  summaryOf(device: string): DeviceAlertsSummary | undefined {
    const state = this.states.get(device);
    if (state === undefined) return undefined;
    const firing = state.rules.filter((rule) => rule.state === 'firing');
    return { firing: firing.length, pending: state.rules.filter((rule) => rule.state === 'pending').length, worst: worstSeverity(firing.map((rule) => rule.severity)) };
  }

  /** GET /api/alerts: the fleet's (or one device's) active rules and recent events, newest first. */
  list(query: AlertsQuery = {}): AlertsResponse {
    const limit = query.limit ?? ALERTS_DEFAULT_LIMIT;
    if (query.device !== undefined) {
      const state = this.states.get(query.device);
      const { active, recent, firing, pending } = sortLists(state === undefined ? [] : [state]);
      return { active: active.slice(0, limit), firing, pending, recent: recent.slice(0, limit), rules: state?.rules ?? [] };
    }
    this.sorted ??= sortLists(this.states.values());
    const { active, recent, firing, pending } = this.sorted;
    return { active: active.slice(0, limit), firing, pending, recent: recent.slice(0, limit) };
  }

  get size(): number {
    return this.states.size;
  }

  private changed(): void {
    this.sorted = undefined;
    this.options.metrics.alertDevices.set(this.states.size);
  }
}

/** Active rules by `since` and events by `at`, newest first; ties in a stable order (device, rule, id). */
function sortLists(states: Iterable<AlertStateMessage>): Sorted {
  const active: ActiveAlert[] = [];
  const recent: AlertEvent[] = [];
  let firing = 0;
  let pending = 0;
  for (const state of states) {
    for (const rule of state.rules) {
      if (rule.state === 'ok') continue;
      if (rule.state === 'firing') firing++;
      else pending++;
      active.push({ ...rule, device: state.device, state: rule.state });
    }
    recent.push(...state.recent);
  }
  active.sort((a, b) => b.since - a.since || compare(a.device, b.device) || compare(a.rule, b.rule));
  recent.sort((a, b) => b.at - a.at || compare(a.device, b.device) || compare(a.id, b.id));
  return { active, recent, firing, pending };
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
