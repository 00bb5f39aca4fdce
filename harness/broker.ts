/**
 * Our broker (`broker/`) on free loopback ports, for tests of any component that needs the real thing:
 * registry-backed device logins, topic ACL, limits, retained device status. Service accounts get fresh
 * random passwords. Pass `tls: true` for an MQTT-over-TLS listener with a throwaway self-signed
 * certificate (made with Debian's openssl).
 *
 *   const broker = await startTestBroker({ registryPath });
 *   mqtt.connectAsync(broker.url, { username: broker.services.ingest.username, password: broker.services.ingest.password })
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { configSpecs, parseConfig } from '../core/config.ts';
import { createLogger } from '../core/logger.ts';
import { startBroker, type BrokerConfig, type RunningBroker } from '../broker/index.ts';
import { tempDir } from './tmp.ts';

export interface ServiceCredentials {
  username: string;
  password: string;
}

export interface TestBroker {
  url: string;
  wsUrl: string;
  /** Only with `tls: true`. */
  tlsUrl?: string;
  /** The self-signed certificate (PEM) to trust, with `tls: true`. */
  ca?: Buffer;
  metricsUrl: string;
  services: { ingest: ServiceCredentials; display: ServiceCredentials; admin: ServiceCredentials };
  broker: RunningBroker;
  /** Text of /metrics. */
  metricsText(): Promise<string>;
  close(): Promise<void>;
}

export type TestBrokerOptions = { registryPath: string; tls?: boolean; logLevel?: BrokerConfig['logLevel'] } & Partial<Omit<BrokerConfig, 'tlsCert' | 'tlsKey'>>;

/** A self-signed certificate for 127.0.0.1 / localhost in a temporary folder. */
export async function selfSignedCert(): Promise<{ certPath: string; keyPath: string; cert: Buffer; remove(): Promise<void> }> {
  const dir = await tempDir('sensorpipe-tls-');
  const certPath = join(dir.path, 'cert.pem');
  const keyPath = join(dir.path, 'key.pem');
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost',
    '-keyout', keyPath, '-out', certPath,
  ]);
  return { certPath, keyPath, cert: await readFile(certPath), remove: dir.remove };
}

export async function startTestBroker(options: TestBrokerOptions): Promise<TestBroker> {
  const { registryPath, tls, logLevel, ...overrides } = options;
  const defaults = parseConfig(configSpecs.broker, { argv: [], env: {} }).config;
  const password = () => randomBytes(18).toString('base64url');
  const services = {
    ingest: { username: 'svc:ingest', password: password() },
    display: { username: 'svc:display', password: password() },
    admin: { username: 'svc:admin', password: password() },
  };
  const cert = tls ? await selfSignedCert() : undefined;
  // The broker keeps sessions across a graceful restart in its data folder: one of its own per test broker,
  // unless the test gives one (to restart a broker on the same sessions).
  const ownData = overrides.dataDir === undefined ? await tempDir('sensorpipe-broker-') : undefined;
  const config: BrokerConfig = {
    ...defaults,
    dataDir: ownData?.path ?? overrides.dataDir!,
    mqttHost: '127.0.0.1',
    mqttPort: 0,
    wsPort: 0,
    tlsPort: 0,
    brokerMetricsPort: 0,
    ingestPassword: services.ingest.password,
    displayPassword: services.display.password,
    adminPassword: services.admin.password,
    registryPollMs: 200,
    ...overrides,
    tlsCert: cert?.certPath,
    tlsKey: cert?.keyPath,
    logLevel: logLevel ?? 'silent',
  };
  if (overrides.ingestPassword !== undefined) services.ingest.password = overrides.ingestPassword;
  if (overrides.displayPassword !== undefined) services.display.password = overrides.displayPassword;
  if (overrides.adminPassword !== undefined) services.admin.password = overrides.adminPassword;
  let broker: RunningBroker;
  try {
    broker = await startBroker({ config, registryPath, logger: createLogger({ level: config.logLevel }) });
  } catch (err) {
    await cert?.remove();
    await ownData?.remove();
    throw err;
  }
  return {
    url: broker.urls.mqtt,
    wsUrl: broker.urls.ws,
    ...(broker.urls.tls !== undefined ? { tlsUrl: broker.urls.tls } : {}),
    ...(cert ? { ca: cert.cert } : {}),
    metricsUrl: broker.urls.metrics,
    services,
    broker,
    metricsText: async () => (await fetch(broker.urls.metrics)).text(),
    close: async () => {
      await broker.close();
      await cert?.remove();
      await ownData?.remove();
    },
  };
}
