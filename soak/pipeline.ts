/**
 * The whole pipeline for a soak, in separate processes on free loopback ports, the way an operator
 * runs it (`sensorpipe broker | ingest | display | sim`), against a real influxd:
 *
 *   sim ──▶ devices' cut proxy ──▶ broker ◀── ingest's cut proxy ◀── ingest ──▶ influxd ◀── display ◀── viewers
 *                                     └──────────────────────────────────────────────────────▶ display
 *
 * The fleet is provisioned into the registry before anything starts (the simulator then finds its
 * devices and adds none). Every process logs to <dir>/logs/<name>.log.
 */
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { FAULTS, provisionFleet } from '../firmware-sim/index.ts';
import { startInfluxd, type InfluxServer } from '../harness/influxd.ts';
import { freePort } from '../harness/ports.ts';
import { ManagedProcess } from './processes.ts';
import { startCutProxy, type CutProxy } from './proxy.ts';

export interface PipelineOptions {
  dir: string;
  devices: number;
  intervalMs: number;
  seed: number;
  minutes: number;
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
  devicesProxy: CutProxy;
  ingestProxy: CutProxy;
  ackedLogPath: string;
  ingestMetricsUrl: string;
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
  const influx = await startInfluxd();

  const [mqttPort, brokerMetricsPort, ingestMetricsPort, httpPort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const secret = () => randomBytes(18).toString('base64url');
  const ingestPassword = secret();
  const displayPassword = secret();
  const viewerToken = secret();
  const common = { SENSORPIPE_DATA_DIR: dataDir, SENSORPIPE_REGISTRY: registryPath, SENSORPIPE_LOG_LEVEL: 'info' };
  const store = { SENSORPIPE_INFLUX_URL: influx.url, SENSORPIPE_INFLUX_DATABASE: database };
  const devicesProxy = await startCutProxy(mqttPort);
  const ingestProxy = await startCutProxy(mqttPort);
  const ackedLogPath = join(options.dir, 'acked.log');
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
    },
    logPath: join(logs, 'broker.log'),
    ready: { url: `http://127.0.0.1:${brokerMetricsPort}/healthz` },
  });
  const ingest = new ManagedProcess({
    name: 'ingest',
    args: ['ingest'],
    env: {
      ...common,
      ...store,
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

  return {
    influx,
    database,
    dataDir,
    deviceIds: fleet.map((c) => c.deviceId),
    faults,
    broker,
    ingest,
    display,
    sim,
    devicesProxy,
    ingestProxy,
    ackedLogPath,
    ingestMetricsUrl: `http://127.0.0.1:${ingestMetricsPort}/metrics`,
    liveUrl: `ws://127.0.0.1:${httpPort}/live?token=${encodeURIComponent(viewerToken)}`,
    processes: [broker, ingest, display, sim],
    close: async () => {
      for (const process of [sim, display, ingest, broker]) await process.kill('SIGKILL', 1000);
      await devicesProxy.close();
      await ingestProxy.close();
      await influx.close();
      for (const process of [sim, display, ingest, broker]) await process.closeLog();
    },
  };
}
