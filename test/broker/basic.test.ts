/**
 * The happy path over every transport: a device publishes its telemetry, a subscribed service receives
 * it at QoS 0 and 1; device status is published retained on connect and disconnect.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StatusMessageSchema } from '../../core/schemas.ts';
import { topics } from '../../core/topics.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { closedByBroker, connect, deviceOptions, inbox, makeFleet, metricValue, type Fleet } from './helpers.ts';

let fleet: Fleet;
let broker: TestBroker;

beforeAll(async () => {
  fleet = await makeFleet(['dev-a', 'dev-b', 'dev-c']);
  broker = await startTestBroker({ registryPath: fleet.registryPath, tls: true });
});

afterAll(async () => {
  await broker?.close();
  await fleet?.dir.remove();
});

describe('an authorised device reaches a subscribed service', () => {
  const transports = [
    ['tcp', () => broker.url, {}],
    ['websocket', () => broker.wsUrl, {}],
    ['tls', () => broker.tlsUrl!, { get ca() { return broker.ca; } }],
  ] as const;

  for (const [name, url, extra] of transports) {
    it(`over ${name}, at QoS 0 and 1`, async () => {
      const ingest = await connect(url(), { ...broker.services.ingest, clientId: `ingest-${name}`, ...extra, ca: broker.ca });
      const box = inbox(ingest);
      const granted = await ingest.subscribeAsync(topics.allTelemetry, { qos: 1 });
      expect(granted[0]?.qos).toBe(1);
      const device = await connect(url(), { ...deviceOptions(fleet, 'dev-a'), ca: broker.ca });
      await device.publishAsync(topics.telemetry('dev-a'), `q0-${name}`, { qos: 0 });
      await device.publishAsync(topics.telemetry('dev-a'), `q1-${name}`, { qos: 1 });
      await box.waitFor((m) => m.payload.toString() === `q0-${name}`, 'the QoS 0 message');
      const q1 = await box.waitFor((m) => m.payload.toString() === `q1-${name}`, 'the QoS 1 message');
      expect(q1.topic).toBe(topics.telemetry('dev-a'));
      await device.endAsync();
      await ingest.endAsync();
    });
  }

  it('counts publishes in and out on /metrics', async () => {
    const text = await broker.metricsText();
    expect(metricValue(text, 'sensorpipe_broker_publishes_in_total')).toBeGreaterThanOrEqual(6);
    expect(metricValue(text, 'sensorpipe_broker_publishes_out_total')).toBeGreaterThanOrEqual(6);
    expect(metricValue(text, 'sensorpipe_broker_connections_opened_total', 'transport="tls"')).toBeGreaterThanOrEqual(2);
  });
});

describe('device status', () => {
  it('is published retained: online on connect, offline with the reason on disconnect', async () => {
    const display = await connect(broker.url, { ...broker.services.display, clientId: 'display-status' });
    const box = inbox(display);
    await display.subscribeAsync(topics.allStatus, { qos: 1 });
    const device = await connect(broker.url, deviceOptions(fleet, 'dev-b'));
    const online = await box.waitFor((m) => m.topic === topics.status('dev-b') && m.payload.includes('"online"'), 'online status');
    expect(StatusMessageSchema.parse(JSON.parse(online.payload.toString()))).toMatchObject({ device: 'dev-b', state: 'online', reason: 'connected' });
    expect(broker.broker.deviceState('dev-b')?.state).toBe('online');

    await device.endAsync(); // a clean DISCONNECT
    const offline = await box.waitFor((m) => m.topic === topics.status('dev-b') && m.payload.includes('"offline"'), 'offline status');
    expect(JSON.parse(offline.payload.toString())).toMatchObject({ state: 'offline', reason: 'clean' });

    // Retained: a subscriber arriving later gets the last status at once [MQTT-3.3.1-6].
    const late = await connect(broker.url, { ...broker.services.display, clientId: 'display-late' });
    const lateBox = inbox(late);
    await late.subscribeAsync(topics.status('dev-b'), { qos: 1 });
    const retained = await lateBox.waitFor((m) => m.topic === topics.status('dev-b'), 'retained status');
    expect(retained.retain).toBe(true);
    expect(JSON.parse(retained.payload.toString())).toMatchObject({ state: 'offline', reason: 'clean' });
    await late.endAsync();
    await display.endAsync();
  });

  it('says "socket" when the connection is lost without DISCONNECT', async () => {
    const display = await connect(broker.url, { ...broker.services.display, clientId: 'display-socket' });
    const box = inbox(display);
    await display.subscribeAsync(topics.status('dev-c'), { qos: 1 });
    const device = await connect(broker.url, deviceOptions(fleet, 'dev-c'));
    await box.waitFor((m) => m.payload.includes('"online"'), 'online status');
    const closed = closedByBroker(device);
    device.stream.destroy();
    await closed;
    const offline = await box.waitFor((m) => m.payload.includes('"offline"'), 'offline status');
    expect(JSON.parse(offline.payload.toString())).toMatchObject({ state: 'offline', reason: 'socket' });
    device.end(true);
    await display.endAsync();
  });
});
