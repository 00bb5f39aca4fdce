/**
 * The per-device publish rate never costs an acknowledged reading (found by the soak: a device's
 * reading sent right after a burst of status messages was acknowledged by the broker and dropped).
 * Over the rate, status messages are acknowledged and dropped (counted); telemetry at QoS 1 closes the
 * connection unacknowledged, and the device delivers it after reconnecting.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { topics } from '../../core/topics.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { connect, deviceOptions, inbox, makeFleet, metricValue, type Fleet } from './helpers.ts';

let fleet: Fleet;
let broker: TestBroker;
beforeAll(async () => {
  fleet = await makeFleet(['burster']);
  broker = await startTestBroker({ registryPath: fleet.registryPath, publishRate: 20, publishBurst: 50 });
});
afterAll(async () => {
  await broker?.close();
  await fleet?.dir.remove();
});

describe('publish rate', () => {
  it('drops a status burst above the rate but delivers the telemetry sent right after it', async () => {
    const ingest = await connect(broker.url, { ...broker.services.ingest, clientId: 'rate-ingest' });
    const box = inbox(ingest);
    await ingest.subscribeAsync(topics.allTelemetry, { qos: 1 });
    const before = await broker.metricsText();
    // MQTT.js reconnects by itself and resends what was not acknowledged, as a device does.
    const device = mqtt.connect(broker.url, { ...deviceOptions(fleet, 'burster'), reconnectPeriod: 300 });
    await new Promise<void>((resolve) => device.once('connect', () => resolve()));
    for (let i = 0; i < 120; i++) device.publish(topics.status('burster'), JSON.stringify({ burst: i }), { qos: 1 });
    const acknowledged = new Promise<void>((resolve, reject) => device.publish(topics.telemetry('burster'), 'the reading after the burst', { qos: 1 }, (err) => (err ? reject(err) : resolve())));

    await acknowledged;
    await box.waitFor((m) => m.payload.toString() === 'the reading after the burst', 'the reading sent after the burst');
    const after = await broker.metricsText();
    const delta = (reason: string) => metricValue(after, 'sensorpipe_broker_drops_total', `reason="${reason}"`) - metricValue(before, 'sensorpipe_broker_drops_total', `reason="${reason}"`);
    expect(delta('rate_limited')).toBeGreaterThanOrEqual(60); // the burst's excess: dropped and counted
    expect(delta('rate_limited_disconnect')).toBeGreaterThanOrEqual(1); // the reading: refused, then resent
    await device.endAsync();
    await ingest.endAsync();
  });
});
