/**
 * Backpressure (issue 14, item 2; broker/intake.ts): when ingest stops acknowledging, the broker queues
 * for it up to the high-water mark, then holds publishes — no PUBACK, the device's further messages stay
 * with the device — and lets them go, oldest first, once ingest has brought the queue down to the
 * low-water mark. Nothing is lost or reordered on the way, and /metrics shows it.
 *
 * It bites: with `take` never holding, the queue for ingest passes the high mark and the device has every
 * message acknowledged while ingest has acknowledged none.
 */
import type { IPublishPacket } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../core/topics.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { waitFor } from '../../harness/publisher.ts';
import { connect, deviceOptions, makeFleet, type Fleet } from './helpers.ts';

const HIGH = 200;
const LOW = 100;
const MESSAGES = 1_000;

let fleet: Fleet;
let broker: TestBroker;

beforeAll(async () => {
  fleet = await makeFleet(['pusher']);
  broker = await startTestBroker({ registryPath: fleet.registryPath, queueHigh: HIGH, queueLow: LOW, publishRate: 1e6, publishBurst: 1e6 });
});

afterAll(async () => {
  await broker?.close();
  await fleet?.dir.remove();
});

async function metric(name: string): Promise<number> {
  const line = (await broker.metricsText()).split('\n').find((l) => l.startsWith(`${name} `));
  if (line === undefined) throw new Error(`no metric ${name}`);
  return Number(line.split(' ')[1]);
}

describe('backpressure from a slow ingest', () => {
  it('holds the publisher at the high-water mark and lets it go at the low one, losing and reordering nothing', { timeout: 60_000 }, async () => {
    const ingest = await connect(broker.url, { ...broker.services.ingest, clientId: 'slow-ingest', clean: false });
    const received: string[] = [];
    // ingest's PUBACKs are sent when these are called: withheld until the test lets them go.
    const withheld: (() => void)[] = [];
    let acknowledging = false;
    ingest.handleMessage = (packet, callback) => {
      received.push((packet as IPublishPacket).payload.toString());
      if (acknowledging) callback();
      else withheld.push(() => callback());
    };
    await ingest.subscribeAsync(topics.allTelemetry, { qos: 1 });

    const device = await connect(broker.url, deviceOptions(fleet, 'pusher'));
    let acked = 0;
    const all = Array.from({ length: MESSAGES }, (_, i) => `m${i}`);
    const published = Promise.all(all.map((payload) => device.publishAsync(topics.telemetry('pusher'), payload, { qos: 1 }).then(() => acked++)));

    // ingest acknowledges nothing: the queue fills to the high mark and the rest is held.
    await waitFor(async () => (await metric('sensorpipe_broker_held_publishes')) > 0, 'publishes to be held');
    expect(await metric('sensorpipe_broker_backpressure')).toBe(1);
    expect(received.length).toBeLessThanOrEqual(HIGH);
    expect(acked).toBeLessThanOrEqual(HIGH);
    expect(await metric('sensorpipe_broker_queued_messages_peak')).toBeLessThanOrEqual(HIGH);

    // ingest catches up: everything goes through, in order.
    acknowledging = true;
    for (const ack of withheld.splice(0)) ack();
    await published;
    await waitFor(() => received.length >= MESSAGES, 'ingest to receive every message');
    expect(received).toEqual(all);
    expect(acked).toBe(MESSAGES);
    await waitFor(async () => (await metric('sensorpipe_broker_queued_messages')) === 0, 'the queue to drain');
    expect(await metric('sensorpipe_broker_backpressure')).toBe(0);
    expect(await metric('sensorpipe_broker_held_publishes')).toBe(0);
    expect(await metric('sensorpipe_broker_backpressure_pauses_total')).toBeGreaterThanOrEqual(1);
    expect(await metric('sensorpipe_broker_held_publishes_total')).toBeGreaterThan(0);
    expect(await metric('sensorpipe_broker_queued_messages_peak')).toBeLessThanOrEqual(HIGH);
    await device.endAsync();
    await ingest.endAsync();
  });

  it('refuses a low-water mark that is not below the high one', async () => {
    await expect(startTestBroker({ registryPath: fleet.registryPath, queueHigh: 100, queueLow: 100 })).rejects.toThrow(/SENSORPIPE_BROKER_QUEUE_LOW \(100\) must be below SENSORPIPE_BROKER_QUEUE_HIGH \(100\)/);
  });
});
