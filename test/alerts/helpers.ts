/**
 * For the alerts tests: the alerts component on a test pipeline (real broker, ingest, store), real HTTP
 * webhook receivers, and an MQTT watcher of the retained alerts/{device} messages.
 */
import { createHmac } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import mqtt, { type MqttClient } from 'mqtt';
import { startAlerts, type AlertsConfig, type RunningAlerts } from '../../alerts/index.ts';
import { AlertEventSchema, AlertStateMessageSchema, type AlertEvent, type AlertStateMessage } from '../../core/alerts.ts';
import { configSpecs, parseConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { topics } from '../../core/topics.ts';
import type { TestBroker } from '../../harness/broker.ts';

export const ALERTS_PASSWORD = 'alerts-test-password';

export async function startTestAlerts(options: { broker: TestBroker; dataDir: string; registryPath: string; rulesPath: string; env?: Record<string, string> }): Promise<RunningAlerts> {
  const alerts = await startAlerts({ config: alertsTestConfig({ ...options, mqttUrl: options.broker.url }), registryPath: options.registryPath, logger: createLogger({ level: 'silent' }) });
  await alerts.feed.ready;
  return alerts;
}

/** The alerts component's config for a test: any free port, fast ticks and retries. */
export function alertsTestConfig(options: { mqttUrl: string; dataDir: string; rulesPath: string; env?: Record<string, string> }): AlertsConfig {
  const { config } = parseConfig(configSpecs.alerts, {
    env: {
      SENSORPIPE_DATA_DIR: options.dataDir,
      SENSORPIPE_MQTT_URL: options.mqttUrl,
      SENSORPIPE_ALERTS_PASSWORD: ALERTS_PASSWORD,
      SENSORPIPE_ALERTS_PORT: '0',
      SENSORPIPE_ALERT_RULES: options.rulesPath,
      SENSORPIPE_ALERTS_TICK: '100ms',
      SENSORPIPE_WEBHOOK_RETRY_MIN: '100ms',
      SENSORPIPE_WEBHOOK_RETRY_MAX: '400ms',
      ...options.env,
    },
  });
  return config;
}

/** A real HTTP receiver: keeps every event it answered 2xx for (and the signature header), optionally slow or failing. */
export class WebhookReceiver {
  readonly events: AlertEvent[] = [];
  readonly signatures: (string | undefined)[] = [];
  /** The Authorization header of each event kept (a webhook URL's user info is sent as Basic). */
  readonly authorizations: (string | undefined)[] = [];
  /** Requests that arrived, answered or not. */
  arrivals = 0;
  status = 200;
  /** Events with these ids are answered 503 (a receiver failing on one event). */
  readonly refuseIds = new Set<string>();
  /** While held, requests are answered only once `release()` is called (a slow receiver). */
  private held: Promise<void> | undefined;
  private releaseHeld: (() => void) | undefined;
  private server: Server | undefined;

  constructor(public port = 0) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}/hook`;
  }

  async start(): Promise<this> {
    this.server = createServer((request, response) => {
      this.arrivals++;
      const chunks: Buffer[] = [];
      request.on('data', (c: Buffer) => chunks.push(c));
      request.on('end', () => {
        const answer = () => {
          const event = AlertEventSchema.parse(JSON.parse(Buffer.concat(chunks).toString('utf8')));
          const status = this.refuseIds.has(event.id) ? 503 : this.status;
          if (status >= 200 && status < 300) {
            this.events.push(event);
            this.signatures.push(request.headers['x-sensorpipe-signature'] as string | undefined);
            this.authorizations.push(request.headers.authorization);
          }
          response.writeHead(status).end();
        };
        if (this.held !== undefined) void this.held.then(answer);
        else answer();
      });
    });
    await new Promise<void>((resolve) => this.server!.listen(this.port, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    return this;
  }

  hold(): void {
    this.held = new Promise((resolve) => (this.releaseHeld = resolve));
  }

  release(): void {
    this.releaseHeld?.();
    this.held = undefined;
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (server === undefined) return;
    this.server = undefined;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

export function signatureOf(secret: string, event: AlertEvent): string {
  return `sha256=${createHmac('sha256', secret).update(JSON.stringify(event)).digest('hex')}`;
}

/** Watches alerts/+ as the admin account; keeps the newest retained state per device. */
export class AlertStateWatcher {
  readonly latest = new Map<string, AlertStateMessage>();
  private constructor(readonly client: MqttClient) {}

  static async connect(broker: TestBroker, username = broker.services.admin.username, password = broker.services.admin.password): Promise<AlertStateWatcher> {
    const client = await mqtt.connectAsync(broker.url, { username, password, clientId: `alerts-watch-${Math.random().toString(16).slice(2)}`, reconnectPeriod: 0 });
    const watcher = new AlertStateWatcher(client);
    client.on('message', (topic, payload) => {
      if (payload.length === 0) return;
      // A test's own junk on alerts/… (the ACL probe) is not a state.
      const parsed = AlertStateMessageSchema.safeParse(JSON.parse(payload.toString('utf8')));
      if (parsed.success) watcher.latest.set(topic.slice(topics.alerts('').length), parsed.data);
    });
    await client.subscribeAsync(topics.allAlerts, { qos: 1 });
    return watcher;
  }

  async close(): Promise<void> {
    await this.client.endAsync();
  }
}
