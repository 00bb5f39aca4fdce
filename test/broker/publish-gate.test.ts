/**
 * The publish gate (broker/publish-gate.ts): the token bucket, the verdict for each kind of PUBLISH, what
 * the aedes hook does with each verdict (and counts), and, on a real broker, that a device's Will is
 * delivered even when its bucket is empty.
 */
import type { Client, PublishPacket } from 'aedes';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { topics } from '../../core/topics.ts';
import type { Principal } from '../../broker/acl.ts';
import { Connections } from '../../broker/connections.ts';
import { createBrokerMetrics, type BrokerMetrics } from '../../broker/metrics.ts';
import { Presence } from '../../broker/presence.ts';
import { DROPPED_TOPIC, PublishGate, TokenBucket, type PublishVerdict } from '../../broker/publish-gate.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { captureLogger, closedByBroker, connect, deviceOptions, inbox, makeFleet, metricValue, type Fleet } from './helpers.ts';

describe('TokenBucket', () => {
  it('lets a burst through, then the rate, and counts drops in a row', () => {
    let now = 1_000_000;
    const bucket = new TokenBucket(2, 3, () => now); // 2 a second, 3 at once
    const takes = (n: number) => Array.from({ length: n }, () => bucket.take());
    expect(takes(4)).toEqual([true, true, true, false]);
    expect(bucket.consecutiveDrops).toBe(1);
    expect(takes(2)).toEqual([false, false]);
    expect(bucket.consecutiveDrops).toBe(3);
    now += 499; // not quite one token (2/s)
    expect(bucket.take()).toBe(false);
    now += 2; // now one
    expect(bucket.take()).toBe(true);
    expect(bucket.consecutiveDrops).toBe(0);
    now += 60_000; // a long pause saves up no more than the burst
    expect(takes(4)).toEqual([true, true, true, false]);
  });

  it('counts a time before the last one as no time: a full bucket stays full, an empty one empty', () => {
    // The gate reads the clock, then makes a device's bucket, which reads it again a millisecond later.
    let now = 1_001;
    const bucket = new TokenBucket(0.01, 1, () => now);
    expect(bucket.take(1_000)).toBe(true);
    expect(bucket.take(1_000)).toBe(false);
    now = 500; // the system clock steps back
    expect(bucket.take()).toBe(false);
    expect(bucket.consecutiveDrops).toBe(2);
  });

  it('takes the time it is given', () => {
    const bucket = new TokenBucket(1, 1, () => 0);
    expect(bucket.take(0)).toBe(true);
    expect(bucket.take(500)).toBe(false);
    expect(bucket.take(1500)).toBe(true);
  });
});

const device = (id: string): Principal => ({ kind: 'device', deviceId: id, verifier: `verifier-of-${id}` });
const service = (name: 'ingest' | 'display' | 'admin'): Principal => ({ kind: 'service', service: name });
const publish = (topic: string, qos: 0 | 1 | 2 = 1, retain = false): PublishPacket => ({ cmd: 'publish', topic, payload: Buffer.from('x'), qos, retain, dup: false });
/** The gate reads a client as a WeakMap key, its `will` and how far it has connected; aedes' Client is no more here. */
const fakeClient = (will: PublishPacket | null = null, state: { connected: boolean; connackSent: boolean } = { connected: true, connackSent: true }) =>
  ({ id: 'fake', will, conn: {}, ...state }) as unknown as Client;

interface Rig {
  gate: PublishGate;
  metrics: BrokerMetrics;
  presence: Presence;
  clock: { now: number };
}

function rig(limits: Partial<{ publishRate: number; publishBurst: number; publishAbuseDrops: number }> = {}): Rig {
  const clock = { now: 5_000 };
  const presence = new Presence();
  const metrics = createBrokerMetrics({ connections: () => 0, devicesOnline: () => 0, bannedAddresses: () => 0 });
  const gate = new PublishGate({
    limits: { maxTopicLevels: 4, maxTopicBytes: 64, publishRate: 1, publishBurst: 2, publishAbuseDrops: 3, ...limits },
    metrics,
    presence,
    connections: new Connections(captureLogger().logger),
    now: () => clock.now,
  });
  return { gate, metrics, presence, clock };
}

describe('PublishGate.verdict', () => {
  const cases: [string, Principal | undefined, PublishPacket, PublishVerdict][] = [
    ['a client that never logged in', undefined, publish(topics.telemetry('a')), 'acl_publish'],
    ['a device to its telemetry', device('a'), publish(topics.telemetry('a')), 'deliver'],
    ['a device to its status', device('a'), publish(topics.status('a'), 1, true), 'deliver'],
    ['a device to another device\'s telemetry', device('a'), publish(topics.telemetry('b')), 'acl_publish'],
    ['a device to a wildcard topic [MQTT-3.3.2-2]', device('a'), publish('sensors/+/telemetry'), 'acl_publish'],
    ['a device to $SYS', device('a'), publish('$SYS/x'), 'acl_publish'],
    ['a device to the dropped topic', device('a'), publish(DROPPED_TOPIC), 'acl_publish'],
    ['a device to a topic over the level limit', device('a'), publish('sensors/a/telemetry/x/y'), 'topic_limits'],
    ['a device to a topic over the byte limit', device('a'), publish(`sensors/a/${'x'.repeat(64)}`), 'topic_limits'],
    ['a device to an empty topic', device('a'), publish(''), 'topic_limits'],
    ['ingest to the pipeline', service('ingest'), publish('pipeline/readings/a'), 'deliver'],
    ['ingest to a device topic', service('ingest'), publish(topics.telemetry('a')), 'acl_publish'],
    ['display to anything', service('display'), publish('pipeline/readings/a'), 'acl_publish'],
    ['admin to a device topic', service('admin'), publish(topics.telemetry('a')), 'deliver'],
  ];
  for (const [name, principal, packet, verdict] of cases) {
    it(`${name}: ${verdict}`, () => {
      const { gate } = rig();
      const client = fakeClient();
      if (principal) gate.admit(client, principal);
      expect(gate.verdict(client, packet)).toBe(verdict);
    });
  }

  it('over the rate: drops status and QoS 0 telemetry, refuses QoS 1/2 telemetry, then calls it abuse', () => {
    const { gate } = rig({ publishAbuseDrops: 4 });
    const client = fakeClient();
    gate.admit(client, device('a'));
    const verdicts = [
      publish(topics.telemetry('a'), 1), // burst: 2
      publish(topics.telemetry('a'), 1),
      publish(topics.status('a'), 1), // dropped, 1 in a row
      publish(topics.telemetry('a'), 0), // 2
      publish(topics.telemetry('a'), 1), // refused unacknowledged, 3
      publish(topics.telemetry('a'), 2), // 4: but QoS 2 telemetry is refused, not dropped
      publish(topics.status('a'), 0), // 5 ≥ 4
    ].map((packet) => gate.verdict(client, packet));
    expect(verdicts).toEqual(['deliver', 'deliver', 'rate_limited', 'rate_limited', 'rate_limited_disconnect', 'rate_limited_disconnect', 'abuse_disconnect']);
  });

  it('refills at the rate, and a refused topic takes no token', () => {
    const { gate, clock } = rig();
    const client = fakeClient();
    gate.admit(client, device('a'));
    for (let i = 0; i < 5; i++) expect(gate.verdict(client, publish(topics.telemetry('b')))).toBe('acl_publish');
    expect([1, 2, 3].map(() => gate.verdict(client, publish(topics.status('a'))))).toEqual(['deliver', 'deliver', 'rate_limited']);
    clock.now += 1000;
    expect(gate.verdict(client, publish(topics.status('a')))).toBe('deliver');
  });

  it('keeps a device\'s bucket across its connections, and each device has its own', () => {
    const { gate } = rig();
    const first = fakeClient();
    gate.admit(first, device('a'));
    gate.verdict(first, publish(topics.status('a')));
    gate.verdict(first, publish(topics.status('a')));
    const second = fakeClient();
    gate.admit(second, device('a'));
    expect(gate.verdict(second, publish(topics.status('a')))).toBe('rate_limited');
    const other = fakeClient();
    gate.admit(other, device('b'));
    expect(gate.verdict(other, publish(topics.status('b')))).toBe('deliver');
  });

  it('does not limit services', () => {
    const { gate } = rig();
    const client = fakeClient();
    gate.admit(client, service('ingest'));
    expect(new Set(Array.from({ length: 100 }, () => gate.verdict(client, publish('pipeline/readings/a'))))).toEqual(new Set(['deliver']));
  });

  it('lets the device\'s own Will through with an empty bucket', () => {
    const { gate } = rig();
    const will = publish(topics.status('a'), 1, true);
    const client = fakeClient(will);
    gate.admit(client, device('a'));
    gate.verdict(client, publish(topics.status('a')));
    gate.verdict(client, publish(topics.status('a')));
    expect(gate.verdict(client, publish(topics.status('a')))).toBe('rate_limited');
    expect(gate.verdict(client, will)).toBe('deliver');
  });

  it('tells presence when a device was last heard from', () => {
    const { gate, presence, clock } = rig();
    const client = fakeClient();
    presence.connected('a', client, clock.now);
    gate.admit(client, device('a'));
    clock.now += 1234;
    gate.verdict(client, publish(topics.telemetry('a')));
    expect(presence.state('a')).toEqual({ state: 'online', since: 5_000, lastSeen: 6_234 });
  });
});

describe('PublishGate.authorizePublish', () => {
  let r: Rig;
  let client: Client;
  const drops = async (reason: string) => metricValue(await r.metrics.registry.metrics(), 'sensorpipe_broker_drops_total', `reason="${reason}"`);
  const authorize = (c: Client | null, packet: PublishPacket) =>
    new Promise<Error | null | undefined>((resolve) => r.gate.authorizePublish(c, packet, (err) => resolve(err)));

  beforeEach(() => {
    r = rig({ publishAbuseDrops: 2 });
    client = fakeClient();
    r.gate.admit(client, device('a'));
  });

  it('passes and counts what it lets through', async () => {
    const packet = publish(topics.telemetry('a'));
    expect(await authorize(client, packet)).toBeNull();
    expect(packet.topic).toBe(topics.telemetry('a'));
    expect(r.metrics.publishesIn).toBe(1);
  });

  it('acknowledges a publish over the rate but sends it nowhere, and counts it', async () => {
    await authorize(client, publish(topics.status('a')));
    await authorize(client, publish(topics.status('a')));
    const packet = publish(topics.status('a'), 1, true);
    expect(await authorize(client, packet)).toBeNull();
    expect(packet).toMatchObject({ topic: DROPPED_TOPIC, retain: false });
    expect(await drops('rate_limited')).toBe(1);
    expect(r.metrics.publishesIn).toBe(2);
  });

  it('closes the connection for telemetry at QoS 1 over the rate, counted apart', async () => {
    await authorize(client, publish(topics.status('a')));
    await authorize(client, publish(topics.status('a')));
    const packet = publish(topics.telemetry('a'), 1);
    expect(await authorize(client, packet)).toBeInstanceOf(Error);
    expect(packet.topic).toBe(topics.telemetry('a'));
    expect(await drops('rate_limited_disconnect')).toBe(1);
    expect(await drops('rate_limited')).toBe(0);
  });

  it('closes the connection of an abuser, counting its last publish as rate_limited too', async () => {
    for (let i = 0; i < 3; i++) await authorize(client, publish(topics.status('a')));
    expect(await authorize(client, publish(topics.status('a')))).toBeInstanceOf(Error);
    expect(await drops('rate_limited')).toBe(2);
    expect(await drops('abuse_disconnect')).toBe(1);
  });

  it('closes the connection for a topic outside the ACL or the limits, each under its reason', async () => {
    expect(await authorize(client, publish(topics.telemetry('b')))).toBeInstanceOf(Error);
    expect(await authorize(client, publish('a/b/c/d/e'))).toBeInstanceOf(Error);
    expect(await drops('acl_publish')).toBe(1);
    expect(await drops('topic_limits')).toBe(1);
    expect(r.metrics.publishesIn).toBe(0);
  });

  it('lets a Will without a client (its broker died) through only on a status topic', async () => {
    expect(await authorize(null, publish(topics.status('a')))).toBeNull();
    expect(await authorize(null, publish(topics.telemetry('a')))).toBeInstanceOf(Error);
    expect(await authorize(null, publish('pipeline/readings/a'))).toBeInstanceOf(Error);
  });

  it('counts what it forwards, unchanged', () => {
    const packet = publish(topics.telemetry('a'));
    expect(r.gate.authorizeForward(client, packet as never)).toBe(packet);
    expect(r.metrics.publishesOut).toBe(1);
  });
});

describe('PublishGate.authorizeForward', () => {
  // device a may receive sensors/a/…, not sensors/b/…
  const cases: [string, { connected: boolean; connackSent: boolean }, string, boolean][] = [
    ['connected: anything its subscriptions match, unchecked (the publish path)', { connected: true, connackSent: true }, topics.telemetry('b'), true],
    ['restoring its session, before its CONNACK: nothing [MQTT-3.2.0-1]', { connected: false, connackSent: false }, topics.status('a'), false],
    ['after its CONNACK, while its queue is sent: what it may receive', { connected: false, connackSent: true }, topics.status('a'), true],
    ['after its CONNACK, while its queue is sent: not what it may not receive', { connected: false, connackSent: true }, topics.telemetry('b'), false],
  ];
  for (const [name, state, topic, forwarded] of cases) {
    it(`${forwarded ? 'forwards' : 'refuses'} to a device ${name}`, () => {
      const r = rig();
      const client = fakeClient(null, state);
      r.gate.admit(client, device('a'));
      const packet = publish(topic);
      expect(r.gate.authorizeForward(client, packet as never)).toBe(forwarded ? packet : null);
      expect(r.metrics.publishesOut).toBe(forwarded ? 1 : 0);
    });
  }

  it('refuses a connecting client that never logged in', () => {
    expect(rig().gate.authorizeForward(fakeClient(null, { connected: false, connackSent: true }), publish(topics.status('a')) as never)).toBeNull();
  });
});

describe('on a real broker', () => {
  let fleet: Fleet;
  let broker: TestBroker;
  beforeAll(async () => {
    fleet = await makeFleet(['willing']);
    broker = await startTestBroker({ registryPath: fleet.registryPath, publishRate: 0.01, publishBurst: 1 });
  });
  afterAll(async () => {
    await broker?.close();
    await fleet?.dir.remove();
  });

  it('delivers a device\'s Will though its bucket is empty', async () => {
    const display = await connect(broker.url, { ...broker.services.display, clientId: 'display-will' });
    const box = inbox(display);
    await display.subscribeAsync(topics.status('willing'), { qos: 1 });
    const dev = await connect(broker.url, deviceOptions(fleet, 'willing', { will: { topic: topics.status('willing'), payload: Buffer.from('the will'), qos: 1, retain: false } }));
    await dev.publishAsync(topics.status('willing'), 'takes the only token', { qos: 1 });
    await dev.publishAsync(topics.status('willing'), 'dropped', { qos: 1 });
    const closed = closedByBroker(dev);
    dev.stream.destroy(); // lost without DISCONNECT: the broker publishes the Will
    await closed;
    dev.end(true);
    await box.waitFor((m) => m.payload.toString() === 'the will', 'the Will', 5_000);
    expect(box.messages.some((m) => m.payload.toString() === 'dropped')).toBe(false);
    await display.endAsync();
  });
});
