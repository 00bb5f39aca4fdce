/**
 * `sensorpipe start` (what `npm start` runs): the broker, ingest, the display, alerts and a demo fleet in one
 * process, on the embedded store under ./data unless InfluxDB is configured. Service-account passwords
 * that are not configured are generated for this run, since every component lives in this process.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startAdmin } from '../admin/index.ts';
import { rulesPathOf, startAlerts } from '../alerts/index.ts';
import { startBroker } from '../broker/index.ts';
import { configSpecs, helpText, parseConfig, registryPathOf } from '../core/config.ts';
import type { DeviceCredentials } from '../core/registry.ts';
import { openRegistryStore, type RegistryStore } from '../core/registry-store.ts';
import { topics } from '../core/topics.ts';
import { startDisplay } from '../display/index.ts';
import { parseFaults, provisionFleet, startFleet } from '../firmware-sim/index.ts';
import { startIngest } from '../ingest/index.ts';
import { openStore } from '../store/index.ts';
import type { Command } from './command.ts';
import { explainListenError, rootLogger, untilSignal } from './run.ts';

const DEMO_DEVICE = 'my-device';
/** A few devices misbehave, so the quarantine shows what sensorpipe refuses and why. */
const DEMO_FAULTS = 'bad-signature@sim-0003,non-json@sim-0007,clock-ahead@sim-0011,replay@sim-0015,dropout@sim-0019';

/**
 * Rules for the demo fleet, written to <data-dir>/alert-rules.yaml when it is missing (then it is the
 * user's to edit; the alerts component follows it). Thresholds the simulator's signals cross now and
 * then (firmware-sim/signals.ts: co2 and vibration have short excursions), the device with
 * bad signatures (DEMO_FAULTS), and the hand-driven demo device, silent until the user pushes a reading.
 */
const DEMO_RULES = `# sensorpipe alert rules (README "Alerts"). Edited while running: changes apply within a second or two.
rules:
  - id: co2-high
    kind: above
    metric: co2
    threshold: 750
    clear: 650
    severity: warning
    selector: { profile: env }
    description: ventilate the room
  - id: vibration-high
    kind: above
    metric: vibration_rms
    threshold: 5
    clear: 3.5
    severity: critical
    selector: { profile: industrial }
  - id: silent
    kind: silent
    after: 30s
    severity: warning
  - id: bad-signatures
    kind: rejections
    reasons: [READING_BAD_SIGNATURE]
    threshold: 0
    window: 5m
    severity: critical
    description: messages that do not verify - a broken key, or an attack
webhooks: []
# webhooks:
#   - url: http://127.0.0.1:9000/alerts
#     secret: a-shared-secret-of-16-or-more-characters
#     severities: [critical]
`;

async function demoRules(path: string): Promise<void> {
  // 'wx': never overwrite the user's own rules.
  await writeFile(path, DEMO_RULES, { flag: 'wx', mode: 0o600 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
}

/** A device for the user to push readings from by hand; its secrets are kept (0600) so every start can print them. */
async function demoDevice(dataDir: string, registryStore: RegistryStore): Promise<DeviceCredentials> {
  const file = join(dataDir, 'demo-device.json');
  const saved = await readFile(file, 'utf8').then((t) => JSON.parse(t) as DeviceCredentials, () => undefined);
  const registered = (await registryStore.load()).get(DEMO_DEVICE);
  if (saved !== undefined && registered?.status === 'active') return saved;
  const credentials = await registryStore.update((registry) =>
    registry.get(DEMO_DEVICE) ? registry.rotate(DEMO_DEVICE) : registry.add(DEMO_DEVICE, { meta: { site: 'your desk', profile: 'manual' } }),
  );
  await writeFile(file, JSON.stringify(credentials), { mode: 0o600 });
  return credentials;
}

export const startCommand: Command = {
  summary: 'run broker, ingest, display and a demo fleet in one process (the quick start)',
  async run(argv) {
    const { config, help } = parseConfig(configSpecs.start, { argv });
    if (help) {
      process.stdout.write(`${helpText('Usage: sensorpipe start [options]', configSpecs.start)}\n`);
      return 0;
    }
    // Broker, ingest and display add their own `component` to the root logger (a second one would be
    // written twice); this command's own lines, and the demo fleet's, say `start`.
    const root = rootLogger(config.logLevel);
    const logger = root.child({ component: 'start' });
    await mkdir(config.dataDir, { recursive: true, mode: 0o700 });
    const registryPath = registryPathOf(config);
    const secret = () => randomBytes(24).toString('base64url');
    const ingestPassword = config.ingestPassword ?? secret();
    const displayPassword = config.displayPassword ?? secret();
    const alertsPassword = config.alertsPassword ?? secret();
    if (config.alertRules === undefined) await demoRules(rulesPathOf(config));
    // The registry file, or Redis with SENSORPIPE_REDIS_URL: every component below opens its own.
    const registryStore = openRegistryStore({ registryPath, redisUrl: config.redisUrl, logger });
    const device = await demoDevice(config.dataDir, registryStore).finally(() => registryStore.close());
    // Provision the demo fleet before the broker reads the registry, or its first logins would fail.
    const fleetState = join(config.dataDir, 'sim');
    await provisionFleet({ devices: config.devices, registryPath, redisUrl: config.redisUrl, stateDir: fleetState, profile: config.profile });

    // Started components, newest last: if a later one fails to start (a port already taken), the earlier
    // ones are closed again, so the process ends with the error instead of staying up half-started.
    const started: { name: string; close(): Promise<void> }[] = [];
    const begin = async <T extends { close(): Promise<void> }>(name: string, starting: Promise<T>): Promise<T> => {
      const component = await starting;
      started.push({ name, close: () => component.close() });
      return component;
    };
    let running;
    try {
      const broker = await begin('broker', startBroker({ config: { ...config, ingestPassword, displayPassword, alertsPassword }, registryPath, logger: root }));
      const mqttUrl = `mqtt://127.0.0.1:${broker.ports.mqtt}`;
      const store = await begin('store', openStore(config, { logger: root.child({ component: 'store' }) }));
      const ingest = await begin(
        'ingest',
        // Ingest and the display each wrap this store into their own metrics registry: each /metrics counts
        // the calls made through it, not the other's.
        startIngest({ config: { ...config, mqttUrl, ingestPassword }, registryPath, store, logger: root }),
      );
      const display = await begin('display', startDisplay({ config: { ...config, mqttUrl, displayPassword }, registryPath, store, logger: root }));
      const alerts = await begin('alerts', startAlerts({ config: { ...config, mqttUrl, alertsPassword }, registryPath, logger: root }));
      // The admin API (device provisioning over HTTP) only with a token: off by default.
      const { adminToken } = config;
      const admin = adminToken === undefined ? undefined : await begin('admin', startAdmin({ config: { ...config, adminToken }, registryPath, logger: root }));
      const fleet = await startFleet({
        url: mqttUrl,
        devices: config.devices,
        intervalMs: config.interval,
        profile: config.profile,
        seed: config.seed,
        faults: parseFaults(config.faults ?? DEMO_FAULTS),
        stateDir: fleetState,
        registryPath,
        redisUrl: config.redisUrl,
        bufferLimit: config.simBuffer,
        maxBatch: config.simBatch,
        // The demo runs for days: no record per reading in memory (the counts and seq ranges stay).
        recordAckedReadings: false,
        recordFaultSeqs: false,
        logger: root, // the fleet names itself `sim`
      });
      running = { broker, store, ingest, display, alerts, fleet, admin };
    } catch (err) {
      for (const component of started.reverse()) {
        await component.close().catch((closeErr: unknown) => logger.warn({ component: component.name, err: closeErr }, 'close after a failed start failed'));
      }
      throw explainListenError(err, configSpecs.start, config);
    }
    const { broker, store, ingest, display, alerts, fleet, admin } = running;

    const key = device.signing.alg === 'hmac-sha256' ? device.signing.key : device.signing.privateKey;
    const mqttHost = new URL(broker.urls.mqtt).hostname;
    const endpoints = {
      dashboard: `${display.url}/`,
      mqtt: broker.urls.mqtt,
      mqttWs: broker.urls.ws,
      brokerMetrics: broker.urls.metrics,
      ingestMetrics: `http://127.0.0.1:${ingest.metricsPort}/metrics`,
      alerts: `${alerts.url}/api/alerts`,
      store: store.kind === 'embedded' ? `embedded (${config.dataDir})` : (config.influxUrl ?? store.kind),
      ...(admin === undefined ? {} : { admin: admin.url }),
    };
    // The same endpoints as one JSON log line (stderr), for scripts and tests: the text below is for people.
    logger.info({ endpoints, demoDevice: DEMO_DEVICE }, 'sensorpipe is running');
    process.stdout.write(
      [
        '',
        'sensorpipe is running',
        `  dashboard    ${endpoints.dashboard}        <- open this in a browser`,
        `  demo fleet   ${config.devices} devices (${config.profile}), a reading every ${config.interval} ms; a few misbehave on purpose`,
        `  store        ${endpoints.store}`,
        `  MQTT         ${endpoints.mqtt}   ${endpoints.mqttWs}`,
        `  metrics      ${endpoints.brokerMetrics} (broker)   ${endpoints.ingestMetrics} (ingest)   ${display.url}/metrics (display)   ${alerts.url}/metrics (alerts)`,
        `  alerts       ${endpoints.alerts}   rules: ${alerts.rulesPath} (edit it while running)`,
        ...(admin === undefined ? [] : [`  admin API    ${admin.url}/devices   (Authorization: Bearer $SENSORPIPE_ADMIN_TOKEN; ${admin.url}/openapi.json)`]),
        '',
        `Push a reading of your own as device "${DEMO_DEVICE}" (run it in the sensorpipe folder) and watch it on the dashboard:`,
        `  mosquitto_pub -h ${mqttHost} -p ${broker.ports.mqtt} -i ${DEMO_DEVICE} -u ${DEMO_DEVICE} -P '${device.mqttPassword}' -q 1 \\`,
        `    -t ${topics.telemetry(DEMO_DEVICE)} -m "$(npx sensorpipe sign --device ${DEMO_DEVICE} --key '${key}' --values temperature=21.5)"`,
        '',
        'What sensorpipe refused, and why: npx sensorpipe quarantine list',
        'Ctrl-C stops everything cleanly.',
        '',
      ].join('\n'),
    );
    return untilSignal(async () => {
      await fleet.stop();
      await admin?.close();
      await alerts.close();
      await display.close();
      await ingest.close();
      await store.close();
      await broker.close();
    }, logger);
  },
};
