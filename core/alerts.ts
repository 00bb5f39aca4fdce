/**
 * The alerts component's messages (the rules file's own schema lives beside it in ./alert-rules.ts):
 *
 *   - an alert event: one change of one rule's state for one device (`firing` or `resolved`). Appended
 *     to the durable alert log, delivered to webhooks (the body is the event), listed by the API;
 *   - the alert state message, retained on `alerts/{device}`: every rule that applies to the device, its
 *     state now, and the device's most recent events, so that a display (re)starting anywhere shows
 *     firing alerts, threshold lines and recent history from MQTT alone.
 */
import { z } from 'zod';
import { DeviceIdSchema, MetricNameSchema, PROTOCOL_VERSION } from './schemas.ts';

/** What a rule watches (see ./alert-rules.ts for each kind's parameters). */
export const ALERT_RULE_KINDS = ['above', 'below', 'rate', 'silent', 'completeness', 'rejections'] as const;
export const AlertRuleKindSchema = z.enum(ALERT_RULE_KINDS);
export type AlertRuleKind = z.infer<typeof AlertRuleKindSchema>;

/** A rule's id: a slug, unique in the rules file (a per-device rule from registry metadata gets `meta-…`). */
export const AlertRuleIdSchema = z
  .string()
  .max(64)
  .regex(/^[a-z0-9][a-z0-9_-]*$/, 'rule id must be a lowercase slug: a-z, 0-9, "-" and "_"');

export const AlertSeveritySchema = z.enum(['info', 'warning', 'critical']);
export type AlertSeverity = z.infer<typeof AlertSeveritySchema>;

/** One state change of one rule for one device. */
export const AlertEventSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  /** Unique per event; a webhook receiver uses it to drop a retried delivery it already has. */
  id: z.string().min(1).max(64),
  device: DeviceIdSchema,
  rule: AlertRuleIdSchema,
  kind: AlertRuleKindSchema,
  severity: AlertSeveritySchema,
  state: z.enum(['firing', 'resolved']),
  /** The metric the rule watches (absent for silent, completeness and rejections rules). */
  metric: MetricNameSchema.optional(),
  /** The value that caused the change: the reading, the rate, the completeness ratio, the rejection count, the silent seconds. */
  value: z.number().nullable(),
  /** The rule's threshold in the value's terms. */
  threshold: z.number(),
  /** When the change happened (ms). */
  at: z.number().int(),
  /** A sentence for people: what crossed what. */
  message: z.string().max(512),
});
export type AlertEvent = z.infer<typeof AlertEventSchema>;

/** A rule that applies to the device, and its state now. */
export const AlertRuleStateSchema = z.strictObject({
  rule: AlertRuleIdSchema,
  kind: AlertRuleKindSchema,
  severity: AlertSeveritySchema,
  metric: MetricNameSchema.optional(),
  /** Fires past this value (for above/below/rate/completeness/rejections/silent, in the value's terms). */
  threshold: z.number(),
  /** Resolves only back past this value (hysteresis); equal to threshold when the rule has none. */
  clear: z.number(),
  /** `pending`: past the threshold, waiting out the rule's `for` duration. */
  state: z.enum(['ok', 'pending', 'firing']),
  /** Since when (ms) the rule has been in this state. */
  since: z.number().int(),
  /** The newest value the rule evaluated, if any. */
  value: z.number().nullable(),
});
export type AlertRuleState = z.infer<typeof AlertRuleStateSchema>;

/** At most this many recent events ride along in the retained state message. */
export const ALERT_STATE_RECENT_EVENTS = 20;

/** Retained on `alerts/{device}`. */
export const AlertStateMessageSchema = z.strictObject({
  v: z.literal(PROTOCOL_VERSION),
  device: DeviceIdSchema,
  at: z.number().int(),
  rules: z.array(AlertRuleStateSchema).max(256),
  /** The device's newest events, newest first. */
  recent: z.array(AlertEventSchema).max(ALERT_STATE_RECENT_EVENTS),
});
export type AlertStateMessage = z.infer<typeof AlertStateMessageSchema>;
