/**
 * The evaluator: which rules apply to which device, and every (rule, device) pair's state. Fed the
 * pipeline's messages and the clock; tells its owner about each change (firing, resolved) and about
 * each device whose retained state should be published again. No I/O here.
 *
 * Choices about time (docs: README "Alerts"):
 *   - Thresholds and rates are evaluated on readings in their own time order; a reading not newer than
 *     the last one evaluated for that device and metric (out of order, a redelivery) is skipped, and so
 *     is a reading older than `maxLagMs` when it arrives: a device catching up with a backlog does not
 *     fire now for a spike of hours ago (the spike is in the store; the alert is about the present).
 *   - `for` and silence are measured on this process's clock, by `tick`, not by readings: a rule fires
 *     when its `for` is over even if no further reading comes, and a silent device is noticed without one.
 *   - Silent: seconds since the last verified reading arrived (a backlog arriving proves the device is
 *     back). A device's `offline` status alone does not fire (a device may sleep between readings by
 *     design); an offline device stays silent and fires once `after` is over. Counting starts when the
 *     device is first known to this process (its start, or the device added), never earlier. A firing
 *     silent rule resolves only on a reading, so a restart does not resolve it by forgetting the time.
 *   - Window rules (completeness, rejections) read counters as Prometheus counters (./windows.ts).
 */
import { firesAbove, rulesFromMeta, type AlertSelector, type ResolvedRule } from '../core/alert-rules.ts';
import type { AlertEvent, AlertRuleState } from '../core/alerts.ts';
import type { DeviceRecord } from '../core/registry.ts';
import { REJECT_REASONS } from '../core/errors.ts';
import type { CompletenessMessage, DeviceCountsMessage, StatusMessage, VerifiedReadings } from '../core/schemas.ts';
import { newCell, step, type Cell, type Change } from './state-machine.ts';
import { CounterWindow, RateWindow } from './windows.ts';

export interface EngineChange {
  device: string;
  rule: ResolvedRule;
  change: Change;
  value: number | null;
  at: number;
  /** Why, when not the value (a rule that no longer applies). */
  note?: string;
}

export interface EngineOptions {
  maxLagMs: number;
  onChange(change: EngineChange): void;
  /** A device's rules or their states changed: its retained state is due. */
  onDeviceState(device: string): void;
  /** A device's `alerts` metadata clause was refused. */
  onMetaProblem(device: string, problem: string): void;
  /** A reading skipped: `stale` (older than maxLag on arrival) or `out_of_order`. */
  onSkipped?(reason: 'stale' | 'out_of_order'): void;
  /** A rule's value changed for the device without its state changing. */
  onValue?(device: string): void;
  onEvaluation?(kind: ResolvedRule['kind']): void;
}

interface Pair {
  rule: ResolvedRule;
  cell: Cell;
  lastTs?: number;
  rate?: RateWindow;
  received?: CounterWindow;
  missing?: CounterWindow;
  rejected?: CounterWindow;
}

interface DeviceEntry {
  record: DeviceRecord;
  pairs: Map<string, Pair>;
  lastReadingAt: number;
  offline: boolean;
}

export function selects(selector: AlertSelector, record: DeviceRecord): boolean {
  if ('all' in selector) return true;
  if ('device' in selector) return record.id === selector.device;
  if ('devices' in selector) return selector.devices.includes(record.id);
  if ('site' in selector) return record.meta.site === selector.site;
  return record.meta.profile === selector.profile;
}

export class AlertEngine {
  private fileRules: ResolvedRule[] = [];
  private readonly devices = new Map<string, DeviceEntry>();
  /** Firing pairs read back from the log, applied when their device and rule appear. */
  private restored = new Map<string, AlertEvent>();

  constructor(private readonly options: EngineOptions) {}

  /** Before the first registry: (rule, device) pairs the alert log says are firing. */
  restoreFiring(event: AlertEvent): void {
    this.restored.set(`${event.device}\u0000${event.rule}`, event);
  }

  /** Firing pairs of the log whose device or rule is gone: to be resolved by the owner. */
  takeUnclaimed(): AlertEvent[] {
    const left = [...this.restored.values()];
    this.restored.clear();
    return left;
  }

  setFileRules(rules: ResolvedRule[], now: number): void {
    this.fileRules = rules;
    for (const entry of this.devices.values()) this.applyRules(entry, now);
  }

  setDevices(records: readonly DeviceRecord[], now: number): void {
    const active = new Map(records.filter((r) => r.status === 'active').map((r) => [r.id, r]));
    for (const [id, entry] of this.devices) {
      if (active.has(id)) continue;
      // Revoked or removed: its rules no longer apply; firing ones are resolved, not left dangling.
      entry.record = { ...entry.record, status: 'revoked' };
      this.applyRules(entry, now, []);
      this.devices.delete(id);
    }
    for (const [id, record] of active) {
      let entry = this.devices.get(id);
      if (entry === undefined) {
        entry = { record, pairs: new Map(), lastReadingAt: now, offline: false };
        this.devices.set(id, entry);
      } else {
        entry.record = record;
      }
      this.applyRules(entry, now);
    }
  }

  private rulesOf(record: DeviceRecord): ResolvedRule[] {
    const meta = rulesFromMeta(record.id, record.meta);
    for (const problem of meta.problems) this.options.onMetaProblem(record.id, problem);
    return [...this.fileRules.filter((rule) => selects(rule.selector, record)), ...meta.rules];
  }

  /** Puts the device's rules in force: new pairs start ok (or firing, from the log), gone ones resolve. */
  private applyRules(entry: DeviceEntry, now: number, rules = this.rulesOf(entry.record)): void {
    const id = entry.record.id;
    const next = new Map<string, Pair>();
    let changed = false;
    for (const rule of rules) {
      const old = entry.pairs.get(rule.id);
      if (old !== undefined && sameInputs(old.rule, rule)) {
        if (JSON.stringify(old.rule) !== JSON.stringify(rule)) changed = true;
        old.rule = rule;
        next.set(rule.id, old);
        continue;
      }
      // A changed rule starts again from its new inputs, but keeps firing (its event stands) until it clears.
      const cell = old?.cell ?? newCell(now);
      if (old?.cell.state === 'pending') Object.assign(cell, newCell(now));
      const restored = this.restored.get(`${id}\u0000${rule.id}`);
      if (old === undefined && restored !== undefined) {
        cell.state = 'firing';
        cell.since = restored.at;
        cell.value = restored.value;
        this.restored.delete(`${id}\u0000${rule.id}`);
      }
      next.set(rule.id, { rule, cell });
      changed = true;
    }
    for (const [ruleId, pair] of entry.pairs) {
      if (next.has(ruleId)) continue;
      changed = true;
      if (pair.cell.state === 'firing') this.options.onChange({ device: id, rule: pair.rule, change: 'resolved', value: pair.cell.value, at: now, note: 'the rule no longer applies to this device' });
    }
    entry.pairs = next;
    if (changed) this.options.onDeviceState(id);
  }

  onReadings(message: VerifiedReadings, now: number): void {
    const entry = this.devices.get(message.device);
    if (entry === undefined) return;
    entry.lastReadingAt = now;
    let stateChanged = false;
    for (const pair of entry.pairs.values()) {
      const { rule } = pair;
      if (rule.kind === 'silent') {
        // Any reading ends silence, however old its timestamp.
        stateChanged = this.evaluate(entry, pair, 0, now) || stateChanged;
        continue;
      }
      if (rule.kind !== 'above' && rule.kind !== 'below' && rule.kind !== 'rate') continue;
      for (const reading of message.readings) {
        const value = reading.values[rule.metric!];
        if (value === undefined) continue;
        if (pair.lastTs !== undefined && reading.ts <= pair.lastTs) {
          this.options.onSkipped?.('out_of_order');
          continue;
        }
        if (reading.ts < now - this.options.maxLagMs) {
          this.options.onSkipped?.('stale');
          continue;
        }
        pair.lastTs = reading.ts;
        let evaluated: number | undefined = value;
        if (rule.kind === 'rate') {
          pair.rate ??= new RateWindow(rule.windowMs, rule.perMs);
          const rate = pair.rate.add(reading.ts, value);
          // A rate either way: rising or falling as fast is the same kind of trouble.
          evaluated = rate === undefined ? undefined : Math.abs(rate);
        }
        if (evaluated !== undefined) stateChanged = this.evaluate(entry, pair, evaluated, now) || stateChanged;
      }
    }
    if (stateChanged) this.options.onDeviceState(message.device);
  }

  onCompleteness(message: CompletenessMessage, now: number): void {
    const entry = this.devices.get(message.device);
    if (entry === undefined) return;
    for (const pair of entry.pairs.values()) {
      if (pair.rule.kind !== 'completeness') continue;
      pair.received ??= new CounterWindow(pair.rule.windowMs);
      pair.missing ??= new CounterWindow(pair.rule.windowMs);
      pair.received.add(now, message.received);
      pair.missing.add(now, message.missing);
    }
    this.evaluateWindows(entry, now);
  }

  onCounts(message: DeviceCountsMessage, now: number): void {
    const entry = this.devices.get(message.device);
    if (entry === undefined) return;
    for (const pair of entry.pairs.values()) {
      if (pair.rule.kind !== 'rejections') continue;
      const reasons = pair.rule.reasons ?? REJECT_REASONS;
      const total = reasons.reduce((sum, reason) => sum + (message.rejected[reason] ?? 0), 0);
      pair.rejected ??= new CounterWindow(pair.rule.windowMs);
      pair.rejected.add(now, total);
    }
    this.evaluateWindows(entry, now);
  }

  onStatus(message: StatusMessage): void {
    const entry = this.devices.get(message.device);
    if (entry !== undefined) entry.offline = message.state === 'offline';
  }

  /** Time passes: `for` durations end, devices fall silent, windows slide. */
  tick(now: number): void {
    for (const entry of this.devices.values()) {
      let stateChanged = false;
      for (const pair of entry.pairs.values()) {
        if (pair.rule.kind === 'silent') {
          // Only toward firing: a firing silent rule resolves on a reading (see the header).
          if (pair.cell.state !== 'firing') stateChanged = this.evaluate(entry, pair, (now - entry.lastReadingAt) / 1000, now) || stateChanged;
        } else if (pair.cell.state === 'pending') {
          stateChanged = this.evaluate(entry, pair, null, now) || stateChanged;
        }
      }
      stateChanged = this.evaluateWindows(entry, now, false) || stateChanged;
      if (stateChanged) this.options.onDeviceState(entry.record.id);
    }
  }

  private evaluateWindows(entry: DeviceEntry, now: number, announce = true): boolean {
    let stateChanged = false;
    for (const pair of entry.pairs.values()) {
      let value: number | undefined;
      if (pair.rule.kind === 'rejections') value = pair.rejected?.increase(now);
      else if (pair.rule.kind === 'completeness') {
        const received = pair.received?.increase(now);
        const missing = pair.missing?.increase(now);
        // Nothing expected within the window: no completeness to judge (a silent rule covers that).
        if (received !== undefined && missing !== undefined && received + missing > 0) value = (100 * received) / (received + missing);
      } else continue;
      if (value !== undefined) stateChanged = this.evaluate(entry, pair, value, now) || stateChanged;
    }
    if (announce && stateChanged) this.options.onDeviceState(entry.record.id);
    return stateChanged;
  }

  /** Steps the pair; announces a change; true when its state (ok/pending/firing) changed. */
  private evaluate(entry: DeviceEntry, pair: Pair, value: number | null, now: number): boolean {
    this.options.onEvaluation?.(pair.rule.kind);
    const before = pair.cell.state;
    const valueBefore = pair.cell.value;
    const change = step(pair.cell, pair.rule, value, now);
    // A silent rule's value is the time since the last reading, new at every tick: not worth a publish.
    if (pair.cell.value !== valueBefore && pair.rule.kind !== 'silent') this.options.onValue?.(entry.record.id);
    if (change !== undefined) this.options.onChange({ device: entry.record.id, rule: pair.rule, change, value: pair.cell.value, at: now });
    return pair.cell.state !== before;
  }

  /** The device's rules and their states, for its retained message. */
  statesOf(device: string): AlertRuleState[] {
    const entry = this.devices.get(device);
    if (entry === undefined) return [];
    return [...entry.pairs.values()].map(({ rule, cell }) => ({
      rule: rule.id,
      kind: rule.kind,
      severity: rule.severity,
      ...(rule.metric === undefined ? {} : { metric: rule.metric }),
      threshold: rule.threshold,
      clear: rule.clear,
      state: cell.state,
      since: cell.since,
      value: cell.value,
    }));
  }

  /** Every firing pair, for the API. */
  firing(): (AlertRuleState & { device: string })[] {
    return [...this.devices.keys()].flatMap((device) => this.statesOf(device).filter((s) => s.state === 'firing').map((s) => ({ device, ...s })));
  }

  deviceIds(): string[] {
    return [...this.devices.keys()];
  }

  isOffline(device: string): boolean {
    return this.devices.get(device)?.offline ?? false;
  }
}

/** Whether a reloaded rule reads the same inputs (its windows and last timestamp stay valid). */
function sameInputs(a: ResolvedRule, b: ResolvedRule): boolean {
  return a.kind === b.kind && a.metric === b.metric && a.windowMs === b.windowMs && a.perMs === b.perMs && (a.reasons ?? []).join() === (b.reasons ?? []).join() && firesAbove(a.kind) === firesAbove(b.kind);
}
