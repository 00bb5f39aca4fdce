/**
 * display — live readings for browsers, history over HTTP, and the dashboard.
 *
 * Talks to: the MQTT broker (as the read-only `svc:display` service account: the verified live feed
 * pipeline/readings/+, device status sensors/+/status, completeness pipeline/completeness/+, message counts
 * pipeline/counts/+, alert states alerts/+), the store (history, latest values; read only), the device
 * registry (its file, or Redis: which devices exist), ingest's quarantine files (read only, for
 * /api/quarantine), and browsers (HTTP: /api/…, /healthz, /metrics, the dashboard at /; WebSocket: /live).
 */
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { WebSocketServer } from 'ws';
import { quarantineDirOf, type ConfigOf, type configSpecs } from '../core/config.ts';
import { LIVE_LIMITS } from '../core/live.ts';
import { LIVE_SUBPROTOCOL } from '../core/live-subprotocol.ts';
import type { Logger } from '../core/logger.ts';
import { instrumentRegistryStore, openRegistryStore } from '../core/registry-store.ts';
import { instrumentStore, type TimeSeriesStore } from '../store/index.ts';
import { checkConnectionLimits, createLimitedServer, type ConnectionLimits } from './connections.ts';
import { AlertBoard } from './alerts.ts';
import { PipelineFeed } from './feed.ts';
import { FleetState } from './fleet.ts';
import { HistoryGate } from './history-gate.ts';
import { createHandlers, loadStaticFiles } from './http.ts';
import { LiveHub } from './hub.ts';
import { createDisplayMetrics, type DisplayMetrics } from './metrics.ts';

export type DisplayConfig = ConfigOf<typeof configSpecs.display>;
export { DISPLAY_USERNAME } from './feed.ts';

/** The dashboard bundle, built at install time by `npm run build:web`. */
export const DASHBOARD_DIR = fileURLToPath(new URL('./web/dist', import.meta.url));

export interface StartDisplayOptions {
  config: DisplayConfig;
  registryPath: string;
  store: TimeSeriesStore;
  logger: Logger;
  /** Where the dashboard's files are (default DASHBOARD_DIR). */
  dashboardDir?: string;
}

export interface RunningDisplay {
  port: number;
  url: string;
  metrics: DisplayMetrics;
  fleet: FleetState;
  alerts: AlertBoard;
  hub: LiveHub;
  feed: PipelineFeed;
  close(): Promise<void>;
}

export async function startDisplay({ config, registryPath, store: unmeasured, logger, dashboardDir = DASHBOARD_DIR }: StartDisplayOptions): Promise<RunningDisplay> {
  const log = logger.child({ component: 'display' });
  const limits: ConnectionLimits = {
    headersTimeoutMs: config.httpHeadersTimeoutMs,
    requestTimeoutMs: config.httpRequestTimeoutMs,
    idleTimeoutMs: config.httpIdleTimeoutMs,
    maxConnectionsPerAddress: config.httpMaxConnectionsPerAddress,
    maxConnections: config.httpMaxConnections,
  };
  checkConnectionLimits(limits); // before anything is started that would need stopping
  const metrics = createDisplayMetrics();
  // Every store call the display makes (history, latest values, health) shows on its own /metrics.
  const store = instrumentStore(unmeasured, metrics.registry);
  // The alert states are kept only for registered devices, and show in each device's summary.
  const alerts: AlertBoard = new AlertBoard({ isRegistered: (device) => fleet.has(device), metrics, logger: log });
  const fleet = new FleetState((device) => alerts.summaryOf(device));
  // The registry file, or Redis with SENSORPIPE_REDIS_URL (core/registry-store.ts); its reloads on /metrics.
  const registryStore = instrumentRegistryStore(openRegistryStore({ registryPath, redisUrl: config.redisUrl, logger: log }), metrics.registry);
  try {
    fleet.setRegistry(await registryStore.load());
  } catch (err) {
    await registryStore.close();
    throw err;
  }
  // Set once the MQTT feed exists; before that, no replay is needed: its first subscription reads them all.
  let replayAlerts = (): void => undefined;
  const registryWatch = registryStore.watch((registry) => {
    fleet.setRegistry(registry);
    // A device added now may have had its alert state refused before: have the broker send it again.
    if (alerts.registryChanged()) replayAlerts();
  }, {
    onError: (err) => log.error({ err: err.message, registry: registryStore.location }, 'registry reload failed; keeping the previous one'),
  });
  try {
    fleet.seedLatest(await store.latestAll());
  } catch (err) {
    // The store may be down at start-up: live values fill in as they arrive.
    log.warn({ err: (err as Error).message }, 'latest values not loaded from the store');
  }

  const history = new HistoryGate({ maxConcurrent: config.historyMaxConcurrent, metrics });
  const hub = new LiveHub({
    tickMs: config.liveTickMs,
    slowBytes: config.liveSlowBytes,
    stuckMs: config.liveStuckMs,
    heartbeatMs: config.liveHeartbeatMs,
    aheadMs: config.maxFutureMs,
    store,
    history,
    metrics,
    logger: log,
    isRegistered: (device) => fleet.has(device),
    statusOf: (device) => {
      const summary = fleet.get(device);
      return summary?.since == null ? undefined : { state: summary.state, since: summary.since };
    },
  });
  const feed = new PipelineFeed({
    url: config.mqttUrl,
    password: config.displayPassword,
    logger: log,
    metrics,
    handlers: {
      readings: (message) => {
        fleet.applyReadings(message);
        hub.publishReadings(message);
      },
      status: (message) => {
        if (fleet.applyStatus(message)) hub.publishStatus(message);
      },
      completeness: (message) => fleet.applyCompleteness(message),
      counts: (message) => fleet.applyCounts(message),
      alerts: (device, payload) => alerts.receive(device, payload),
    },
  });
  replayAlerts = () => feed.replayAlerts();

  const staticFiles = await loadStaticFiles(dashboardDir);
  if (staticFiles.size === 0) log.warn({ dashboardDir }, 'the dashboard is not built (npm run build:web); the API and /live work without it');
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: LIVE_LIMITS.maxInboundFrameBytes,
    maxFragments: LIVE_LIMITS.maxInboundFragments,
    perMessageDeflate: false,
    // Select ours when offered; never a `bearer.` one, which would echo the token.
    handleProtocols: (offered) => (offered.has(LIVE_SUBPROTOCOL) ? LIVE_SUBPROTOCOL : false),
  });
  const { onRequest, onUpgrade } = createHandlers({
    store,
    fleet,
    alerts,
    quarantineDir: quarantineDirOf(config),
    hub,
    history,
    wss,
    metrics,
    logger: log,
    viewerToken: config.viewerToken,
    allowedOrigins: config.allowedOrigins,
    maxClients: config.liveMaxClients,
    maxClientsPerAddress: config.liveMaxClientsPerAddress,
    brokerConnected: () => feed.connected,
    staticFiles,
  });
  const server = createLimitedServer(onRequest, limits, metrics);
  server.on('upgrade', onUpgrade);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(config.httpPort, config.httpHost, resolve);
    });
  } catch (err) {
    // A taken port must not leave the MQTT client reconnecting and the registry watched.
    registryWatch.close();
    await registryStore.close();
    hub.close();
    history.close();
    await feed.close();
    throw err;
  }
  const port = (server.address() as AddressInfo).port;
  const host = config.httpHost === '0.0.0.0' || config.httpHost === '::' ? 'localhost' : config.httpHost;

  return {
    port,
    url: `http://${host}:${port}`,
    metrics,
    fleet,
    alerts,
    hub,
    feed,
    close: async () => {
      registryWatch.close();
      hub.close();
      history.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      wss.close();
      await feed.close();
      await registryStore.close();
    },
  };
}
