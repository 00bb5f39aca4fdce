/**
 * The alerts rules file (YAML or JSON, the same shape) and the per-device rules written in a device's
 * registry metadata (`meta.alerts`). Both are outside input: parsed strictly with zod here, and a bad
 * one is refused with ALERT_RULES_INVALID (the file) or ALERT_META_INVALID (one device's clause), never
 * half-applied. Durations use the grammar of ./duration.ts with a unit (`30s`, `5m`).
 *
 *   rules:
 *     - { id: hot, kind: above, metric: temperature, threshold: 30, clear: 29, for: 10s, severity: warning, selector: { site: lab } }
 *     - { id: quiet, kind: silent, after: 1m }
 *     - { id: climbing, kind: rate, metric: temperature, threshold: 5, per: m, window: 2m }
 *     - { id: gaps, kind: completeness, threshold: 90, window: 10m }
 *     - { id: attack, kind: rejections, reasons: [READING_BAD_SIGNATURE], threshold: 0, window: 5m, severity: critical }
 *   webhooks:
 *     - { url: http://127.0.0.1:9000/hook, secret: a-long-shared-secret, severities: [critical], rules: [attack] }
 */
import { z } from 'zod';
import { AlertRuleIdSchema, AlertSeveritySchema, type AlertRuleKind, type AlertSeverity } from './alerts.ts';
import { parseDurationMs } from './duration.ts';
import { REJECT_REASONS, type RejectReason } from './errors.ts';
import { DeviceIdSchema, MetaValueSchema, MetricNameSchema, type DeviceMeta } from './schemas.ts';

/** A duration with its unit (`500ms`, `30s`, `5m`, `2h`), as milliseconds. */
const Duration = z.string().transform((text, ctx) => {
  const ms = parseDurationMs(text, { unitRequired: true });
  if (!Number.isSafeInteger(ms)) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration with a unit such as 30s, 5m or 1h` });
    return z.NEVER;
  }
  return ms;
});
const PositiveDuration = Duration.refine((ms) => ms > 0, 'must be longer than 0');
const Finite = z.number().finite();

/**
 * Which devices a rule applies to, from the registry: one device, a list, every device of a site or a
 * profile (device metadata), or all. Exactly one key. Absent: all devices.
 */
export const AlertSelectorSchema = z.union([
  z.strictObject({ device: DeviceIdSchema }),
  z.strictObject({ devices: z.array(DeviceIdSchema).min(1).max(10_000) }),
  z.strictObject({ site: MetaValueSchema }),
  z.strictObject({ profile: MetaValueSchema }),
  z.strictObject({ all: z.literal(true) }),
]);
export type AlertSelector = z.infer<typeof AlertSelectorSchema>;

const common = {
  id: AlertRuleIdSchema,
  severity: AlertSeveritySchema.default('warning'),
  selector: AlertSelectorSchema.default({ all: true }),
  /** A sentence for people, carried into events' messages. */
  description: z.string().max(200).optional(),
};
/** How long the value must stay past the threshold before the rule fires (0: at once). */
const forDuration = { for: Duration.default(0) };
/** Hysteresis: resolve only back past `clear`, or `hysteresis` (a margin) inside the threshold; not both. */
const hysteresis = { clear: Finite.optional(), hysteresis: Finite.min(0).optional() };

const AboveRule = z.strictObject({ ...common, ...forDuration, ...hysteresis, kind: z.literal('above'), metric: MetricNameSchema, threshold: Finite });
const BelowRule = z.strictObject({ ...common, ...forDuration, ...hysteresis, kind: z.literal('below'), metric: MetricNameSchema, threshold: Finite });
/** The metric's change per second or minute over `window` (newest reading against the oldest in the window), either way. */
const RateRule = z.strictObject({
  ...common,
  ...forDuration,
  ...hysteresis,
  kind: z.literal('rate'),
  metric: MetricNameSchema,
  threshold: Finite.positive(),
  per: z.enum(['s', 'm']).default('m'),
  window: PositiveDuration.default(60_000),
});
/** No verified reading for `after` (the value is the seconds without one). */
const SilentRule = z.strictObject({ ...common, kind: z.literal('silent'), after: PositiveDuration });
/** Fewer than `threshold` % of the expected readings arrived over `window` (ingest's seq-gap counts). */
const CompletenessRule = z.strictObject({
  ...common,
  ...forDuration,
  ...hysteresis,
  kind: z.literal('completeness'),
  threshold: Finite.min(0).max(100),
  window: PositiveDuration.default(600_000),
});
/** More than `threshold` messages rejected (for `reasons`, default any) over `window`. */
const RejectionsRule = z.strictObject({
  ...common,
  ...forDuration,
  ...hysteresis,
  kind: z.literal('rejections'),
  threshold: z.number().int().min(0),
  window: PositiveDuration.default(300_000),
  reasons: z.array(z.enum(REJECT_REASONS)).min(1).optional(),
});

const RuleSchema = z
  .discriminatedUnion('kind', [AboveRule, BelowRule, RateRule, SilentRule, CompletenessRule, RejectionsRule])
  .superRefine((rule, ctx) => {
    if (rule.kind === 'silent') return;
    if (rule.clear !== undefined && rule.hysteresis !== undefined) ctx.addIssue({ code: 'custom', message: 'give clear or hysteresis, not both', path: ['clear'] });
    if (rule.clear === undefined) return;
    // The clear value lies on the healthy side of the threshold, or the rule could never resolve.
    const healthyBelow = rule.kind !== 'below' && rule.kind !== 'completeness';
    if (healthyBelow ? rule.clear > rule.threshold : rule.clear < rule.threshold) {
      ctx.addIssue({ code: 'custom', message: `clear must be ${healthyBelow ? 'at most' : 'at least'} the threshold (${rule.threshold})`, path: ['clear'] });
    }
  });

export const WebhookSchema = z.strictObject({
  url: z.string().max(2048).refine((u) => URL.canParse(u) && ['http:', 'https:'].includes(new URL(u).protocol), 'must be an http or https URL'),
  /** Signs each body: header `x-sensorpipe-signature: sha256=<hex HMAC-SHA256 of the body>`. */
  secret: z.string().min(16, 'must be at least 16 characters').max(512).optional(),
  /** Only events of these severities (default: all). */
  severities: z.array(AlertSeveritySchema).min(1).optional(),
  /** Only events of these rules (default: all). */
  rules: z.array(AlertRuleIdSchema).min(1).optional(),
  /** One delivery attempt's limit. */
  timeout: PositiveDuration.default(5_000),
});
export type Webhook = z.infer<typeof WebhookSchema>;

export const AlertRulesFileSchema = z
  .strictObject({
    rules: z.array(RuleSchema).max(1000).default([]),
    webhooks: z.array(WebhookSchema).max(50).default([]),
  })
  .superRefine((file, ctx) => {
    const seen = new Set<string>();
    file.rules.forEach((rule, i) => {
      if (seen.has(rule.id)) ctx.addIssue({ code: 'custom', message: `rule id ${rule.id} is used twice`, path: ['rules', i, 'id'] });
      if (rule.id.startsWith('meta-')) ctx.addIssue({ code: 'custom', message: 'rule ids starting with meta- are kept for rules from device metadata', path: ['rules', i, 'id'] });
      seen.add(rule.id);
    });
    const urls = new Set<string>();
    file.webhooks.forEach((hook, i) => {
      if (urls.has(hook.url)) ctx.addIssue({ code: 'custom', message: 'the same webhook url is listed twice', path: ['webhooks', i, 'url'] });
      urls.add(hook.url);
    });
  });
export type AlertRulesFile = z.infer<typeof AlertRulesFileSchema>;
export type AlertRule = AlertRulesFile['rules'][number];

/** A rule as the evaluator uses it: every kind's threshold and clear value in the value's own terms. */
export interface ResolvedRule {
  id: string;
  kind: AlertRuleKind;
  severity: AlertSeverity;
  selector: AlertSelector;
  metric?: string;
  threshold: number;
  clear: number;
  forMs: number;
  windowMs: number;
  /** rate: 1000 (per second) or 60000 (per minute). */
  perMs: number;
  reasons?: readonly RejectReason[];
  description?: string;
}

/** Fires when the value is past `threshold` on this side; `above` for above, rate, rejections and silent. */
export function firesAbove(kind: AlertRuleKind): boolean {
  return kind !== 'below' && kind !== 'completeness';
}

export function resolveRule(rule: AlertRule): ResolvedRule {
  const base = { id: rule.id, kind: rule.kind, severity: rule.severity, selector: rule.selector, ...(rule.description === undefined ? {} : { description: rule.description }) };
  if (rule.kind === 'silent') {
    const seconds = rule.after / 1000;
    return { ...base, threshold: seconds, clear: seconds, forMs: 0, windowMs: rule.after, perMs: 1000 };
  }
  const above = firesAbove(rule.kind);
  const clear = rule.clear ?? (rule.hysteresis === undefined ? rule.threshold : above ? rule.threshold - rule.hysteresis : rule.threshold + rule.hysteresis);
  return {
    ...base,
    ...('metric' in rule ? { metric: rule.metric } : {}),
    threshold: rule.threshold,
    clear,
    forMs: rule.for,
    windowMs: 'window' in rule ? rule.window : 0,
    perMs: rule.kind === 'rate' && rule.per === 's' ? 1000 : 60_000,
    ...(rule.kind === 'rejections' && rule.reasons !== undefined ? { reasons: rule.reasons } : {}),
  };
}

// ---- per-device rules from registry metadata -------------------------------------------------------

/**
 * A device's own rules, in its metadata's `alerts` value: clauses separated by `;`, each one of
 *
 *   <metric> > <number> [clear <number>] [for <duration>]      above (e.g. `temperature > 35 clear 33 for 30s`)
 *   <metric> < <number> [clear <number>] [for <duration>]      below
 *   silent <duration>                                          no reading for that long
 *   completeness < <percent> [window <duration>]               default window 10m
 *   rejections > <count> [window <duration>]                   any reason; default window 5m
 *
 * Each becomes a `warning` rule for that device alone, with the id `meta-<metric>-above|below`,
 * `meta-silent`, `meta-completeness` or `meta-rejections`. A clause that does not parse is reported
 * (ALERT_META_INVALID) and skipped; the device's other clauses still apply.
 */
export const META_ALERTS_KEY = 'alerts';

const NUMBER = '(-?\\d+(?:\\.\\d+)?)';
const DURATION_TEXT = '(\\d+(?:\\.\\d+)?(?:ms|s|m|h|d|w))';
const THRESHOLD_CLAUSE = new RegExp(`^([a-z][a-z0-9_]{0,31})\\s*([<>])\\s*${NUMBER}(?:\\s+clear\\s+${NUMBER})?(?:\\s+for\\s+${DURATION_TEXT})?$`);
const SILENT_CLAUSE = new RegExp(`^silent\\s+${DURATION_TEXT}$`);
const COMPLETENESS_CLAUSE = new RegExp(`^completeness\\s*<\\s*${NUMBER}%?(?:\\s+window\\s+${DURATION_TEXT})?$`);
const REJECTIONS_CLAUSE = new RegExp(`^rejections\\s*>\\s*(\\d+)(?:\\s+window\\s+${DURATION_TEXT})?$`);

export interface MetaRulesResult {
  rules: ResolvedRule[];
  /** One message per clause that was refused. */
  problems: string[];
}

/** The rules a device's metadata gives it (none without an `alerts` value). */
export function rulesFromMeta(deviceId: string, meta: DeviceMeta): MetaRulesResult {
  const text = (meta as Record<string, string | undefined>)[META_ALERTS_KEY];
  const result: MetaRulesResult = { rules: [], problems: [] };
  if (text === undefined) return result;
  const ids = new Set<string>();
  for (const raw of text.split(';')) {
    const clause = raw.trim().replace(/\s+/g, ' ');
    if (clause === '') continue;
    const input = clauseToRule(clause, deviceId);
    const parsed = input === undefined ? undefined : RuleSchema.safeParse(input);
    if (parsed === undefined || !parsed.success) {
      result.problems.push(`"${clause.slice(0, 80)}": ${parsed?.error.issues[0]?.message ?? 'not a clause of the documented grammar'}`);
      continue;
    }
    if (ids.has(parsed.data.id)) {
      result.problems.push(`"${clause.slice(0, 80)}": a second rule ${parsed.data.id}`);
      continue;
    }
    ids.add(parsed.data.id);
    result.rules.push(resolveRule(parsed.data));
  }
  return result;
}

function clauseToRule(clause: string, device: string): Record<string, unknown> | undefined {
  const selector = { device };
  let m = THRESHOLD_CLAUSE.exec(clause);
  if (m !== null && m[1] !== 'completeness' && m[1] !== 'rejections') {
    const kind = m[2] === '>' ? 'above' : 'below';
    return {
      id: `meta-${m[1]}-${kind}`,
      kind,
      metric: m[1],
      threshold: Number(m[3]),
      ...(m[4] === undefined ? {} : { clear: Number(m[4]) }),
      ...(m[5] === undefined ? {} : { for: m[5] }),
      selector,
    };
  }
  m = SILENT_CLAUSE.exec(clause);
  if (m !== null) return { id: 'meta-silent', kind: 'silent', after: m[1], selector };
  m = COMPLETENESS_CLAUSE.exec(clause);
  if (m !== null) return { id: 'meta-completeness', kind: 'completeness', threshold: Number(m[1]), ...(m[2] === undefined ? {} : { window: m[2] }), selector };
  m = REJECTIONS_CLAUSE.exec(clause);
  if (m !== null) return { id: 'meta-rejections', kind: 'rejections', threshold: Number(m[1]), ...(m[2] === undefined ? {} : { window: m[2] }), selector };
  return undefined;
}

// ---- the alerts API's query --------------------------------------------------------------------------

/** `GET /api/alerts/history` parameters (URL text). Times as in the display's API (core/query.ts). */
export const AlertHistoryQuerySchema = z.strictObject({
  device: DeviceIdSchema.optional(),
  rule: AlertRuleIdSchema.optional(),
  from: z.string().optional(),
  to: z.string().optional(),
  limit: z
    .string()
    .regex(/^\d{1,5}$/, 'must be a whole number from 1 to 1000')
    .transform(Number)
    .pipe(z.number().int().min(1, 'must be from 1 to 1000').max(1000, 'must be from 1 to 1000'))
    .optional(),
});
