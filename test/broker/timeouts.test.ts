/**
 * Slow and silent clients: a socket that never sends CONNECT, a CONNECT trickled a byte at a time, and
 * keepalive 0 and 65535 (clamped to the broker's ceiling). A well-behaved device, pinging on its own
 * short keepalive, stays connected and served throughout. Limits are set low so the test is short.
 */
import { randomUUID } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../core/topics.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { connect, deviceOptions, inbox, makeFleet, type Fleet, type Inbox } from './helpers.ts';
import { connectPacket, rawConnect, within } from './raw.ts';

let fleet: Fleet;
let broker: TestBroker;
let ingest: MqttClient;
let box: Inbox;
let good: MqttClient;

beforeAll(async () => {
  fleet = await makeFleet(['good', 'idle-0', 'idle-max']);
  broker = await startTestBroker({ registryPath: fleet.registryPath, connectTimeoutMs: 1500, keepaliveMinS: 1, keepaliveMaxS: 2 });
  ingest = await connect(broker.url, { ...broker.services.ingest, clientId: 'ingest', keepalive: 1 });
  box = inbox(ingest);
  await ingest.subscribeAsync([topics.allTelemetry], { qos: 1 });
  good = await connect(broker.url, deviceOptions(fleet, 'good', { keepalive: 1 }));
});

afterEach(async () => {
  expect(good.connected).toBe(true);
  const marker = `good-${randomUUID()}`;
  await good.publishAsync(topics.telemetry('good'), marker, { qos: 1 });
  await box.waitFor((m) => m.payload.toString() === marker, 'the good device\'s message');
});

afterAll(async () => {
  await good?.endAsync();
  await ingest?.endAsync();
  await broker?.close();
  await fleet?.dir.remove();
});

describe('connections that never finish CONNECT', () => {
  it('closes an idle socket that never sends CONNECT', async () => {
    const raw = await rawConnect(broker.broker.ports.mqtt);
    await within(raw.closed, 'idle socket closed by the broker');
    expect(raw.received().length).toBe(0);
  });

  it('closes a client that sends its CONNECT one byte at a time, slowly', async () => {
    const raw = await rawConnect(broker.broker.ports.mqtt);
    const bytes = connectPacket({ clientId: 'good', username: 'good', password: fleet.creds.get('good')!.mqttPassword });
    let sent = 0;
    const timer = setInterval(() => {
      if (sent < bytes.length && !raw.socket.destroyed) raw.socket.write(bytes.subarray(sent, ++sent));
    }, 500);
    try {
      await within(raw.closed, 'trickling socket closed by the broker');
    } finally {
      clearInterval(timer);
    }
    expect(sent).toBeLessThan(bytes.length); // cut off before the CONNECT was complete
    expect(raw.received().length).toBe(0);
  });
});

describe('keepalive is clamped to the broker\'s range [MQTT-3.1.2-24]', () => {
  for (const [id, keepalive] of [['idle-0', 0], ['idle-max', 65535]] as const) {
    it(`keepalive ${keepalive}: accepted, then a silent client is dropped after 1.5 × the ceiling`, async () => {
      const raw = await rawConnect(broker.broker.ports.mqtt);
      raw.socket.write(connectPacket({ clientId: id, username: id, password: fleet.creds.get(id)!.mqttPassword, keepalive }));
      expect([...(await raw.bytes(4))]).toEqual([0x20, 0x02, 0x00, 0x00]);
      // It now says nothing at all; with no clamp it would be kept forever (0) or for 27 hours (65535).
      await within(raw.closed, 'silent client dropped');
      await within((async () => {
        while (broker.broker.deviceState(id)?.state !== 'offline') await new Promise((r) => setTimeout(r, 50));
      })(), 'offline status');
    });
  }
});
