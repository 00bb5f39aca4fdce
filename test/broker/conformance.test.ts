/**
 * MQTT 3.1.1 behaviour that must survive our hooks (authentication, ACL, limits, status): client
 * identifiers, clean and persistent sessions, session takeover, retained messages, QoS 1 and 2,
 * overlapping subscriptions. Each test cites the normative clause it checks.
 */
import mqtt, { type IPublishPacket } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../core/topics.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { closedByBroker, connect, deviceOptions, inbox, makeFleet, type Fleet } from './helpers.ts';
import { connectPacket, rawConnect, within } from './raw.ts';

let fleet: Fleet;
let broker: TestBroker;
const admin = (clientId: string, extra = {}) => ({ ...broker.services.admin, clientId, ...extra });

beforeAll(async () => {
  fleet = await makeFleet(['persist-dev', 'takeover-dev']);
  broker = await startTestBroker({ registryPath: fleet.registryPath });
});

afterAll(async () => {
  await broker?.close();
  await fleet?.dir.remove();
});

describe('client identifiers', () => {
  it('[MQTT-3.1.3-8] a zero-byte client id with CleanSession 0 gets CONNACK 2 and the connection is closed', async () => {
    const raw = await rawConnect(broker.broker.ports.mqtt);
    raw.socket.write(connectPacket({ clientId: '', username: 'svc:admin', password: broker.services.admin.password, clean: false }));
    expect([...(await raw.bytes(4))]).toEqual([0x20, 0x02, 0x00, 0x02]);
    await within(raw.closed, 'closed after CONNACK 2');
  });

  it('[MQTT-3.1.3-6] a zero-byte client id with CleanSession 1 is given an id and accepted', async () => {
    const raw = await rawConnect(broker.broker.ports.mqtt);
    raw.socket.write(connectPacket({ clientId: '', username: 'svc:admin', password: broker.services.admin.password, clean: true }));
    expect([...(await raw.bytes(4))]).toEqual([0x20, 0x02, 0x00, 0x00]);
    raw.socket.destroy();
  });

  it('[MQTT-3.1.4-2] a device reconnecting with its own id takes over its session; it stays online', async () => {
    const first = await connect(broker.url, deviceOptions(fleet, 'takeover-dev'));
    const firstClosed = closedByBroker(first);
    const second = await connect(broker.url, deviceOptions(fleet, 'takeover-dev'));
    await firstClosed;
    first.end(true);
    await second.publishAsync(topics.telemetry('takeover-dev'), 'after takeover', { qos: 1 });
    expect(broker.broker.deviceState('takeover-dev')?.state).toBe('online');
    await second.endAsync();
  });
});

describe('sessions', () => {
  it('[MQTT-3.1.2-4] [MQTT-3.2.2-2] a persistent session keeps subscriptions and queues QoS 1 messages while offline', async () => {
    const sub1 = await connect(broker.url, admin('persistent-sub', { clean: false }));
    await sub1.subscribeAsync(topics.allTelemetry, { qos: 1 });
    await sub1.endAsync();
    const device = await connect(broker.url, deviceOptions(fleet, 'persist-dev'));
    await device.publishAsync(topics.telemetry('persist-dev'), 'while you were away', { qos: 1 });
    await device.endAsync();
    const sub2 = mqtt.connect(broker.url, admin('persistent-sub', { clean: false, reconnectPeriod: 0 }));
    const box = inbox(sub2);
    const connack = await within(new Promise<{ sessionPresent: boolean }>((resolve) => sub2.once('connect', resolve)), 'CONNACK');
    expect(connack.sessionPresent).toBe(true);
    await box.waitFor((m) => m.payload.toString() === 'while you were away', 'the queued message');
    await sub2.endAsync();
  });

  it('[MQTT-3.1.2-6] [MQTT-3.2.2-1] a clean session discards the previous one: session present 0, nothing queued', async () => {
    const sub1 = await connect(broker.url, admin('clean-sub', { clean: false }));
    await sub1.subscribeAsync('lab/clean', { qos: 1 });
    await sub1.endAsync();
    const sub2 = mqtt.connect(broker.url, admin('clean-sub', { clean: true, reconnectPeriod: 0 }));
    const connack = await within(new Promise<{ sessionPresent: boolean }>((resolve) => sub2.once('connect', resolve)), 'CONNACK');
    expect(connack.sessionPresent).toBe(false);
    await sub2.endAsync();
  });
});

describe('retained messages, QoS and overlapping subscriptions', () => {
  it('[MQTT-3.3.1-6] [MQTT-3.3.1-10] a retained message reaches later subscribers; an empty retained payload clears it', async () => {
    const pub = await connect(broker.url, admin('retain-pub'));
    await pub.publishAsync('lab/retained', 'kept', { qos: 1, retain: true });
    const sub = await connect(broker.url, admin('retain-sub'));
    const box = inbox(sub);
    await sub.subscribeAsync('lab/retained', { qos: 1 });
    const got = await box.waitFor((m) => m.topic === 'lab/retained', 'the retained message');
    expect(got.retain).toBe(true);
    await pub.publishAsync('lab/retained', '', { qos: 1, retain: true });
    const later = await connect(broker.url, admin('retain-later'));
    const laterBox = inbox(later);
    await later.subscribeAsync(['lab/retained', 'lab/marker'], { qos: 1 });
    await pub.publishAsync('lab/marker', 'm', { qos: 1 });
    await laterBox.waitFor((m) => m.topic === 'lab/marker', 'marker');
    expect(laterBox.messages.some((m) => m.topic === 'lab/retained' && m.payload.length > 0)).toBe(false);
    await Promise.all([pub.endAsync(), sub.endAsync(), later.endAsync()]);
  });

  it('[MQTT-4.3.3-2] QoS 2 is delivered exactly once end to end', async () => {
    const sub = await connect(broker.url, admin('qos2-sub'));
    const received: IPublishPacket[] = [];
    sub.on('message', (_t, _p, packet) => received.push(packet));
    await sub.subscribeAsync('lab/qos2', { qos: 2 });
    const pub = await connect(broker.url, admin('qos2-pub'));
    for (let i = 0; i < 5; i++) await pub.publishAsync('lab/qos2', `m${i}`, { qos: 2 });
    await pub.publishAsync('lab/qos2', 'end', { qos: 2 });
    await within((async () => { while (!received.some((p) => p.payload.toString() === 'end')) await new Promise((r) => setTimeout(r, 20)); })(), 'all QoS 2 messages');
    expect(received.map((p) => p.payload.toString())).toEqual(['m0', 'm1', 'm2', 'm3', 'm4', 'end']);
    expect(received.every((p) => p.qos === 2)).toBe(true);
    await Promise.all([pub.endAsync(), sub.endAsync()]);
  });

  it('[MQTT-3.3.5-1] overlapping subscriptions: the message is delivered with the highest granted QoS', async () => {
    const sub = await connect(broker.url, admin('overlap-sub'));
    const received: IPublishPacket[] = [];
    sub.on('message', (_t, _p, packet) => received.push(packet));
    await sub.subscribeAsync({ 'lab/overlap/+': { qos: 0 }, 'lab/#': { qos: 1 } });
    const pub = await connect(broker.url, admin('overlap-pub'));
    await pub.publishAsync('lab/overlap/x', 'both', { qos: 1 });
    await within((async () => { while (received.length === 0) await new Promise((r) => setTimeout(r, 20)); })(), 'the message');
    expect(received.some((p) => p.qos === 1)).toBe(true);
    await Promise.all([pub.endAsync(), sub.endAsync()]);
  });
});
