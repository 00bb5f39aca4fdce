/**
 * Configuration: one schema per process kind, read once at start-up from environment variables and
 * command-line flags (a flag wins over its variable). A bad value fails fast with an error that names
 * the variable and the flag. This is the only module that reads process.env.
 *
 * Every option has one environment name (SENSORPIPE_*) and one flag (--kebab-case), the same in every
 * process that uses it, and a documented default. `helpText` renders the list for `--help`.
 */
import { parseArgs } from 'node:util';
import { resolve } from 'node:path';
import { z } from 'zod';
import { parseDurationMs } from './duration.ts';
import { SensorpipeError } from './errors.ts';

export interface OptionSpec<S extends z.ZodType = z.ZodType> {
  env: string;
  flag: string;
  schema: S;
  /** Default as it would be written in the environment; undefined = unset (the schema must allow it). */
  default?: string;
  doc: string;
  /** Never echoed back in errors or help. */
  secret?: boolean;
  /** A switch: `--flag` alone means "true" (the variable still takes true/false). */
  switch?: boolean;
  /** Other flags accepted for this option in one process kind (e.g. `sensorpipe sim --broker URL`). */
  aliases?: readonly string[];
}

type Specs = Record<string, OptionSpec>;
export type ConfigOf<T extends Specs> = { [K in keyof T]: z.output<T[K]['schema']> };

// ---- value parsers: every value arrives as a string -------------------------------------------------

/** "250ms", "1.5s", "5m", "2h", "7d", "1w", or a bare number of milliseconds (the grammar of core/duration.ts). */
export const durationMs = z.string().trim().transform((text, ctx) => {
  const ms = parseDurationMs(text);
  if (Number.isNaN(ms)) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a duration such as 500ms, 1s, 5m, 2h or 7d` });
    return z.NEVER;
  }
  return ms;
});

const SIZE = /^(\d+)(b|kib|mib|gib|kb|mb|gb)?$/i;
const UNIT_BYTES: Record<string, number> = { b: 1, kib: 1024, kb: 1024, mib: 1024 ** 2, mb: 1024 ** 2, gib: 1024 ** 3, gb: 1024 ** 3 };

/** "512", "64KiB", "256MiB", "1GiB" (KB/MB/GB are read as binary units too). */
export const sizeBytes = z.string().trim().transform((text, ctx) => {
  const match = SIZE.exec(text);
  if (!match) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a size such as 65536, 64KiB, 256MiB or 1GiB` });
    return z.NEVER;
  }
  return Number(match[1]) * UNIT_BYTES[(match[2] ?? 'b').toLowerCase()]!;
});

export const integer = (min: number, max: number) =>
  z.string().trim().regex(/^-?\d+$/, 'must be a whole number').transform(Number).pipe(z.number().int().min(min).max(max));
export const port = integer(0, 65535);
export const ratio = z.string().trim().transform(Number).pipe(z.number().min(0).max(1));
export const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes');
export const text = z.string().min(1);
export const optionalText = z.string().min(1).optional();
export const url = (protocols: string[]) =>
  z.string().refine((u) => URL.canParse(u) && protocols.includes(new URL(u).protocol.replace(/:$/, '')), `must be a URL with scheme ${protocols.join(', ')}`);
export const optionalUrl = (protocols: string[]) => url(protocols).optional();
export const logLevel = z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']);

// ---- option groups ------------------------------------------------------------------------------------

export const commonOptions = {
  dataDir: { env: 'SENSORPIPE_DATA_DIR', flag: 'data-dir', schema: text.transform((p) => resolve(p)), default: './data', doc: 'Folder for the embedded store, spool, state and registry.' },
  registryPath: { env: 'SENSORPIPE_REGISTRY', flag: 'registry', schema: optionalText, doc: 'Device registry file (default: <data-dir>/registry.json).' },
  logLevel: { env: 'SENSORPIPE_LOG_LEVEL', flag: 'log-level', schema: logLevel, default: 'info', doc: 'Log level: fatal, error, warn, info, debug, trace or silent.' },
} satisfies Specs;

/** How the services (ingest, display, sim) reach an MQTT broker: ours, or any MQTT 3.1.1/5 broker. */
export const mqttClientOptions = {
  mqttUrl: { env: 'SENSORPIPE_MQTT_URL', flag: 'mqtt-url', schema: url(['mqtt', 'mqtts', 'ws', 'wss']), default: 'mqtt://127.0.0.1:1883', doc: 'MQTT broker URL (mqtt, mqtts, ws or wss).' },
} satisfies Specs;

export const storeOptions = {
  influxUrl: { env: 'SENSORPIPE_INFLUX_URL', flag: 'influx-url', schema: optionalUrl(['http', 'https']), doc: 'InfluxDB URL (1.x API; 2.x/3.x through their 1.x compatibility API). Unset: the embedded store.' },
  influxDatabase: { env: 'SENSORPIPE_INFLUX_DATABASE', flag: 'influx-database', schema: text, default: 'sensorpipe', doc: 'InfluxDB 1.x database (2.x/3.x: the bucket mapped to it).' },
  influxToken: { env: 'SENSORPIPE_INFLUX_TOKEN', flag: 'influx-token', schema: optionalText, secret: true, doc: 'InfluxDB token (2.x/3.x), sent as "Authorization: Token …".' },
  influxUsername: { env: 'SENSORPIPE_INFLUX_USERNAME', flag: 'influx-username', schema: optionalText, doc: 'InfluxDB 1.x user.' },
  influxPassword: { env: 'SENSORPIPE_INFLUX_PASSWORD', flag: 'influx-password', schema: optionalText, secret: true, doc: 'InfluxDB 1.x password.' },
  influxRetentionPolicy: { env: 'SENSORPIPE_INFLUX_RETENTION_POLICY', flag: 'influx-retention-policy', schema: optionalText, doc: 'InfluxDB 1.x retention policy to write to (created if missing). Unset: the database default.' },
  influxOrg: { env: 'SENSORPIPE_INFLUX_ORG', flag: 'influx-org', schema: optionalText, doc: 'InfluxDB 2.x organisation: set it to use the native 2.x API (Flux) instead of the 1.x compatibility API.' },
  influxBucket: { env: 'SENSORPIPE_INFLUX_BUCKET', flag: 'influx-bucket', schema: optionalText, doc: 'InfluxDB 2.x bucket for the native API (default: the database name). It must exist.' },
} satisfies Specs;

export const brokerOptions = {
  mqttHost: { env: 'SENSORPIPE_MQTT_HOST', flag: 'mqtt-host', schema: text, default: '0.0.0.0', doc: 'Address the broker listens on.' },
  mqttPort: { env: 'SENSORPIPE_MQTT_PORT', flag: 'mqtt-port', schema: port, default: '1883', doc: 'MQTT over TCP port (0: any free port).' },
  wsPort: { env: 'SENSORPIPE_MQTT_WS_PORT', flag: 'mqtt-ws-port', schema: port, default: '8083', doc: 'MQTT over WebSocket port, path /mqtt (0: any free port).' },
  tlsPort: { env: 'SENSORPIPE_MQTT_TLS_PORT', flag: 'mqtt-tls-port', schema: port, default: '8883', doc: 'MQTT over TLS port, used when a certificate and key are set.' },
  tlsCert: { env: 'SENSORPIPE_TLS_CERT', flag: 'tls-cert', schema: optionalText, doc: 'PEM certificate file for MQTT over TLS.' },
  tlsKey: { env: 'SENSORPIPE_TLS_KEY', flag: 'tls-key', schema: optionalText, doc: 'PEM private key file for MQTT over TLS.' },
  // Limits against hostile or broken clients (see docs/BROKER.md).
  maxPacketBytes: { env: 'SENSORPIPE_MQTT_MAX_PACKET', flag: 'mqtt-max-packet', schema: sizeBytes, default: '512KiB', doc: 'Largest MQTT packet accepted; checked on the fixed header, before the packet is buffered (larger: connection closed).' },
  connectTimeoutMs: { env: 'SENSORPIPE_MQTT_CONNECT_TIMEOUT', flag: 'mqtt-connect-timeout', schema: durationMs, default: '10s', doc: 'Time a new connection has, from its TCP accept, to complete its CONNECT packet (TLS handshake and WebSocket upgrade included).' },
  keepaliveMinS: { env: 'SENSORPIPE_MQTT_KEEPALIVE_MIN', flag: 'mqtt-keepalive-min', schema: integer(1, 65535), default: '5', doc: 'Keepalive (seconds) below this is raised to it.' },
  keepaliveMaxS: { env: 'SENSORPIPE_MQTT_KEEPALIVE_MAX', flag: 'mqtt-keepalive-max', schema: integer(1, 65535), default: '600', doc: 'Keepalive (seconds) above this, or 0 (none), is lowered to it: an idle client is dropped after 1.5 times this.' },
  maxTopicLevels: { env: 'SENSORPIPE_MQTT_MAX_TOPIC_LEVELS', flag: 'mqtt-max-topic-levels', schema: integer(1, 100), default: '16', doc: 'Most levels in a topic or filter.' },
  maxTopicBytes: { env: 'SENSORPIPE_MQTT_MAX_TOPIC_LENGTH', flag: 'mqtt-max-topic-length', schema: integer(1, 65535), default: '256', doc: 'Longest topic or filter, in bytes.' },
  maxInflightInbound: { env: 'SENSORPIPE_MQTT_MAX_INFLIGHT', flag: 'mqtt-max-inflight', schema: integer(1, 65535), default: '100', doc: 'Most inbound QoS 2 messages a client may leave awaiting PUBREL (more: disconnected).' },
  publishRate: { env: 'SENSORPIPE_DEVICE_PUBLISH_RATE', flag: 'device-publish-rate', schema: z.string().trim().transform(Number).pipe(z.number().positive()), default: '20', doc: 'Messages per second a device may publish on average (token bucket); excess is dropped and counted, except telemetry at QoS 1/2, which closes the connection unacknowledged so that the device sends it again.' },
  publishBurst: { env: 'SENSORPIPE_DEVICE_PUBLISH_BURST', flag: 'device-publish-burst', schema: integer(1, 1_000_000), default: '100', doc: 'Messages a device may publish at once above its rate (bucket size).' },
  publishAbuseDrops: { env: 'SENSORPIPE_DEVICE_ABUSE_DROPS', flag: 'device-abuse-drops', schema: integer(1, 1_000_000), default: '500', doc: 'A device whose publishes are dropped this many times in a row (no accepted publish between) is disconnected.' },
  maxConnections: { env: 'SENSORPIPE_MQTT_MAX_CONNECTIONS', flag: 'mqtt-max-connections', schema: integer(1, 10_000_000), default: '100000', doc: 'Most open connections in total (more: closed at once).' },
  maxConnectionsPerAddress: { env: 'SENSORPIPE_MQTT_MAX_CONNECTIONS_PER_ADDRESS', flag: 'mqtt-max-connections-per-address', schema: integer(1, 10_000_000), default: '1000', doc: 'Most open connections from one IP address (a gateway or NAT may carry many devices).' },
  drainTimeoutMs: { env: 'SENSORPIPE_MQTT_DRAIN_TIMEOUT', flag: 'mqtt-drain-timeout', schema: durationMs, default: '10s', doc: 'A subscriber that does not read for this long is disconnected, so it cannot stall delivery to others.' },
  loginFailuresMax: { env: 'SENSORPIPE_MQTT_LOGIN_FAILURES', flag: 'mqtt-login-failures', schema: integer(1, 1_000_000), default: '10', doc: 'Failed logins from one address within the window that get the address banned.' },
  loginFailureWindowMs: { env: 'SENSORPIPE_MQTT_LOGIN_FAILURE_WINDOW', flag: 'mqtt-login-failure-window', schema: durationMs, default: '1m', doc: 'Window for counting failed logins.' },
  loginBanMs: { env: 'SENSORPIPE_MQTT_LOGIN_BAN', flag: 'mqtt-login-ban', schema: durationMs, default: '5m', doc: 'How long a banned address is refused (new connections closed at once).' },
  registryPollMs: { env: 'SENSORPIPE_REGISTRY_POLL', flag: 'registry-poll', schema: durationMs, default: '1s', doc: 'How often the broker checks the registry file for changes (revocations take effect then).' },
  brokerMetricsPort: { env: 'SENSORPIPE_BROKER_METRICS_PORT', flag: 'broker-metrics-port', schema: port, default: '9102', doc: 'Port of the broker\'s /metrics and /healthz (0: any free port).' },
  brokerMetricsHost: { env: 'SENSORPIPE_BROKER_METRICS_HOST', flag: 'broker-metrics-host', schema: optionalText, doc: 'Address the broker\'s /metrics, /healthz, /livez and /readyz listen on (default: SENSORPIPE_MQTT_HOST).' },
  metricsPerDevice: { env: 'SENSORPIPE_METRICS_PER_DEVICE', flag: 'metrics-per-device', schema: bool, default: 'true', doc: 'Per-device Prometheus series (broker: online; ingest: completeness, missing readings): one series each per device. false for big fleets (docs/OPERATIONS.md).' },
  brokerWal: { env: 'SENSORPIPE_BROKER_WAL', flag: 'broker-wal', schema: z.enum(['on', 'off']).transform((v) => v === 'on'), default: 'on', doc: 'on: every QoS 1/2 message is written to the session log under <data-dir>/broker/log and fsynced before it is acknowledged, so a broker killed at any moment loses nothing it acknowledged. off: acknowledged messages live in memory until a graceful stop saves them.' },
  queueHigh: { env: 'SENSORPIPE_BROKER_QUEUE_HIGH', flag: 'broker-queue-high', schema: integer(2, 10_000_000), default: '30000', doc: 'Backpressure: with this many messages queued for ingest (not yet acknowledged by it), publishes are held unacknowledged and their devices not read from...' },
  queueLow: { env: 'SENSORPIPE_BROKER_QUEUE_LOW', flag: 'broker-queue-low', schema: integer(1, 10_000_000), default: '20000', doc: '...until the queue is down to this many (below SENSORPIPE_BROKER_QUEUE_HIGH).' },
  redisUrl: { env: 'SENSORPIPE_REDIS_URL', flag: 'redis-url', schema: optionalUrl(['redis', 'rediss']), doc: 'Redis for scale-out: several brokers share messages, sessions and retained messages, and every process (broker, ingest, display, sim, the CLI) keeps the device registry there (docs/REGISTRY.md). Unset: in memory, and the registry file.' },
} satisfies Specs;

/** Service accounts: each service logs in to the broker with its own name and password. */
export const serviceAccountOptions = {
  ingestPassword: { env: 'SENSORPIPE_INGEST_PASSWORD', flag: 'ingest-password', schema: optionalText, secret: true, doc: 'Password of the ingest service account (user svc:ingest).' },
  displayPassword: { env: 'SENSORPIPE_DISPLAY_PASSWORD', flag: 'display-password', schema: optionalText, secret: true, doc: 'Password of the display service account (user svc:display).' },
  alertsPassword: { env: 'SENSORPIPE_ALERTS_PASSWORD', flag: 'alerts-password', schema: optionalText, secret: true, doc: 'Password of the alerts service account (user svc:alerts).' },
  adminPassword: { env: 'SENSORPIPE_ADMIN_PASSWORD', flag: 'admin-password', schema: optionalText, secret: true, doc: 'Password of the admin account (user svc:admin); unset: no admin login.' },
} satisfies Specs;

export const displayOptions = {
  httpHost: { env: 'SENSORPIPE_HTTP_HOST', flag: 'http-host', schema: text, default: '0.0.0.0', doc: 'Address the dashboard and API listen on.' },
  httpPort: { env: 'SENSORPIPE_HTTP_PORT', flag: 'http-port', schema: port, default: '8080', doc: 'Dashboard, API and /live port (0: any free port).' },
  viewerToken: { env: 'SENSORPIPE_VIEWER_TOKEN', flag: 'viewer-token', schema: optionalText, secret: true, doc: 'When set, the API and /live require this token (Authorization: Bearer, or ?token= for /live).' },
  allowedOrigins: { env: 'SENSORPIPE_ALLOWED_ORIGINS', flag: 'allowed-origins', schema: z.string().optional().transform((t) => (t ?? '').split(',').map((o) => o.trim()).filter((o) => o !== '')), doc: 'Browser origins allowed besides the dashboard\'s own, comma-separated (e.g. https://ops.example.com).' },
  liveTickMs: { env: 'SENSORPIPE_LIVE_TICK', flag: 'live-tick', schema: durationMs.pipe(z.number().int().min(1).max(1000)), default: '20ms', doc: 'Live readings are sent to each client in one frame per tick.' },
  liveMaxClients: { env: 'SENSORPIPE_LIVE_MAX_CLIENTS', flag: 'live-max-clients', schema: integer(1, 1_000_000), default: '5000', doc: 'Most /live WebSocket clients at once (more: refused with 429 LIMIT_EXCEEDED).' },
  liveSlowBytes: { env: 'SENSORPIPE_LIVE_SLOW_BYTES', flag: 'live-slow-bytes', schema: sizeBytes, default: '1MiB', doc: 'A client with this much unsent data is slow: it gets only the newest value per metric until it catches up.' },
  liveStuckMs: { env: 'SENSORPIPE_LIVE_STUCK_TIMEOUT', flag: 'live-stuck-timeout', schema: durationMs, default: '15s', doc: 'A client that stays slow this long is disconnected.' },
  liveHeartbeatMs: { env: 'SENSORPIPE_LIVE_HEARTBEAT', flag: 'live-heartbeat', schema: durationMs, default: '15s', doc: 'Ping interval; a client that misses a pong by the next ping is dropped.' },
  liveMaxClientsPerAddress: { env: 'SENSORPIPE_LIVE_MAX_CLIENTS_PER_ADDRESS', flag: 'live-max-clients-per-address', schema: integer(1, 1_000_000), default: '64', doc: 'Most /live clients from one IP address (more: refused with 429 LIMIT_EXCEEDED). Behind a reverse proxy every client has the proxy\'s address: raise it there.' },
  httpHeadersTimeoutMs: { env: 'SENSORPIPE_HTTP_HEADERS_TIMEOUT', flag: 'http-headers-timeout', schema: durationMs.pipe(z.number().int().min(1)), default: '5s', doc: 'A request (API, dashboard or /live upgrade) whose headers have not all arrived this long after it began is answered 408 and closed.' },
  httpRequestTimeoutMs: { env: 'SENSORPIPE_HTTP_REQUEST_TIMEOUT', flag: 'http-request-timeout', schema: durationMs.pipe(z.number().int().min(1)), default: '10s', doc: 'A request not received in full this long after it began is answered 408 and closed (at least SENSORPIPE_HTTP_HEADERS_TIMEOUT).' },
  httpIdleTimeoutMs: { env: 'SENSORPIPE_HTTP_IDLE_TIMEOUT', flag: 'http-idle-timeout', schema: durationMs.pipe(z.number().int().min(1)), default: '1m', doc: 'An HTTP connection on which no byte moves either way for this long is closed (a client that stops reading a response). /live has its own heartbeat.' },
  httpMaxConnectionsPerAddress: { env: 'SENSORPIPE_HTTP_MAX_CONNECTIONS_PER_ADDRESS', flag: 'http-max-connections-per-address', schema: integer(1, 1_000_000), default: '256', doc: 'Most open connections to the display\'s port (HTTP and /live together) from one IP address; more are closed at once, before anything is read. Behind a reverse proxy: raise it.' },
  httpMaxConnections: { env: 'SENSORPIPE_HTTP_MAX_CONNECTIONS', flag: 'http-max-connections', schema: integer(1, 10_000_000), default: '10000', doc: 'Most open connections to the display\'s port in total (HTTP and /live together); more are closed at once, before anything is read. Keep it above SENSORPIPE_LIVE_MAX_CLIENTS, and within the process\'s file descriptor limit (ulimit -n).' },
  quarantineDir: { env: 'SENSORPIPE_DISPLAY_QUARANTINE_DIR', flag: 'display-quarantine-dir', schema: optionalText, doc: 'Folder of ingest\'s quarantine that /api/quarantine and the dashboard\'s Quarantine page read, read-only (default: <data-dir>/ingest/quarantine, where ingest keeps it; with ingest on another machine, a copy or a shared mount). Absent: the page says so and lists nothing.' },
  historyMaxConcurrent: { env: 'SENSORPIPE_HISTORY_MAX_CONCURRENT', flag: 'history-max-concurrent', schema: integer(1, 10_000), default: '8', doc: 'Most history loads from the store at once, for all viewers together (an API readings request or CSV export, or one device\'s history for a /live subscription). More wait, up to 4 times as many for at most 2 s; beyond that they are refused with SERVER_BUSY (HTTP 503 with Retry-After).' },
} satisfies Specs;

export const ingestOptions = {
  maxFutureMs: { env: 'SENSORPIPE_MAX_FUTURE', flag: 'max-future', schema: durationMs, default: '5m', doc: 'Reject readings further ahead of the ingest clock than this.' },
  maxAgeMs: { env: 'SENSORPIPE_MAX_AGE', flag: 'max-age', schema: durationMs, default: '7d', doc: 'Reject readings older than this.' },
  ingestClientId: { env: 'SENSORPIPE_INGEST_CLIENT_ID', flag: 'ingest-client-id', schema: text, default: 'sensorpipe-ingest', doc: 'MQTT client id of ingest; stable, so its persistent session survives restarts.' },
  mqttProtocol: { env: 'SENSORPIPE_MQTT_PROTOCOL', flag: 'mqtt-protocol', schema: z.enum(['3.1.1', '5']), default: '3.1.1', doc: 'MQTT version ingest speaks: 3.1.1 (our broker) or 5 (needed for shared subscriptions).' },
  shareGroup: { env: 'SENSORPIPE_INGEST_SHARE_GROUP', flag: 'ingest-share-group', schema: optionalText, doc: 'With an MQTT 5 broker: subscribe as $share/<group>/… so several ingest processes split the load.' },
  batchMaxPoints: { env: 'SENSORPIPE_BATCH_MAX_POINTS', flag: 'batch-max-points', schema: integer(1, 100_000), default: '5000', doc: 'Write a batch once it holds this many points…' },
  batchMaxDelayMs: { env: 'SENSORPIPE_BATCH_MAX_DELAY', flag: 'batch-max-delay', schema: durationMs, default: '100ms', doc: '…or once its oldest point waited this long.' },
  maxUnacked: { env: 'SENSORPIPE_MAX_UNACKED', flag: 'max-unacked', schema: integer(1, 1_000_000), default: '20000', doc: 'Stop reading from the broker while this many messages are unacknowledged (backpressure).' },
  maxUnackedBytes: { env: 'SENSORPIPE_MAX_UNACKED_BYTES', flag: 'max-unacked-bytes', schema: integer(262_144, 2 ** 31), default: String(16 * 2 ** 20), doc: 'Stop reading from the broker while the unacknowledged messages carry this many payload bytes (backpressure for messages of many readings; at least the largest payload, 256 KiB).' },
  spoolMaxBytes: { env: 'SENSORPIPE_SPOOL_MAX', flag: 'spool-max', schema: sizeBytes, default: '1GiB', doc: 'Disk spool limit while the store is down; when full, acknowledgements pause (alarm).' },
  retryMinMs: { env: 'SENSORPIPE_RETRY_MIN', flag: 'retry-min', schema: durationMs, default: '250ms', doc: 'First wait before retrying the store (doubles, with jitter).' },
  retryMaxMs: { env: 'SENSORPIPE_RETRY_MAX', flag: 'retry-max', schema: durationMs, default: '10s', doc: 'Longest wait between store retries.' },
  quarantineMaxEntries: { env: 'SENSORPIPE_QUARANTINE_MAX', flag: 'quarantine-max', schema: integer(2, 10_000_000), default: '100000', doc: 'Quarantine entries kept; older ones are evicted and counted.' },
  quarantinePayloadBytes: { env: 'SENSORPIPE_QUARANTINE_PAYLOAD', flag: 'quarantine-payload', schema: sizeBytes, default: '4KiB', doc: 'Bytes of each rejected payload kept in the quarantine.' },
  redeliveryWindow: { env: 'SENSORPIPE_REDELIVERY_WINDOW', flag: 'redelivery-window', schema: integer(1, 10_000), default: '64', doc: 'Each device\'s last N accepted messages are remembered (seqs and a signature digest): an identical copy is a duplicate, another message with their seqs a replay.' },
  redeliveryFleetWindow: { env: 'SENSORPIPE_REDELIVERY_FLEET_WINDOW', flag: 'redelivery-fleet-window', schema: integer(2, 100_000_000), default: '65536', doc: 'The fleet\'s last N accepted messages are remembered too (about 32 bytes each), so that every broker redelivery is recognised; at least twice SENSORPIPE_MAX_UNACKED. Older copies are looked up in the store.' },
  seqGapWindow: { env: 'SENSORPIPE_SEQ_GAP_WINDOW', flag: 'seq-gap-window', schema: integer(1, 10_000_000), default: '65536', doc: 'Seq gaps remembered per device; older seqs count as seen.' },
  completenessIntervalMs: { env: 'SENSORPIPE_COMPLETENESS_INTERVAL', flag: 'completeness-interval', schema: durationMs, default: '5s', doc: 'How often ingest publishes per-device completeness (retained) when it changed.' },
  ingestMetricsPort: { env: 'SENSORPIPE_INGEST_METRICS_PORT', flag: 'ingest-metrics-port', schema: port, default: '9101', doc: 'Port of ingest\'s /metrics and /healthz (0: any free port).' },
  ingestMetricsHost: { env: 'SENSORPIPE_INGEST_METRICS_HOST', flag: 'ingest-metrics-host', schema: text, default: '127.0.0.1', doc: 'Address ingest\'s /metrics, /healthz, /livez and /readyz listen on (0.0.0.0: reachable by a Prometheus on another host or container).' },
  metricsPerDevice: brokerOptions.metricsPerDevice,
} satisfies Specs;

export const simOptions = {
  devices: { env: 'SENSORPIPE_SIM_DEVICES', flag: 'devices', schema: integer(1, 100_000), default: '25', doc: 'Number of simulated devices.' },
  interval: { env: 'SENSORPIPE_SIM_INTERVAL', flag: 'interval', schema: durationMs, default: '1s', doc: 'Time between readings of one device.' },
  profile: { env: 'SENSORPIPE_SIM_PROFILE', flag: 'profile', schema: z.enum(['env', 'industrial', 'power', 'mixed']), default: 'mixed', doc: 'Sensor profile: env, industrial, power or mixed.' },
  seed: { env: 'SENSORPIPE_SIM_SEED', flag: 'seed', schema: integer(0, 2 ** 31 - 1), default: '1', doc: 'Seed for reproducible signals and faults.' },
  faults: { env: 'SENSORPIPE_SIM_FAULTS', flag: 'faults', schema: optionalText, doc: 'Faults to inject: name:fraction or name@device, comma-separated (firmware-sim/FAULTS.md).' },
  simDuration: { env: 'SENSORPIPE_SIM_DURATION', flag: 'duration', schema: durationMs.optional(), doc: 'Stop after this long and print the summary (default: run until SIGINT).' },
  simBuffer: { env: 'SENSORPIPE_SIM_BUFFER', flag: 'buffer', schema: integer(1, 10_000_000), default: '10000', doc: 'Readings a device keeps while offline; older ones are dropped and counted.' },
  simBatch: { env: 'SENSORPIPE_SIM_BATCH', flag: 'batch', schema: integer(1, 1000), default: '100', doc: 'Readings per message when a device sends its buffer.' },
  simAckedLog: { env: 'SENSORPIPE_SIM_ACKED_LOG', flag: 'acked-log', schema: optionalText, doc: 'Append every good reading the broker acknowledged to this file, one "device seq ts values" line each, values as JSON (for reconciling with the store).' },
  simCredentials: { env: 'SENSORPIPE_SIM_CREDENTIALS', flag: 'credentials', schema: optionalText, doc: 'Existing devices: a file of `sensorpipe devices add --json` lines. Unset: demo mode provisions sim-0000… into the registry.' },
} satisfies Specs;

/** The alerts component (alerts/): rules, the alert log, webhooks and its API port. */
export const alertsOptions = {
  alertRules: { env: 'SENSORPIPE_ALERT_RULES', flag: 'alert-rules', schema: optionalText, doc: 'Alert rules file, YAML or JSON (README "Alerts"); followed while running. Default: <data-dir>/alert-rules.yaml (`sensorpipe start` writes a demo one there if it is missing).' },
  alertsHost: { env: 'SENSORPIPE_ALERTS_HOST', flag: 'alerts-host', schema: text, default: '127.0.0.1', doc: 'Address the alerts API (/api/alerts) and its /metrics, /healthz, /livez, /readyz listen on.' },
  alertsPort: { env: 'SENSORPIPE_ALERTS_PORT', flag: 'alerts-port', schema: port, default: '9103', doc: 'Port of the alerts API and its ops endpoints (0: any free port).' },
  alertsClientId: { env: 'SENSORPIPE_ALERTS_CLIENT_ID', flag: 'alerts-client-id', schema: text, default: 'sensorpipe-alerts', doc: 'MQTT client id of the alerts component.' },
  alertsTickMs: { env: 'SENSORPIPE_ALERTS_TICK', flag: 'alerts-tick', schema: durationMs.pipe(z.number().int().min(10).max(60_000)), default: '250ms', doc: 'How often time-driven rules are evaluated: `for` durations ending, silent devices, sliding windows.' },
  alertsMaxLagMs: { env: 'SENSORPIPE_ALERTS_MAX_LAG', flag: 'alerts-max-lag', schema: durationMs.pipe(z.number().int().min(1)), default: '1m', doc: 'Readings older than this when they arrive (a device catching up with a backlog) are not evaluated against threshold and rate rules.' },
  alertLogMaxBytes: { env: 'SENSORPIPE_ALERT_LOG_MAX', flag: 'alert-log-max', schema: sizeBytes.pipe(z.number().int().min(4096)), default: '8MiB', doc: 'Size of the alert log (<data-dir>/alerts/alerts.log) past which it is rotated; one older file is kept.' },
  webhookRetryMinMs: { env: 'SENSORPIPE_WEBHOOK_RETRY_MIN', flag: 'webhook-retry-min', schema: durationMs.pipe(z.number().int().min(1)), default: '1s', doc: 'First wait before a failed webhook delivery is retried (doubles each time, with jitter).' },
  webhookRetryMaxMs: { env: 'SENSORPIPE_WEBHOOK_RETRY_MAX', flag: 'webhook-retry-max', schema: durationMs.pipe(z.number().int().min(1)), default: '5m', doc: 'Longest wait between webhook delivery attempts.' },
  webhookQueueMax: { env: 'SENSORPIPE_WEBHOOK_QUEUE_MAX', flag: 'webhook-queue-max', schema: integer(1, 10_000_000), default: '10000', doc: 'Events kept per webhook while it is unreachable; beyond, the oldest are dropped and counted.' },
} satisfies Specs;

/** The admin HTTP API (admin/): device provisioning over HTTP, off unless a token is set. */
export const adminOptions = {
  adminToken: { env: 'SENSORPIPE_ADMIN_TOKEN', flag: 'admin-token', schema: z.string().min(16, 'must be at least 16 characters (e.g. openssl rand -base64 32)').optional(), secret: true, doc: 'Turns the admin API on: every request must carry it as "Authorization: Bearer <token>". At least 16 characters. Unset: no admin API.' },
  adminHost: { env: 'SENSORPIPE_ADMIN_HOST', flag: 'admin-host', schema: text, default: '127.0.0.1', doc: 'Address the admin API listens on (loopback by default: put TLS in front of it before exposing it).' },
  adminPort: { env: 'SENSORPIPE_ADMIN_PORT', flag: 'admin-port', schema: port, default: '8091', doc: 'Port of the admin API (0: any free port).' },
  adminMaxBodyBytes: { env: 'SENSORPIPE_ADMIN_MAX_BODY', flag: 'admin-max-body', schema: sizeBytes, default: '1MiB', doc: 'Largest admin API request body (a bulk add file); larger: 413 PAYLOAD_TOO_LARGE.' },
  adminAuthFailures: { env: 'SENSORPIPE_ADMIN_AUTH_FAILURES', flag: 'admin-auth-failures', schema: integer(1, 1_000_000), default: '10', doc: 'Admin API requests with a wrong or missing token from one address within a minute that get the address banned.' },
  adminAuthBanMs: { env: 'SENSORPIPE_ADMIN_AUTH_BAN', flag: 'admin-auth-ban', schema: durationMs, default: '5m', doc: 'How long a banned address is refused by the admin API (429 LIMIT_EXCEEDED, token not even checked).' },
} satisfies Specs;

// ---- per process kind -------------------------------------------------------------------------------

export const configSpecs = {
  devices: { ...commonOptions },
  broker: { ...commonOptions, ...brokerOptions, ...serviceAccountOptions },
  ingest: { ...commonOptions, ...mqttClientOptions, ...storeOptions, ...ingestOptions, ingestPassword: serviceAccountOptions.ingestPassword, redisUrl: brokerOptions.redisUrl },
  display: { ...commonOptions, ...mqttClientOptions, ...storeOptions, ...displayOptions, displayPassword: serviceAccountOptions.displayPassword, maxFutureMs: ingestOptions.maxFutureMs, redisUrl: brokerOptions.redisUrl },
  // The simulator's broker URL is also `--broker`, the name issue 4 and the README give it.
  sim: { ...commonOptions, mqttUrl: { ...mqttClientOptions.mqttUrl, aliases: ['broker'] }, ...simOptions, redisUrl: brokerOptions.redisUrl },
  alerts: { ...commonOptions, ...mqttClientOptions, ...alertsOptions, alertsPassword: serviceAccountOptions.alertsPassword, redisUrl: brokerOptions.redisUrl },
  start: { ...commonOptions, ...brokerOptions, ...serviceAccountOptions, ...storeOptions, ...displayOptions, ...ingestOptions, ...simOptions, ...adminOptions, ...alertsOptions },
  admin: { ...commonOptions, redisUrl: brokerOptions.redisUrl, ...adminOptions },
} as const satisfies Record<string, Specs>;
export type ProcessKind = keyof typeof configSpecs;

/** Resolved paths that derive from the data folder when not given. */
export function registryPathOf(config: { dataDir: string; registryPath?: string | undefined }): string {
  return resolve(config.registryPath ?? `${config.dataDir}/registry.json`);
}

/** The quarantine folder the display reads: SENSORPIPE_DISPLAY_QUARANTINE_DIR, or ingest's under the data folder. */
export function quarantineDirOf(config: { dataDir: string; quarantineDir?: string | undefined }): string {
  return resolve(config.quarantineDir ?? `${config.dataDir}/ingest/quarantine`);
}

export interface ConfigSource {
  argv?: readonly string[];
  env?: Readonly<Record<string, string | undefined>>;
}

export interface ParsedConfig<T extends Specs> {
  config: ConfigOf<T>;
  /** Arguments that are not options (sub-command words). */
  positionals: string[];
  help: boolean;
}

/**
 * Parses argv and environment against a set of option specs. Unknown flags are an error (a typo must
 * not silently fall back to a default). Throws CONFIG_INVALID naming the variable and flag.
 */
export function parseConfig<T extends Specs>(specs: T, source: ConfigSource = {}): ParsedConfig<T> {
  const env = source.env ?? process.env;
  const flagOptions: Record<string, { type: 'string' } | { type: 'boolean' }> = { help: { type: 'boolean' } };
  for (const spec of Object.values(specs)) {
    for (const flag of [spec.flag, ...(spec.aliases ?? [])]) flagOptions[flag] = { type: spec.switch === true ? 'boolean' : 'string' };
  }

  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args: [...(source.argv ?? [])], options: flagOptions, strict: true, allowPositionals: true });
  } catch (err) {
    throw new SensorpipeError('CONFIG_INVALID', (err as Error).message);
  }

  const config: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(specs)) {
    const given = [spec.flag, ...(spec.aliases ?? [])].filter((flag) => parsed.values[flag] !== undefined);
    if (given.length > 1) throw new SensorpipeError('CONFIG_INVALID', `${given.map((f) => `--${f}`).join(' and ')} set the same option: give one (${spec.env})`, { variable: spec.env, flag: spec.flag });
    const usedFlag = given[0] ?? spec.flag;
    const flagValue = parsed.values[usedFlag];
    const fromFlag = typeof flagValue === 'boolean' ? String(flagValue) : flagValue;
    const raw = typeof fromFlag === 'string' ? fromFlag : (env[spec.env] ?? spec.default);
    const origin = typeof fromFlag === 'string' ? `--${usedFlag}` : env[spec.env] !== undefined ? spec.env : `default of ${spec.env}`;
    const result = spec.schema.safeParse(raw === '' ? undefined : raw);
    if (!result.success) {
      let reason = result.error.issues[0]?.message ?? 'invalid';
      if (spec.secret && raw) reason = reason.split(raw).join('(hidden)');
      const shown = spec.secret ? '(hidden)' : JSON.stringify(raw);
      throw new SensorpipeError('CONFIG_INVALID', `${origin} = ${shown}: ${reason} (${spec.env} / --${spec.flag})`, { variable: spec.env, flag: spec.flag });
    }
    config[key] = result.data;
  }
  return { config: config as ConfigOf<T>, positionals: parsed.positionals, help: parsed.values.help === true };
}

export function helpText(usage: string, specs: Specs): string {
  const lines = [usage, '', 'Options (flag, environment variable, default):'];
  for (const spec of Object.values(specs)) {
    const also = spec.aliases?.length ? ` (also ${spec.aliases.map((a) => `--${a}`).join(', ')})` : '';
    lines.push(`${spec.switch === true ? `  --${spec.flag}` : `  --${spec.flag} <value>`}${also}`);
    lines.push(`      ${spec.env}${spec.default !== undefined ? ` (default: ${spec.default})` : ' (default: unset)'}`);
    lines.push(`      ${spec.doc}`);
  }
  lines.push('  --help', '      Show this help.');
  return lines.join('\n');
}
