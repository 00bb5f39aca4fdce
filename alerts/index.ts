/**
 * alerts — rules evaluated on the verified feed, device status, completeness and ingest's counts; alert
 * state changes logged, published and delivered.
 *
 * Talks to: the MQTT broker (as `svc:alerts`: reads pipeline/# and sensors/+/status, publishes the
 * retained alerts/{device}), the device registry (its file or Redis: which devices exist, their
 * site/profile for selectors and their own `alerts` metadata rules), the rules file (followed while
 * running), its data folder (<data-dir>/alerts: the alert log and one outbox per webhook), webhook
 * receivers (HTTP POST), and its own HTTP port (/api/alerts, /metrics, /healthz, /livez, /readyz).
 *
 * Each change goes out in this order: appended to the alert log and fsynced; the device's retained
 * state published; queued in each interested webhook's outbox. Only then is the next change handled.
 * A crash between the log and an outbox loses no delivery: each outbox, when opened, catches up with the
 * log (WebhookOutbox.catchUp).
 */
import { randomUUID } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { resolveRule, type AlertRulesFile, type ResolvedRule } from '../core/alert-rules.ts';
import { ALERT_STATE_RECENT_EVENTS, type AlertEvent, type AlertStateMessage } from '../core/alerts.ts';
import type { ConfigOf, configSpecs } from '../core/config.ts';
import type { Logger } from '../core/logger.ts';
import { instrumentRegistryStore, openRegistryStore } from '../core/registry-store.ts';
import { PROTOCOL_VERSION } from '../core/schemas.ts';
import { AlertLog } from './alert-log.ts';
import { AlertEngine, type EngineChange } from './engine.ts';
import { AlertsFeed } from './feed.ts';
import { serveAlertsHttp } from './http.ts';
import { createAlertsMetrics, type AlertsMetrics } from './metrics.ts';
import { WebhookOutbox } from './outbox.ts';
import { webhookLabel } from './webhook-label.ts';
import { loadRulesFile, watchRulesFile } from './rules-file.ts';

/** How often the retained state of a device whose values (not states) changed is published again. */
const VALUE_REFRESH_MS = 5_000;

export type AlertsConfig = ConfigOf<typeof configSpecs.alerts>;

export interface StartAlertsOptions {
  config: AlertsConfig;
  registryPath: string;
  logger: Logger;
  /** Injected clock (tests of time-driven rules use the real one; this is for nothing else). */
  now?: () => number;
}

export interface RunningAlerts {
  port: number;
  url: string;
  rulesPath: string;
  metrics: AlertsMetrics;
  feed: AlertsFeed;
  log: AlertLog;
  /** Reads the rules file now (the watch does it on every change). */
  reloadRules(): Promise<void>;
  /** Resolves once every change so far is logged, published and queued. */
  settled(): Promise<void>;
  close(): Promise<void>;
}

export function rulesPathOf(config: { dataDir: string; alertRules?: string | undefined }): string {
  return resolve(config.alertRules ?? join(config.dataDir, 'alert-rules.yaml'));
}

export async function startAlerts({ config, registryPath, logger, now = Date.now }: StartAlertsOptions): Promise<RunningAlerts> {
  const log = logger.child({ component: 'alerts' });
  const metrics = createAlertsMetrics();
  const rulesPath = rulesPathOf(config);
  // Fail fast, as config does: a rules file that is invalid at start has no earlier rules to fall back on.
  await loadRulesFile(rulesPath);
  const dir = join(config.dataDir, 'alerts');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const alertLog = await AlertLog.open({ path: join(dir, 'alerts.log'), maxBytes: config.alertLogMaxBytes });
  if (alertLog.skippedLines > 0) log.warn({ lines: alertLog.skippedLines }, 'alert log lines that do not parse were skipped');

  // ---- outputs, one change at a time, in order ------------------------------------------------------
  const outboxes = new Map<string, WebhookOutbox>();
  let output: Promise<void> = Promise.resolve();
  let feed: AlertsFeed | undefined;
  let closing = false;
  const publishState = (device: string) => {
    if (feed === undefined) return Promise.resolve();
    const message: AlertStateMessage = {
      v: PROTOCOL_VERSION,
      device,
      at: now(),
      rules: engine.statesOf(device).slice(0, 256),
      recent: alertLog.query({ device, limit: ALERT_STATE_RECENT_EVENTS }),
    };
    return feed.publishState(device, JSON.stringify(message));
  };
  // Handed to MQTT.js without waiting for the broker's PUBACK: MQTT.js keeps the order and holds the
  // messages while the broker is away, and a broker that is down must not hold up the webhooks.
  const publishStateSoon = (device: string) => {
    if (closing) return; // the connection is ending: the retained states stand as last published
    publishState(device).catch((err: unknown) => log.warn({ err: (err as Error).message, device }, 'alert state publish failed'));
  };
  const emit = (event: AlertEvent) => {
    output = output.then(async () => {
      try {
        await alertLog.append(event);
      } catch (err) {
        // Without the log nothing may go out: a receiver must never know of an event the log lost.
        log.error({ err: (err as Error).message, event: event.id }, 'alert log append failed; event not published');
        return;
      }
      metrics.events.inc({ state: event.state, severity: event.severity });
      log.info({ device: event.device, rule: event.rule, state: event.state, value: event.value }, event.message);
      publishStateSoon(event.device);
      for (const outbox of outboxes.values()) {
        if (!outbox.wants(event)) continue;
        await outbox.enqueue(event).catch((err: unknown) => log.error({ err: (err as Error).message, webhook: webhookLabel(outbox.url) }, 'webhook outbox write failed'));
      }
    });
  };
  const statesDue = new Set<string>();
  const stateDue = (device: string) => {
    // Coalesced: a device whose states change several times within one turn is published once, after.
    if (statesDue.size === 0) {
      queueMicrotask(() => {
        const devices = [...statesDue];
        statesDue.clear();
        output = output.then(() => {
          for (const d of devices) publishStateSoon(d);
        });
      });
    }
    statesDue.add(device);
  };

  // Devices whose rule values moved without a state change: their retained state is refreshed every
  // VALUE_REFRESH_MS, not on every reading (which would double the MQTT traffic of the fleet).
  const valuesChanged = new Set<string>();
  const engine = new AlertEngine({
    maxLagMs: config.alertsMaxLagMs,
    onChange: (change) => emit(eventOf(change)),
    onDeviceState: stateDue,
    onMetaProblem: (device, problem) => {
      metrics.ruleErrors.inc({ code: 'ALERT_META_INVALID' });
      log.warn({ code: 'ALERT_META_INVALID', device, problem }, 'alert metadata clause skipped');
    },
    onValue: (device) => valuesChanged.add(device),
    onSkipped: (reason) => metrics.skippedReadings.inc({ reason }),
    onEvaluation: (kind) => metrics.evaluations.inc({ kind }),
  });
  // What the log says is firing stays firing: a restart neither fires it again nor forgets it.
  const lastByPair = new Map<string, AlertEvent>();
  for (const event of alertLog.all()) lastByPair.set(`${event.device}\u0000${event.rule}`, event);
  for (const event of lastByPair.values()) if (event.state === 'firing') engine.restoreFiring(event);

  // ---- rules: the file and the registry ------------------------------------------------------------
  const applyFile = async (file: AlertRulesFile) => {
    const rules: ResolvedRule[] = file.rules.map(resolveRule);
    engine.setFileRules(rules, now());
    // In the output chain: an event is never half way between the log and the outboxes while they change,
    // so an outbox opened now either catches up with it from the log or gets it from `emit`, never neither.
    const step = output.then(() => applyWebhooks(file));
    output = step.catch(() => undefined);
    await step;
    metrics.ruleReloads.inc();
    rulesApplied = true;
    log.info({ rules: rules.length, webhooks: file.webhooks.length, file: rulesPath }, 'alert rules in force');
  };
  const applyWebhooks = async (file: AlertRulesFile) => {
    const urls = new Set(file.webhooks.map((w) => w.url));
    for (const [url, outbox] of outboxes) {
      if (urls.has(url)) continue;
      // A webhook taken out of the file: its loop stops; its outbox file stays, picked up if it comes back.
      outboxes.delete(url);
      await outbox.close();
      await metrics.removeWebhook(url, urls);
    }
    for (const webhook of file.webhooks) {
      const existing = outboxes.get(webhook.url);
      if (existing !== undefined) {
        existing.update(webhook);
        continue;
      }
      const label = webhookLabel(webhook.url);
      const outbox = await WebhookOutbox.open({
        dir,
        webhook,
        retryMinMs: config.webhookRetryMinMs,
        retryMaxMs: config.webhookRetryMaxMs,
        maxQueued: config.webhookQueueMax,
        logger: log,
        onDelivered: () => metrics.deliveries.inc({ webhook: label }),
        onFailed: (reason) => metrics.deliveryFailures.inc({ webhook: label, reason }),
        onDropped: () => metrics.deliveryDropped.inc({ webhook: label }),
      });
      metrics.addWebhook(webhook.url);
      outboxes.set(webhook.url, outbox);
      // Events the log has and this outbox never took: a crash came between the two appends (or the
      // webhook was out of the rules file for a while). A new webhook starts at the log's end.
      const missed = await outbox.catchUp(alertLog.all());
      if (missed > 0) log.warn({ webhook: webhookLabel(webhook.url), events: missed }, 'webhook outbox caught up with the alert log');
    }
  };
  let applying: Promise<void> = Promise.resolve();
  /**
   * The last rules file accepted is wholly in force (its rules and every webhook's outbox open). False
   * until the first one is, and while the last one failed half way (an outbox file that cannot be opened):
   * not ready, as the file's receivers would not be told.
   */
  let rulesApplied = false;
  const rulesWatch = watchRulesFile(rulesPath, {
    onRules: (file) => {
      applying = applying
        .then(() => applyFile(file))
        .catch((err: unknown) => {
          rulesApplied = false;
          log.error({ err: (err as Error).message }, 'alert rules not applied');
        });
    },
    onError: (err) => {
      metrics.ruleErrors.inc({ code: err.code });
      log.error({ code: err.code, err: err.message, file: rulesPath }, 'alert rules file refused; the previous rules stay in force');
    },
  });
  const reloadRules = async () => {
    await rulesWatch.reload();
    await applying;
  };

  const registryStore = instrumentRegistryStore(openRegistryStore({ registryPath, redisUrl: config.redisUrl, logger: log }), metrics.registry);
  let registryWatch: { close(): void } | undefined;
  let http: Awaited<ReturnType<typeof serveAlertsHttp>> | undefined;
  let tick: NodeJS.Timeout | undefined;
  let refresh: NodeJS.Timeout | undefined;
  try {
    await reloadRules();
    engine.setDevices((await registryStore.load()).list(), now());
    registryWatch = registryStore.watch((registry) => engine.setDevices(registry.list(), now()), {
      onError: (err) => log.error({ err: err.message }, 'registry reload failed; keeping the previous one'),
    });
    // Firing in the log, for a device or rule that is gone: resolved, so that no receiver waits forever.
    for (const stale of engine.takeUnclaimed()) {
      emit({ ...stale, v: PROTOCOL_VERSION, id: randomUUID(), state: 'resolved', at: now(), message: `resolved: rule ${stale.rule} no longer applies to ${stale.device}` });
    }

    feed = new AlertsFeed({
      url: config.mqttUrl,
      clientId: config.alertsClientId,
      password: config.alertsPassword,
      logger: log,
      metrics,
      handlers: {
        readings: (message) => engine.onReadings(message, now()),
        status: (message) => engine.onStatus(message),
        completeness: (message) => engine.onCompleteness(message, now()),
        counts: (message) => engine.onCounts(message, now()),
      },
    });
    const connectedFeed = feed;
    // Every device's state once connected (again): the retained messages follow the rules in force.
    connectedFeed.client.on('connect', () => {
      for (const device of engine.deviceIds()) stateDue(device);
    });
    tick = setInterval(() => engine.tick(now()), config.alertsTickMs);
    refresh = setInterval(() => {
      for (const device of valuesChanged) stateDue(device);
      valuesChanged.clear();
    }, VALUE_REFRESH_MS);
    metrics.probes.queueDepth = () => [...outboxes.values()].map((o) => ({ url: o.url, depth: o.depth }));
    metrics.probes.firing = () => engine.firing().length;
    http = await serveAlertsHttp(config.alertsHost, config.alertsPort, { firing: () => engine.firing(), history: (filter) => alertLog.query(filter) }, {
      metrics: metrics.registry,
      health: () => ({ ok: connectedFeed.connected, mqtt: connectedFeed.connected, firing: engine.firing().length }),
      // Ready once it can see every change: connected, the broker's SUBACK granting every filter (before
      // it, readings go past unseen), and the rules file in force.
      readiness: () => {
        const subscription = connectedFeed.subscription;
        const notReady = [...(connectedFeed.connected ? [] : ['mqtt']), ...(subscription === 'granted' ? [] : ['subscription']), ...(rulesApplied ? [] : ['rules'])];
        return { ok: notReady.length === 0, notReady, mqtt: connectedFeed.connected, subscription, rules: rulesApplied };
      },
    });
  } catch (err) {
    clearInterval(tick);
    clearInterval(refresh);
    rulesWatch.close();
    registryWatch?.close();
    await feed?.close();
    for (const outbox of outboxes.values()) await outbox.close();
    await registryStore.close();
    await alertLog.close();
    throw err;
  }
  const server = http;
  const runningFeed = feed;
  log.info({ port: server.port, rules: rulesPath }, 'alerts running');

  function eventOf(change: EngineChange): AlertEvent {
    const { rule, device, value } = change;
    return {
      v: PROTOCOL_VERSION,
      id: randomUUID(),
      device,
      rule: rule.id,
      kind: rule.kind,
      severity: rule.severity,
      state: change.change,
      ...(rule.metric === undefined ? {} : { metric: rule.metric }),
      value,
      threshold: rule.threshold,
      at: change.at,
      message: describeChange(change).slice(0, 512),
    };
  }

  function describeChange(change: EngineChange): string {
    const { rule, device, value } = change;
    const shown = value === null ? 'no value' : String(Math.round(value * 1000) / 1000);
    if (change.note !== undefined) return `${device}: ${rule.id} resolved: ${change.note}`;
    const what: Record<ResolvedRule['kind'], string> = {
      above: `${rule.metric} ${shown} ${change.change === 'firing' ? `above ${rule.threshold}` : `back at or below ${rule.clear}`}`,
      below: `${rule.metric} ${shown} ${change.change === 'firing' ? `below ${rule.threshold}` : `back at or above ${rule.clear}`}`,
      rate: `${rule.metric} changing ${shown}/${rule.perMs === 1000 ? 's' : 'min'} ${change.change === 'firing' ? `faster than ${rule.threshold}` : `(at most ${rule.clear})`}`,
      silent: change.change === 'firing' ? `no reading for ${shown} s${engine.isOffline(device) ? ' (offline)' : ''}` : 'readings again',
      completeness: `${shown} % of readings arrived ${change.change === 'firing' ? `(under ${rule.threshold} %)` : `(back to ${rule.clear} % or more)`}`,
      rejections: `${shown} messages rejected ${change.change === 'firing' ? `(more than ${rule.threshold})` : `(${rule.clear} or fewer)`}`,
    };
    return `${device}: ${rule.id} ${change.change}: ${what[rule.kind]}${rule.description === undefined ? '' : ` — ${rule.description}`}`;
  }

  const settled = async () => {
    await new Promise<void>((r) => queueMicrotask(r));
    let seen: Promise<void> | undefined;
    while (seen !== output) {
      seen = output;
      await output;
    }
  };

  return {
    port: server.port,
    url: `http://${config.alertsHost}:${server.port}`,
    rulesPath,
    metrics,
    feed: runningFeed,
    log: alertLog,
    reloadRules,
    settled,
    async close() {
      clearInterval(tick);
      clearInterval(refresh);
      rulesWatch.close();
      registryWatch?.close();
      await applying;
      await settled();
      closing = true;
      await server.close();
      await runningFeed.close();
      for (const outbox of outboxes.values()) await outbox.close();
      await registryStore.close();
      await alertLog.close();
    },
  };
}
