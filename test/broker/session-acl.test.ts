/**
 * A refused subscription never reaches a persistent session (issue 15, item 6). Device dev-a connects
 * with CleanSession 0 and sends one SUBSCRIBE with its own filter and dev-b's; the SUBACK refuses dev-b's.
 * aedes 1.2 stored both all the same, so while dev-a was away the broker queued dev-b's telemetry and
 * status for it and delivered them when it came back. Checked over TCP and WebSocket, in memory, across a
 * graceful restart (the session file) and with Redis; then the other ways a stored session could carry
 * more than its client may have: another account taking over the client id, a session file and Redis
 * data written by an older broker.
 */
import { randomUUID } from 'node:crypto';
import { writeFile, mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Redis } from 'ioredis';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { logDirOf, replaySessionLog } from '../../broker/session-log.ts';
import { sessionFilePath } from '../../broker/session-file.ts';
import { topics } from '../../core/topics.ts';
import { startTestBroker, type TestBroker, type TestBrokerOptions } from '../../harness/broker.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { connect, deviceOptions, inbox, makeFleet, subackCodes, type Fleet, type Inbox } from './helpers.ts';
import { connectPacket, rawConnect, within } from './raw.ts';
import { startRedis, type RedisServer } from './redis.ts';
import { importRegistryFile } from '../registry/import.ts';

const OWN = 'sensors/dev-a/+';
const FOREIGN = 'sensors/dev-b/#';
/** Matches dev-a's own filter; only dev-a itself or admin may publish there. */
const MARKER_TOPIC = 'sensors/dev-a/cmd';

type Transport = 'tcp' | 'ws';
const urlOf = (broker: TestBroker, transport: Transport): string => (transport === 'tcp' ? broker.url : broker.wsUrl);

let fleet: Fleet;
let data: TempDir;
let redis: RedisServer;
const brokers: TestBroker[] = [];

beforeAll(async () => {
  fleet = await makeFleet(['dev-a', 'dev-b']);
  data = await tempDir('sensorpipe-session-acl-');
  redis = await startRedis(data.path);
});

afterEach(async () => {
  for (const broker of brokers.splice(0)) await broker.close();
  const connection = new Redis(redis.url);
  await connection.flushall();
  connection.disconnect();
});

afterAll(async () => {
  await redis?.stop();
  await data?.remove();
  await fleet?.dir.remove();
});

/** A broker closed after the test (unless the test closed it). Services share passwords across brokers. */
async function broker(options: Partial<TestBrokerOptions> = {}): Promise<TestBroker> {
  // With Redis, the registry lives there too (docs/REGISTRY.md); each test ends with a FLUSHALL.
  if (options.redisUrl !== undefined) await importRegistryFile(fleet.registryPath, options.redisUrl);
  const started = await startTestBroker({ registryPath: fleet.registryPath, adminPassword: 'admin-secret', displayPassword: 'display-secret', ...options });
  brokers.push(started);
  return started;
}

async function closeBroker(b: TestBroker): Promise<void> {
  brokers.splice(brokers.indexOf(b), 1);
  await b.close();
}

interface PersistenceView {
  subscriptionsByClient(client: { id: string }): Promise<{ topic: string }[]>;
  addSubscriptions(client: { id: string }, subs: { topic: string; qos: number }[]): Promise<void>;
}
const persistenceOf = (b: TestBroker) => (b.broker.aedes as unknown as { persistence: PersistenceView }).persistence;
/** The filters the broker's store holds for a client id (memory or Redis). */
async function storedFilters(b: TestBroker, clientId: string): Promise<string[]> {
  return (await persistenceOf(b).subscriptionsByClient({ id: clientId })).map((s) => s.topic).sort();
}

/** Connects with CleanSession 0, catching everything delivered from the CONNACK on. */
async function reconnect(url: string, options: IClientOptions): Promise<{ client: MqttClient; box: Inbox; sessionPresent: boolean }> {
  const client = mqtt.connect(url, { ...options, clean: false, reconnectPeriod: 0, manualConnect: true });
  const box = inbox(client);
  const connack = new Promise<boolean>((resolve, reject) => {
    client.once('connect', (packet) => resolve(packet.sessionPresent));
    client.once('error', reject);
  });
  client.connect();
  return { client, box, sessionPresent: await within(connack, 'CONNACK') };
}

/**
 * While dev-a is away: dev-b connects (its status goes online), publishes telemetry and leaves (offline);
 * then admin publishes a marker on dev-a's own filter. Everything queued for dev-a precedes the marker.
 */
async function whileAway(b: TestBroker, transport: Transport): Promise<void> {
  const devB = await connect(urlOf(b, transport), deviceOptions(fleet, 'dev-b'));
  await devB.publishAsync(topics.telemetry('dev-b'), 'dev-b telemetry', { qos: 1 });
  await devB.endAsync();
  await new Promise((resolve) => setTimeout(resolve, 100)); // dev-b's offline status is published as it leaves
  const admin = await connect(b.url, { ...b.services.admin, clientId: `admin-${randomUUID()}` });
  await admin.publishAsync(MARKER_TOPIC, 'marker', { qos: 1 });
  await admin.endAsync();
}

/** dev-a comes back: it gets the marker (its session is there), and nothing of dev-b's. */
async function devAComesBack(b: TestBroker, transport: Transport): Promise<void> {
  const { client, box, sessionPresent } = await reconnect(urlOf(b, transport), deviceOptions(fleet, 'dev-a'));
  try {
    expect(sessionPresent).toBe(true);
    await box.waitFor((m) => m.topic === MARKER_TOPIC, 'the marker queued for dev-a');
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Its own status (online, offline) was queued too; nothing of dev-b's.
    expect(box.messages.map((m) => m.topic).filter((topic) => !topic.startsWith('sensors/dev-a/'))).toEqual([]);
  } finally {
    await client.endAsync();
  }
}

/** dev-a's SUBSCRIBE of its own filter and dev-b's, in `order`, with CleanSession 0; then it leaves. */
async function devASubscribes(b: TestBroker, transport: Transport, order: string[]): Promise<void> {
  const devA = await connect(urlOf(b, transport), deviceOptions(fleet, 'dev-a', { clean: false }));
  const codes = await subackCodes(devA, Object.fromEntries(order.map((filter) => [filter, 1 as const])));
  expect(codes).toEqual(order.map((filter) => (filter === OWN ? 1 : 0x80)));
  await devA.endAsync();
}

for (const transport of ['tcp', 'ws'] as const) {
  describe(`a refused filter of a persistent session, over ${transport.toUpperCase()}`, () => {
    for (const order of [[OWN, FOREIGN], [FOREIGN, OWN]]) {
      it(`in memory (SUBSCRIBE [${order.join(', ')}]): not stored, nothing of it queued or delivered`, async () => {
        const b = await broker();
        await devASubscribes(b, transport, order);
        expect(await storedFilters(b, 'dev-a')).toEqual([OWN]);
        await whileAway(b, transport);
        await devAComesBack(b, transport);
        expect(await storedFilters(b, 'dev-a')).toEqual([OWN]);
      });
    }

    it('across a graceful restart: not in the session file, nothing of it delivered after', async () => {
      const dataDir = join(data.path, `restart-${transport}`);
      const first = await broker({ dataDir, brokerWal: false });
      await devASubscribes(first, transport, [OWN, FOREIGN]);
      await closeBroker(first);
      const saved = JSON.parse(await readFile(sessionFilePath(dataDir), 'utf8')) as { sessions: { clientId: string; owner: unknown; subscriptions: { topic: string }[] }[] };
      expect(saved.sessions.map((s) => [s.clientId, s.owner, s.subscriptions.map((x) => x.topic)])).toEqual([['dev-a', { kind: 'device', deviceId: 'dev-a' }, [OWN]]]);
      const second = await broker({ dataDir, brokerWal: false });
      await whileAway(second, transport);
      await devAComesBack(second, transport);
    });

    it('across a graceful restart: not in the session log, nothing of it delivered after', async () => {
      const dataDir = join(data.path, `restart-log-${transport}`);
      const first = await broker({ dataDir });
      await devASubscribes(first, transport, [OWN, FOREIGN]);
      await closeBroker(first);
      const replayed = await replaySessionLog(logDirOf(dataDir));
      expect(replayed.saved?.sessions.map((s) => [s.clientId, s.owner, s.subscriptions.map((x) => x.topic)])).toEqual([['dev-a', { kind: 'device', deviceId: 'dev-a' }, [OWN]]]);
      const second = await broker({ dataDir });
      await whileAway(second, transport);
      await devAComesBack(second, transport);
    });

    it('with Redis: not stored in Redis, nothing of it delivered by another broker', async () => {
      const a = await broker({ redisUrl: redis.url });
      const b = await broker({ redisUrl: redis.url });
      await devASubscribes(a, transport, [OWN, FOREIGN]);
      expect(await storedFilters(a, 'dev-a')).toEqual([OWN]);
      await whileAway(a, transport);
      // The queue is in Redis: dev-a comes back on the other broker.
      await devAComesBack(b, transport);
      expect(await storedFilters(b, 'dev-a')).toEqual([OWN]);
    });
  });
}

describe('other ways a stored session could carry more than its client may have', () => {
  it('a service taking over another account\'s client id gets only what it may receive, and the filter it may not hold is removed', async () => {
    const b = await broker();
    const admin = await connect(b.url, { ...b.services.admin, clientId: 'shared-tool', clean: false });
    await admin.subscribeAsync('#', { qos: 1 });
    await admin.endAsync();
    expect(await storedFilters(b, 'shared-tool')).toEqual(['#']);
    // Queued for admin's "#": telemetry (display may not receive it), then a pipeline message (it may).
    const devB = await connect(b.url, deviceOptions(fleet, 'dev-b'));
    await devB.publishAsync(topics.telemetry('dev-b'), 'dev-b telemetry', { qos: 1 });
    await devB.endAsync();
    const publisher = await connect(b.url, { ...b.services.admin, clientId: 'publisher' });
    await publisher.publishAsync('pipeline/marker', 'marker', { qos: 1 });
    await publisher.endAsync();

    const { client, box, sessionPresent } = await reconnect(b.url, { ...b.services.display, clientId: 'shared-tool' });
    expect(sessionPresent).toBe(true);
    await box.waitFor((m) => m.topic === 'pipeline/marker', 'the pipeline message');
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(box.messages.some((m) => m.topic === topics.telemetry('dev-b'))).toBe(false);
    await client.endAsync();
    expect(await storedFilters(b, 'shared-tool')).toEqual([]);
  });

  it('a session file written by an older broker (refused filters stored, no owners) is checked as it is read and at login', async () => {
    const dataDir = join(data.path, 'older-file');
    const file = sessionFilePath(dataDir);
    const publish = (topic: string, payload: string, brokerCounter: number) => ({ topic, payload: Buffer.from(payload).toString('base64'), qos: 1, retain: false, brokerId: 'older', brokerCounter });
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, JSON.stringify({
      version: 1,
      savedAt: Date.now(),
      retained: [],
      sessions: [
        // A device's session: checked against that device as the file is read.
        { clientId: 'dev-a', subscriptions: [{ topic: OWN, qos: 1 }, { topic: FOREIGN, qos: 1 }], outgoing: [publish(topics.telemetry('dev-b'), 'dev-b telemetry', 1), publish(MARKER_TOPIC, 'marker', 2)] },
        // A service's: nobody knows whose until its client logs in.
        { clientId: 'some-tool', subscriptions: [{ topic: '#', qos: 1 }], outgoing: [publish(topics.telemetry('dev-b'), 'dev-b telemetry', 3), publish('pipeline/marker', 'marker', 4)] },
      ],
    }));
    const b = await broker({ dataDir });
    expect(await storedFilters(b, 'dev-a')).toEqual([OWN]);
    await devAComesBack(b, 'tcp');

    const { client, box } = await reconnect(b.url, { ...b.services.display, clientId: 'some-tool' });
    await box.waitFor((m) => m.topic === 'pipeline/marker', 'the pipeline message');
    await new Promise((resolve) => setTimeout(resolve, 200));
    // Statuses (dev-a's, queued under "#" as it came and went above) display may receive; telemetry not.
    expect(box.messages.map((m) => m.topic).filter((topic) => !topic.endsWith('/status'))).toEqual(['pipeline/marker']);
    await client.endAsync();
    expect(await storedFilters(b, 'some-tool')).toEqual([]);
  });

  it('a refused filter in Redis (stored by an older broker) is removed at login, and what it queued is not delivered', async () => {
    const a = await broker({ redisUrl: redis.url });
    const devA = await connect(a.url, deviceOptions(fleet, 'dev-a', { clean: false }));
    await devA.subscribeAsync(OWN, { qos: 1 });
    await devA.endAsync();
    // What an older broker stored: the store's own method, past the guard, as aedes 1.2 called it.
    const store = persistenceOf(a);
    await (Object.getPrototypeOf(store) as PersistenceView).addSubscriptions.call(store, { id: 'dev-a' }, [{ topic: OWN, qos: 1 }, { topic: FOREIGN, qos: 1 }]);
    expect(await storedFilters(a, 'dev-a')).toEqual([OWN, FOREIGN]);
    await whileAway(a, 'tcp');
    // A second broker, started now, reads the sessions from Redis.
    const b = await broker({ redisUrl: redis.url });
    await devAComesBack(b, 'tcp');
    expect(await storedFilters(b, 'dev-a')).toEqual([OWN]);
  });
});

describe('a persistent session restored while messages flow', () => {
  // aedes restores a session's subscriptions before it answers the CONNECT: a message published in
  // between went out ahead of the CONNACK [MQTT-3.2.0-1], and an MQTT.js client (ingest, display) then
  // stalls until its connect timeout. Found as a flaky "connack timeout" in the Redis cases above.
  for (const store of ['memory', 'redis'] as const) {
    it(`gets its CONNACK first, every time (${store})`, async () => {
      const options = { publishRate: 1_000_000, publishBurst: 1_000_000, ...(store === 'redis' ? { redisUrl: redis.url } : {}) };
      const b = await broker({ ...options, ingestPassword: 'ingest-secret' });
      const login = { clientId: 'ingest-restored', username: 'svc:ingest', password: 'ingest-secret', clean: false };
      const ingest = await connect(b.url, login);
      await ingest.subscribeAsync(topics.allTelemetry, { qos: 1 });
      await ingest.endAsync();
      // A device publishing as fast as it can, at QoS 0 and 1, on another connection (and broker, with Redis).
      const publishOn = store === 'redis' ? await broker(options) : b;
      const device = await connect(publishOn.url, deviceOptions(fleet, 'dev-b'));
      let publishing = true;
      const flood = (async () => {
        for (let i = 0; publishing; i++) await device.publishAsync(topics.telemetry('dev-b'), `flood ${i}`, { qos: i % 2 === 0 ? 1 : 0 });
      })();
      try {
        for (let attempt = 0; attempt < 25; attempt++) {
          const raw = await rawConnect(b.broker.ports.mqtt);
          raw.socket.write(connectPacket({ clientId: login.clientId, username: login.username, password: login.password, clean: false }));
          const first = await raw.bytes(4);
          raw.socket.destroy();
          expect([...first], `reconnection ${attempt}: the first packet`).toEqual([0x20, 0x02, 0x01, 0x00]);
        }
      } finally {
        publishing = false;
        await flood;
        await device.endAsync();
      }
    });
  }
});
