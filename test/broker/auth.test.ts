/**
 * Logging in (broker/auth.ts): every refusal with its reason and CONNACK code, the keepalive clamp, and,
 * on a real broker, the cases the hostile suite does not reach: a service taking a device's client id, a
 * zero-byte client id with CleanSession 0, a service without a password, a filter over the topic
 * length, the number of filters a connection may hold, and what a refused login leaves in the log.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSpecs, parseConfig } from '../../core/config.ts';
import { Registry } from '../../core/registry.ts';
import { topics } from '../../core/topics.ts';
import { checkLogin, clampKeepalive, MAX_SUBSCRIPTIONS_PER_CLIENT, RefusedLogin, type LoginAttempt, type LoginPolicy } from '../../broker/auth.ts';
import { CONNACK, LOGIN_FAILURES, type LoginFailure } from '../../broker/codes.ts';
import { startBroker, type RunningBroker } from '../../broker/index.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { captureLogger, connect, makeFleet, metricValue, refusedWith, subackCodes, type CapturedLogs, type Fleet } from './helpers.ts';
import { connectPacket, rawConnect, within } from './raw.ts';

describe('checkLogin', () => {
  const registry = new Registry();
  const device = registry.add('dev-a');
  const revoked = registry.add('dev-r');
  registry.revoke('dev-r');
  const policy: LoginPolicy = {
    registry,
    servicePasswords: { ingest: 'ingest-secret', display: undefined, alerts: undefined, admin: 'admin-secret' },
    topicLimits: { maxTopicLevels: 4, maxTopicBytes: 64 },
  };
  const asDevice = (extra: Partial<LoginAttempt> = {}): LoginAttempt => ({
    clientId: 'dev-a', clientIdWasEmpty: false, cleanSession: true, username: 'dev-a', password: Buffer.from(device.mqttPassword), willTopic: undefined, ...extra,
  });
  const asIngest = (extra: Partial<LoginAttempt> = {}): LoginAttempt => ({
    clientId: 'ingest-1', clientIdWasEmpty: false, cleanSession: true, username: 'svc:ingest', password: Buffer.from('ingest-secret'), willTopic: undefined, ...extra,
  });

  const refusals: [string, LoginAttempt, LoginFailure][] = [
    ['no user name', asDevice({ username: undefined }), 'anonymous'],
    ['no password', asDevice({ password: undefined }), 'anonymous'],
    ['neither', asDevice({ username: undefined, password: undefined }), 'anonymous'],
    ['an unknown device', asDevice({ username: 'nobody', clientId: 'nobody' }), 'unknown_device'],
    ['an empty user name', asDevice({ username: '', clientId: '' }), 'unknown_device'],
    ['a revoked device with its right password', asDevice({ username: 'dev-r', clientId: 'dev-r', password: Buffer.from(revoked.mqttPassword) }), 'revoked_device'],
    ['a revoked device with a wrong password', asDevice({ username: 'dev-r', clientId: 'dev-r', password: Buffer.from('guess') }), 'revoked_device'],
    ['a device with a wrong password', asDevice({ password: Buffer.from('guess') }), 'bad_credentials'],
    ['a device with an empty password', asDevice({ password: Buffer.alloc(0) }), 'bad_credentials'],
    ['a device with another device\'s password', asDevice({ password: Buffer.from(revoked.mqttPassword) }), 'bad_credentials'],
    ['a device with another client id', asDevice({ clientId: 'dev-b' }), 'client_id_mismatch'],
    ['a device with a client id made up for an empty one', asDevice({ clientId: 'aedes_x', clientIdWasEmpty: true }), 'client_id_mismatch'],
    ['a service without a configured password', asIngest({ username: 'svc:display' }), 'service_disabled'],
    ['no such service', asIngest({ username: 'svc:nosuch' }), 'service_disabled'],
    ['svc: alone', asIngest({ username: 'svc:' }), 'service_disabled'],
    ['svc:toString (an inherited property, not a service)', asIngest({ username: 'svc:toString' }), 'service_disabled'],
    ['svc:__proto__', asIngest({ username: 'svc:__proto__' }), 'service_disabled'],
    ['a service with a wrong password', asIngest({ password: Buffer.from('ingest-secreT') }), 'bad_credentials'],
    ['a service with another service\'s password', asIngest({ password: Buffer.from('admin-secret') }), 'bad_credentials'],
    ['a service using a device id as client id', asIngest({ clientId: 'dev-a' }), 'client_id_mismatch'],
    ['a service using a revoked device\'s id as client id', asIngest({ clientId: 'dev-r' }), 'client_id_mismatch'],
    ['a service with an empty client id and CleanSession 0 [MQTT-3.1.3-8]', asIngest({ clientId: 'aedes_x', clientIdWasEmpty: true, cleanSession: false }), 'client_id_mismatch'],
    ['a device Will on another device\'s status', asDevice({ willTopic: topics.status('dev-b') }), 'will_not_allowed'],
    ['a device Will on its own telemetry', asDevice({ willTopic: topics.telemetry('dev-a') }), 'will_not_allowed'],
    ['a device Will with a wildcard', asDevice({ willTopic: 'sensors/+/status' }), 'will_not_allowed'],
    ['an empty Will topic', asDevice({ willTopic: '' }), 'will_not_allowed'],
    ['a service Will over the level limit', asIngest({ willTopic: 'pipeline/a/b/c/d' }), 'will_not_allowed'],
    ['a service Will over the byte limit', asIngest({ willTopic: `pipeline/${'x'.repeat(60)}` }), 'will_not_allowed'],
    ['an admin Will on a $ topic', asIngest({ username: 'svc:admin', password: Buffer.from('admin-secret'), willTopic: '$SYS/x' }), 'will_not_allowed'],
  ];

  for (const [name, attempt, reason] of refusals) {
    it(`refuses ${name}: ${reason}, CONNACK ${LOGIN_FAILURES[reason].connack}`, () => {
      let thrown: unknown;
      try {
        checkLogin(attempt, policy);
      } catch (err) {
        thrown = err;
      }
      expect(thrown).toBeInstanceOf(RefusedLogin);
      expect((thrown as RefusedLogin).reason).toBe(reason);
      expect((thrown as RefusedLogin).returnCode).toBe(LOGIN_FAILURES[reason].connack);
    });
  }

  it('maps each refusal to the CONNACK code the docs give', () => {
    expect(Object.fromEntries(Object.entries(LOGIN_FAILURES).map(([reason, { connack }]) => [reason, connack]))).toEqual({
      anonymous: CONNACK.notAuthorized,
      unknown_device: CONNACK.notAuthorized,
      revoked_device: CONNACK.notAuthorized,
      bad_credentials: CONNACK.badUsernameOrPassword,
      service_disabled: CONNACK.badUsernameOrPassword,
      client_id_mismatch: CONNACK.identifierRejected,
      will_not_allowed: CONNACK.notAuthorized,
    });
    expect(CONNACK).toMatchObject({ accepted: 0, unacceptableProtocol: 1, identifierRejected: 2, serverUnavailable: 3, badUsernameOrPassword: 4, notAuthorized: 5 });
  });

  const accepted: [string, LoginAttempt, unknown][] = [
    ['a device with its credentials', asDevice(), { kind: 'device', deviceId: 'dev-a', verifier: registry.get('dev-a')!.mqtt.hash }],
    ['a device with a Will on its own status', asDevice({ willTopic: topics.status('dev-a') }), { kind: 'device', deviceId: 'dev-a' }],
    ['a persistent session for a device', asDevice({ cleanSession: false }), { kind: 'device', deviceId: 'dev-a' }],
    ['a service', asIngest(), { kind: 'service', service: 'ingest' }],
    ['a service with an empty client id and CleanSession 1', asIngest({ clientId: 'aedes_x', clientIdWasEmpty: true }), { kind: 'service', service: 'ingest' }],
    ['a service Will inside its publish ACL', asIngest({ willTopic: 'pipeline/ingest/down' }), { kind: 'service', service: 'ingest' }],
    ['admin', asIngest({ username: 'svc:admin', password: Buffer.from('admin-secret') }), { kind: 'service', service: 'admin' }],
  ];
  for (const [name, attempt, principal] of accepted) {
    it(`accepts ${name}`, () => {
      expect(checkLogin(attempt, policy)).toMatchObject(principal as object);
    });
  }
});

describe('clampKeepalive [MQTT-3.1.2-24]', () => {
  const limits = { keepaliveMinS: 5, keepaliveMaxS: 600 };
  const cases: [number, number][] = [[0, 600], [1, 5], [4, 5], [5, 5], [60, 60], [600, 600], [601, 600], [65535, 600]];
  for (const [asked, held] of cases) {
    it(`holds a keepalive of ${asked} s to ${held} s`, () => expect(clampKeepalive(asked, limits)).toBe(held));
  }
});

describe('on a real broker', () => {
  let fleet: Fleet;
  let broker: TestBroker;
  beforeAll(async () => {
    fleet = await makeFleet(['dev-a']);
    broker = await startTestBroker({ registryPath: fleet.registryPath, displayPassword: undefined, maxTopicBytes: 64 });
  });
  afterAll(async () => {
    await broker?.close();
    await fleet?.dir.remove();
  });

  it('refuses a service that uses a device id as its client id with CONNACK 2, and counts it', async () => {
    const before = metricValue(await broker.metricsText(), 'sensorpipe_broker_login_failures_total', 'reason="client_id_mismatch"');
    expect(await refusedWith(broker.url, { ...broker.services.ingest, clientId: 'dev-a' })).toBe(CONNACK.identifierRejected);
    expect(metricValue(await broker.metricsText(), 'sensorpipe_broker_login_failures_total', 'reason="client_id_mismatch"')).toBe(before + 1);
  });

  it('answers a zero-byte client id with CONNACK 2 under CleanSession 0, and accepts it under CleanSession 1 [MQTT-3.1.3-8]', async () => {
    for (const [clean, code] of [[false, CONNACK.identifierRejected], [true, CONNACK.accepted]] as const) {
      const raw = await rawConnect(broker.broker.ports.mqtt);
      raw.socket.write(connectPacket({ clientId: '', username: 'svc:ingest', password: broker.services.ingest.password, clean }));
      expect([...(await raw.bytes(4))]).toEqual([0x20, 0x02, 0x00, code]);
      raw.socket.destroy();
    }
  });

  it('refuses a service account whose password is not configured with CONNACK 4', async () => {
    expect(await refusedWith(broker.url, { clientId: 'display-1', username: 'svc:display', password: 'anything' })).toBe(CONNACK.badUsernameOrPassword);
  });

  it('answers SUBACK 0x80 for a filter over the topic length, even for admin, and counts it', async () => {
    const before = metricValue(await broker.metricsText(), 'sensorpipe_broker_drops_total', 'reason="acl_subscribe"');
    const admin = await connect(broker.url, { ...broker.services.admin, clientId: 'admin-long' });
    expect(await subackCodes(admin, { [`pipeline/${'x'.repeat(64)}`]: 1, 'pipeline/#': 1 })).toEqual([0x80, 1]);
    await admin.endAsync();
    expect(metricValue(await broker.metricsText(), 'sensorpipe_broker_drops_total', 'reason="acl_subscribe"')).toBe(before + 1);
  });

  it(`holds a connection to ${MAX_SUBSCRIPTIONS_PER_CLIENT} filters: one more gets SUBACK 0x80 until one is unsubscribed`, async () => {
    const before = metricValue(await broker.metricsText(), 'sensorpipe_broker_drops_total', 'reason="subscription_limit"');
    const admin = await connect(broker.url, { ...broker.services.admin, clientId: 'admin-many' });
    const filters = Array.from({ length: MAX_SUBSCRIPTIONS_PER_CLIENT + 1 }, (_, i) => `pipeline/f${i}`);
    const codes = await subackCodes(admin, Object.fromEntries(filters.map((f) => [f, 1 as const])));
    expect(codes.slice(0, -1).every((c) => c === 1)).toBe(true);
    expect(codes.at(-1)).toBe(0x80);
    // A filter it holds already is granted again; a new one is not; after an UNSUBSCRIBE it is.
    expect(await subackCodes(admin, { 'pipeline/f0': 1, 'pipeline/another': 1 })).toEqual([1, 0x80]);
    await admin.unsubscribeAsync('pipeline/f0');
    expect(await subackCodes(admin, { 'pipeline/another': 1 })).toEqual([1]);
    await admin.endAsync();
    expect(metricValue(await broker.metricsText(), 'sensorpipe_broker_drops_total', 'reason="subscription_limit"')).toBe(before + 2);
  });
});

describe('the log of a refused login', () => {
  let fleet: Fleet;
  let data: TempDir;
  let logs: CapturedLogs;
  let broker: RunningBroker;
  beforeAll(async () => {
    fleet = await makeFleet(['dev-a']);
    data = await tempDir('sensorpipe-broker-auth-');
    logs = captureLogger('debug');
    const defaults = parseConfig(configSpecs.broker, { argv: [], env: {} }).config;
    broker = await startBroker({
      config: { ...defaults, dataDir: data.path, mqttHost: '127.0.0.1', mqttPort: 0, wsPort: 0, brokerMetricsPort: 0, ingestPassword: 'ingest-secret' },
      registryPath: fleet.registryPath,
      logger: logs.logger,
    });
  });
  afterAll(async () => {
    await broker?.close();
    await fleet?.dir.remove();
    await data?.remove();
  });

  it('carries the connection\'s fields and the reason, never the password', async () => {
    const password = 'a-wrong-password-that-must-not-be-logged';
    expect(await refusedWith(broker.urls.mqtt, { clientId: 'dev-a', username: 'dev-a', password })).toBe(CONNACK.badUsernameOrPassword);
    const line = await within((async () => {
      for (;;) {
        const found = logs.lines.find((l) => l.msg === 'login refused');
        if (found) return found;
        await new Promise((r) => setTimeout(r, 20));
      }
    })(), 'the login refused line');
    expect(line).toMatchObject({ component: 'broker', address: '127.0.0.1', transport: 'tcp', client: 'dev-a', username: 'dev-a', reason: 'bad_credentials', returnCode: 4 });
    expect(JSON.stringify(logs.lines)).not.toContain(password);
  });
});
