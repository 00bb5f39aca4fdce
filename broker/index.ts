/**
 * The sensorpipe broker: an embedded aedes (MQTT 3.1.1 and 3.1) behind our own listeners (TCP,
 * WebSocket at /mqtt, TLS). This file only wires the parts together; what each does (docs/BROKER.md):
 *   - listeners.ts, admission.ts, packet-guard.ts: connections, caps, the login ban, packet size;
 *   - auth.ts: device and service-account logins, Wills, keepalive clamp, the subscribe ACL (acl.ts);
 *   - publish-gate.ts: the publish ACL and each device's token bucket;
 *   - intake.ts: a QoS 1/2 message is acknowledged once it is kept, and held while ingest is behind;
 *   - presence.ts: device status on sensors/{id}/status, and disconnecting revoked devices;
 *   - persistence.ts: Redis scale-out, or memory with every change in the session log (session-log.ts);
 *     session-guard.ts: a persistent session keeps only filters its client may hold;
 *   - codes.ts: CONNACK codes, login failures and drop reasons; metrics.ts: /metrics.
 * It talks to: MQTT clients, the device registry (its file, or Redis), Redis (optional), Prometheus (/metrics, /healthz).
 */
import { readFile } from 'node:fs/promises';
import { Aedes } from 'aedes';
import type { Registry as MetricsRegistry } from 'prom-client';
import type { ConfigOf, configSpecs } from '../core/config.ts';
import { createLogger, type Logger } from '../core/logger.ts';
import { serveOps } from '../core/ops-http.ts';
import { instrumentRegistryStore, openRegistryStore } from '../core/registry-store.ts';
import { mayHoldFilter } from './acl.ts';
import { Admission } from './admission.ts';
import { Logins } from './auth.ts';
import { Connections } from './connections.ts';
import { brokerUrls, connectArrived, guardOpsPort, openListeners } from './listeners.ts';
import { createBrokerMetrics } from './metrics.ts';
import { openPersistence } from './persistence.ts';
import { Presence, trackDeviceStatus, type DeviceState } from './presence.ts';
import { Intake } from './intake.ts';
import { DROPPED_TOPIC, PublishGate } from './publish-gate.ts';
import { SessionGuard } from './session-guard.ts';

export type BrokerConfig = ConfigOf<typeof configSpecs.broker>;
export type { DeviceState };

export interface StartBrokerOptions {
  config: BrokerConfig;
  registryPath: string;
  logger?: Logger;
}

export interface RunningBroker {
  /** Ports actually bound (useful with port 0). `tls` only when a certificate and key are configured. */
  ports: { mqtt: number; ws: number; tls?: number; metrics: number };
  urls: { mqtt: string; ws: string; tls?: string; metrics: string };
  metrics: MetricsRegistry;
  aedes: Aedes;
  /** Online/offline, since when, and when the device was last heard from (undefined: never seen). */
  deviceState(deviceId: string): DeviceState | undefined;
  /** Re-reads the registry now (it is also re-read whenever it changes: the file, or a change announced in Redis). */
  reloadRegistry(): Promise<void>;
  close(): Promise<void>;
}

const SHUTDOWN_GRACE_MS = 4_000;
const ADMISSION_SWEEP_MS = 60_000;
/** The metrics port's own caps (a scraper needs one connection). */
const OPS_MAX_CONNECTIONS = 64;
const OPS_MAX_CONNECTIONS_PER_ADDRESS = 8;

export async function startBroker(options: StartBrokerOptions): Promise<RunningBroker> {
  const { config } = options;
  const logger = (options.logger ?? createLogger({ level: config.logLevel })).child({ component: 'broker' });
  let closing = false;

  if (!(config.queueLow < config.queueHigh)) {
    throw new Error(`SENSORPIPE_BROKER_QUEUE_LOW (${config.queueLow}) must be below SENSORPIPE_BROKER_QUEUE_HIGH (${config.queueHigh})`);
  }
  const admission = new Admission(config);
  const connections = new Connections(logger);
  const presence = new Presence();
  const metrics = createBrokerMetrics({
    connections: () => admission.openConnections,
    devicesOnline: () => presence.onlineCount,
    bannedAddresses: () => admission.bannedAddresses,
    deviceStates: () => presence.devices(),
  }, { perDevice: config.metricsPerDevice });
  const gate = new PublishGate({ limits: config, metrics, presence, connections });
  // The registry file, or Redis with SENSORPIPE_REDIS_URL (core/registry-store.ts); its reloads on /metrics.
  const registryStore = instrumentRegistryStore(openRegistryStore({ registryPath: options.registryPath, redisUrl: config.redisUrl, logger }), metrics.registry);
  const initialRegistry = await registryStore.load().catch(async (err: unknown) => {
    await registryStore.close();
    throw err;
  });
  const logins = new Logins({
    limits: config,
    servicePasswords: { ingest: config.ingestPassword, display: config.displayPassword, alerts: config.alertsPassword, admin: config.adminPassword },
    registry: initialRegistry,
    admission,
    metrics,
    connections,
    onLogin: (client, principal) => {
      gate.admit(client, principal);
      if (principal.kind === 'service' && principal.service === 'ingest') ingestClients.add(client.id);
    },
  });
  /** Client ids whose sessions are ingest's: backpressure watches what is queued for them. */
  const ingestClients = new Set<string>();
  const sessions = new SessionGuard({
    principalOf: (client) => logins.principalOf(client),
    mayHold: (principal, filter) => mayHoldFilter(principal, filter, config),
    onRestoreRefused: (client, filter) => connections.clientLog(client, logins.principalOf(client)).info({ filter }, 'stored subscription removed: the client may not hold it'),
    onRemoveFailed: (client, filter, err) => connections.clientLog(client, logins.principalOf(client)).error({ filter, err: err.message }, 'stored subscription could not be removed'),
  });
  const persistence = await openPersistence(config, logger, {
    sessions,
    deviceOwner: (clientId) => (logins.registry.get(clientId) === undefined ? undefined : { kind: 'device', deviceId: clientId }),
  });

  for (const clientId of persistence.restored) {
    const owner = sessions.ownerOf(clientId);
    if (owner?.kind === 'service' && owner.service === 'ingest') ingestClients.add(clientId);
  }
  const intake = new Intake({
    high: config.queueHigh,
    low: config.queueLow,
    synced: () => persistence.synced(),
    queuedForIngest() {
      let queued = 0;
      for (const clientId of ingestClients) queued += persistence.queuedFor(clientId);
      return queued;
    },
  });
  const aedes = await Aedes.createBroker({
    ...persistence.aedesOptions,
    connectTimeout: config.connectTimeoutMs,
    drainTimeout: config.drainTimeoutMs,
    maxInflightInbound: config.maxInflightInbound,
    maxTopicLevels: config.maxTopicLevels,
    // MQTT 3.1 limits client ids to 23 bytes; device ids may be longer, and the limit is only advisory.
    maxClientsIdLength: 128,
    preConnect(client, packet, done) {
      connectArrived(connections.of(client)); // its connect deadline, from the TCP accept, is met
      logins.preConnect(client, packet, done);
    },
    authenticate: logins.authenticate,
    authorizeSubscribe: sessions.authorizeSubscribe(logins.authorizeSubscribe),
    // The gate decides; a message it lets through is then kept before aedes acknowledges it.
    authorizePublish: (client, packet, done) =>
      gate.authorizePublish(client, packet, (err) => {
        if (err || client === null || packet.topic === DROPPED_TOPIC) done(err);
        else intake.take(client, packet, done);
      }),
    authorizeForward: gate.authorizeForward,
  });
  intake.attach(aedes);
  persistence.onCleared(() => intake.drained());
  metrics.watchIntake(intake, persistence.logStats);
  const status = trackDeviceStatus(aedes, presence, { principalOf: (client) => logins.principalOf(client), metrics, connections });
  aedes.on('unsubscribe', (filters, client) => logins.unsubscribed(client, filters));
  aedes.on('clientError', (client, err) => connections.clientLog(client, logins.principalOf(client)).debug({ err: err.message }, 'client error'));
  aedes.on('connectionError', (client, err) => connections.clientLog(client).debug({ err: err.message }, 'connection error'));

  const watch = registryStore.watch(
    (next) => {
      logins.useRegistry(next);
      status.applyRegistry(next);
    },
    { intervalMs: config.registryPollMs, onError: (err) => logger.error({ err: err.message }, 'registry reload failed; keeping the previous one') },
  );

  const tls = config.tlsCert !== undefined && config.tlsKey !== undefined ? { cert: await readFile(config.tlsCert), key: await readFile(config.tlsKey) } : undefined;
  const listeners = await openListeners({
    host: config.mqttHost,
    mqttPort: config.mqttPort,
    wsPort: config.wsPort,
    tlsPort: config.tlsPort,
    tls,
    maxPacketBytes: config.maxPacketBytes,
    connectTimeoutMs: config.connectTimeoutMs,
    admit(connection) {
      const refusal = closing ? 'connection_limit_total' : admission.admit(connection.address);
      if (refusal === undefined) metrics.connectionOpened(connection.transport);
      else metrics.dropped(refusal);
      return refusal === undefined;
    },
    release: (connection) => admission.release(connection.address),
    onViolation(connection, reason) {
      metrics.dropped(reason);
      connections.connectionLog(connection).debug({ reason }, 'connection closed by the packet guard');
    },
    onConnectTimeout(connection) {
      metrics.dropped('connect_timeout');
      connections.connectionLog(connection).debug({ timeoutMs: config.connectTimeoutMs }, 'connection closed: no CONNECT in time');
    },
    onConnection(stream, connection) {
      connections.add(stream, connection);
      aedes.handle(stream);
    },
  });
  const sweepTimer = setInterval(() => admission.sweep(), ADMISSION_SWEEP_MS);
  sweepTimer.unref();

  // /readyz (and /healthz): taking connections (the listeners opened before this port), false once closing.
  // /livez: true while this port answers; a broker that is closing needs no restart, it is exiting.
  const ops = await serveOps(config.brokerMetricsHost ?? config.mqttHost, config.brokerMetricsPort, { metrics: metrics.registry, health: () => ({ ok: !closing }) });
  guardOpsPort(ops.server, {
    isBanned: (address) => admission.isBanned(address),
    lifetimeMs: config.connectTimeoutMs,
    maxConnections: OPS_MAX_CONNECTIONS,
    maxConnectionsPerAddress: OPS_MAX_CONNECTIONS_PER_ADDRESS,
  });
  const ports = { ...listeners.ports, metrics: ops.port };
  logger.info({ ports, redis: persistence.kind === 'redis', registry: registryStore.location, devices: logins.registry.size }, 'broker listening');

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      closing = true;
      clearInterval(sweepTimer);
      watch.close();
      const serversClosed = listeners.stopAccepting();
      await status.announceShutdown();
      const deadline = new Promise<void>((resolve) => setTimeout(resolve, SHUTDOWN_GRACE_MS).unref());
      await Promise.race([new Promise<void>((resolve) => aedes.close(() => resolve())), deadline]);
      listeners.destroyAll();
      await persistence.saveSessions();
      await Promise.race([Promise.all([serversClosed, ops.close()]), deadline]);
      await Promise.race([persistence.close(), deadline]);
      await Promise.race([registryStore.close(), deadline]);
      logger.info('broker closed');
    })();
    return closed;
  };

  return {
    ports,
    urls: brokerUrls(config.mqttHost, ports),
    metrics: metrics.registry,
    aedes,
    deviceState: (deviceId) => presence.state(deviceId),
    reloadRegistry: () => watch.reload(),
    close,
  };
}
