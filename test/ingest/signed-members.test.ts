/**
 * Issue 15 end to end: a telemetry message carrying a member its signature does not cover (`__proto__`
 * in values, a key given twice) is quarantined as PAYLOAD_INVALID and nothing of it is stored, while good
 * messages from the same device still are. Our broker, ingest and the embedded store, all real
 * (harness/pipeline.ts); the device is a real MQTT.js client.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { TelemetryBody } from '../../core/schemas.ts';
import { canonicalBytes } from '../../core/canonical.ts';
import { signCanonical } from '../../core/signature.ts';
import { readQuarantine } from '../../ingest/quarantine.ts';
import { startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { DevicePublisher, waitFor } from '../../harness/publisher.ts';

let pipeline: TestPipeline;
beforeAll(async () => {
  pipeline = await startTestPipeline({ devices: 1 });
}, 60_000);
afterAll(async () => {
  await pipeline?.close();
});

it('quarantines a message with a member its signature does not cover, stores none of it, and still stores good ones', async () => {
  const device = pipeline.devices[0]!;
  const publisher = await DevicePublisher.connect(pipeline.broker.url, device);
  const from = Date.now() - 60_000;
  const sign = (seq: number, values: Record<string, number>, signedDevice = device.id): string => {
    const body: TelemetryBody = { v: 1, device: signedDevice, readings: [{ seq, ts: from + seq, values }] };
    return signCanonical(canonicalBytes(body), device.key).toString('base64');
  };
  const text = (seq: number, values: string, sig: string, top = '') =>
    `{${top}"v":1,"device":"${device.id}","readings":[{"seq":${seq},"ts":${from + seq},"values":{${values}}}],"sig":"${sig}"}`;
  const hostile = [
    // The message: __proto__ next to temperature, signed over temperature alone.
    text(101, '"__proto__":1.5,"temperature":2.5', sign(101, { temperature: 2.5 })),
    text(102, '"__proto__":{"humidity":5},"temperature":2.5', sign(102, { temperature: 2.5 })),
    // Signed over every member, __proto__ included: the true reason, not READING_BAD_SIGNATURE.
    text(103, '"__proto__":1.5,"temperature":2.5', sign(103, JSON.parse('{"__proto__":1.5,"temperature":2.5}') as Record<string, number>)),
    // A key given twice: JSON.parse keeps the last value, the one signed; the first was never signed.
    text(104, '"temperature":99,"temperature":2.5', sign(104, { temperature: 2.5 })),
    text(105, '"temperature":2.5', sign(105, { temperature: 2.5 }), '"device":"dev-9",'),
  ];

  await publisher.send({ temperature: 20 });
  for (const payload of hostile) await publisher.sendRaw(payload);
  await publisher.send({ temperature: 21 });
  await publisher.close();

  const quarantineDir = join(pipeline.dir.path, 'data', 'ingest', 'quarantine');
  await waitFor(async () => (await readQuarantine(quarantineDir)).entries.length >= hostile.length, 'quarantine entries');
  await waitFor(async () => (await pipeline.store.count({ device: device.id })) >= 2, 'good readings stored');

  const { entries } = await readQuarantine(quarantineDir);
  expect(entries.map((e) => [e.reason, e.device, e.payload])).toEqual(hostile.map((payload) => ['PAYLOAD_INVALID', device.id, payload]));
  const rejected = await pipeline.ingest.metrics.registry.getSingleMetricAsString('sensorpipe_ingest_rejected_total');
  expect(rejected).toContain(`reason="PAYLOAD_INVALID"} ${hostile.length}`);
  expect(rejected).not.toContain('READING_BAD_SIGNATURE');

  // Exactly the two good readings are stored: no temperature 2.5 or 99, no humidity, no __proto__.
  const stored = await pipeline.store.query({ device: device.id, from: from - 60_000, to: Date.now() + 60_000, mode: 'raw' });
  expect(stored.series.map((s) => [s.metric, s.points.map((p) => [p.ts, p.value])])).toEqual([
    ['temperature', publisher.acked.map((r) => [r.ts, r.values.temperature])],
  ]);
  expect(publisher.acked.map((r) => r.values.temperature)).toEqual([20, 21]);
  expect(await pipeline.store.count({ device: device.id })).toBe(2);
}, 60_000);
