/**
 * The sensorpipe broker: an embedded aedes (MQTT 3.1.1 and 3.1) behind our own listeners (TCP,
 * WebSocket at /mqtt, TLS), with
 *   - authentication of every device against the registry, and of the service accounts from config;
 *   - a topic ACL per principal (broker/acl.ts), Wills included;
 *   - limits against hostile clients: packet size checked on the stream (broker/packet-guard.ts),
 *     CONNECT timeout, keepalive clamp, topic size, inflight cap, per-device publish rate, connection
 *     caps and a ban after repeated failed logins (broker/admission.ts), drain timeout;
 *   - retained device status on sensors/{id}/status, published on connect and disconnect;
 *   - live registry reload: a revoked or rotated device is disconnected;
 *   - persistent sessions (ingest's) and retained messages kept across a graceful restart, in
 *     <data-dir>/broker/sessions.json (broker/session-file.ts);
 *   - optional Redis emitter and persistence, so several broker processes serve one fleet.
 * It talks to: MQTT clients, the registry file, Redis (optional), Prometheus (/metrics).
 */
import { readFile } from 'node:fs/promises';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Aedes, type AedesOptions, type AuthenticateError, type Client, type PublishPacket } from 'aedes';
import type { Registry as MetricsRegistry } from 'prom-client';
import type { ConfigOf, configSpecs } from '../core/config.ts';
import { createLogger, type Logger } from '../core/logger.ts';
import { loadRegistry, verifyMqttPassword, type Registry } from '../core/registry.ts';
import { watchRegistry, type RegistryWatch } from '../core/registry-watch.ts';
import { sameSecret } from '../core/secret.ts';
import { PROTOCOL_VERSION, type StatusMessage } from '../core/schemas.ts';
import { parseTopic, topics } from '../core/topics.ts';
import { mayLeaveWill, maySubscribe, publishChecker, SERVICE_PREFIX, topicWithinLimits, type Principal, type PublishRefusal, type ServiceName } from './acl.ts';
import { Admission, TokenBucket } from './admission.ts';
import { createIndexedMemoryPersistenceAsync, type IndexedMemoryPersistenceAsync } from './indexed-persistence.ts';
import { openListeners, type Listeners } from './listeners.ts';
import { createBrokerMetrics, type BrokerMetrics, type LoginFailure } from './metrics.ts';
import type { GuardedConnection } from './packet-guard.ts';
import { createScaleOut, type ScaleOut } from './scale-out.ts';
import { saveSessions, sessionFilePath, takeSessions } from './session-file.ts';

export type BrokerConfig = ConfigOf<typeof configSpecs.broker>;
type StatusReason = NonNullable<StatusMessage['reason']>;

export interface StartBrokerOptions {
  config: BrokerConfig;
  registryPath: string;
  logger?: Logger;
}

export interface DeviceState {
  state: 'online' | 'offline';
  since: number;
  lastSeen: number;
}

export interface RunningBroker {
  /** Ports actually bound (useful with port 0). `tls` only when a certificate and key are configured. */
  ports: { mqtt: number; ws: number; tls?: number; metrics: number };
  urls: { mqtt: string; ws: string; tls?: string; metrics: string };
  metrics: MetricsRegistry;
  aedes: Aedes;
  /** Online/offline, since when, and when the device was last heard from (undefined: never seen). */
  deviceState(deviceId: string): DeviceState | undefined;
  /** Re-reads the registry now (it is also re-read whenever the file changes). */
  reloadRegistry(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Publishes from a device over its rate are re-routed here instead of being delivered: MQTT 3.1.1 has
 * no negative acknowledgement, so the PUBLISH is acknowledged and goes nowhere. No client may subscribe
 * to it (it starts with "$", so "#" does not match it either [MQTT-4.7.2-1]). Broker-internal, not a
 * product topic, which is why it is not in core/topics.ts.
 */
const DROPPED_TOPIC = '$sensorpipe/dropped';
const SHUTDOWN_GRACE_MS = 4_000;

class RefusedLogin extends Error {
  constructor(
    readonly returnCode: 2 | 4 | 5,
    readonly reason: LoginFailure,
  ) {
    super(reason);
  }
}

function hostForUrl(host: string): string {
  if (host === '0.0.0.0' || host === '::') return '127.0.0.1';
  return host.includes(':') ? `[${host}]` : host;
}

export async function startBroker(options: StartBrokerOptions): Promise<RunningBroker> {
  const { config } = options;
  const logger = (options.logger ?? createLogger({ level: config.logLevel })).child({ component: 'broker' });
  let registry: Registry = await loadRegistry(options.registryPath);

  const admission = new Admission(config);
  const principals = new WeakMap<Client, Principal>();
  /**
   * What the PUBLISH path needs of a connection, found with one lookup: its principal, the ACL and topic
   * limits for its topics with the verdicts remembered (broker/acl.ts), and its device's token bucket.
   */
  const publishers = new WeakMap<Client, { principal: Principal; refusal: (topic: string) => PublishRefusal | undefined; bucket?: TokenBucket }>();
  const emptyClientId = new WeakSet<Client>();
  const disconnectReasons = new WeakMap<Client, StatusReason>();
  /** The current connection of each online device. */
  const deviceClients = new Map<string, Client>();
  const deviceStates = new Map<string, DeviceState>();
  const buckets = new Map<string, TokenBucket>();
  const servicePasswords: Record<ServiceName, string | undefined> = {
    ingest: config.ingestPassword,
    display: config.displayPassword,
    admin: config.adminPassword,
  };
  const topicLimits = { maxTopicLevels: config.maxTopicLevels, maxTopicBytes: config.maxTopicBytes };
  const metrics: BrokerMetrics = createBrokerMetrics({
    connections: () => admission.openConnections,
    devicesOnline: () => deviceClients.size,
    bannedAddresses: () => admission.bannedAddresses,
  });

  /** What the listener knows of each connection aedes was handed (its address, for the login ban). */
  const connections = new WeakMap<object, GuardedConnection>();

  const authenticate = (client: Client, username: string | undefined, password: Buffer | undefined): Principal => {
    if (username === undefined || password === undefined) throw new RefusedLogin(5, 'anonymous');
    let principal: Principal;
    if (username.startsWith(SERVICE_PREFIX)) {
      const service = username.slice(SERVICE_PREFIX.length) as ServiceName;
      const expected = Object.hasOwn(servicePasswords, service) ? servicePasswords[service] : undefined;
      if (expected === undefined) throw new RefusedLogin(4, 'service_disabled');
      if (!sameSecret(password, expected)) throw new RefusedLogin(4, 'bad_credentials');
      // A service must not take over a device's session by using its id as client id.
      if (registry.get(client.id) !== undefined) throw new RefusedLogin(2, 'client_id_mismatch');
      // [MQTT-3.1.3-8]: a zero-byte client id with CleanSession 0 gets return code 2.
      if (emptyClientId.has(client) && !client.clean) throw new RefusedLogin(2, 'client_id_mismatch');
      principal = { kind: 'service', service };
    } else {
      const record = registry.get(username);
      if (record === undefined) throw new RefusedLogin(5, 'unknown_device');
      const passwordOk = verifyMqttPassword(record, password);
      if (record.status === 'revoked') throw new RefusedLogin(5, 'revoked_device');
      if (!passwordOk) throw new RefusedLogin(4, 'bad_credentials');
      // The client id must be the device id: nobody can take over another device's session.
      if (client.id !== username) throw new RefusedLogin(2, 'client_id_mismatch');
      principal = { kind: 'device', deviceId: record.id, verifier: record.mqtt.hash };
    }
    const will = (client as unknown as { _will?: PublishPacket | null })._will;
    if (will && (!topicWithinLimits(will.topic, topicLimits) || !mayLeaveWill(principal, will.topic))) throw new RefusedLogin(5, 'will_not_allowed');
    return principal;
  };

  const aedesOptions: AedesOptions = {
    connectTimeout: config.connectTimeoutMs,
    drainTimeout: config.drainTimeoutMs,
    maxInflightInbound: config.maxInflightInbound,
    maxTopicLevels: config.maxTopicLevels,
    // MQTT 3.1 limits client ids to 23 bytes; device ids may be longer, and the limit is only advisory.
    maxClientsIdLength: 128,
    preConnect(client, packet, done) {
      // Keepalive clamp: 0 ("no keepalive") or a very long one would let a dead connection hold its
      // slot forever, so the broker applies its own ceiling; it drops a silent client after 1.5 times
      // the clamped value [MQTT-3.1.2-24].
      const keepalive = packet.keepalive ?? 0;
      if (keepalive === 0 || keepalive > config.keepaliveMaxS) packet.keepalive = config.keepaliveMaxS;
      else if (keepalive < config.keepaliveMinS) packet.keepalive = config.keepaliveMinS;
      if (!packet.clientId) emptyClientId.add(client);
      done(null, true);
    },
    authenticate(client, username, password, done) {
      const address = connections.get(client.conn)?.address ?? 'unknown';
      try {
        const principal = authenticate(client, username, password);
        principals.set(client, principal);
        publishers.set(client, { principal, refusal: publishChecker(principal, topicLimits) });
        done(null, true);
      } catch (err) {
        if (!(err instanceof RefusedLogin)) throw err;
        metrics.loginFailed(err.reason);
        if (admission.recordLoginFailure(address)) logger.warn({ address, banMs: config.loginBanMs }, 'address banned after repeated failed logins');
        logger.debug({ address, username, reason: err.reason }, 'login refused');
        const refusal = new Error(err.reason) as AuthenticateError;
        refusal.returnCode = err.returnCode as AuthenticateError['returnCode'];
        done(refusal, false);
      }
    },
    authorizePublish(client, packet, done) {
      if (client === null) {
        // A Will left by a client of a broker that died (scale-out): only status topics were allowed in.
        done(parseTopic(packet.topic)?.kind === 'status' ? null : new Error('will refused'));
        return;
      }
      const publisher = publishers.get(client);
      const refusal = publisher === undefined ? 'acl_publish' : publisher.refusal(packet.topic);
      if (publisher === undefined || refusal !== undefined) {
        metrics.dropped(refusal ?? 'acl_publish');
        // MQTT 3.1.1 cannot refuse a PUBLISH: the connection is closed.
        done(new Error('publish not authorised'));
        return;
      }
      const { principal } = publisher;
      if (principal.kind === 'device') {
        const now = Date.now();
        const state = deviceStates.get(principal.deviceId);
        if (state) state.lastSeen = now;
        // The Will is the broker's publish on the device's behalf, not part of its rate.
        if (packet !== (client as unknown as { will?: unknown }).will) {
          // One bucket per device, kept across its connections (reconnecting does not refill it).
          let bucket = publisher.bucket ?? buckets.get(principal.deviceId);
          if (bucket === undefined) buckets.set(principal.deviceId, (bucket = new TokenBucket(config.publishRate, config.publishBurst)));
          publisher.bucket = bucket;
          if (!bucket.take(now)) {
            // A reading the broker acknowledges must reach ingest. Over the rate, telemetry at QoS 1/2 is
            // refused by closing the connection instead [MQTT-3.3.5-2]: unacknowledged, it stays with the
            // device, which sends it again once reconnected (at the rate, if it keeps on).
            if (packet.qos > 0 && parseTopic(packet.topic)?.kind === 'telemetry') {
              metrics.dropped('rate_limited_disconnect');
              logger.debug({ device: principal.deviceId }, 'telemetry over the publish rate: connection closed, not acknowledged');
              done(new Error('publish rate exceeded'));
              return;
            }
            metrics.dropped('rate_limited');
            if (bucket.consecutiveDrops >= config.publishAbuseDrops) {
              metrics.dropped('abuse_disconnect');
              logger.warn({ device: principal.deviceId }, 'device disconnected: publishing far above its rate');
              done(new Error('publish rate abuse'));
              return;
            }
            packet.topic = DROPPED_TOPIC;
            packet.retain = false;
            done(null);
            return;
          }
        }
      }
      metrics.publishesIn++;
      done(null);
    },
    authorizeSubscribe(client, subscription, done) {
      const principal = principals.get(client);
      if (principal !== undefined && topicWithinLimits(subscription.topic, topicLimits) && maySubscribe(principal, subscription.topic)) {
        done(null, subscription);
        return;
      }
      metrics.dropped('acl_subscribe');
      done(null, null); // SUBACK 0x80 for this filter [MQTT-3.9.3-2]; the others are unaffected
    },
    authorizeForward(_client, packet) {
      metrics.publishesOut++;
      return packet;
    },
  };

  let scaleOut: ScaleOut | undefined;
  let memory: IndexedMemoryPersistenceAsync | undefined;
  const sessionFile = sessionFilePath(config.dataDir);
  if (config.redisUrl !== undefined) {
    scaleOut = createScaleOut(config.redisUrl);
    aedesOptions.mq = scaleOut.mq;
    aedesOptions.persistence = scaleOut.persistence;
  } else {
    // aedes' stock memory persistence scans arrays per PUBACK; a backlogged persistent session (ingest) stalls it.
    memory = createIndexedMemoryPersistenceAsync();
    aedesOptions.persistence = memory as AedesOptions['persistence'];
    // What the last graceful stop saved: ingest's session and its queue, so that telemetry devices send
    // before ingest is back is queued for it, not acknowledged and dropped.
    const saved = await takeSessions(sessionFile).catch((err: unknown) => {
      logger.error({ err: (err as Error).message, file: sessionFile }, 'saved sessions could not be read; starting without them');
      return undefined;
    });
    if (saved !== undefined) {
      await memory.importSessions(saved);
      logger.info({ sessions: saved.sessions.length, queued: saved.sessions.reduce((n, s) => n + s.outgoing.length, 0), retained: saved.retained.length }, 'sessions restored from the last stop');
    }
  }
  const aedes = await Aedes.createBroker(aedesOptions);

  const publishStatus = (deviceId: string, state: 'online' | 'offline', reason: StatusReason, since: number): Promise<void> => {
    const message: StatusMessage = { v: PROTOCOL_VERSION, device: deviceId, state, since, reason };
    return new Promise((resolve) => {
      aedes.publish({ cmd: 'publish', topic: topics.status(deviceId), payload: Buffer.from(JSON.stringify(message)), qos: 1, retain: true, dup: false }, (err) => {
        if (err) logger.warn({ err, device: deviceId }, 'status publish failed');
        resolve();
      });
    });
  };

  aedes.on('clientReady', (client) => {
    const principal = principals.get(client);
    if (principal?.kind !== 'device') return;
    const now = Date.now();
    deviceClients.set(principal.deviceId, client);
    deviceStates.set(principal.deviceId, { state: 'online', since: now, lastSeen: now });
    void publishStatus(principal.deviceId, 'online', 'connected', now);
  });
  aedes.on('keepaliveTimeout', (client) => disconnectReasons.set(client, 'keepalive'));
  aedes.on('clientDisconnect', (client) => {
    const principal = principals.get(client);
    if (principal?.kind !== 'device' || deviceClients.get(principal.deviceId) !== client) return; // replaced by a newer connection
    deviceClients.delete(principal.deviceId);
    const now = Date.now();
    const reason = disconnectReasons.get(client) ?? ((client as unknown as { _disconnected?: boolean })._disconnected ? 'clean' : 'socket');
    deviceStates.set(principal.deviceId, { state: 'offline', since: now, lastSeen: now });
    void publishStatus(principal.deviceId, 'offline', reason, now);
  });
  aedes.on('clientError', (client, err) => logger.debug({ client: client.id, err: err.message }, 'client error'));
  aedes.on('connectionError', (_client, err) => logger.debug({ err: err.message }, 'connection error'));

  const applyRegistry = (next: Registry): void => {
    registry = next;
    for (const [deviceId, client] of deviceClients) {
      const record = next.get(deviceId);
      const principal = principals.get(client);
      if (record !== undefined && record.status === 'active' && principal?.kind === 'device' && principal.verifier === record.mqtt.hash) continue;
      logger.info({ device: deviceId, status: record?.status ?? 'removed' }, 'disconnecting device: revoked, removed or credentials rotated');
      metrics.dropped('revoked_disconnect');
      disconnectReasons.set(client, 'revoked');
      client.close();
    }
  };
  const watch: RegistryWatch = watchRegistry(options.registryPath, applyRegistry, {
    intervalMs: config.registryPollMs,
    onError: (err) => logger.error({ err: err.message }, 'registry reload failed; keeping the previous one'),
  });

  const tls = config.tlsCert !== undefined && config.tlsKey !== undefined ? { cert: await readFile(config.tlsCert), key: await readFile(config.tlsKey) } : undefined;
  let closing = false;
  const listeners: Listeners = await openListeners({
    host: config.mqttHost,
    mqttPort: config.mqttPort,
    wsPort: config.wsPort,
    tlsPort: config.tlsPort,
    tls,
    maxPacketBytes: config.maxPacketBytes,
    admit(connection) {
      const refusal = closing ? 'limit_total' : admission.admit(connection.address);
      if (refusal === undefined) {
        metrics.connectionOpened(connection.transport);
        return true;
      }
      metrics.dropped(refusal === 'banned' ? 'banned_address' : refusal === 'limit_total' ? 'connection_limit_total' : 'connection_limit_address');
      return false;
    },
    release: (connection) => admission.release(connection.address),
    onViolation(connection, reason) {
      metrics.dropped(reason);
      logger.debug({ address: connection.address, reason }, 'connection closed by the packet guard');
    },
    onConnection(stream, connection) {
      connections.set(stream, connection);
      aedes.handle(stream);
    },
  });
  const sweepTimer = setInterval(() => admission.sweep(), 60_000);
  sweepTimer.unref();

  const metricsServer: HttpServer = createHttpServer((req, res) => {
    if (req.url === '/metrics') {
      metrics.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    } else if (req.url === '/healthz') {
      res.writeHead(closing ? 503 : 200, { 'content-type': 'application/json' }).end(JSON.stringify({ ok: !closing }));
    } else {
      res.writeHead(404).end();
    }
  });
  const metricsPort = await new Promise<number>((resolve, reject) => {
    metricsServer.once('error', reject);
    metricsServer.listen(config.brokerMetricsPort, config.mqttHost, () => resolve((metricsServer.address() as AddressInfo).port));
  });

  const host = hostForUrl(config.mqttHost);
  const ports = { ...listeners.ports, metrics: metricsPort };
  const urls: RunningBroker['urls'] = {
    mqtt: `mqtt://${host}:${ports.mqtt}`,
    ws: `ws://${host}:${ports.ws}/mqtt`,
    metrics: `http://${host}:${metricsPort}/metrics`,
  };
  if (ports.tls !== undefined) urls.tls = `mqtts://${host}:${ports.tls}`;
  logger.info({ ports, redis: config.redisUrl !== undefined, devices: registry.size }, 'broker listening');

  let closed: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      closing = true;
      clearInterval(sweepTimer);
      watch.close();
      const serversClosed = listeners.stopAccepting();
      // Devices are told offline (retained) before their connections go, so subscribers see why.
      const now = Date.now();
      await Promise.all([...deviceClients.entries()].map(([deviceId, client]) => {
        disconnectReasons.set(client, 'shutdown');
        return publishStatus(deviceId, 'offline', 'shutdown', now);
      }));
      const deadline = new Promise<void>((resolve) => setTimeout(resolve, SHUTDOWN_GRACE_MS).unref());
      await Promise.race([new Promise<void>((resolve) => aedes.close(() => resolve())), deadline]);
      listeners.destroyAll();
      if (memory !== undefined) {
        const saved = memory.exportSessions();
        await saveSessions(sessionFile, saved).then(
          () => logger.info({ sessions: saved.sessions.length, queued: saved.sessions.reduce((n, s) => n + s.outgoing.length, 0), file: sessionFile }, 'sessions saved for the next start'),
          (err: unknown) => logger.error({ err: (err as Error).message, file: sessionFile }, 'sessions could not be saved; they are lost with this process'),
        );
      }
      metricsServer.closeAllConnections();
      await Promise.race([Promise.all([serversClosed, new Promise<void>((resolve) => metricsServer.close(() => resolve()))]), deadline]);
      if (scaleOut) await Promise.race([scaleOut.close(), deadline]);
      logger.info('broker closed');
    })();
    return closed;
  };

  return {
    ports,
    urls,
    metrics: metrics.registry,
    aedes,
    deviceState: (deviceId) => {
      const state = deviceStates.get(deviceId);
      return state && { ...state };
    },
    reloadRegistry: () => watch.reload(),
    close,
  };
}
