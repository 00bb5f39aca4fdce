/**
 * Devices that cannot sign, end to end: our broker, ingest, the embedded store and the display in this
 * process, and Debian's `mosquitto_pub` as the off-the-shelf device. Each payload shape (flat JSON, a
 * Tasmota SENSOR message, a Shelly Gen2 NotifyStatus, a JSON-pointer mapping) is sent by its own
 * broker-authenticated device and found in the store with its values and trust `broker`; a signed
 * device's readings stay `signed`. Then the hostile cases: another device's topics (refused by the
 * broker), signed-looking payloads (refused by ingest, never stored as signed), non-numeric, unmappable
 * and oversized payloads (quarantined with their reasons), a replayed timestamp (deduplicated), and the
 * history API and the live feed carrying the trust.
 *
 * Needs mosquitto-clients (Debian); without it this file fails rather than skips.
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { WebSocket } from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RejectReason } from '../../core/errors.ts';
import type { BrokerDeviceCredentials } from '../../core/registry.ts';
import { VerifiedReadingsSchema, type VerifiedReadings } from '../../core/schemas.ts';
import { topics } from '../../core/topics.ts';
import { readQuarantine } from '../../ingest/quarantine.ts';
import { startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { signedPayload, waitFor } from '../../harness/publisher.ts';

const run = promisify(execFile);

let pipeline: TestPipeline;
const creds = new Map<string, BrokerDeviceCredentials>();
/** Everything ingest put on the live feed (pipeline/readings/+), as the display reads it. */
const feed: VerifiedReadings[] = [];
let feedClient: mqtt.MqttClient;

const POINTERS = {
  format: 'pointers',
  metrics: { temperature: '/sensor/t', humidity: { pointer: '/sensor/h', unit: '%' }, co2: '/air/co2~1ppm' },
  ts: { pointer: '/time', format: 's' },
} as const;

beforeAll(async () => {
  pipeline = await startTestPipeline({
    devices: 2,
    prepare: (registry) => {
      creds.set('plug-flat', registry.add('plug-flat', { trust: 'broker-authenticated', payload: { format: 'flat-json' }, meta: { site: 'lab' } }));
      creds.set('plug-tas', registry.add('plug-tas', { trust: 'broker-authenticated', payload: { format: 'tasmota' }, meta: { model: 'Tasmota plug' } }));
      creds.set('plug-tas2', registry.add('plug-tas2', { trust: 'broker-authenticated', payload: { format: 'tasmota' } }));
      creds.set('shelly-1', registry.add('shelly-1', { trust: 'broker-authenticated', payload: { format: 'shelly-gen2' } }));
      creds.set('plug-ptr', registry.add('plug-ptr', { trust: 'broker-authenticated', payload: POINTERS }));
    },
  });
  feedClient = await mqtt.connectAsync(pipeline.broker.url, { username: pipeline.broker.services.admin.username, password: pipeline.broker.services.admin.password, protocolVersion: 4 });
  feedClient.on('message', (_topic, payload) => {
    const parsed = VerifiedReadingsSchema.safeParse(JSON.parse(payload.toString()));
    if (parsed.success) feed.push(parsed.data);
  });
  await feedClient.subscribeAsync(topics.allVerified, { qos: 0 });
}, 60_000);

afterAll(async () => {
  await feedClient?.endAsync();
  await pipeline?.close();
});

/** Publishes one message with mosquitto_pub as device `id` (QoS 1); resolves with its exit code and output. */
async function pub(id: string, topic: string, message: string | { file: string } | { null: true; will: string }, password = creds.get(id)?.mqttPassword ?? ''): Promise<{ code: number; output: string }> {
  const { port } = new URL(pipeline.broker.url);
  const body = typeof message === 'string' ? ['-m', message] : 'file' in message ? ['-f', message.file] : ['-n', '--will-topic', message.will, '--will-payload', 'Offline', '--will-retain', '--will-qos', '1'];
  try {
    const { stdout, stderr } = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-i', id, '-u', id, '-P', password, '-q', '1', '-V', 'mqttv311', '-t', topic, ...body], { timeout: 10_000 });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, output: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

async function stored(device: string, metric: string) {
  const now = Date.now();
  const result = await pipeline.store.query({ device, metrics: [metric], from: now - 86_400_000, to: now + 86_400_000, mode: 'raw', maxPoints: 10_000 });
  const series = result.series[0]!;
  return { points: series.points.map((p) => ({ ts: p.ts, value: p.value })), trust: series.trust };
}

async function quarantined(device: string) {
  return (await readQuarantine(join(pipeline.dir.path, 'data', 'ingest', 'quarantine'))).entries.filter((e) => e.device === device);
}

/** Waits until `device` has an entry quarantined with `reason` (`count` of them). */
async function expectQuarantined(device: string, reason: RejectReason, count = 1): Promise<void> {
  await waitFor(async () => (await quarantined(device)).filter((e) => e.reason === reason).length >= count, `${count} × ${reason} for ${device}`, 10_000);
}

/** Seconds-resolution local time with a UTC offset, as Tasmota writes `Time` with SetOption52 1. */
function tasmotaTime(ms: number, offsetMinutes = 0): string {
  const local = new Date(ms + offsetMinutes * 60_000).toISOString().slice(0, 19);
  const sign = offsetMinutes < 0 ? '-' : '+';
  const abs = Math.abs(offsetMinutes);
  return `${local}${sign}${String(Math.floor(abs / 60)).padStart(2, '0')}:${String(abs % 60).padStart(2, '0')}`;
}

/** A whole second a little in the past (Tasmota's and Shelly's times), different for each call. */
let secondsBack = 600;
const pastSecond = (): number => (Math.floor(Date.now() / 1000) - secondsBack--) * 1000;

describe('broker-authenticated devices, each payload shape (mosquitto_pub → broker → ingest → store)', () => {
  it('flat JSON: stored with its values and trust broker, at the device time when it gives one', async () => {
    const ts = pastSecond();
    expect((await pub('plug-flat', topics.telemetry('plug-flat'), JSON.stringify({ temperature: 21.5, humidity: 40, ts }))).code).toBe(0);
    expect((await pub('plug-flat', topics.telemetry('plug-flat'), '{"temperature":22.25}')).code).toBe(0);
    await waitFor(async () => (await stored('plug-flat', 'temperature')).points.length === 2, 'two flat readings');
    const temperature = await stored('plug-flat', 'temperature');
    expect(temperature.points[0]).toEqual({ ts, value: 21.5 });
    expect(temperature.points[1]!.value).toBe(22.25);
    // Without a time of its own, the reading is at ingest's clock.
    expect(Math.abs(temperature.points[1]!.ts - Date.now())).toBeLessThan(10_000);
    expect(temperature.trust).toEqual(['broker']);
    expect(await stored('plug-flat', 'humidity')).toEqual({ points: [{ ts, value: 40 }], trust: ['broker'] });
  });

  it('Tasmota SENSOR on tele/<id>/SENSOR: every number of every sensor, at Tasmota\'s Time', async () => {
    const ts = pastSecond();
    const sensor = {
      Time: tasmotaTime(ts, 60), // CET: the same instant, written as local time with its offset
      ENERGY: { TotalStartTime: '2026-01-01T00:00:00', Total: 1.234, Yesterday: 0.5, Today: 0.1, Power: 12, Voltage: 231, Current: 0.052, Factor: 0.87 },
      AM2301: { Temperature: 21.5, Humidity: 40.2, DewPoint: 7.5 },
      TempUnit: 'C',
    };
    expect((await pub('plug-tas', topics.tasmotaSensor('plug-tas'), JSON.stringify(sensor))).code).toBe(0);
    await waitFor(async () => (await stored('plug-tas', 'energy_power')).points.length === 1, 'the Tasmota reading');
    expect(await stored('plug-tas', 'energy_power')).toEqual({ points: [{ ts, value: 12 }], trust: ['broker'] });
    expect(await stored('plug-tas', 'am2301_temperature')).toEqual({ points: [{ ts, value: 21.5 }], trust: ['broker'] });
    expect((await stored('plug-tas', 'energy_voltage')).points).toEqual([{ ts, value: 231 }]);
    expect((await stored('plug-tas', 'energy_factor')).points).toEqual([{ ts, value: 0.87 }]);
  });

  it('Shelly Gen2 NotifyStatus on <id>/events/rpc: the measuring components, at params.ts', async () => {
    const ts = pastSecond() + 250;
    const notify = {
      src: 'shellyplusplugs-a8032ab12345',
      dst: 'shelly-1/events',
      method: 'NotifyStatus',
      params: { ts: ts / 1000, 'switch:0': { id: 0, apower: 12.3, voltage: 230.1, aenergy: { total: 1.5, by_minute: [1, 2, 3], minute_ts: 1 }, output: true }, 'temperature:0': { id: 0, tC: 21.5, tF: 70.7 }, wifi: { rssi: -60 } },
    };
    expect((await pub('shelly-1', topics.shellyEvents('shelly-1'), JSON.stringify(notify))).code).toBe(0);
    await waitFor(async () => (await stored('shelly-1', 'switch_0_apower')).points.length === 1, 'the Shelly reading');
    expect(await stored('shelly-1', 'switch_0_apower')).toEqual({ points: [{ ts, value: 12.3 }], trust: ['broker'] });
    expect((await stored('shelly-1', 'temperature_0_tc')).points).toEqual([{ ts, value: 21.5 }]);
    expect((await stored('shelly-1', 'switch_0_aenergy_total')).points).toEqual([{ ts, value: 1.5 }]);
    // wifi is not a measurement; `output` is a boolean: neither is stored.
    expect((await pipeline.store.latest('shelly-1')).map((v) => v.metric)).toEqual(['switch_0_aenergy_total', 'switch_0_apower', 'switch_0_voltage', 'temperature_0_tc', 'temperature_0_tf']);
  });

  it('a Shelly NotifyEvent (a button) is acknowledged and not stored, not quarantined', async () => {
    const before = (await pipeline.ingest.metrics.ignored.get()).values[0]?.value ?? 0;
    expect((await pub('shelly-1', topics.shellyEvents('shelly-1'), JSON.stringify({ method: 'NotifyEvent', params: { ts: Date.now() / 1000, events: [{ component: 'input:0', event: 'single_push' }] } }))).code).toBe(0);
    await waitFor(async () => ((await pipeline.ingest.metrics.ignored.get()).values[0]?.value ?? 0) > before, 'the event counted as ignored');
    expect(await quarantined('shelly-1')).toEqual([]);
  });

  it('JSON pointers: the mapped members, at the pointed-to time', async () => {
    const ts = pastSecond();
    const doc = { time: ts / 1000, sensor: { t: -3.75, h: 55, label: 'attic' }, air: { 'co2/ppm': 415 } };
    expect((await pub('plug-ptr', topics.telemetry('plug-ptr'), JSON.stringify(doc))).code).toBe(0);
    await waitFor(async () => (await stored('plug-ptr', 'co2')).points.length === 1, 'the pointer-mapped reading');
    expect(await stored('plug-ptr', 'temperature')).toEqual({ points: [{ ts, value: -3.75 }], trust: ['broker'] });
    expect((await stored('plug-ptr', 'humidity')).points).toEqual([{ ts, value: 55 }]);
    expect((await stored('plug-ptr', 'co2')).points).toEqual([{ ts, value: 415 }]);
  });

  it('a Tasmota or Shelly device may do what it does on connect: its Will, its own STATE, RESULT and cmnd topics', async () => {
    for (const [topic, will] of [['cmnd/plug-tas/POWER', 'tele/plug-tas/LWT'], ['stat/plug-tas/RESULT', 'tele/plug-tas/LWT'], ['tele/plug-tas/STATE', 'tele/plug-tas/LWT']] as const) {
      const result = await pub('plug-tas', topic, { null: true, will });
      expect(result.code, `${topic}: ${result.output}`).toBe(0);
    }
    expect((await pub('shelly-1', 'shelly-1/online', { null: true, will: 'shelly-1/online' })).code).toBe(0);
    // Not another device's Will.
    expect((await pub('plug-tas', 'tele/plug-tas/STATE', { null: true, will: 'tele/plug-tas2/LWT' })).code).not.toBe(0);
  });

  it('a signed device is still stored as signed', async () => {
    const device = pipeline.devices[0]!;
    const ts = pastSecond();
    expect((await pub(device.id, topics.telemetry(device.id), signedPayload(device, [{ seq: 1, ts, values: { temperature: 19.5 } }]), device.credentials.mqttPassword)).code).toBe(0);
    await waitFor(async () => (await stored(device.id, 'temperature')).points.length === 1, 'the signed reading');
    expect(await stored(device.id, 'temperature')).toEqual({ points: [{ ts, value: 19.5 }], trust: ['signed'] });
  });

  it('the live feed and the history API carry the trust; /api/devices says which devices are broker-authenticated', async () => {
    await waitFor(() => feed.some((m) => m.device === 'plug-tas') && feed.some((m) => m.device === pipeline.devices[0]!.id), 'live messages of both kinds');
    for (const message of feed) expect(message.trust).toBe(message.device.startsWith('dev-') ? undefined : 'broker');
    const history = (await (await fetch(`${pipeline.display.url}/api/devices/plug-tas/readings?metrics=energy_power,am2301_temperature&from=-1h&to=now&mode=raw`)).json()) as { series: { metric: string; trust: string[] }[] };
    expect(history.series.map((s) => [s.metric, s.trust])).toEqual([['energy_power', ['broker']], ['am2301_temperature', ['broker']]]);
    const signed = (await (await fetch(`${pipeline.display.url}/api/devices/${pipeline.devices[0]!.id}/readings?metrics=temperature&from=-1h&to=now&fn=mean&every=1m`)).json()) as { series: { trust: string[] }[] };
    expect(signed.series[0]!.trust).toEqual(['signed']);
    const devices = (await (await fetch(`${pipeline.display.url}/api/devices`)).json()) as { devices: { id: string; trust: string; payload?: string; units?: Record<string, string> }[] };
    const byId = new Map(devices.devices.map((d) => [d.id, d]));
    expect(byId.get('plug-tas')).toMatchObject({ trust: 'broker', payload: 'tasmota' });
    expect(byId.get('plug-ptr')).toMatchObject({ trust: 'broker', payload: 'pointers', units: { humidity: '%' } });
    expect(byId.get(pipeline.devices[0]!.id)).toMatchObject({ trust: 'signed' });
    expect(byId.get(pipeline.devices[0]!.id)!.payload).toBeUndefined();
  });
});

describe('the /live WebSocket marks unsigned readings', () => {
  it('a broker-authenticated reading comes with "broker" as its fifth element; a signed one has four', async () => {
    const ws = new WebSocket(`${pipeline.display.url.replace('http', 'ws')}/live`);
    const items: unknown[][] = [];
    ws.on('message', (data) => {
      const frame = JSON.parse(String(data)) as { type: string; items?: unknown[][] };
      if (frame.type === 'readings') items.push(...frame.items!);
    });
    await new Promise((resolve, reject) => {
      ws.once('open', resolve);
      ws.once('error', reject);
    });
    ws.send(JSON.stringify({ type: 'subscribe', id: 'all', devices: '*' }));
    await new Promise((resolve) => setTimeout(resolve, 200));
    const signed = pipeline.devices[0]!;
    expect((await pub('plug-flat', topics.telemetry('plug-flat'), '{"temperature":23.5}')).code).toBe(0);
    expect((await pub(signed.id, topics.telemetry(signed.id), signedPayload(signed, [{ seq: 100, ts: Date.now(), values: { temperature: 18 } }]), signed.credentials.mqttPassword)).code).toBe(0);
    await waitFor(() => items.some((i) => i[0] === 'plug-flat') && items.some((i) => i[0] === signed.id), 'both live readings', 10_000);
    expect(items.find((i) => i[0] === 'plug-flat')).toEqual(['plug-flat', 0, expect.any(Number), { temperature: 23.5 }, 'broker']);
    expect(items.find((i) => i[0] === signed.id)).toEqual([signed.id, 100, expect.any(Number), { temperature: 18 }]);
    ws.close();
  });
});

describe('hostile broker-authenticated devices', () => {
  it('publishing on another device\'s Tasmota topic is refused by the broker: nothing stored for the victim', async () => {
    const result = await pub('plug-tas', topics.tasmotaSensor('plug-tas2'), JSON.stringify({ Time: tasmotaTime(pastSecond()), ENERGY: { Power: 999 } }));
    // aedes closes the connection of a refused PUBLISH [MQTT-3.3.5-2]; mosquitto_pub gets no PUBACK.
    expect(result.code, result.output).not.toBe(0);
    // Its own SENSOR topic still works, and the victim has nothing.
    expect((await pub('plug-tas', topics.tasmotaSensor('plug-tas'), JSON.stringify({ Time: tasmotaTime(pastSecond()), ENERGY: { Power: 13 } }))).code).toBe(0);
    await waitFor(async () => (await stored('plug-tas', 'energy_power')).points.length === 2, 'its own second reading');
    expect((await stored('plug-tas2', 'energy_power')).points).toEqual([]);
    expect(await quarantined('plug-tas2')).toEqual([]);
    expect(await pipeline.broker.metricsText()).toMatch(/sensorpipe_broker_drops_total\{reason="acl_publish"\} [1-9]/);
  });

  it('a signed-looking payload for another device: refused by the ACL on that device\'s topic, by ingest on its own', async () => {
    const victim = pipeline.devices[1]!;
    const ts = pastSecond();
    // A real signed message of the victim, replayed by a broker-authenticated device.
    const forged = signedPayload(victim, [{ seq: 7, ts, values: { temperature: 99 } }]);
    expect((await pub('plug-flat', topics.telemetry(victim.id), forged)).code).not.toBe(0);
    expect((await pub('plug-flat', topics.telemetry('plug-flat'), forged)).code).toBe(0);
    await expectQuarantined('plug-flat', 'TOPIC_DEVICE_MISMATCH');
    expect((await stored(victim.id, 'temperature')).points).toEqual([]);
  });

  it('a payload carrying "sig" from an unsigned device is refused, never stored as signed', async () => {
    const ts = pastSecond();
    const payload = JSON.stringify({ v: 1, device: 'plug-flat', readings: [{ seq: 1, ts, values: { temperature: 50 } }], sig: 'x22Nol88WpbI5I3TLlyaPijV5VolGEnUzGTxouCUv48=' });
    expect((await pub('plug-flat', topics.telemetry('plug-flat'), payload)).code).toBe(0);
    expect((await pub('plug-flat', topics.telemetry('plug-flat'), JSON.stringify({ temperature: 50, ts, sig: 'AAAA' }))).code).toBe(0);
    await expectQuarantined('plug-flat', 'READING_SIGNATURE_UNEXPECTED', 2);
    const temperature = await stored('plug-flat', 'temperature');
    expect(temperature.points.map((p) => p.value)).not.toContain(50);
    expect(temperature.trust).toEqual(['broker']);
  });

  it('non-numeric, unmappable and oversized payloads are quarantined with their reasons', async () => {
    const cases: [string, string, string | { file: string }, RejectReason][] = [
      ['plug-flat', topics.telemetry('plug-flat'), '{"temperature":"hot"}', 'READING_VALUE_INVALID'],
      ['plug-flat', topics.telemetry('plug-flat'), '{"Temperature":21}', 'PAYLOAD_UNMAPPABLE'],
      ['plug-flat', topics.telemetry('plug-flat'), 'not json', 'PAYLOAD_INVALID'],
      ['plug-tas', topics.tasmotaSensor('plug-tas'), JSON.stringify({ Time: '2026-12-06T10:00:00', ENERGY: { Power: 1 } }), 'PAYLOAD_UNMAPPABLE'],
      ['plug-tas', topics.tasmotaSensor('plug-tas'), JSON.stringify({ Time: tasmotaTime(pastSecond()), Status: 'ok' }), 'PAYLOAD_UNMAPPABLE'],
      ['plug-ptr', topics.telemetry('plug-ptr'), JSON.stringify({ time: Date.now() / 1000, sensor: { t: 'warm', h: 50 } }), 'READING_VALUE_INVALID'],
      ['shelly-1', topics.shellyEvents('shelly-1'), JSON.stringify({ method: 'Reboot' }), 'PAYLOAD_UNMAPPABLE'],
    ];
    const big = join(pipeline.dir.path, 'big.json');
    await writeFile(big, JSON.stringify({ temperature: 1, pad: 'x'.repeat(300_000) }));
    cases.push(['plug-flat', topics.telemetry('plug-flat'), { file: big }, 'PAYLOAD_TOO_LARGE']);
    for (const [device, topic, message] of cases) expect((await pub(device, topic, message)).code).toBe(0);
    for (const [device, , , reason] of cases) await expectQuarantined(device, reason);
    expect((await stored('plug-flat', 'temperature')).points.map((p) => p.value)).not.toContain(1);
  });

  it('a replayed timestamp: the same payload again is a duplicate, other content at that time is a replay', async () => {
    const ts = pastSecond();
    const first = JSON.stringify({ Time: tasmotaTime(ts), ENERGY: { Power: 40 } });
    const other = JSON.stringify({ Time: tasmotaTime(ts), ENERGY: { Power: 41 } });
    const duplicatesBefore = (await pipeline.ingest.metrics.duplicates.get()).values[0]?.value ?? 0;
    expect((await pub('plug-tas2', topics.tasmotaSensor('plug-tas2'), first)).code).toBe(0);
    await waitFor(async () => (await stored('plug-tas2', 'energy_power')).points.length === 1, 'the first reading');
    expect((await pub('plug-tas2', topics.tasmotaSensor('plug-tas2'), first)).code).toBe(0);
    expect((await pub('plug-tas2', topics.tasmotaSensor('plug-tas2'), other)).code).toBe(0);
    // An older time than the newest accepted, whatever its content, is a replay too.
    expect((await pub('plug-tas2', topics.tasmotaSensor('plug-tas2'), JSON.stringify({ Time: tasmotaTime(ts - 60_000), ENERGY: { Power: 42 } }))).code).toBe(0);
    await expectQuarantined('plug-tas2', 'READING_REPLAYED', 2);
    await waitFor(async () => ((await pipeline.ingest.metrics.duplicates.get()).values[0]?.value ?? 0) > duplicatesBefore, 'the copy counted as a duplicate');
    expect(await stored('plug-tas2', 'energy_power')).toEqual({ points: [{ ts, value: 40 }], trust: ['broker'] });
  });
});


