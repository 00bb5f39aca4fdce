/**
 * Devices that cannot sign, the pure parts: payload mappings (every shape, and hostile input), the
 * registry's trust and mapping options (zod, strict), old registry files, the broker's topic fence
 * for Tasmota and Shelly devices, and ingest's verdicts for broker-authenticated messages.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { mayHoldFilter, mayLeaveWill, mayPublish, type Principal } from '../../broker/acl.ts';
import { checkLogin } from '../../broker/auth.ts';
import { derivedMetricName, mapPayload, PayloadMappingSchema, resolvePointer, type PayloadMapping } from '../../core/mappings.ts';
import { loadRegistry, Registry, saveRegistry, trustOf } from '../../core/registry.ts';
import { parseTopic, topics } from '../../core/topics.ts';
import { BrokerReadingMemory } from '../../ingest/broker-readings.ts';
import { SeqTracker } from '../../ingest/seq-tracker.ts';
import { verifyTelemetryMessage, type VerifyContext } from '../../ingest/verify.ts';
import { checkBatch } from '../../store/points.ts';
import { toLines } from '../../store/line-protocol.ts';

const NOW = Date.UTC(2026, 11, 6, 11, 0, 0);
const bytes = (value: unknown) => Buffer.from(typeof value === 'string' ? value : JSON.stringify(value));

describe('payload mappings', () => {
  const flat: PayloadMapping = { format: 'flat-json' };
  const tasmota: PayloadMapping = { format: 'tasmota' };
  const shelly: PayloadMapping = { format: 'shelly-gen2' };
  const pointers: PayloadMapping = { format: 'pointers', metrics: { temperature: '/a/0/t', power: { pointer: '/e~1p', unit: 'W' } }, ts: { pointer: '/at', format: 'iso8601' } };

  it.each([
    ['flat JSON', flat, { temperature: 21.5, humidity: 40 }, { ts: undefined, values: { temperature: 21.5, humidity: 40 } }],
    ['flat JSON with ts and its own device', flat, { device: 'x', ts: NOW, co2: 415 }, { ts: NOW, values: { co2: 415 } }],
    ['Tasmota', tasmota, { Time: '2026-12-06T12:00:00+01:00', ENERGY: { Power: 12, Voltage: [230, 231] }, 'DS18B20-1': { Temperature: 20 }, TempUnit: 'C' }, { ts: NOW, values: { energy_power: 12, energy_voltage_1: 230, energy_voltage_2: 231, ds18b20_1_temperature: 20 } }],
    ['Tasmota without Time', tasmota, { AM2301: { Temperature: 21.5 } }, { ts: undefined, values: { am2301_temperature: 21.5 } }],
    ['Shelly NotifyStatus', shelly, { method: 'NotifyStatus', params: { ts: NOW / 1000, 'switch:0': { id: 0, apower: 5, output: true, aenergy: { total: 2, by_minute: [1], minute_ts: 3 } }, 'sys:0': { uptime: 9 }, wifi: { rssi: -50 } } }, { ts: NOW, values: { switch_0_apower: 5, switch_0_aenergy_total: 2 } }],
    ['pointers', pointers, { a: [{ t: 19.5 }], 'e/p': 7, at: '2026-12-06T11:00:00Z', extra: 'ignored' }, { ts: NOW, values: { temperature: 19.5, power: 7 } }],
    ['pointers, a member missing this time', pointers, { a: [{ t: 19.5 }], at: '2026-12-06T11:00:00.000Z' }, { ts: NOW, values: { temperature: 19.5 } }],
  ])('%s', (_name, mapping, payload, reading) => {
    expect(mapPayload(payload, mapping)).toEqual({ ok: true, reading });
  });

  it.each([
    ['flat: a string value', flat, { temperature: 'hot' }, 'READING_VALUE_INVALID'],
    ['flat: a boolean value', flat, { on: true }, 'READING_VALUE_INVALID'],
    ['flat: a nested object', flat, { sensor: { t: 1 } }, 'READING_VALUE_INVALID'],
    ['flat: a key that is not a metric name', flat, { Temperature: 1 }, 'PAYLOAD_UNMAPPABLE'],
    ['flat: __proto__', flat, JSON.parse('{"__proto__": 1, "t": 2}'), 'PAYLOAD_UNMAPPABLE'],
    ['flat: constructor', flat, { constructor: 1 }, 'PAYLOAD_UNMAPPABLE'],
    ['flat: no metric', flat, { ts: NOW }, 'PAYLOAD_UNMAPPABLE'],
    ['flat: an array', flat, [1, 2], 'PAYLOAD_UNMAPPABLE'],
    ['flat: ts in seconds', flat, { ts: 1765018800.5, t: 1 }, 'PAYLOAD_UNMAPPABLE'],
    ['flat: ts out of range', flat, { ts: 1, t: 1 }, 'READING_TS_OUT_OF_RANGE'],
    ['flat: 33 metrics', flat, Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`m${i}`, i])), 'PAYLOAD_UNMAPPABLE'],
    ['tasmota: Time without offset', tasmota, { Time: '2026-12-06T10:00:00', ENERGY: { Power: 1 } }, 'PAYLOAD_UNMAPPABLE'],
    ['tasmota: no number', tasmota, { Time: '2026-12-06T10:00:00Z', Status: 'ok' }, 'PAYLOAD_UNMAPPABLE'],
    ['tasmota: two names for one metric', tasmota, { AM2301: { Temperature: 1 }, 'AM2301-': { Temperature: 2 } }, 'PAYLOAD_UNMAPPABLE'],
    ['tasmota: a name too long', tasmota, { ['X'.repeat(40)]: { Temperature: 1 } }, 'PAYLOAD_UNMAPPABLE'],
    ['shelly: another method', shelly, { method: 'Shelly.Reboot' }, 'PAYLOAD_UNMAPPABLE'],
    ['shelly: no params', shelly, { method: 'NotifyStatus' }, 'PAYLOAD_UNMAPPABLE'],
    ['pointers: a string where a number is', pointers, { a: [{ t: '19' }], at: '2026-12-06T11:00:00Z' }, 'READING_VALUE_INVALID'],
    ['pointers: nothing found', pointers, { b: 1, at: '2026-12-06T11:00:00Z' }, 'PAYLOAD_UNMAPPABLE'],
    ['pointers: a time without offset', pointers, { a: [{ t: 1 }], at: '2026-12-06T11:00:00' }, 'PAYLOAD_UNMAPPABLE'],
  ])('refuses %s', (_name, mapping, payload, code) => {
    expect(mapPayload(payload, mapping)).toMatchObject({ ok: false, code });
  });

  it('a Shelly notification without a measurement is "nothing", not an error', () => {
    expect(mapPayload({ method: 'NotifyEvent', params: { events: [] } }, shelly)).toMatchObject({ ok: 'nothing' });
    expect(mapPayload({ method: 'NotifyStatus', params: { ts: NOW / 1000, wifi: { rssi: -60 } } }, shelly)).toMatchObject({ ok: 'nothing' });
  });

  it('resolves JSON pointers to own members only (RFC 6901 escapes, array indexes)', () => {
    const doc = JSON.parse('{"a/b":{"m~n":[10,20]},"__proto__":{"x":1}}') as unknown;
    expect(resolvePointer(doc, '/a~1b/m~0n/1')).toBe(20);
    expect(resolvePointer(doc, '/a~1b/m~0n/01')).toBeUndefined();
    expect(resolvePointer(doc, '/a~1b/m~0n/-')).toBeUndefined();
    expect(resolvePointer(doc, '/__proto__/x')).toBe(1);
    expect(resolvePointer({}, '/constructor')).toBeUndefined();
    expect(resolvePointer({}, '/toString')).toBeUndefined();
    expect(resolvePointer([1], '/length')).toBeUndefined();
  });

  it('derives metric names from payload keys', () => {
    expect(derivedMetricName(['ENERGY', 'ApparentPower'])).toBe('energy_apparentpower');
    expect(derivedMetricName(['DS18B20-1', 'Temperature'])).toBe('ds18b20_1_temperature');
    expect(derivedMetricName(['1wire', 'x'])).toBe('m_1wire_x');
  });

  it.each([
    ['a pointer without a leading slash', { format: 'pointers', metrics: { t: 'a/b' } }],
    ['the empty pointer', { format: 'pointers', metrics: { t: '' } }],
    ['a bad escape', { format: 'pointers', metrics: { t: '/a~2' } }],
    ['a control character', { format: 'pointers', metrics: { t: '/a\nb' } }],
    ['a pointer too deep', { format: 'pointers', metrics: { t: '/a'.repeat(17) } }],
    ['a pointer too long', { format: 'pointers', metrics: { t: `/${'a'.repeat(300)}` } }],
    ['no metric', { format: 'pointers', metrics: {} }],
    ['33 metrics', { format: 'pointers', metrics: Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`m${i}`, `/m${i}`])) }],
    ['a bad metric name', { format: 'pointers', metrics: { Temperature: '/t' } }],
    ['a reserved metric name', { format: 'pointers', metrics: { constructor: '/t' } }],
    ['__proto__ as a metric', JSON.parse('{"format":"pointers","metrics":{"__proto__":"/t"}}') as unknown],
    ['a unit with a newline', { format: 'pointers', metrics: { t: { pointer: '/t', unit: '°\nC' } } }],
    ['an unknown member', { format: 'pointers', metrics: { t: '/t' }, scale: 10 }],
    ['an unknown format', { format: 'csv' }],
    ['options on tasmota', { format: 'tasmota', metrics: { t: '/t' } }],
    ['a bad time format', { format: 'pointers', metrics: { t: '/t' }, ts: { pointer: '/at', format: 'us' } }],
  ])('the mapping schema refuses %s', (_name, mapping) => {
    expect(PayloadMappingSchema.safeParse(mapping).success).toBe(false);
  });
});

describe('the registry: trust levels and mappings', () => {
  it('adds a broker-authenticated device without a signing key', () => {
    const registry = new Registry();
    const credentials = registry.add('plug-1', { trust: 'broker-authenticated', payload: { format: 'tasmota' } });
    expect(Object.keys(credentials).sort()).toEqual(['deviceId', 'mqttPassword', 'trust']);
    const record = registry.get('plug-1')!;
    expect(record.signing).toEqual({ alg: 'none' });
    expect(trustOf(record)).toBe('broker-authenticated');
    expect(() => registry.rotate('plug-1')).toThrow(/broker-authenticated/);
    const rotated = registry.rotatePassword('plug-1');
    expect(rotated.mqttPassword).not.toBe(credentials.mqttPassword);
    expect(registry.get('plug-1')!.signing).toEqual({ alg: 'none' });
  });

  it.each([
    ['no mapping', { trust: 'broker-authenticated' }],
    ['a mapping on a signed device', { payload: { format: 'flat-json' } }],
    ['an --alg on a broker device', { trust: 'broker-authenticated', alg: 'ed25519', payload: { format: 'flat-json' } }],
    ['a bad pointer', { trust: 'broker-authenticated', payload: { format: 'pointers', metrics: { t: 'x' } } }],
    ['an unknown trust', { trust: 'trusted', payload: { format: 'flat-json' } }],
    ['an unknown option', { trust: 'broker-authenticated', payload: { format: 'flat-json' }, sig: true }],
  ])('refuses %s (CONFIG_INVALID)', (_name, options) => {
    expect(() => new Registry().add('plug-1', options as never)).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
  });

  it('refuses a Shelly whose id is a topic root of ours or Tasmota\'s', () => {
    for (const id of ['sensors', 'pipeline', 'tele', 'cmnd']) {
      expect(() => new Registry().add(id, { trust: 'broker-authenticated', payload: { format: 'shelly-gen2' } })).toThrow(expect.objectContaining({ code: 'CONFIG_INVALID' }));
    }
  });

  it('round-trips through the file; a file written before trust levels loads, its devices signed', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'trust-registry-'));
    try {
      const path = join(dir, 'registry.json');
      const registry = new Registry();
      registry.add('old-1');
      registry.add('plug-1', { trust: 'broker-authenticated', payload: { format: 'pointers', metrics: { temperature: { pointer: '/t', unit: '°C' } } } });
      await saveRegistry(path, registry);
      const text = await readFile(path, 'utf8');
      // Signed records are written exactly as before: no trust, no payload.
      const old = (JSON.parse(text) as { devices: Record<string, unknown>[] }).devices.find((d) => d.id === 'old-1')!;
      expect(Object.keys(old).sort()).toEqual(['createdAt', 'id', 'meta', 'mqtt', 'signing', 'status', 'updatedAt']);
      const loaded = await loadRegistry(path);
      expect(trustOf(loaded.get('old-1')!)).toBe('signed');
      expect(loaded.get('plug-1')).toEqual(registry.get('plug-1'));
      // Hand-edited into something inconsistent: refused as corrupt, left untouched.
      const edited = JSON.parse(text) as { devices: Record<string, unknown>[] };
      edited.devices.find((d) => d.id === 'old-1')!.trust = 'broker-authenticated';
      await writeFile(path, JSON.stringify(edited));
      await expect(loadRegistry(path)).rejects.toMatchObject({ code: 'REGISTRY_CORRUPT' });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the broker fences each device to its own topics', () => {
  const registry = new Registry();
  const tas = registry.add('plug-1', { trust: 'broker-authenticated', payload: { format: 'tasmota' } });
  const shelly = registry.add('shelly-1', { trust: 'broker-authenticated', payload: { format: 'shelly-gen2' } });
  const login = (id: string, password: string, willTopic?: string): Principal =>
    checkLogin({ clientId: id, clientIdWasEmpty: false, cleanSession: true, username: id, password: Buffer.from(password), willTopic }, { registry, servicePasswords: { ingest: 'i', display: 'd', alerts: undefined, admin: undefined }, topicLimits: { maxTopicLevels: 8, maxTopicBytes: 256 } });

  it('a Tasmota device: tele|stat|cmnd/<id>/…, its LWT as Will, nothing of another device', () => {
    const p = login('plug-1', tas.mqttPassword, 'tele/plug-1/LWT');
    for (const topic of ['tele/plug-1/SENSOR', 'tele/plug-1/STATE', 'tele/plug-1/LWT', 'stat/plug-1/RESULT', 'cmnd/plug-1/POWER', topics.telemetry('plug-1')]) expect(mayPublish(p, topic), topic).toBe(true);
    for (const topic of ['tele/plug-2/SENSOR', 'tele/plug-1/SENSOR/x', 'tele/plug-1/+', 'cmnd/tasmotas/POWER', 'plug-1/events/rpc', topics.telemetry('plug-2'), 'tele/plug-1/rpc'.replace('plug-1', 'events')]) expect(mayPublish(p, topic), topic).toBe(false);
    expect(mayHoldFilter(p, 'cmnd/plug-1/#', { maxTopicLevels: 8, maxTopicBytes: 256 })).toBe(true);
    expect(mayHoldFilter(p, 'cmnd/+/#', { maxTopicLevels: 8, maxTopicBytes: 256 })).toBe(false);
    expect(mayLeaveWill(p, 'tele/plug-2/LWT')).toBe(false);
    expect(() => login('plug-1', tas.mqttPassword, 'tele/plug-2/LWT')).toThrow(/will_not_allowed/);
  });

  it('a Shelly device: <id>/…, its online as Will; a signed device gets neither tree', () => {
    const p = login('shelly-1', shelly.mqttPassword, 'shelly-1/online');
    for (const topic of ['shelly-1/events/rpc', 'shelly-1/online', 'shelly-1/status/switch:0']) expect(mayPublish(p, topic), topic).toBe(true);
    for (const topic of ['shelly-2/events/rpc', 'tele/shelly-1/SENSOR', 'shelly-1//x']) expect(mayPublish(p, topic), topic).toBe(false);
    const signed = { kind: 'device', deviceId: 'shelly-1', verifier: 'v' } as const;
    expect(mayPublish(signed, 'shelly-1/events/rpc')).toBe(false);
    expect(mayPublish({ ...signed, deviceId: 'plug-1' }, 'tele/plug-1/SENSOR')).toBe(false);
  });

  it('ingest may read the mappings\' topics; the topics parse to their device', () => {
    const ingest = { kind: 'service', service: 'ingest' } as const;
    for (const filter of topics.ingestFilters) expect(mayHoldFilter(ingest, filter, { maxTopicLevels: 8, maxTopicBytes: 256 })).toBe(true);
    expect(parseTopic('tele/plug-1/SENSOR')).toEqual({ kind: 'tasmota', deviceId: 'plug-1' });
    expect(parseTopic('shelly-1/events/rpc')).toEqual({ kind: 'shelly', deviceId: 'shelly-1' });
    expect(parseTopic('sensors/events/rpc')).toBeUndefined();
    expect(parseTopic('tele/Plug/SENSOR')).toBeUndefined();
  });
});

describe('ingest verdicts for broker-authenticated devices', () => {
  const registry = new Registry();
  const signed = registry.add('dev-1');
  registry.add('plug-1', { trust: 'broker-authenticated', payload: { format: 'flat-json' } });
  registry.add('tas-1', { trust: 'broker-authenticated', payload: { format: 'tasmota' } });
  const context = (memory = new BrokerReadingMemory()): VerifyContext => ({ registry, seqs: new SeqTracker({ gapWindow: 100, redeliveryWindow: 8, fleetWindow: 64 }), brokerReadings: memory, now: NOW, bounds: { maxFutureMs: 300_000, maxAgeMs: 7 * 86_400_000 } });

  it.each([
    ['its own flat payload', topics.telemetry('plug-1'), { temperature: 1, ts: NOW }, { kind: 'accepted-broker', reading: { seq: 0, ts: NOW, values: { temperature: 1 } } }],
    ['a payload naming another device', topics.telemetry('plug-1'), { device: 'dev-1', temperature: 1 }, { kind: 'rejected', reason: 'TOPIC_DEVICE_MISMATCH' }],
    ['a payload carrying sig', topics.telemetry('plug-1'), { temperature: 1, sig: 'AAAA' }, { kind: 'rejected', reason: 'READING_SIGNATURE_UNEXPECTED' }],
    ['a flat payload on its Tasmota topic', topics.tasmotaSensor('plug-1'), { temperature: 1 }, { kind: 'rejected', reason: 'TOPIC_INVALID' }],
    ['a Tasmota payload for a signed device', topics.tasmotaSensor('dev-1'), { ENERGY: { Power: 1 } }, { kind: 'rejected', reason: 'TOPIC_INVALID' }],
    ['a Tasmota payload for an unknown device', topics.tasmotaSensor('nobody'), { ENERGY: { Power: 1 } }, { kind: 'rejected', reason: 'DEVICE_UNKNOWN' }],
    ['a time ahead of the clock', topics.telemetry('plug-1'), { temperature: 1, ts: NOW + 600_000 }, { kind: 'rejected', reason: 'READING_TS_OUT_OF_RANGE' }],
  ])('%s', (_name, topic, payload, verdict) => {
    expect(verifyTelemetryMessage(topic, bytes(payload), context())).toMatchObject(verdict);
  });

  it('a signed device\'s telemetry is verified as before (never read with a mapping)', () => {
    expect(verifyTelemetryMessage(topics.telemetry('dev-1'), bytes({ temperature: 1 }), context())).toMatchObject({ kind: 'rejected', reason: 'PAYLOAD_INVALID' });
    expect(signed.signing.alg).toBe('hmac-sha256');
  });

  it('dedups by (ts, payload): a copy is a duplicate, other content at or before the newest ts a replay', () => {
    const memory = new BrokerReadingMemory();
    const first = bytes({ temperature: 1, ts: NOW - 1000 });
    const verdict = verifyTelemetryMessage(topics.telemetry('plug-1'), first, context(memory));
    if (verdict.kind !== 'accepted-broker') throw new Error(verdict.kind);
    memory.accept('plug-1', verdict.reading.ts, verdict.digest);
    expect(verifyTelemetryMessage(topics.telemetry('plug-1'), first, context(memory))).toEqual({ kind: 'duplicate', device: 'plug-1', readings: 1 });
    expect(verifyTelemetryMessage(topics.telemetry('plug-1'), bytes({ temperature: 2, ts: NOW - 1000 }), context(memory))).toMatchObject({ kind: 'rejected', reason: 'READING_REPLAYED' });
    expect(verifyTelemetryMessage(topics.telemetry('plug-1'), bytes({ temperature: 2, ts: NOW - 2000 }), context(memory))).toMatchObject({ kind: 'rejected', reason: 'READING_REPLAYED' });
    expect(verifyTelemetryMessage(topics.telemetry('plug-1'), bytes({ temperature: 2, ts: NOW }), context(memory))).toMatchObject({ kind: 'accepted-broker' });
    // Without a device time: ingest's clock, strictly after the newest.
    memory.accept('plug-1', NOW, 1);
    expect(verifyTelemetryMessage(topics.telemetry('plug-1'), bytes({ temperature: 3 }), context(memory))).toMatchObject({ kind: 'accepted-broker', reading: { ts: NOW + 1 } });
  });
});

describe('the store carries the trust', () => {
  it('InfluxDB lines: trust=signed on signed points, trust=broker on broker ones', () => {
    const points = [
      { device: 'dev-1', metric: 't', ts: NOW, value: 1, seq: 3, meta: { site: 'lab' } },
      { device: 'plug-1', metric: 't', ts: NOW, value: 2, meta: { site: 'lab' }, trust: 'broker' as const },
    ];
    expect(toLines(points, [0, 1]).map((l) => l.text)).toEqual([`readings,device=dev-1,site=lab,trust=signed t=1,reading-seq=3i ${NOW}`, `readings,device=plug-1,site=lab,trust=broker t=2 ${NOW}`]);
  });

  it('a point can only be broker or signed (a spool record naming another trust is refused)', () => {
    const { refused } = checkBatch([{ device: 'd', metric: 't', ts: NOW, value: 1, trust: 'signed' as never }]);
    expect(refused).toHaveLength(1);
  });
});
