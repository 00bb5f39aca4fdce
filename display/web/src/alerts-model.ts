/**
 * The dashboard's view of alerts, apart from the DOM: which devices have firing alerts and how bad,
 * the threshold lines a metric's chart draws, and the spans of time a rule was firing, rebuilt from a
 * device's recent events (core/alerts.ts). Pure, so it is unit-tested without a browser.
 */
import type { ActiveAlert } from '../../../core/api.ts';
import type { AlertEvent, AlertRuleKind, AlertRuleState, AlertSeverity } from '../../../core/alerts.ts';
import { formatValue } from './format.ts';

// core/api.ts's ALERT_SEVERITY_RANK, repeated: importing core/api.ts would bundle zod into the page.
const RANK: Record<AlertSeverity, number> = { info: 0, warning: 1, critical: 2 };

/** Each device with a firing alert, and the most severe severity among its firing ones. */
export function worstByDevice(active: readonly ActiveAlert[]): Map<string, AlertSeverity> {
  const worst = new Map<string, AlertSeverity>();
  for (const alert of active) {
    if (alert.state !== 'firing') continue;
    const current = worst.get(alert.device);
    if (current === undefined || RANK[alert.severity] > RANK[current]) worst.set(alert.device, alert.severity);
  }
  return worst;
}

/** Below-rules and completeness fire when the value falls under the threshold; every other kind when it rises past it. */
export function comparatorOf(kind: AlertRuleKind): '<' | '>' {
  return kind === 'below' || kind === 'completeness' ? '<' : '>';
}

/**
 * "temperature 31.5 > 30" (value vs threshold), for the banner and the lists. A resolved event's value
 * is back on the good side (past the rule's clear value, which may differ from the threshold), so it
 * reads "temperature 28 (threshold 30)" rather than a comparison that would not hold.
 */
export function describeValue(alert: { kind: AlertRuleKind; metric?: string | undefined; value: number | null; threshold: number; state?: string }): string {
  const subject = alert.metric ?? alert.kind;
  const value = alert.value === null ? '–' : formatValue(alert.value);
  if (alert.state === 'resolved') return `${subject} ${value} (threshold ${formatValue(alert.threshold)})`;
  return `${subject} ${value} ${comparatorOf(alert.kind)} ${formatValue(alert.threshold)}`;
}

/** A horizontal line on a metric's chart: an above or below rule's threshold. */
export interface ThresholdLine {
  rule: string;
  severity: AlertSeverity;
  kind: 'above' | 'below';
  value: number;
}

/** The threshold lines of the rules on `metric` (above and below rules only: the others are not in the metric's terms). */
export function thresholdLines(rules: readonly AlertRuleState[], metric: string): ThresholdLine[] {
  const lines: ThresholdLine[] = [];
  for (const rule of rules) {
    if ((rule.kind === 'above' || rule.kind === 'below') && rule.metric === metric && Number.isFinite(rule.threshold)) {
      lines.push({ rule: rule.rule, severity: rule.severity, kind: rule.kind, value: rule.threshold });
    }
  }
  return lines;
}

/**
 * A span of time a rule was firing: `from` is -Infinity when it fired before the oldest event kept
 * (its firing event fell out of the recent list), `to` is null while it still fires (drawn to now).
 */
export interface FiringSpan {
  rule: string;
  severity: AlertSeverity;
  from: number;
  to: number | null;
}

/**
 * The firing spans to shade on `metric`'s chart: firing→resolved pairs of each rule on that metric, and
 * of rules on no metric (silent, completeness, rejections: about the whole device, so on every chart).
 * A rule that fires now and has no open span (its firing event is older than the recent list) is open
 * from its `since`. `events` in any order.
 */
export function firingSpans(events: readonly AlertEvent[], rules: readonly AlertRuleState[], metric: string): FiringSpan[] {
  const applies = (m: string | undefined) => m === undefined || m === metric;
  const spans: FiringSpan[] = [];
  const open = new Map<string, FiringSpan>();
  for (const event of [...events].sort((a, b) => a.at - b.at)) {
    if (!applies(event.metric)) continue;
    const current = open.get(event.rule);
    if (event.state === 'firing') {
      // A repeated firing event (a redelivery, a restart of the alerts component) keeps the first start.
      if (current === undefined) open.set(event.rule, { rule: event.rule, severity: event.severity, from: event.at, to: null });
    } else if (current !== undefined) {
      current.to = event.at;
      spans.push(current);
      open.delete(event.rule);
    } else {
      // Resolved, but its firing is older than what the recent list kept: it fired from before.
      spans.push({ rule: event.rule, severity: event.severity, from: Number.NEGATIVE_INFINITY, to: event.at });
    }
  }
  for (const rule of rules) {
    if (rule.state !== 'firing' || !applies(rule.metric)) continue;
    const current = open.get(rule.rule);
    if (current !== undefined) spans.push(current);
    else spans.push({ rule: rule.rule, severity: rule.severity, from: rule.since, to: null });
    open.delete(rule.rule);
  }
  // Still open, yet the state (newer than any event) says the rule is not firing now: it stopped when
  // its current state began. A rule the state does not list at all (removed from the rules) stays open.
  for (const span of open.values()) {
    const rule = rules.find((r) => r.rule === span.rule);
    if (rule !== undefined) span.to = Math.max(span.from, rule.since);
    spans.push(span);
  }
  return spans.sort((a, b) => a.from - b.from);
}
