/**
 * ingest's MQTT link against our broker (`sensorpipe broker`: logins, ACL, its session log): PUBACKs
 * leave only when ingest acknowledges, in the order the messages arrived [MQTT-4.6.0-2], and
 * unacknowledged messages are redelivered after a reconnect because the session is persistent
 * [MQTT-3.1.2-4]. What ingest acknowledges is seen on the broker's side (aedes' 'ack' event).
 */
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.ts';
import { topics } from '../../core/topics.ts';
import { IngestLink, type IncomingMessage } from '../../ingest/mqtt-link.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { deviceOptions, makeFleet, type Fleet } from '../broker/helpers.ts';

let fleet: Fleet;
let broker: TestBroker;
let url: string;
const acked: string[] = [];
const TOPIC = topics.telemetry('dev-a');

beforeAll(async () => {
  fleet = await makeFleet(['dev-a']);
});
afterAll(async () => {
  await fleet?.dir.remove();
});

beforeEach(async () => {
  acked.length = 0;
  // dev-a publishes thousands at once in one test: above the default per-device rate.
  broker = await startTestBroker({ registryPath: fleet.registryPath, publishRate: 1e6, publishBurst: 1e6 });
  broker.broker.aedes.on('ack', (packet) => {
    if (packet && 'payload' in packet && packet.payload) acked.push(String(packet.payload));
  });
  url = broker.url;
});

afterEach(async () => {
  await broker.close();
});

const connectPublisher = () => mqtt.connectAsync(url, deviceOptions(fleet, 'dev-a'));

async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function startLink(received: IncomingMessage[], maxUnacked = 100, maxUnackedBytes = 2 ** 30): IngestLink {
  const link = new IngestLink({
    url,
    username: broker.services.ingest.username,
    password: broker.services.ingest.password,
    clientId: 'ingest-under-test',
    subscriptions: [topics.allTelemetry],
    protocolVersion: 4,
    maxUnacked,
    maxUnackedBytes,
    logger: createLogger({ level: 'silent' }),
    onMessage: (message) => received.push(message),
  });
  link.connect();
  return link;
}

describe('IngestLink', () => {
  it('sends PUBACKs only after ack(), and in arrival order', async () => {
    const received: IncomingMessage[] = [];
    const link = startLink(received);
    await link.ready;
    const publisher = await connectPublisher();
    for (const n of [1, 2, 3, 4, 5]) await publisher.publishAsync(TOPIC, String(n), { qos: 1 });
    await until(() => received.length === 5, 'five messages');
    expect(received.map((m) => m.payload.toString())).toEqual(['1', '2', '3', '4', '5']);
    expect(link.unacknowledged).toBe(5);

    received[2]!.ack();
    received[3]!.ack();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(acked).toEqual([]); // 3 and 4 wait for 1 and 2

    received[0]!.ack();
    await until(() => acked.length === 1, 'first puback');
    received[1]!.ack();
    await until(() => acked.length === 4, 'pubacks 2-4');
    expect(acked).toEqual(['1', '2', '3', '4']);
    received[4]!.ack();
    await until(() => acked.length === 5, 'last puback');
    expect(link.unacknowledged).toBe(0);
    await publisher.endAsync();
    await link.close();
  });

  it('gets unacknowledged messages again after a reconnect, and never sends a stale PUBACK', async () => {
    const received: IncomingMessage[] = [];
    const link = startLink(received);
    await link.ready;
    const publisher = await connectPublisher();
    for (const n of [1, 2, 3]) await publisher.publishAsync(TOPIC, String(n), { qos: 1 });
    await until(() => received.length === 3, 'three messages');
    received[0]!.ack();
    await until(() => acked.length === 1, 'first puback');

    link.client.stream.destroy(); // the connection drops with 2 and 3 unacknowledged
    await until(() => received.length === 5, 'redelivery of two messages');
    expect(received.slice(3).map((m) => m.payload.toString())).toEqual(['2', '3']);
    received[1]!.ack(); // acknowledgements of the old connection are void
    received[2]!.ack();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(acked).toEqual(['1']);
    received[3]!.ack();
    received[4]!.ack();
    await until(() => acked.length === 3, 'pubacks after redelivery');
    expect(acked).toEqual(['1', '2', '3']);
    await publisher.endAsync();
    await link.close();
  });

  it('stops reading when too many messages are unacknowledged, and resumes', async () => {
    const received: IncomingMessage[] = [];
    const link = startLink(received, 3);
    await link.ready;
    const publisher = await connectPublisher();
    for (let n = 1; n <= 6; n++) publisher.publish(TOPIC, String(n), { qos: 1 });
    await until(() => received.length >= 3, 'three messages');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(received.length).toBe(3);
    for (const m of received.slice(0, 3)) m.ack();
    await until(() => received.length === 6, 'the rest');
    for (const m of received.slice(3)) m.ack();
    await until(() => acked.length === 6, 'all pubacks');
    await publisher.endAsync();
    await link.close();
  });

  it('stops reading when the unacknowledged messages carry too many bytes, and resumes', async () => {
    const received: IncomingMessage[] = [];
    // Room for 1,000 messages, but only 10 KiB: two 4 KiB messages are under it, the third crosses it.
    const link = startLink(received, 1000, 10 * 1024);
    await link.ready;
    const publisher = await connectPublisher();
    const big = (n: number) => `${n}`.padEnd(4096, '.');
    for (let n = 1; n <= 6; n++) publisher.publish(TOPIC, big(n), { qos: 1 });
    await until(() => received.length >= 3, 'three messages');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(received.length).toBe(3);
    expect(link.unacknowledgedBytes).toBe(3 * 4096);
    received[0]!.ack();
    // 8 KiB unacknowledged: under the mark again, so the fourth is read, and it crosses the mark again.
    await until(() => received.length === 4, 'the fourth');
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(received.length).toBe(4);
    for (const m of received.slice(1)) m.ack();
    await until(() => received.length === 6, 'the rest');
    for (const m of received.slice(4)) m.ack();
    await until(() => acked.length === 6, 'all pubacks');
    expect(link.unacknowledgedBytes).toBe(0);
    await publisher.endAsync();
    await link.close();
  });

  it('keeps PUBACKs in arrival order over a window of thousands, acknowledged in reverse', async () => {
    // More than the ack queue's compaction threshold (1,024 consumed entries), so the queue is compacted
    // while PUBACKs are still waiting in it.
    const count = 3000;
    const received: IncomingMessage[] = [];
    const link = startLink(received, count + 1);
    await link.ready;
    const publisher = await connectPublisher();
    for (let n = 1; n <= count; n++) publisher.publish(TOPIC, String(n), { qos: 1 });
    await until(() => received.length === count, 'every message');
    for (const m of received.slice(1).reverse()) m.ack();
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(acked).toEqual([]); // everything waits for the first
    received[0]!.ack();
    await until(() => acked.length === count, 'all pubacks');
    expect(acked).toEqual(Array.from({ length: count }, (_, i) => String(i + 1)));
    expect(link.unacknowledged).toBe(0);
    await publisher.endAsync();
    await link.close();
  });
});
