/**
 * The faults layer on its own (firmware-sim/faults.ts), around a fake device link: which readings reach
 * the healthy device's send (changed or not), which bad messages go out instead or beside them, on
 * which readings, and how each is counted. A healthy device gets its own send and publish back,
 * untouched. fleet.test.ts checks the same faults on the wire, against real brokers.
 */
import { describe, expect, it } from 'vitest';
import { decodeTelemetry } from '../../core/decode.ts';
import type { Reading } from '../../core/schemas.ts';
import { signTelemetry, verifyTelemetrySignature } from '../../core/signature.ts';
import { topics } from '../../core/topics.ts';
import { DeviceFaults, type FaultName, type FaultyDeviceLink, type Publish } from '../../firmware-sim/faults.ts';

const KEY = Buffer.alloc(32, 1);
const T0 = Date.UTC(2026, 0, 1);
const reading = (seq: number): Reading => ({ seq, ts: T0 + seq * 1000, values: { temperature: 20 + seq, humidity: 50 } });
const tens = [10, 20, 30, 40, 50, 60];

interface Published {
  topic: string;
  payload: string;
  qos: 0 | 1;
}

/** Sends readings 1…60 through a device with these faults; a link that stays connected and acknowledges at once. */
function run(faults: FaultName[], setUp: { connected?: boolean; acknowledged?: number; firstTelemetry?: string } = {}) {
  const published: Published[] = [];
  let drops = 0;
  const link: FaultyDeviceLink = {
    id: 'dev-a',
    neighbour: 'dev-b',
    key: { alg: 'hmac-sha256', key: KEY },
    isConnected: () => setUp.connected ?? true,
    acknowledgedReadings: () => setUp.acknowledged ?? 0,
    publish: (topic, payload, _options, onAcknowledged) => {
      published.push({ topic, payload, qos: 1 });
      onAcknowledged?.();
    },
    publishAtMostOnce: (topic, payload) => published.push({ topic, payload, qos: 0 }),
    dropConnection: () => drops++,
    onlineStatus: () => ({ v: 1, device: 'dev-a', state: 'online', since: T0, reason: 'connected' }),
  };
  const layer = new DeviceFaults(faults, link);
  const devicePublish = layer.wrapPublish(link.publish);
  // The healthy device's first telemetry message, acknowledged (replay resends it).
  if (setUp.firstTelemetry) devicePublish(topics.telemetry('dev-a'), setUp.firstTelemetry, {}, () => {});
  published.length = 0;
  const passed: Reading[] = [];
  const send = layer.wrapSend((r) => passed.push(r));
  for (let seq = 1; seq <= 60; seq++) send(reading(seq));
  return { passed, published, drops, ...layer.report() };
}

const verifies = (payload: string) => {
  const decoded = decodeTelemetry(Buffer.from(payload));
  return decoded.ok && verifyTelemetrySignature(decoded.value, { alg: 'hmac-sha256', key: KEY });
};
const readingsOf = (payload: string) => (JSON.parse(payload) as { readings: Reading[] }).readings;

describe('faults layer', () => {
  it('leaves a healthy device its own send and publish', () => {
    const layer = new DeviceFaults([], { id: 'dev-a' } as FaultyDeviceLink);
    const send = (_r: Reading) => {};
    const publish: Publish = () => {};
    expect(layer.wrapSend(send)).toBe(send);
    expect(layer.wrapPublish(publish)).toBe(publish);
    expect(layer.report()).toEqual({ skipped: 0, faultMessages: {} });
  });

  it('stuck: every reading sent, its first metric frozen at its first value, nothing counted', () => {
    const { passed, published, faultMessages } = run(['stuck']);
    expect(passed.map((r) => r.seq)).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
    expect(passed.map((r) => r.values)).toEqual(Array.from({ length: 60 }, () => ({ temperature: 21, humidity: 50 })));
    expect(published).toEqual([]);
    expect(faultMessages).toEqual({});
  });

  it('spike: every 20th reading has its first metric tenfold, counted with its seq', () => {
    const { passed, faultMessages } = run(['spike']);
    expect(passed.filter((r) => r.values.temperature !== 20 + r.seq).map((r) => [r.seq, r.values.temperature])).toEqual([[20, 400], [40, 600], [60, 800]]);
    expect(faultMessages).toEqual({ spike: { count: 3, acked: 0, seqs: [20, 40, 60] } });
  });

  it('dropout: every 10th reading never sent, its seq a gap', () => {
    const { passed, published, skipped, faultMessages } = run(['dropout']);
    expect(passed.map((r) => r.seq).filter((seq) => seq % 10 === 0)).toEqual([]);
    expect(passed).toHaveLength(54);
    expect(published).toEqual([]);
    expect(skipped).toBe(6);
    expect(faultMessages).toEqual({ dropout: { count: 6, acked: 0, seqs: tens } });
  });

  it('flap: the connection dropped every 30th reading, every reading still sent', () => {
    const { passed, drops, faultMessages } = run(['flap']);
    expect(passed).toHaveLength(60);
    expect(drops).toBe(2);
    expect(faultMessages).toEqual({ flap: { count: 2, acked: 0, seqs: [] } });
  });

  it.each([
    ['bad-signature', 0, false],
    ['clock-ahead', 3_600_000, true],
    ['clock-behind', -30 * 86_400_000, true],
  ] as const)('%s: every 10th reading replaced by a bad message carrying its seq', (fault, shift, signatureVerifies) => {
    const { passed, published, faultMessages } = run([fault]);
    expect(passed.map((r) => r.seq).filter((seq) => seq % 10 === 0)).toEqual([]);
    expect(published.map((m) => [m.topic, m.qos])).toEqual(tens.map(() => [topics.telemetry('dev-a'), 1]));
    expect(published.map((m) => verifies(m.payload))).toEqual(tens.map(() => signatureVerifies));
    expect(published.flatMap((m) => readingsOf(m.payload))).toEqual(tens.map((seq) => ({ ...reading(seq), ts: reading(seq).ts + shift })));
    expect(faultMessages).toEqual({ [fault]: { count: 6, acked: 6, seqs: tens } });
  });

  it('non-json: a text that is not JSON beside every 10th reading', () => {
    const { passed, published, faultMessages } = run(['non-json']);
    expect(passed).toHaveLength(60);
    expect(published.map((m) => m.topic)).toEqual(tens.map(() => topics.telemetry('dev-a')));
    for (const m of published) expect(() => JSON.parse(m.payload) as unknown).toThrow();
    expect(faultMessages).toEqual({ 'non-json': { count: 6, acked: 6, seqs: [] } });
  });

  it('replay: the first acknowledged message\'s seq again with other values, validly signed, once more than 100 readings are acknowledged', () => {
    const first = JSON.stringify(signTelemetry({ v: 1, device: 'dev-a', readings: [reading(1)] }, { alg: 'hmac-sha256', key: KEY }));
    expect(run(['replay'], { firstTelemetry: first, acknowledged: 100 }).published).toEqual([]);
    expect(run(['replay'], { acknowledged: 101 }).published).toEqual([]);
    const { passed, published, faultMessages } = run(['replay'], { firstTelemetry: first, acknowledged: 101 });
    expect(passed).toHaveLength(60);
    expect(published.map((p) => p.topic)).toEqual(tens.map(() => topics.telemetry('dev-a')));
    // One message, every time: a genuine replay (same seq and time, other values, a valid signature), not a
    // byte-identical copy, which ingest takes as a redelivery (a duplicate).
    expect(new Set(published.map((p) => p.payload)).size).toBe(1);
    const replay = published[0]!.payload;
    expect(replay).not.toBe(first);
    expect(verifies(replay)).toBe(true);
    expect(readingsOf(replay)).toEqual([{ ...reading(1), values: { temperature: 22, humidity: 51 } }]);
    expect(faultMessages).toEqual({ replay: { count: 6, acked: 6, seqs: [] } });
  });

  it('foreign-topic: its own signed message on its neighbour\'s topic, at QoS 0, beside every 10th reading', () => {
    const { passed, published, faultMessages } = run(['foreign-topic']);
    expect(passed).toHaveLength(60);
    expect(published.map((m) => [m.topic, m.qos])).toEqual(tens.map(() => [topics.telemetry('dev-b'), 0]));
    expect(published.every((m) => verifies(m.payload) && (JSON.parse(m.payload) as { device: string }).device === 'dev-a')).toBe(true);
    expect(faultMessages).toEqual({ 'foreign-topic': { count: 6, acked: 0, seqs: [] } });
  });

  it('burst: 200 extra status messages beside every 30th reading', () => {
    const { passed, published, faultMessages } = run(['burst']);
    expect(passed).toHaveLength(60);
    expect(published).toHaveLength(400);
    expect(new Set(published.map((m) => `${m.topic} ${m.payload}`))).toEqual(new Set([`${topics.status('dev-a')} {"v":1,"device":"dev-a","state":"online","since":${T0},"reason":"connected"}`]));
    expect(faultMessages).toEqual({ burst: { count: 400, acked: 400, seqs: [] } });
  });

  it('sends no bad message while offline: the reading goes on to the healthy device (which buffers it)', () => {
    const { passed, published, drops, faultMessages } = run(['bad-signature', 'non-json', 'flap', 'burst'], { connected: false });
    expect(passed).toHaveLength(60);
    expect([published, drops, faultMessages]).toEqual([[], 0, {}]);
  });

  it('a device with several faults sends one bad message instead of a reading, and nothing beside it then', () => {
    const { passed, published, faultMessages } = run(['clock-behind', 'bad-signature', 'non-json']);
    expect(passed.map((r) => r.seq).filter((seq) => seq % 10 === 0)).toEqual([]);
    expect(published.map((m) => verifies(m.payload))).toEqual(tens.map(() => false));
    expect(faultMessages).toEqual({ 'bad-signature': { count: 6, acked: 6, seqs: tens } });
  });
});
