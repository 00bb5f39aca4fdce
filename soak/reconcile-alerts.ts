/**
 * The alerts part of the soak's reconciliation, pure (no I/O, table-driven tests in
 * test/soak/reconcile-alerts.test.ts). Inputs: the alert log as the alerts component's own reader gives
 * it back (alerts/alert-log.ts), what each webhook receiver of the soak recorded, when the alerts
 * process started (each SIGKILL is followed by a start), and when the flapping receiver was down.
 *
 * The promise checked: "a receiver that is down loses nothing; a slow one blocks nothing else; a restart
 * neither re-fires nor forgets":
 *  - log: per (rule, device) the log alternates firing, resolved, firing…: two firings without a
 *    resolve between them (a restart that forgot what was firing) or a resolve without a firing fail;
 *  - per receiver: every logged event its filters want arrived at least once (lost), nothing arrived
 *    that is not in the log (extra) or that its filters do not want (unwanted), every body verified
 *    (invalid), and the first deliveries came in log order (outOfOrder). A second delivery of an event
 *    is allowed only when an alerts start lies between the first one and it (the outbox delivered, the
 *    process was killed before its cursor moved); any other is unexplained and fails;
 *  - isolation: the healthy receiver's delay (event `at` to its first delivery) stays under
 *    `isolationLimitMs`, where the flapping receiver's outages last longer than that: with one delivery
 *    queue shared by both, an event logged while the flapping one is down waits for it to come back, so
 *    the check cannot pass. Events whose delivery spans an alerts restart are left out (the process was
 *    dead, not blocked). It fails too when no event fell into an outage: then it measured nothing.
 */
import type { AlertEvent } from '../core/alerts.ts';

/** One POST a receiver answered 2xx, in the order it arrived. */
export interface Delivery {
  /** The event id the body carried. */
  id: string;
  /** When it arrived (ms since the epoch, the soak's clock: the same machine as the alerts process). */
  at: number;
}

export interface ReceiverRecord {
  name: string;
  /** The receiver's webhook filters, as in the rules file (absent: all). */
  severities?: readonly string[];
  rules?: readonly string[];
  /** Answered 2xx, in arrival order. */
  deliveries: Delivery[];
  /** Bodies refused: a bad signature, not an AlertEvent. */
  invalid: number;
}

export interface AlertsInput {
  log: readonly AlertEvent[];
  receivers: ReceiverRecord[];
  /** Every start of the alerts process (ms since the epoch), the first included. */
  alertsStarts: number[];
  /** The name of the receiver that never fails, and of the one that flaps. */
  healthy: string;
  flapping: string;
  /** When the flapping receiver refused connections (ms since the epoch). */
  outages: { from: number; to: number }[];
  isolationLimitMs: number;
}

export interface ReceiverReconciliation {
  name: string;
  wanted: number;
  delivered: number;
  lost: number;
  extra: number;
  unwanted: number;
  outOfOrder: number;
  /** Second and later deliveries of an event: explained (an alerts start between) or not. */
  duplicates: number;
  duplicatesAcrossKill: number;
  duplicatesUnexplained: number;
  invalid: number;
  /** Event `at` to first delivery, without events whose delivery spans an alerts restart. */
  delayMs: { p50: number; p99: number; max: number; measured: number } | null;
}

export interface AlertsReconciliation {
  events: number;
  firing: number;
  resolved: number;
  byRule: Record<string, number>;
  /** Two firings of one (rule, device) without a resolve between them. */
  doubleFirings: number;
  resolvesWithoutFiring: number;
  receivers: ReceiverReconciliation[];
  isolation: {
    limitMs: number;
    healthyMaxDelayMs: number | null;
    flappingMaxDelayMs: number | null;
    longestOutageMs: number;
    /** Events logged while the flapping receiver was down, that both receivers want. */
    eventsDuringOutages: number;
    held: boolean;
  };
  examples: string[];
}

const EXAMPLES = 10;

export function wants(receiver: Pick<ReceiverRecord, 'severities' | 'rules'>, event: AlertEvent): boolean {
  return (receiver.severities === undefined || receiver.severities.includes(event.severity)) && (receiver.rules === undefined || receiver.rules.includes(event.rule));
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** Per (rule, device): firing and resolved must alternate, beginning with firing. */
export function checkAlertLog(log: readonly AlertEvent[]): { doubleFirings: number; resolvesWithoutFiring: number; examples: string[] } {
  const firing = new Map<string, boolean>();
  const examples: string[] = [];
  let doubleFirings = 0;
  let resolvesWithoutFiring = 0;
  for (const event of log) {
    const pair = `${event.rule} ${event.device}`;
    const was = firing.get(pair) ?? false;
    if (event.state === 'firing' && was) {
      doubleFirings++;
      if (examples.length < EXAMPLES) examples.push(`${pair}: fired again at ${new Date(event.at).toISOString()} without a resolve between (event ${event.id})`);
    }
    if (event.state === 'resolved' && !was) {
      resolvesWithoutFiring++;
      if (examples.length < EXAMPLES) examples.push(`${pair}: resolved at ${new Date(event.at).toISOString()} without firing before (event ${event.id})`);
    }
    firing.set(pair, event.state === 'firing');
  }
  return { doubleFirings, resolvesWithoutFiring, examples };
}

/** Whether an alerts start (not the first) lies in (from, to]: the process was killed and came back meanwhile. */
function restartedBetween(starts: number[], from: number, to: number): boolean {
  return starts.slice(1).some((start) => start > from && start <= to);
}

function reconcileReceiver(receiver: ReceiverRecord, log: readonly AlertEvent[], starts: number[], examples: string[]): ReceiverReconciliation & { delays: Map<string, number> } {
  const logIndex = new Map(log.map((event, i) => [event.id, i]));
  const first = new Map<string, Delivery>();
  const example = (text: string) => examples.length < EXAMPLES && examples.push(`${receiver.name}: ${text}`);
  let extra = 0;
  let unwanted = 0;
  let outOfOrder = 0;
  let duplicates = 0;
  let duplicatesAcrossKill = 0;
  let lastIndex = -1;
  for (const delivery of receiver.deliveries) {
    const index = logIndex.get(delivery.id);
    if (index === undefined) {
      extra++;
      example(`got event ${delivery.id}, which is not in the alert log`);
      continue;
    }
    const earlier = first.get(delivery.id);
    if (earlier !== undefined) {
      duplicates++;
      if (restartedBetween(starts, earlier.at, delivery.at)) duplicatesAcrossKill++;
      else example(`got event ${delivery.id} again with no alerts restart between the two deliveries`);
      continue;
    }
    first.set(delivery.id, delivery);
    const event = log[index]!;
    if (!wants(receiver, event)) {
      unwanted++;
      example(`got event ${event.id} (${event.rule}, ${event.severity}), which its filters do not want`);
    }
    if (index < lastIndex) {
      outOfOrder++;
      example(`got event ${event.id} (log position ${index}) after one at log position ${lastIndex}`);
    }
    lastIndex = Math.max(lastIndex, index);
  }
  let wanted = 0;
  let lost = 0;
  const delays = new Map<string, number>();
  for (const event of log) {
    if (!wants(receiver, event)) continue;
    wanted++;
    const delivery = first.get(event.id);
    if (delivery === undefined) {
      lost++;
      example(`never got event ${event.id} (${event.rule} ${event.device} ${event.state} at ${new Date(event.at).toISOString()})`);
      continue;
    }
    if (!restartedBetween(starts, event.at, delivery.at)) delays.set(event.id, delivery.at - event.at);
  }
  const sorted = [...delays.values()].sort((a, b) => a - b);
  return {
    name: receiver.name,
    wanted,
    delivered: first.size,
    lost,
    extra,
    unwanted,
    outOfOrder,
    duplicates,
    duplicatesAcrossKill,
    duplicatesUnexplained: duplicates - duplicatesAcrossKill,
    invalid: receiver.invalid,
    delayMs: sorted.length === 0 ? null : { p50: percentile(sorted, 0.5), p99: percentile(sorted, 0.99), max: sorted.at(-1)!, measured: sorted.length },
    delays,
  };
}

export function reconcileAlerts(input: AlertsInput): AlertsReconciliation {
  const { log } = input;
  const logCheck = checkAlertLog(log);
  const examples = [...logCheck.examples];
  const byRule: Record<string, number> = {};
  for (const event of log) byRule[event.rule] = (byRule[event.rule] ?? 0) + 1;
  const results = input.receivers.map((r) => reconcileReceiver(r, log, input.alertsStarts, examples));
  const healthy = results.find((r) => r.name === input.healthy);
  const flapping = results.find((r) => r.name === input.flapping);
  const healthyRecord = input.receivers.find((r) => r.name === input.healthy);
  const flappingRecord = input.receivers.find((r) => r.name === input.flapping);
  const inOutage = (event: AlertEvent) => input.outages.some((o) => event.at >= o.from && event.at < o.to);
  const during = log.filter((e) => inOutage(e) && healthyRecord !== undefined && flappingRecord !== undefined && wants(healthyRecord, e) && wants(flappingRecord, e));
  const healthyMax = healthy?.delayMs?.max ?? null;
  const duringFlapping = during.map((e) => flapping?.delays.get(e.id)).filter((d): d is number => d !== undefined);
  const held = healthyMax !== null && healthyMax < input.isolationLimitMs && during.length > 0;
  if (healthyMax !== null && healthyMax >= input.isolationLimitMs) {
    const slowest = [...(healthy?.delays ?? [])].sort((a, b) => b[1] - a[1])[0];
    examples.push(`${input.healthy}: event ${slowest?.[0]} arrived ${healthyMax} ms after it was logged (limit ${input.isolationLimitMs} ms)`);
  }
  return {
    events: log.length,
    firing: log.filter((e) => e.state === 'firing').length,
    resolved: log.filter((e) => e.state === 'resolved').length,
    byRule,
    doubleFirings: logCheck.doubleFirings,
    resolvesWithoutFiring: logCheck.resolvesWithoutFiring,
    receivers: results.map(({ delays: _delays, ...rest }) => rest),
    isolation: {
      limitMs: input.isolationLimitMs,
      healthyMaxDelayMs: healthyMax,
      flappingMaxDelayMs: duringFlapping.length === 0 ? (flapping?.delayMs?.max ?? null) : Math.max(...duringFlapping),
      longestOutageMs: Math.max(0, ...input.outages.map((o) => o.to - o.from)),
      eventsDuringOutages: during.length,
      held,
    },
    examples,
  };
}

/** Why the alerts part fails (empty: it passed). `minEvents`: fewer means the rules proved nothing. */
export function alertsFailures(a: AlertsReconciliation, minEvents: number): string[] {
  const failures: string[] = [];
  if (a.events < minEvents) failures.push(`alerts: only ${a.events} events logged (at least ${minEvents} wanted): the rules proved too little`);
  if (a.doubleFirings > 0) failures.push(`alerts: ${a.doubleFirings} times a (rule, device) fired again without a resolve between (a restart forgot what was firing)`);
  if (a.resolvesWithoutFiring > 0) failures.push(`alerts: ${a.resolvesWithoutFiring} resolves of a (rule, device) that was not firing`);
  for (const r of a.receivers) {
    if (r.lost > 0) failures.push(`alerts: ${r.lost} logged events never reached ${r.name}`);
    if (r.extra > 0) failures.push(`alerts: ${r.name} got ${r.extra} events that are not in the alert log`);
    if (r.unwanted > 0) failures.push(`alerts: ${r.name} got ${r.unwanted} events its filters do not want`);
    if (r.outOfOrder > 0) failures.push(`alerts: ${r.outOfOrder} events reached ${r.name} out of log order`);
    if (r.duplicatesUnexplained > 0) failures.push(`alerts: ${r.duplicatesUnexplained} events reached ${r.name} twice with no alerts restart between`);
    if (r.invalid > 0) failures.push(`alerts: ${r.name} got ${r.invalid} bodies that are not signed alert events`);
  }
  const iso = a.isolation;
  if (iso.eventsDuringOutages === 0) failures.push('alerts: no event was logged while the flapping receiver was down: isolation not measured');
  else if (iso.healthyMaxDelayMs === null) failures.push('alerts: the healthy receiver got nothing to measure');
  else if (iso.healthyMaxDelayMs >= iso.limitMs) failures.push(`alerts: the healthy receiver waited up to ${iso.healthyMaxDelayMs} ms for an event (limit ${iso.limitMs} ms, outages up to ${iso.longestOutageMs} ms): held up by the flapping one`);
  return failures;
}
