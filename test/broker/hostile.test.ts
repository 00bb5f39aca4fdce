/**
 * Hostile clients are refused as documented (docs/BROKER.md), and after every case a well-behaved
 * device, connected the whole time, still gets its telemetry through to the ingest service.
 */
import { randomUUID } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { saveRegistry } from '../../core/registry.ts';
import { topics } from '../../core/topics.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { closedByBroker, connect, deviceOptions, inbox, makeFleet, metricValue, refusedWith, subackCodes, type Fleet, type Inbox } from './helpers.ts';
import { PINGREQ, connectPacket, rawConnect, remainingLength, within } from './raw.ts';

const MAX_PACKET = 64 * 1024;
let fleet: Fleet;
let broker: TestBroker;
let ingest: MqttClient;
let ingestBox: Inbox;
let good: MqttClient;

beforeAll(async () => {
  fleet = await makeFleet(['good', 'victim', 'attacker', 'flooder', 'gone', 'dev-x']);
  fleet.registry.revoke('gone');
  await saveRegistry(fleet.registryPath, fleet.registry);
  broker = await startTestBroker({
    registryPath: fleet.registryPath,
    maxPacketBytes: MAX_PACKET,
    publishRate: 20,
    publishBurst: 20,
    publishAbuseDrops: 300,
    // The authentication cases below fail about ten logins from 127.0.0.1 themselves.
    loginFailuresMax: 15,
    loginFailureWindowMs: 60_000,
    loginBanMs: 60_000,
  });
  ingest = await connect(broker.url, { ...broker.services.ingest, clientId: 'ingest' });
  ingestBox = inbox(ingest);
  await ingest.subscribeAsync(topics.allTelemetry, { qos: 1 });
  good = await connect(broker.url, deviceOptions(fleet, 'good'));
});

afterEach(async () => {
  // The well-behaved device kept its connection and is served right after each hostile case.
  expect(good.connected).toBe(true);
  const marker = `good-${randomUUID()}`;
  await good.publishAsync(topics.telemetry('good'), marker, { qos: 1 });
  await ingestBox.waitFor((m) => m.payload.toString() === marker, 'the good device\'s message');
});

afterAll(async () => {
  await good?.endAsync();
  await ingest?.endAsync();
  await broker?.close();
  await fleet?.dir.remove();
});

describe('authentication', () => {
  it('refuses a wrong password with CONNACK 4 [MQTT-3.2.2-6]', async () => {
    expect(await refusedWith(broker.url, { ...deviceOptions(fleet, 'dev-x'), password: 'not-the-password' })).toBe(4);
  });

  it('refuses an unknown device with CONNACK 5', async () => {
    expect(await refusedWith(broker.url, { clientId: 'nobody', username: 'nobody', password: 'x' })).toBe(5);
  });

  it('refuses a revoked device with CONNACK 5, even with its right password', async () => {
    expect(await refusedWith(broker.url, deviceOptions(fleet, 'gone'))).toBe(5);
  });

  it('refuses anonymous clients and services without a configured password', async () => {
    expect(await refusedWith(broker.url, { clientId: 'anon' })).toBe(5);
    expect(await refusedWith(broker.url, { clientId: 'x', username: 'svc:nosuch', password: 'x' })).toBe(4);
    expect(await refusedWith(broker.url, { clientId: 'x', username: 'svc:admin', password: 'wrong' })).toBe(4);
  });

  it('refuses another device\'s client id with CONNACK 2, and the victim stays connected', async () => {
    const victim = await connect(broker.url, deviceOptions(fleet, 'victim'));
    let victimClosed = false;
    victim.on('close', () => (victimClosed = true));
    // attacker's own valid credentials, victim's client id: would take over the victim's session [MQTT-3.1.4-2]
    expect(await refusedWith(broker.url, { ...deviceOptions(fleet, 'attacker'), clientId: 'victim' })).toBe(2);
    await victim.publishAsync(topics.telemetry('victim'), 'still here', { qos: 1 });
    expect(victimClosed).toBe(false);
    await victim.endAsync();
  });

  it('refuses a Will on another device\'s topic with CONNACK 5; a Will on its own status topic is fine', async () => {
    expect(await refusedWith(broker.url, deviceOptions(fleet, 'attacker', { will: { topic: topics.status('victim'), payload: Buffer.from('offline'), qos: 1, retain: true } }))).toBe(5);
    expect(await refusedWith(broker.url, deviceOptions(fleet, 'attacker', { will: { topic: topics.telemetry('attacker'), payload: Buffer.from('x'), qos: 0, retain: false } }))).toBe(5);
    const ok = await connect(broker.url, deviceOptions(fleet, 'attacker', { will: { topic: topics.status('attacker'), payload: Buffer.from('offline'), qos: 1, retain: true } }));
    await ok.endAsync();
  });

  it('refuses an MQTT 5 CONNECT with return code 1 (aedes speaks 3.1.1 and 3.1 only) [MQTT-3.1.2-2]', async () => {
    const raw = await rawConnect(broker.broker.ports.mqtt);
    const c = fleet.creds.get('dev-x')!;
    raw.socket.write(connectPacket({ clientId: 'dev-x', username: 'dev-x', password: c.mqttPassword, version: 5 }));
    expect([...(await raw.bytes(4))]).toEqual([0x20, 0x02, 0x00, 0x01]);
    await within(raw.closed, 'connection closed after CONNACK 1');
  });
});

describe('authorization', () => {
  it('closes a device that publishes to another device\'s topic; nothing is delivered', async () => {
    const attacker = await connect(broker.url, deviceOptions(fleet, 'attacker'));
    const closed = closedByBroker(attacker);
    attacker.publish(topics.telemetry('victim'), 'forged', { qos: 1 });
    await closed;
    attacker.end(true);
    const marker = `after-${randomUUID()}`;
    await good.publishAsync(topics.telemetry('good'), marker, { qos: 1 });
    await ingestBox.waitFor((m) => m.payload.toString() === marker, 'marker');
    expect(ingestBox.messages.some((m) => m.payload.toString() === 'forged')).toBe(false);
  });

  it('closes a device that publishes to a wildcard topic [MQTT-3.3.2-2]', async () => {
    const attacker = await connect(broker.url, deviceOptions(fleet, 'attacker'));
    const closed = closedByBroker(attacker);
    // MQTT.js checks nothing here; the bytes go out as written.
    attacker.publish('sensors/+/telemetry', 'wild', { qos: 0 });
    await closed;
    attacker.end(true);
    expect(ingestBox.messages.some((m) => m.payload.toString() === 'wild')).toBe(false);
  });

  it('answers SUBACK 0x80 for #, $SYS/# and another device\'s topic, and grants its own [MQTT-3.9.3-2]', async () => {
    const device = await connect(broker.url, deviceOptions(fleet, 'attacker'));
    const granted = await subackCodes(device, { '#': 1, '$SYS/#': 0, [topics.telemetry('victim')]: 1, [topics.status('attacker')]: 1 });
    expect(granted).toEqual([0x80, 0x80, 0x80, 1]);
    // still connected and served
    await device.publishAsync(topics.telemetry('attacker'), 'ok', { qos: 1 });
    await device.endAsync();
  });

  it('lets display read statuses and the pipeline only; lets admin subscribe to everything', async () => {
    const display = await connect(broker.url, { ...broker.services.display, clientId: 'display-acl' });
    expect(await subackCodes(display, { [topics.allStatus]: 1, 'pipeline/#': 1, [topics.allTelemetry]: 1, [topics.status('good')]: 0 })).toEqual([1, 1, 0x80, 0]);
    await display.endAsync();
    const admin = await connect(broker.url, { ...broker.services.admin, clientId: 'admin-acl' });
    expect(await subackCodes(admin, { '#': 1, '$SYS/#': 0 })).toEqual([1, 0]);
    const ingestAcl = await connect(broker.url, { ...broker.services.ingest, clientId: 'ingest-acl' });
    expect(await subackCodes(ingestAcl, { [topics.allTelemetry]: 1, [topics.allStatus]: 1, 'pipeline/#': 1 })).toEqual([1, 0x80, 0x80]);
    await ingestAcl.endAsync();
    await admin.endAsync();
  });
});

describe('limits on the stream', () => {
  it('closes a connection whose first packet is not CONNECT [MQTT-3.1.0-1]', async () => {
    const raw = await rawConnect(broker.broker.ports.mqtt);
    raw.socket.write(PINGREQ);
    await within(raw.closed, 'connection closed');
    expect(raw.received().length).toBe(0);
  });

  it('closes a connection announcing a 200 MiB packet after reading its header, with flat memory', async () => {
    const before = await broker.metricsText();
    global.gc?.();
    const rssBefore = process.memoryUsage().rss;
    const announced = 200 * 1024 * 1024;
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    // Ten at once, each trying to send the whole 200 MiB body as fast as the socket takes it.
    const results = await Promise.all(Array.from({ length: 10 }, async () => {
      const raw = await rawConnect(broker.broker.ports.mqtt);
      raw.socket.write(Buffer.concat([Buffer.from([0x10]), remainingLength(announced)]));
      let written = 0;
      const pump = async () => {
        while (!raw.socket.destroyed && written < announced) {
          written += chunk.length;
          if (!raw.socket.write(chunk)) await new Promise((r) => { raw.socket.once('drain', r); raw.socket.once('close', r); });
        }
      };
      await within(Promise.all([pump(), raw.closed]), 'oversized connection closed');
      return written;
    }));
    const rssAfter = process.memoryUsage().rss;
    const after = await broker.metricsText();
    // The broker never took the body: every sender was cut off far before 200 MiB (the rest sat in socket buffers).
    for (const written of results) expect(written).toBeLessThan(announced / 4);
    expect(metricValue(after, 'sensorpipe_broker_drops_total', 'reason="packet_too_large"') - metricValue(before, 'sensorpipe_broker_drops_total', 'reason="packet_too_large"')).toBe(10);
    // Ten bare aedes connections would have buffered up to 2 GiB; here the process grew by far less than one packet.
    expect(rssAfter - rssBefore).toBeLessThan(64 * 1024 * 1024);
  });

  it('closes an authenticated device that announces a PUBLISH over the size limit', async () => {
    const device = await connect(broker.url, deviceOptions(fleet, 'attacker'));
    const closed = closedByBroker(device);
    device.publish(topics.telemetry('attacker'), Buffer.alloc(MAX_PACKET + 1), { qos: 0 });
    await closed;
    device.end(true);
    // Just under the limit still passes.
    const ok = await connect(broker.url, deviceOptions(fleet, 'attacker'));
    await ok.publishAsync(topics.telemetry('attacker'), Buffer.alloc(MAX_PACKET - 1024), { qos: 1 });
    await ok.endAsync();
  });
});

describe('rate and storms', () => {
  it('drops a device\'s publishes above its rate, counts them, and disconnects it when it keeps on', async () => {
    const before = await broker.metricsText();
    const flooder = await connect(broker.url, deviceOptions(fleet, 'flooder'));
    const closed = closedByBroker(flooder);
    const started = Date.now();
    for (let i = 0; i < 1000; i++) flooder.publish(topics.telemetry('flooder'), `flood-${i}`, { qos: 0 });
    await closed;
    const elapsedS = (Date.now() - started) / 1000;
    flooder.end(true);
    // Let anything in flight arrive, behind a marker from the good device.
    const marker = `after-flood-${randomUUID()}`;
    await good.publishAsync(topics.telemetry('good'), marker, { qos: 1 });
    await ingestBox.waitFor((m) => m.payload.toString() === marker, 'marker');
    const delivered = ingestBox.messages.filter((m) => m.topic === topics.telemetry('flooder')).length;
    const after = await broker.metricsText();
    const dropped = metricValue(after, 'sensorpipe_broker_drops_total', 'reason="rate_limited"') - metricValue(before, 'sensorpipe_broker_drops_total', 'reason="rate_limited"');
    expect(delivered).toBeGreaterThanOrEqual(20); // the burst
    expect(delivered).toBeLessThanOrEqual(20 + Math.ceil(20 * elapsedS) + 1); // burst + rate × time
    expect(dropped).toBeGreaterThanOrEqual(300);
    expect(metricValue(after, 'sensorpipe_broker_drops_total', 'reason="abuse_disconnect"')).toBe(1);
  });

  it('bans an address after repeated failed logins; other addresses are unaffected', async () => {
    // All from 127.0.0.2 (Linux routes all of 127/8 to loopback); the good device is on 127.0.0.1.
    const codes = await Promise.all(Array.from({ length: 60 }, async () => {
      const raw = await rawConnect(broker.broker.ports.mqtt, '127.0.0.2');
      raw.socket.write(connectPacket({ clientId: 'dev-x', username: 'dev-x', password: 'guess' }));
      await within(raw.closed, 'storm connection closed');
      const reply = raw.received();
      return reply.length >= 4 ? reply[3]! : -1; // -1: closed without a CONNACK (banned)
    }));
    expect(codes.filter((c) => c === 4).length).toBeGreaterThanOrEqual(15);
    expect(codes.filter((c) => c === -1).length).toBeGreaterThan(0);
    expect(codes.filter((c) => c !== 4).every((c) => c === -1)).toBe(true);
    // Banned now, even with the right password…
    const raw = await rawConnect(broker.broker.ports.mqtt, '127.0.0.2');
    raw.socket.write(connectPacket({ clientId: 'dev-x', username: 'dev-x', password: fleet.creds.get('dev-x')!.mqttPassword }));
    await within(raw.closed, 'banned connection closed');
    expect(raw.received().length).toBe(0);
    // …while the same device logs in from another address.
    const other = await connect(broker.url, deviceOptions(fleet, 'dev-x'));
    await other.publishAsync(topics.telemetry('dev-x'), 'from elsewhere', { qos: 1 });
    await other.endAsync();
    const text = await broker.metricsText();
    expect(metricValue(text, 'sensorpipe_broker_drops_total', 'reason="banned_address"')).toBeGreaterThanOrEqual(1);
    expect(metricValue(text, 'sensorpipe_broker_banned_addresses')).toBe(1);
  });
});
