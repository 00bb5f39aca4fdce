/**
 * The two things the broker does to each connection's stream (broker/packet-guard.ts,
 * broker/coalesce-writes.ts): the packet guard, as a state machine over chunks cut anywhere and on every
 * transport (TCP, WebSocket, TLS) against the real broker; and the coalescing of a turn's writes.
 */
import { connect as tlsConnect } from 'node:tls';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { coalesceWrites } from '../../broker/coalesce-writes.ts';
import { PacketInspector, type GuardViolation } from '../../broker/packet-guard.ts';
import { topics } from '../../core/topics.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { connect, deviceOptions, inbox, makeFleet, metricValue, type Fleet } from './helpers.ts';
import { PINGREQ, connectPacket, remainingLength, within } from './raw.ts';

const MAX_PACKET = 64 * 1024;
const CONNECT = connectPacket({ clientId: 'probe' });
/** A PUBLISH fixed header announcing `length` bytes, and the start of its body. */
const publishHeader = (length: number): Buffer => Buffer.concat([Buffer.from([0x30]), remainingLength(length)]);
const publishOf = (bodyBytes: number): Buffer => Buffer.concat([publishHeader(bodyBytes), Buffer.alloc(bodyBytes, 0x61)]);

describe('PacketInspector', () => {
  /** Feeds `bytes` cut into pieces of `piece` bytes; the first violation, if any. */
  const feed = (bytes: Buffer, piece: number, max = MAX_PACKET): GuardViolation | undefined => {
    const inspector = new PacketInspector(max);
    for (let i = 0; i < bytes.length; i += piece) {
      const reason = inspector.inspect(bytes.subarray(i, i + piece));
      if (reason !== undefined) return reason;
    }
    return undefined;
  };
  const cases: [name: string, bytes: Buffer, expected: GuardViolation | undefined][] = [
    ['a CONNECT then packets within the limit', Buffer.concat([CONNECT, publishOf(100), PINGREQ, publishOf(MAX_PACKET - 1000), publishOf(0)]), undefined],
    ['a packet exactly at the limit (header included)', Buffer.concat([CONNECT, publishOf(MAX_PACKET - 4)]), undefined],
    ['a packet one byte over the limit', Buffer.concat([CONNECT, publishOf(MAX_PACKET - 3)]), 'packet_too_large'],
    ['a header announcing 200 MiB, body never sent', Buffer.concat([CONNECT, publishHeader(200 * 2 ** 20)]), 'packet_too_large'],
    ['a first packet that is not CONNECT [MQTT-3.1.0-1]', Buffer.concat([PINGREQ, CONNECT]), 'not_connect_first'],
    ['a remaining length of five bytes [MQTT-2.2.3]', Buffer.concat([CONNECT, Buffer.from([0x30, 0x80, 0x80, 0x80, 0x80, 0x01])]), 'malformed_length'],
    ['a CONNECT announcing more than the limit', Buffer.concat([Buffer.from([0x10]), remainingLength(MAX_PACKET)]), 'packet_too_large'],
  ];
  for (const [name, bytes, expected] of cases) {
    it(`${name}: ${expected ?? 'passes'}, however the bytes are cut`, () => {
      for (const piece of [1, 2, 3, 7, 1000, bytes.length]) expect(feed(bytes, piece), `pieces of ${piece}`).toBe(expected);
    });
  }
});

describe('the packet guard on every transport', () => {
  let fleet: Fleet;
  let broker: TestBroker;

  beforeAll(async () => {
    fleet = await makeFleet(['dev-a']);
    broker = await startTestBroker({ registryPath: fleet.registryPath, tls: true, maxPacketBytes: MAX_PACKET });
  });

  afterAll(async () => {
    await broker?.close();
    await fleet?.dir.remove();
  });

  /** Opens a raw connection over `transport`, sends `chunks` (each one socket write or WebSocket message), resolves when the broker closes it. */
  const sendAndAwaitClose = async (transport: 'tcp' | 'ws' | 'tls', chunks: Buffer[]): Promise<void> => {
    const ports = broker.broker.ports;
    if (transport === 'ws') {
      const ws = new WebSocket(broker.wsUrl, 'mqtt');
      ws.on('error', () => {});
      const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
      await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
      for (const chunk of chunks) ws.send(chunk);
      await within(closed, 'WebSocket closed by the broker');
      return;
    }
    const socket = transport === 'tls'
      ? tlsConnect({ port: ports.tls!, host: '127.0.0.1', ca: broker.ca, servername: 'localhost' })
      : (await import('node:net')).connect({ port: ports.mqtt, host: '127.0.0.1' });
    socket.on('error', () => {});
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    await new Promise<void>((resolve) => socket.once(transport === 'tls' ? 'secureConnect' : 'connect', () => resolve()));
    for (const chunk of chunks) socket.write(chunk);
    await within(closed, `${transport} connection closed by the broker`);
  };

  for (const transport of ['tcp', 'ws', 'tls'] as const) {
    it(`over ${transport}: a header announcing 200 MiB, or a first packet that is not CONNECT, is closed and counted; a device is served`, async () => {
      const before = await broker.metricsText();
      // The header in a write (or WebSocket message) of its own, after the CONNECT, and then a little of the body.
      await sendAndAwaitClose(transport, [CONNECT, publishHeader(200 * 2 ** 20), Buffer.alloc(1024, 0x61)]);
      await sendAndAwaitClose(transport, [PINGREQ]);
      const after = await broker.metricsText();
      const drops = (text: string, reason: string) => metricValue(text, 'sensorpipe_broker_drops_total', `reason="${reason}"`);
      expect(drops(after, 'packet_too_large') - drops(before, 'packet_too_large')).toBe(1);
      expect(drops(after, 'not_connect_first') - drops(before, 'not_connect_first')).toBe(1);

      const url = transport === 'tcp' ? broker.url : transport === 'ws' ? broker.wsUrl : broker.tlsUrl!;
      const ingest = await connect(url, { ...broker.services.ingest, clientId: `ingest-${transport}`, ca: broker.ca });
      const box = inbox(ingest);
      await ingest.subscribeAsync(topics.allTelemetry, { qos: 1 });
      const device = await connect(url, { ...deviceOptions(fleet, 'dev-a'), ca: broker.ca });
      // Just under the limit passes on every transport.
      const payload = Buffer.alloc(MAX_PACKET - 1024, 0x62);
      await device.publishAsync(topics.telemetry('dev-a'), payload, { qos: 1 });
      const got = await box.waitFor((m) => m.payload.length === payload.length, 'the large message');
      expect(got.payload.equals(payload)).toBe(true);
      await device.endAsync();
      await ingest.endAsync();
    });
  }
});

describe('coalesceWrites', () => {
  /** A Writable that records each call of _writev / _write as one "system call". */
  const recorder = () => {
    const calls: string[][] = [];
    const stream = new Writable({
      write(chunk: Buffer, _encoding, callback) { calls.push([chunk.toString()]); callback(); },
      writev(chunks, callback) { calls.push(chunks.map(({ chunk }) => (chunk as Buffer).toString())); callback(); },
    });
    coalesceWrites(stream);
    return { stream, calls };
  };
  const turn = () => new Promise((resolve) => setImmediate(resolve));

  it('sends what one turn wrote, to each stream, in one call at the end of the turn, in order', async () => {
    const a = recorder();
    const b = recorder();
    a.stream.write('a1');
    b.stream.write('b1');
    a.stream.write('a2');
    a.stream.write('a3');
    expect(a.calls).toEqual([]);
    await turn();
    expect(a.calls).toEqual([['a1', 'a2', 'a3']]);
    expect(b.calls).toEqual([['b1']]);
    // The next turn's writes are a call of their own.
    a.stream.write('a4');
    await turn();
    expect(a.calls).toEqual([['a1', 'a2', 'a3'], ['a4']]);
  });

  it('calls every write callback after the flush, and a write made during a flush goes out with the next one', async () => {
    const a = recorder();
    const done: string[] = [];
    a.stream.write('x', () => {
      done.push('x');
      a.stream.write('y', () => done.push('y'));
    });
    await turn();
    await turn();
    await turn();
    expect(a.calls).toEqual([['x'], ['y']]);
    expect(done).toEqual(['x', 'y']);
  });

  it('keeps backpressure: past the high-water mark write() says so, and drain comes after the flush', async () => {
    const stream = new Writable({ highWaterMark: 4, writev(_chunks, callback) { callback(); } });
    coalesceWrites(stream);
    expect(stream.write('ab')).toBe(true);
    expect(stream.write('cdef')).toBe(false);
    await within(new Promise((resolve) => stream.once('drain', resolve)), 'drain after the flush', 2000);
  });
});
