/** The alerts component's Prometheus metrics, on one registry per instance (served at /metrics). */
import { Counter, Gauge, Registry } from 'prom-client';
import { collectProcessMetrics } from '../core/ops-http.ts';
import { webhookLabel } from './webhook-label.ts';

export function createAlertsMetrics() {
  const registry = new Registry();
  collectProcessMetrics(registry);
  const registers = [registry];
  /** Read when /metrics is scraped. */
  const probes = { queueDepth: (): { url: string; depth: number }[] => [], firing: (): number => 0 };
  const deliveries = new Counter({ name: 'sensorpipe_alerts_webhook_deliveries_total', help: 'Events delivered to webhooks (2xx answer), by webhook (scheme://host:port/…#digest of its URL).', labelNames: ['webhook'] as const, registers });
  const deliveryFailures = new Counter({ name: 'sensorpipe_alerts_webhook_failures_total', help: 'Webhook delivery attempts that failed (retried later), by webhook and reason (timeout, HTTP status, connection error code).', labelNames: ['webhook', 'reason'] as const, registers });
  const deliveryDropped = new Counter({ name: 'sensorpipe_alerts_webhook_dropped_total', help: 'Events dropped from a full webhook outbox (SENSORPIPE_WEBHOOK_QUEUE_MAX), by webhook.', labelNames: ['webhook'] as const, registers });
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
    deliveries,
    deliveryFailures,
    deliveryDropped,
    queueDepth: new Gauge({
      name: 'sensorpipe_alerts_webhook_queue_depth',
      help: 'Events waiting in a webhook outbox, by webhook.',
      labelNames: ['webhook'] as const,
      registers,
      collect() {
        // Rebuilt at each scrape: a webhook taken out of the rules file leaves no series behind.
        this.reset();
        const depths = new Map<string, number>();
        for (const q of probes.queueDepth()) {
          const webhook = webhookLabel(q.url);
          depths.set(webhook, (depths.get(webhook) ?? 0) + q.depth);
        }
        for (const [webhook, depth] of depths) this.set({ webhook }, depth);
      },
    }),
    /**
     * A webhook's counters at 0 from the moment it is in the rules file: the alert rule "events wait and
     * none was delivered" compares with its deliveries, which must exist before the first one.
     */
    addWebhook(url: string): void {
      const webhook = webhookLabel(url);
      deliveries.inc({ webhook }, 0);
      deliveryDropped.inc({ webhook }, 0);
    },
    /** A webhook taken out of the rules file: its series go (`others`: the URLs still in it, which may share its label). */
    async removeWebhook(url: string, others: Iterable<string>): Promise<void> {
      const webhook = webhookLabel(url);
      if ([...others].some((other) => webhookLabel(other) === webhook)) return;
      deliveries.remove({ webhook });
      deliveryDropped.remove({ webhook });
      for (const { labels } of (await deliveryFailures.get()).values) {
        if (labels.webhook === webhook) deliveryFailures.remove({ webhook, reason: String(labels.reason) });
      }
    },
  };
}

export type AlertsMetrics = ReturnType<typeof createAlertsMetrics>;
