/** The alerts component's Prometheus metrics, on one registry per instance (served at /metrics). */
import { Counter, Gauge, Registry } from 'prom-client';
import { collectProcessMetrics } from '../core/ops-http.ts';

export function createAlertsMetrics() {
  const registry = new Registry();
  collectProcessMetrics(registry);
  const registers = [registry];
  /** Read when /metrics is scraped. */
  const probes = { queueDepth: (): { url: string; depth: number }[] => [], firing: (): number => 0 };
  return {
    registry,
    probes,
    evaluations: new Counter({ name: 'sensorpipe_alerts_evaluations_total', help: 'Rule evaluations (one rule, one device, one value or one tick), by rule kind.', labelNames: ['kind'] as const, registers }),
    events: new Counter({ name: 'sensorpipe_alerts_events_total', help: 'Alert state changes logged, by state (firing, resolved) and severity.', labelNames: ['state', 'severity'] as const, registers }),
    firing: new Gauge({ name: 'sensorpipe_alerts_firing', help: 'Rule and device pairs firing now.', registers, collect() { this.set(probes.firing()); } }),
    skippedReadings: new Counter({ name: 'sensorpipe_alerts_readings_skipped_total', help: 'Readings not evaluated, by reason: stale (older than SENSORPIPE_ALERTS_MAX_LAG on arrival: a backlog), out_of_order (not newer than the last evaluated).', labelNames: ['reason'] as const, registers }),
    feedMessages: new Counter({ name: 'sensorpipe_alerts_feed_messages_total', help: 'MQTT messages received, by kind.', labelNames: ['kind'] as const, registers }),
    feedInvalid: new Counter({ name: 'sensorpipe_alerts_feed_invalid_total', help: 'MQTT messages dropped as malformed, by kind.', labelNames: ['kind'] as const, registers }),
    ruleReloads: new Counter({ name: 'sensorpipe_alerts_rule_reloads_total', help: 'Rules files put in force (at start and after each change).', registers }),
    ruleErrors: new Counter({ name: 'sensorpipe_alerts_rule_errors_total', help: 'Rule problems, by code: ALERT_RULES_INVALID (a rules file refused; the previous rules stay), ALERT_META_INVALID (a device metadata clause skipped).', labelNames: ['code'] as const, registers }),
    deliveries: new Counter({ name: 'sensorpipe_alerts_webhook_deliveries_total', help: 'Events delivered to webhooks (2xx answer).', registers }),
    deliveryFailures: new Counter({ name: 'sensorpipe_alerts_webhook_failures_total', help: 'Webhook delivery attempts that failed (retried later), by reason (timeout, HTTP status, connection error code).', labelNames: ['reason'] as const, registers }),
    deliveryDropped: new Counter({ name: 'sensorpipe_alerts_webhook_dropped_total', help: 'Events dropped from a full webhook outbox (SENSORPIPE_WEBHOOK_QUEUE_MAX).', registers }),
    queueDepth: new Gauge({
      name: 'sensorpipe_alerts_webhook_queue_depth',
      help: 'Events waiting in webhook outboxes, all webhooks together.',
      registers,
      collect() {
        this.set(probes.queueDepth().reduce((sum, q) => sum + q.depth, 0));
      },
    }),
  };
}

export type AlertsMetrics = ReturnType<typeof createAlertsMetrics>;
