/**
 * The whole pipeline for a soak, in separate processes on free loopback ports, the way an operator
 * runs it (`sensorpipe broker | ingest | display | sim`), against a real influxd:
 *
 *   sim ──▶ devices' cut proxy ──▶ broker ◀── ingest's cut proxy ◀── ingest ──▶ influx fault proxy ──▶ influxd
 *   load ─────────────────────────▶ │ └──────────────────────────────────────────────▶ display ─────────▶ influxd
 *                                                                                       ◀── viewers
 *                                    └──────▶ alerts ──▶ webhook receivers (healthy, flapping: in the soak)
 *
 * Ingest reaches influxd only through the fault proxy (influx-fault-proxy.ts); the display, and the
 * soak's own reading of the store, go to influxd directly. `load` is the overload phase's generator: a
 * second `sensorpipe sim` of registered, signing devices (load-0000 …) with its own acknowledgement
 * log, started and stopped by the chaos plan. Both fleets are provisioned into the registry before
 * anything starts (the simulators then find their devices and add none). `alerts` runs the rules of
 * soak/alerts.ts on the fleet and POSTs its events to two receivers in the soak's own process
 * (webhook-receiver.ts): one healthy, one that flaps. Every process logs to
 * <dir>/logs/<name>.log.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FAULTS, provisionFleet } from '../firmware-sim/index.ts';
import { startInfluxd, type InfluxServer } from '../harness/influxd.ts';
import { freePort } from '../harness/ports.ts';
import { startInfluxFaultProxy, type InfluxFaultProxy } from './influx-fault-proxy.ts';
import { ManagedProcess } from './processes.ts';
import { startCutProxy, type CutProxy } from './proxy.ts';
import { soakAlertRules } from './alerts.ts';
import { startWebhookReceiver, type WebhookReceiver } from './webhook-receiver.ts';

export interface PipelineOptions {
  dir: string;
  devices: number;
  intervalMs: number;
  seed: number;
  minutes: number;
  /** The overload generator: devices, and the interval of each (readings/s = devices × 1000 / intervalMs). */
  load: { devices: number; intervalMs: number };
}

/**
 * Devices and interval for `rate` readings a second. A device publishes each reading as one QoS 1
 * message, and the broker lets a device publish 20 messages a second on average (its token bucket,
 * SENSORPIPE_DEVICE_PUBLISH_RATE): at 10 a second each, with the simulator's ±10 % jitter, a load
 * device stays well inside it, so the overload is many devices at a legal rate, not one device abusing
 * its own.
 */
export function loadShape(rate: number): { devices: number; intervalMs: number } {
  const devices = Math.max(1, Math.ceil(rate / 10));
  return { devices, intervalMs: Math.max(50, Math.round((devices * 1000) / rate)) };
}

export interface SoakPipeline {
  influx: InfluxServer;
  database: string;
  dataDir: string;
  deviceIds: string[];
  faults: string;
  broker: ManagedProcess;
  ingest: ManagedProcess;
  display: ManagedProcess;
  sim: ManagedProcess;
  alerts: ManagedProcess;
  /** The alerts' webhook receivers: `healthy` never fails, `flapping` does (webhook-receiver.ts). */
  receivers: { healthy: WebhookReceiver; flapping: WebhookReceiver };
  /** What each receiver's webhook wants (the rules file's filters). */
  receiverFilters: Record<string, { severities?: string[] }>;
  alertLogPath: string;
  alertsMetricsUrl: string;
  /** The overload generator (not running until the overload strikes). */
  load: ManagedProcess;
  loadDeviceIds: string[];
  devicesProxy: CutProxy;
  ingestProxy: CutProxy;
  /** Between ingest and influxd. */
  influxLink: InfluxFaultProxy;
  ackedLogPath: string;
  loadAckedLogPath: string;
  ingestMetricsUrl: string;
  brokerMetricsUrl: string;
  liveUrl: string;
  /** The processes whose memory is judged. */
  processes: ManagedProcess[];
  close(): Promise<void>;
}

/**
 * Every fault on a device of its own (sim-0000 … sim-0010), so each reason can be told apart, plus
 * flaps on a tenth of the fleet (chosen by the seed, possibly on top of another fault).
 */
export function soakFaults(): string {
  return [...FAULTS.map((fault, i) => `${fault}@sim-${String(i).padStart(4, '0')}`), 'flap:0.1'].join(',');
}

export async function startPipeline(options: PipelineOptions): Promise<SoakPipeline> {
  const logs = join(options.dir, 'logs');
  await mkdir(logs, { recursive: true });
  const dataDir = join(options.dir, 'data');
  const registryPath = join(options.dir, 'registry.json');
  const database = 'soak';
  const fleet = await provisionFleet({ devices: options.devices, registryPath, stateDir: join(dataDir, 'sim'), profile: 'mixed' });
  // The load generator's devices, registered like any: its simulator gets their credentials as a file
  // (`sensorpipe devices add --json` lines) and a data folder of its own (its seq book).
  const loadDir = join(options.dir, 'load');
  const loadFleet = await provisionFleet({ devices: options.load.devices, registryPath, stateDir: join(loadDir, 'state'), profile: 'mixed', idPrefix: 'load' });
  const loadCredentials = join(loadDir, 'credentials.jsonl');
  await writeFile(loadCredentials, loadFleet.map((c) => JSON.stringify(c)).join('\n'), { mode: 0o600 });
  const influx = await startInfluxd();
  const influxLink = await startInfluxFaultProxy(influx.url);

  const [mqttPort, brokerMetricsPort, ingestMetricsPort, httpPort, alertsPort] = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const secret = () => randomBytes(18).toString('base64url');
  const ingestPassword = secret();
  const displayPassword = secret();
  const alertsPassword = secret();
  const viewerToken = secret();
  const common = { SENSORPIPE_DATA_DIR: dataDir, SENSORPIPE_REGISTRY: registryPath, SENSORPIPE_LOG_LEVEL: 'info' };
  const store = { SENSORPIPE_INFLUX_URL: influx.url, SENSORPIPE_INFLUX_DATABASE: database };
  // Ingest writes (and looks up) through the fault proxy, never to influxd directly.
  const ingestStore = { ...store, SENSORPIPE_INFLUX_URL: influxLink.url };
  const devicesProxy = await startCutProxy(mqttPort);
  const ingestProxy = await startCutProxy(mqttPort);
  const ackedLogPath = join(options.dir, 'acked.log');
  const loadAckedLogPath = join(options.dir, 'load-acked.log');
  const faults = soakFaults();

  const broker = new ManagedProcess({
    name: 'broker',
    args: ['broker'],
    env: {
      ...common,
      SENSORPIPE_MQTT_HOST: '127.0.0.1',
      SENSORPIPE_MQTT_PORT: String(mqttPort),
      SENSORPIPE_MQTT_WS_PORT: '0',
      SENSORPIPE_BROKER_METRICS_PORT: String(brokerMetricsPort),
      SENSORPIPE_INGEST_PASSWORD: ingestPassword,
      SENSORPIPE_DISPLAY_PASSWORD: displayPassword,
      SENSORPIPE_ALERTS_PASSWORD: alertsPassword,
    },
    logPath: join(logs, 'broker.log'),
    ready: { url: `http://127.0.0.1:${brokerMetricsPort}/healthz` },
  });
  const ingest = new ManagedProcess({
    name: 'ingest',
    args: ['ingest'],
    env: {
      ...common,
      ...ingestStore,
      SENSORPIPE_MQTT_URL: `mqtt://127.0.0.1:${ingestProxy.port}`,
      SENSORPIPE_INGEST_PASSWORD: ingestPassword,
      SENSORPIPE_INGEST_METRICS_PORT: String(ingestMetricsPort),
      // The unacknowledged gauge is refreshed on this timer; the end of the soak waits for it to read 0.
      SENSORPIPE_COMPLETENESS_INTERVAL: '1s',
    },
    logPath: join(logs, 'ingest.log'),
    ready: { log: /"msg":"(subscribed|session resumed[^"]*)"/ },
    readyTimeoutMs: 60_000,
  });
  const display = new ManagedProcess({
    name: 'display',
    args: ['display'],
    env: {
      ...common,
      ...store,
      SENSORPIPE_MQTT_URL: `mqtt://127.0.0.1:${mqttPort}`,
      SENSORPIPE_DISPLAY_PASSWORD: displayPassword,
      SENSORPIPE_HTTP_HOST: '127.0.0.1',
      SENSORPIPE_HTTP_PORT: String(httpPort),
      SENSORPIPE_VIEWER_TOKEN: viewerToken,
    },
    logPath: join(logs, 'display.log'),
    ready: { url: `http://127.0.0.1:${httpPort}/healthz` },
  });
  const sim = new ManagedProcess({
    name: 'sim',
    args: [
      'sim',
      '--devices', String(options.devices),
      '--interval', `${options.intervalMs}ms`,
      '--profile', 'mixed',
      '--seed', String(options.seed),
      '--faults', faults,
      '--broker', `mqtt://127.0.0.1:${devicesProxy.port}`,
      '--acked-log', ackedLogPath,
    ],
    env: common,
    logPath: join(logs, 'sim.log'),
    ready: { log: /"msg":"fleet started"/ },
  });
  // The alerts: straight to the broker (a broker restart or kill cuts it off like everyone), its rules
  // on the fleet, its two webhooks in this process. Retries capped at 4 s (default 5 min): a receiver
  // back from an outage gets its backlog within seconds, so the drain at the end stays short.
  const receivers = {
    healthy: await startWebhookReceiver({ name: 'healthy', secret: secret(), flapping: false, seed: options.seed }),
    flapping: await startWebhookReceiver({ name: 'flapping', secret: secret(), flapping: true, seed: options.seed ^ 0x600d }),
  };
  const receiverFilters: Record<string, { severities?: string[] }> = { healthy: {}, flapping: { severities: ['warning', 'critical'] } };
  const rulesPath = join(options.dir, 'alert-rules.json');
  const fleetIds = fleet.map((c) => c.deviceId);
  await writeFile(
    rulesPath,
    soakAlertRules(fleetIds, [
      { url: receivers.healthy.url, secret: receivers.healthy.secret },
      { url: receivers.flapping.url, secret: receivers.flapping.secret, severities: ['warning', 'critical'] },
    ]),
  );
  const alerts = new ManagedProcess({
    name: 'alerts',
    args: ['alerts'],
    env: {
      ...common,
      SENSORPIPE_MQTT_URL: `mqtt://127.0.0.1:${mqttPort}`,
      SENSORPIPE_ALERTS_PASSWORD: alertsPassword,
      SENSORPIPE_ALERTS_HOST: '127.0.0.1',
      SENSORPIPE_ALERTS_PORT: String(alertsPort),
      SENSORPIPE_ALERT_RULES: rulesPath,
      SENSORPIPE_WEBHOOK_RETRY_MIN: '250ms',
      SENSORPIPE_WEBHOOK_RETRY_MAX: '4s',
    },
    logPath: join(logs, 'alerts.log'),
    // Its outboxes deliver from here on, whether or not the broker is back yet (a kill during a broker outage).
    ready: { log: /"msg":"alerts running"/ },
  });
  // Straight to the broker: the devices' cut proxy would be one more process hop for every message.
  const load = new ManagedProcess({
    name: 'load',
    args: [
      'sim',
      '--devices', String(options.load.devices),
      '--interval', `${options.load.intervalMs}ms`,
      '--profile', 'mixed',
      '--seed', String(options.seed + 1),
      '--credentials', loadCredentials,
      '--broker', `mqtt://127.0.0.1:${mqttPort}`,
      '--acked-log', loadAckedLogPath,
    ],
    env: { SENSORPIPE_DATA_DIR: join(loadDir, 'data'), SENSORPIPE_LOG_LEVEL: 'info' },
    logPath: join(logs, 'load.log'),
    ready: { log: /"msg":"fleet started"/ },
  });

  return {
    influx,
    database,
    dataDir,
    deviceIds: fleetIds,
    faults,
    broker,
    ingest,
    display,
    sim,
    alerts,
    receivers,
    receiverFilters,
    alertLogPath: join(dataDir, 'alerts', 'alerts.log'),
    alertsMetricsUrl: `http://127.0.0.1:${alertsPort}/metrics`,
    load,
    loadDeviceIds: loadFleet.map((c) => c.deviceId),
    devicesProxy,
    ingestProxy,
    influxLink,
    ackedLogPath,
    loadAckedLogPath,
    ingestMetricsUrl: `http://127.0.0.1:${ingestMetricsPort}/metrics`,
    brokerMetricsUrl: `http://127.0.0.1:${brokerMetricsPort}/metrics`,
    liveUrl: `ws://127.0.0.1:${httpPort}/live?token=${encodeURIComponent(viewerToken)}`,
    processes: [broker, ingest, display, alerts, sim, load],
    close: async () => {
      for (const process of [load, sim, alerts, display, ingest, broker]) await process.kill('SIGKILL', 1000);
      await receivers.healthy.close();
      await receivers.flapping.close();
      await devicesProxy.close();
      await ingestProxy.close();
      await influxLink.close();
      await influx.close();
      for (const process of [load, sim, alerts, display, ingest, broker]) await process.closeLog();
    },
  };
}
