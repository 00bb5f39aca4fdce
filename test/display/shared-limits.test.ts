/**
 * What many clients together, or one client's odd input, can make the display do, on real sockets
 * against a real pipeline (our broker, ingest, the embedded store):
 * - history loads are bounded for the whole display, HTTP and /live together: over the bound a request
 *   waits briefly, then is refused with SERVER_BUSY (HTTP 503 with Retry-After, a /live error frame),
 *   and counted; the store is held by a gate the test opens, so "in flight" is certain, not timed;
 * - connections to the port are bounded in total, HTTP and /live together, whatever their addresses;
 * - an input that carries a member the parsed message would not hold (a `__proto__` key, a key or query
 *   parameter given twice) is refused with its code, never silently read as something else: query
 *   strings, /live frames, and the MQTT messages the display reads (verified readings, device status);
 * - the store is asked nothing for made-up device ids, and one probe at a time by /healthz;
 * - what one /live client may keep: device names across its subscriptions, the identities kept after a
 *   history (in bytes, and a budget), fragments of an unfinished message, pongs it does not read.
 *
 * Loopback only; further client addresses are 127.0.0.2… (Linux routes all of 127/8 to lo).
 */
import { connect, type Socket } from 'node:net';
import { runInNewContext } from 'node:vm';
import { setFlagsFromString } from 'node:v8';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LIVE_LIMITS } from '../../core/live.ts';
import { createLogger } from '../../core/logger.ts';
import { topics } from '../../core/topics.ts';
import { SeenReadings } from '../../display/history.ts';
import { startDisplay, type RunningDisplay } from '../../display/index.ts';
import { LiveClient, MAX_SEEN_PER_CLIENT } from '../../display/live-client.ts';
import { createDisplayMetrics } from '../../display/metrics.ts';
import { LiveTestClient, displayConfig, startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { DevicePublisher, waitFor } from '../../harness/publisher.ts';
import type { TimeSeriesStore } from '../../store/index.ts';

let pipeline: TestPipeline;
setFlagsFromString('--expose-gc'); // for runInNewContext('gc'): what the display keeps, measured after a collection

beforeAll(async () => {
  pipeline = await startTestPipeline({ devices: 3 });
  const now = Date.now();
  await pipeline.store.write(Array.from({ length: 50 }, (_, i) => ({ device: 'dev-0', metric: 'temperature', ts: now - 60_000 + i * 1000, value: i })));
}, 60_000);
afterAll(async () => pipeline?.close());

/** The pipeline's store, with history queries held until the test lets them go. */
function gatedStore(inner: TimeSeriesStore) {
  let holding = true;
  const held: (() => void)[] = [];
  let started = 0;
  let probes = 0;
  const store: TimeSeriesStore = {
    kind: inner.kind,
    write: (points) => inner.write(points),
    query: async (query) => {
      started++;
      if (holding) await new Promise<void>((resolve) => held.push(resolve));
      return inner.query(query);
    },
    rawPage: (query) => inner.rawPage(query),
    latest: (device, since) => inner.latest(device, since),
    latestAll: (since) => inner.latestAll(since),
    seqs: (device, from, to) => inner.seqs(device, from, to),
    meta: (device) => inner.meta(device),
    count: (options) => inner.count(options),
    health: async () => {
      probes++;
      if (holding) await new Promise<void>((resolve) => held.push(resolve));
      return inner.health();
    },
    close: async () => {},
  };
  return {
    store,
    /** Queries that reached the store (held or not). */
    started: () => started,
    /** Health probes that reached the store. */
    probes: () => probes,
    release() {
      holding = false;
      for (const go of held.splice(0)) go();
    },
  };
}

async function displayWith(env: Record<string, string>, store: TimeSeriesStore = pipeline.store): Promise<RunningDisplay> {
  const display = await startDisplay({
    config: displayConfig(pipeline.broker, pipeline.dir.path, env),
    registryPath: pipeline.registryPath,
    store,
    logger: createLogger({ level: 'silent' }),
  });
  await display.feed.ready;
  return display;
}

const metricsOf = async (display: RunningDisplay) => (await fetch(`${display.url}/metrics`)).text();
/** The value of one sample in Prometheus text (0 when absent). */
const sample = (text: string, name: string) => Number(new RegExp(`^${name.replace(/[{}"\\]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text)?.[1] ?? 0);

describe('history loads, bounded for the whole display', () => {
  it('over the bound an API request waits, then is refused 503 SERVER_BUSY with Retry-After, and is counted', async () => {
    const gate = gatedStore(pipeline.store);
    // 2 slots: 2 running, and up to 4 × 2 = 8 waiting (at most 2 s each).
    const display = await displayWith({ SENSORPIPE_HISTORY_MAX_CONCURRENT: '2' }, gate.store);
    try {
      const url = `${display.url}/api/devices/dev-0/readings?from=-5m`;
      const running = [fetch(url), fetch(url)];
      await waitFor(() => gate.started() === 2, 'two loads at the store');
      const waiting = Array.from({ length: 8 }, () => fetch(url));
      await waitFor(async () => sample(await metricsOf(display), 'sensorpipe_display_history_waiting') === 8, 'eight loads waiting');

      // The eleventh finds every slot taken and the queue full: refused at once.
      const refused = await fetch(url);
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(await refused.json()).toMatchObject({ code: 'SERVER_BUSY' });
      // CSV exports share the bound.
      const csv = await fetch(`${url}&format=csv`);
      expect(csv.status).toBe(503);
      expect(gate.started()).toBe(2); // nothing beyond the bound reached the store

      // The waiting ones give up after their 2 s, refused the same way.
      for (const response of await Promise.all(waiting)) {
        expect(response.status).toBe(503);
        expect(response.headers.get('retry-after')).toBe('1');
        expect(((await response.json()) as { code: string }).code).toBe('SERVER_BUSY');
      }
      gate.release();
      for (const response of await Promise.all(running)) expect(response.status).toBe(200);
      // The slots are free again.
      expect((await fetch(url)).status).toBe(200);
      const metrics = await metricsOf(display);
      expect(sample(metrics, 'sensorpipe_display_history_refused_total{via="http",reason="queue_full"}')).toBe(2);
      expect(sample(metrics, 'sensorpipe_display_history_refused_total{via="http",reason="timeout"}')).toBe(8);
      expect(sample(metrics, 'sensorpipe_display_history_loads')).toBe(0);
      expect(sample(metrics, 'sensorpipe_display_history_waiting')).toBe(0);
      expect(sample(metrics, 'sensorpipe_display_http_requests_total{route="/api/devices/:id/readings",status="503"}')).toBe(10);
    } finally {
      gate.release();
      await display.close();
    }
  }, 30_000);

  it('a waiting request that goes away gives its place up', async () => {
    const gate = gatedStore(pipeline.store);
    const display = await displayWith({ SENSORPIPE_HISTORY_MAX_CONCURRENT: '1' }, gate.store);
    try {
      const url = `${display.url}/api/devices/dev-0/readings?from=-5m`;
      const running = fetch(url);
      await waitFor(() => gate.started() === 1, 'one load at the store');
      const impatient = Array.from({ length: 4 }, () => new AbortController());
      const gone = impatient.map((controller) => fetch(url, { signal: controller.signal }).catch(() => undefined));
      await waitFor(async () => sample(await metricsOf(display), 'sensorpipe_display_history_waiting') === 4, 'four waiting');
      for (const controller of impatient) controller.abort();
      await Promise.all(gone);
      await waitFor(async () => sample(await metricsOf(display), 'sensorpipe_display_history_waiting') === 0, 'their places given up');
      const patient = fetch(url); // there is room in the queue again
      await waitFor(async () => sample(await metricsOf(display), 'sensorpipe_display_history_waiting') === 1, 'one waiting');
      gate.release();
      expect((await running).status).toBe(200);
      expect((await patient).status).toBe(200);
      expect(gate.started()).toBe(2); // the requests that went away never reached the store
      // They left the queue when they went, rather than sitting in it until their wait ran out.
      expect(sample(await metricsOf(display), 'sensorpipe_display_history_refused_total{via="http",reason="timeout"}')).toBe(0);
    } finally {
      gate.release();
      await display.close();
    }
  });

  it('/live history shares the bound with the API: over it, an error frame SERVER_BUSY, and live readings go on', async () => {
    const gate = gatedStore(pipeline.store);
    // One slot and 4 places: the API takes them all.
    const display = await displayWith({ SENSORPIPE_HISTORY_MAX_CONCURRENT: '1' }, gate.store);
    const publisher = await DevicePublisher.connect(pipeline.broker.url, pipeline.devices[0]!);
    const client = await LiveTestClient.connect(`${display.url.replace('http', 'ws')}/live`);
    try {
      const url = `${display.url}/api/devices/dev-0/readings?from=-5m`;
      const http = Array.from({ length: 5 }, () => fetch(url));
      await waitFor(async () => sample(await metricsOf(display), 'sensorpipe_display_history_waiting') === 4, 'the API holding the slot and the queue');

      client.send({ type: 'subscribe', id: 'h', devices: ['dev-0'], history: { from: '-5m' } });
      const error = await client.next((f) => f.type === 'error' && f.id === 'h');
      expect(error).toMatchObject({ type: 'error', code: 'SERVER_BUSY', id: 'h' });
      expect(client.frames.some((f) => f.type === 'history')).toBe(false);
      // The subscription stands without its history: live readings of dev-0 arrive.
      await publisher.send({ temperature: 123.5 });
      await waitFor(() => client.readings().some((r) => r.device === 'dev-0' && r.value === 123.5), 'the live reading');

      gate.release();
      for (const response of await Promise.all(http)) expect(response.status).toBe(200);
      // With the slot free, history loads again.
      client.send({ type: 'subscribe', id: 'h2', devices: ['dev-0'], history: { from: '-5m' } });
      await client.next((f) => f.type === 'history' && f.id === 'h2');
      const metrics = await metricsOf(display);
      expect(sample(metrics, 'sensorpipe_display_history_refused_total{via="live",reason="queue_full"}')).toBe(1);
    } finally {
      gate.release();
      await client.close();
      await publisher.close();
      await display.close();
    }
  });
});

/** An open TCP connection to the display that records what it is sent. */
async function openSocket(port: number, localAddress: string): Promise<{ socket: Socket; received: () => string; closed: Promise<void> }> {
  const socket = connect({ host: '127.0.0.1', port, localAddress });
  let data = '';
  socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
  socket.on('error', () => {}); // a refused connection is reset: the test looks at what it was sent
  const closed = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, received: () => data, closed };
}

describe('connections in total', () => {
  let display: RunningDisplay;
  beforeAll(async () => {
    display = await displayWith({ SENSORPIPE_HTTP_MAX_CONNECTIONS: '4', SENSORPIPE_HTTP_HEADERS_TIMEOUT: '10s', SENSORPIPE_HTTP_REQUEST_TIMEOUT: '10s' });
  });
  afterAll(async () => display?.close());

  /** A kept-alive connection from `localAddress` that has been answered once, so the server surely counts it. */
  const served = async (localAddress: string) => {
    const connection = await openSocket(display.port, localAddress);
    connection.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await waitFor(() => /^HTTP\/1\.1 200/.test(connection.received()) || connection.socket.destroyed, 'the answer', 5000, 10);
    return connection;
  };
  /** Whether a new connection from `localAddress` is served (true) or closed unanswered (false). */
  const admitted = async (localAddress: string) => {
    const { socket, received, closed } = await openSocket(display.port, localAddress);
    socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    const guard = setTimeout(() => socket.destroy(), 5000);
    await closed;
    clearTimeout(guard);
    return /^HTTP\/1\.1 200/.test(received());
  };

  it('closes connection N+1 at once whatever its address, HTTP and /live together, and frees a slot when one closes', async () => {
    const open = [await served('127.0.0.1'), await served('127.0.0.2'), await served('127.0.0.3')];
    const live = await LiveTestClient.connect(`${display.url.replace('http', 'ws')}/live`, { localAddress: '127.0.0.4' });
    expect(open.every((c) => /^HTTP\/1\.1 200/.test(c.received()))).toBe(true);
    // Four open, from four addresses (each far under its per-address cap): a fifth address is refused.
    expect(await admitted('127.0.0.5')).toBe(false);
    await expect(LiveTestClient.connect(`${display.url.replace('http', 'ws')}/live`, { localAddress: '127.0.0.6' })).rejects.toThrow();

    await live.close();
    await waitFor(() => admitted('127.0.0.5'), 'a slot after the /live client left', 5000, 50);
    for (const c of open) c.socket.destroy();
    const metrics = await metricsOf(display);
    expect(sample(metrics, 'sensorpipe_display_connections_refused_total{reason="total"}')).toBeGreaterThanOrEqual(2);
  });
});

describe('members a message would not hold', () => {
  const api = (path: string) => fetch(`${pipeline.display.url}${path}`).then(async (r) => ({ status: r.status, body: (await r.json()) as { code?: string; details?: { param?: string } } }));

  it.each([
    ['/api/devices?__proto__=x', '__proto__ is a parameter like any other: unknown'],
    ['/api/devices/dev-0/readings?__proto__=x', 'the same on the history route'],
    ['/api/devices/dev-0/readings?from=-1h&__proto__=x', 'beside good parameters'],
    ['/api/devices?status=online&status=offline', 'a parameter given twice'],
    ['/api/devices/dev-0/readings?from=-2h&from=-1h', 'a time given twice'],
    ['/api/devices/dev-0/readings?format=csv&format=json', 'the format given twice'],
    ['/api/devices/dev-0/readings?from=&from=-1h', 'given twice, once empty'],
    ['/api/devices/dev-0/readings?device=dev-1', 'a device in the query of a route whose path names it'],
  ])('refuses %s with 400 QUERY_INVALID (%s)', async (path) => {
    expect(await api(path)).toMatchObject({ status: 400, body: { code: 'QUERY_INVALID' } });
  });

  it('still answers the ordinary queries', async () => {
    expect((await api('/api/devices?status=online&q=dev')).status).toBe(200);
    expect((await api('/api/devices/dev-0/readings?metrics=temperature&from=-5m&fn=max&every=1m')).status).toBe(200);
    expect((await api('/api/devices/dev-0/readings?from=&to=')).status).toBe(200); // empty counts as absent
  });

  it('refuses a /live frame with a key given twice, or a __proto__ key, with PAYLOAD_INVALID', async () => {
    const client = await LiveTestClient.connect(`${pipeline.display.url.replace('http', 'ws')}/live`);
    try {
      // JSON.parse keeps the last "devices": without the check, this subscribes to the whole fleet.
      client.send('{"type":"subscribe","id":"twice","devices":["dev-0"],"devices":"*"}');
      expect(await client.next((f) => f.type === 'error' && f.id === 'twice')).toMatchObject({ code: 'PAYLOAD_INVALID' });
      client.send('{"type":"subscribe","id":"proto","devices":["dev-0"],"__proto__":{"devices":"*"}}');
      expect(await client.next((f) => f.type === 'error' && f.id === 'proto')).toMatchObject({ code: 'PAYLOAD_INVALID' });
      client.send('{"type":"subscribe","id":"nested","devices":["dev-0"],"history":{"from":"-1h","from":"-7d"}}');
      expect(await client.next((f) => f.type === 'error' && f.id === 'nested')).toMatchObject({ code: 'PAYLOAD_INVALID' });
      // An ISO date has colons inside a string: the frame is still read exactly, and taken.
      client.send({ type: 'subscribe', id: 'iso', devices: ['dev-0'], history: { from: new Date(Date.now() - 60_000).toISOString() } });
      await client.next((f) => f.type === 'history' && f.id === 'iso');
      expect(client.frames.some((f) => f.type === 'subscribed' && f.id !== 'iso')).toBe(false);
    } finally {
      await client.close();
    }
  });

  it('drops, and counts, a verified-readings or status message with a member it would not hold; a good one still counts', async () => {
    const admin = await mqtt.connectAsync(pipeline.broker.url, { username: pipeline.broker.services.admin.username, password: pipeline.broker.services.admin.password, clientId: 'test-admin-feed' });
    const device = pipeline.devices[2]!;
    const own = await mqtt.connectAsync(pipeline.broker.url, { username: device.id, password: device.credentials.mqttPassword, clientId: device.id });
    const live = await LiveTestClient.connect(`${pipeline.display.url.replace('http', 'ws')}/live`);
    try {
      live.send({ type: 'subscribe', id: 'all', devices: '*' });
      await live.next((f) => f.type === 'subscribed');
      const before = await (await fetch(`${pipeline.display.url}/metrics`)).text();
      const now = Date.now();
      const verified = (values: string) => `{"v":1,"device":"${device.id}","readings":[{"seq":1,"ts":${now},"values":${values}}],"meta":{},"verifiedAt":${now}}`;
      // zod drops __proto__ from a record of values: without the check, this is a reading of 41.5 alone.
      await admin.publishAsync(topics.verified(device.id), verified('{"temperature":41.5,"__proto__":1}'), { qos: 1 });
      await admin.publishAsync(topics.verified(device.id), verified('{"temperature":42.5,"temperature":43.5}'), { qos: 1 });
      // A device's own status, its state given twice (the last would win): the display keeps what it knew.
      await own.publishAsync(topics.status(device.id), `{"v":1,"device":"${device.id}","state":"offline","since":${now + 1},"state":"online"}`, { qos: 1 });
      // Then good ones, which arrive after them.
      await admin.publishAsync(topics.verified(device.id), verified('{"temperature":44.5}'), { qos: 1 });
      await waitFor(() => live.readings().some((r) => r.device === device.id && r.value === 44.5), 'the good reading');
      const after = await (await fetch(`${pipeline.display.url}/metrics`)).text();
      const invalid = (kind: string) => sample(after, `sensorpipe_display_feed_invalid_total{kind="${kind}"}`) - sample(before, `sensorpipe_display_feed_invalid_total{kind="${kind}"}`);
      await waitFor(async () => {
        const text = await (await fetch(`${pipeline.display.url}/metrics`)).text();
        return sample(text, 'sensorpipe_display_feed_invalid_total{kind="status"}') > sample(before, 'sensorpipe_display_feed_invalid_total{kind="status"}');
      }, 'the status counted');
      expect(invalid('verified')).toBe(2);
      expect(live.readings().filter((r) => r.device === device.id).map((r) => r.value)).toEqual([44.5]);
      const summary = (await (await fetch(`${pipeline.display.url}/api/devices/${device.id}`)).json()) as { since: number | null; latest: Record<string, { value: number }> };
      expect(summary.since).not.toBe(now + 1);
      expect(summary.latest.temperature?.value).toBe(44.5);
    } finally {
      await live.close();
      await own.endAsync();
      await admin.endAsync();
    }
  });
});

describe('what the store is asked for devices that do not exist', () => {
  it('loads /live history only for registered devices, as the API answers 404 before it asks the store', async () => {
    const gate = gatedStore(pipeline.store);
    gate.release(); // nothing held: the test counts what reaches the store
    const display = await displayWith({}, gate.store);
    const client = await LiveTestClient.connect(`${display.url.replace('http', 'ws')}/live`);
    try {
      expect((await fetch(`${display.url}/api/devices/made-up-1/readings`)).status).toBe(404);
      const madeUp = Array.from({ length: LIVE_LIMITS.maxHistoryDevices - 1 }, (_, i) => `made-up-${i}`);
      client.send({ type: 'subscribe', id: 'h', devices: [...madeUp, 'dev-0'], history: { from: '-5m' } });
      const history = await client.next((f) => f.type === 'history' && f.id === 'h');
      expect(history).toMatchObject({ device: 'dev-0' });
      const refused = client.frames.filter((f) => f.type === 'error' && f.id === 'h');
      expect(refused).toHaveLength(madeUp.length);
      expect(refused.every((f) => f.type === 'error' && f.code === 'NOT_FOUND')).toBe(true);
      expect(gate.started()).toBe(1); // dev-0's history alone
    } finally {
      await client.close();
      await display.close();
    }
  });
});

describe('what the store is asked by clients that need no token', () => {
  it('answers concurrent /healthz with one store probe in flight, not one each', async () => {
    const gate = gatedStore(pipeline.store);
    const display = await displayWith({}, gate.store);
    try {
      const probes = Array.from({ length: 20 }, () => fetch(`${display.url}/healthz`));
      await waitFor(() => gate.probes() >= 1, 'a probe at the store');
      await new Promise((resolve) => setTimeout(resolve, 200)); // time for the other 19 to arrive too
      expect(gate.probes()).toBe(1);
      gate.release();
      for (const response of await Promise.all(probes)) expect(response.status).toBe(200);
      // The next one probes the store anew.
      expect((await fetch(`${display.url}/healthz`)).status).toBe(200);
      expect(gate.probes()).toBe(2);
    } finally {
      gate.release();
      await display.close();
    }
  });
});

describe('what one /live client may keep on the display', () => {
  it(`names at most ${LIVE_LIMITS.maxDevicesPerClient} devices across its subscriptions; "*" and replacing a subscription stay possible`, async () => {
    const client = await LiveTestClient.connect(`${pipeline.display.url.replace('http', 'ws')}/live`);
    try {
      const welcome = client.frames.find((f) => f.type === 'welcome');
      expect(welcome).toMatchObject({ limits: { maxDevicesPerClient: LIVE_LIMITS.maxDevicesPerClient } });
      const per = LIVE_LIMITS.maxDevicesPerSubscription;
      const full = LIVE_LIMITS.maxDevicesPerClient / per;
      const names = (s: number, count: number = per) => Array.from({ length: count }, (_, i) => `n${s}-${i}`);
      for (let s = 0; s < full; s++) client.send({ type: 'subscribe', id: `s${s}`, devices: names(s) });
      await client.next((f) => f.type === 'subscribed' && f.id === `s${full - 1}`);
      client.send({ type: 'subscribe', id: 'one-more', devices: ['dev-0'] });
      expect(await client.next((f) => f.type === 'error' && f.id === 'one-more')).toMatchObject({ code: 'LIMIT_EXCEEDED' });
      // Replacing a subscription counts its new devices instead of its old ones.
      client.send({ type: 'subscribe', id: 's0', devices: [...names(0, per - 1), 'dev-0'] });
      await client.next((f, i = client.frames.indexOf(f)) => f.type === 'subscribed' && f.id === 's0' && i > client.frames.findIndex((g) => g.type === 'error'));
      client.send({ type: 'subscribe', id: 'fleet', devices: '*' });
      await client.next((f) => f.type === 'subscribed' && f.id === 'fleet');
      client.send({ type: 'unsubscribe', id: 's1' });
      await client.next((f) => f.type === 'unsubscribed' && f.id === 's1');
      client.send({ type: 'subscribe', id: 'one-more', devices: ['dev-1'] });
      await client.next((f) => f.type === 'subscribed' && f.id === 'one-more');
      expect(client.frames.filter((f) => f.type === 'error')).toHaveLength(1);
    } finally {
      await client.close();
    }
  });

  it('keeps a history\'s reading identities in bytes, not in strings, for the join with live', async () => {
    // dev-1: 16 metrics × 10,000 raw points in the last hours, 160,000 identities to keep for 30 s.
    const base = Date.now() - 3 * 3_600_000;
    await pipeline.store.write(Array.from({ length: 10_000 }, (_, i) => Array.from({ length: 16 }, (_, m) => ({ device: 'dev-1', metric: `m${m}`, ts: base + i * 1000, value: i + m }))).flat());
    const gc = runInNewContext('gc') as () => void;
    const heap = () => {
      gc();
      gc();
      const { heapUsed, arrayBuffers } = process.memoryUsage();
      return heapUsed + arrayBuffers; // typed arrays keep their bytes outside the heap
    };
    // A client that keeps nothing of what it is sent, so the test measures the display alone.
    const ws = new WebSocket(`${pipeline.display.url.replace('http', 'ws')}/live`);
    let histories = 0;
    ws.on('message', (data: Buffer) => {
      if (data.toString('latin1', 0, 20).startsWith('{"type":"history"')) histories++;
    });
    await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
    try {
      const before = heap();
      ws.send(JSON.stringify({ type: 'subscribe', id: 'dense', devices: ['dev-1'], history: { from: base, maxPoints: 10_000 } }));
      await waitFor(() => histories === 1, 'the history');
      const client = [...pipeline.display.hub['liveness'].clients].find((c) => c.subscriptions.has('dense'))!;
      await waitFor(() => client.sent.has('dev-1'), 'the identities kept for the join');
      expect(client.sent.get('dev-1')!.seen.size).toBe(160_000);
      const kept = heap() - before;
      // 8 bytes an identity is 1.3 MB; as strings in a Set they were about 130 bytes each, over 20 MB.
      expect(kept).toBeLessThan(6_000_000);
    } finally {
      ws.close();
    }
  }, 60_000);

  it(`keeps at most ${MAX_SEEN_PER_CLIENT.toLocaleString('en')} identities per client: past them, the windows that end first close early`, () => {
    const client = new LiveClient({} as unknown as WebSocket, createLogger({ level: 'silent' }), createDisplayMetrics());
    const history = (points: number) => new SeenReadings(new Map([['temperature', new Float64Array(points).map((_, i) => i)]]));
    const third = Math.ceil(MAX_SEEN_PER_CLIENT / 3);
    client.rememberSent('a', history(third), 1000);
    client.rememberSent('b', history(third), 2000);
    client.rememberSent('c', history(third), 3000);
    expect([...client.sent.keys()]).toEqual(['b', 'c']); // a ended first
    client.rememberSent('d', history(10), 500); // the newest is kept, whatever its end
    expect([...client.sent.keys()]).toEqual(['b', 'c', 'd']);
    expect(client.sent.get('d')!.seen.has('temperature', 9)).toBe(true);
    expect(client.sent.get('d')!.seen.has('temperature', 10)).toBe(false);
  });
});

describe('what one /live message may cost the display', () => {
  /** A client frame (masked, with a zero key) of `opcode`, final or not. */
  const frame = (opcode: number, fin: boolean, payload: Buffer) => Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | payload.length, 0, 0, 0, 0]), payload]);
  /** A raw WebSocket on /live, past its handshake and welcome, recording what the server sends. */
  const rawLive = async () => {
    const connection = await openSocket(pipeline.display.port, '127.0.0.1');
    connection.socket.write('GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
    await waitFor(() => connection.received().includes('"welcome"'), 'the welcome', 5000, 10);
    return connection;
  };
  const closeCode = (received: string) => {
    const at = received.lastIndexOf('\u0088');
    return at === -1 ? undefined : (received.charCodeAt(at + 2) << 8) | received.charCodeAt(at + 3);
  };

  it(`takes a message in a few fragments, and closes (1008) one in more than ${LIVE_LIMITS.maxInboundFragments}, counted`, async () => {
    const good = await rawLive();
    const text = Buffer.from(JSON.stringify({ type: 'subscribe', id: 'pieces', devices: ['dev-0'] }));
    const pieces = [frame(0x1, false, text.subarray(0, 5))];
    for (let at = 5; at < text.length; at += 5) pieces.push(frame(0x0, at + 5 >= text.length, text.subarray(at, at + 5)));
    expect(pieces.length).toBeLessThanOrEqual(LIVE_LIMITS.maxInboundFragments);
    good.socket.write(Buffer.concat(pieces));
    await waitFor(() => good.received().includes('"subscribed"'), 'the subscription made of pieces', 5000);
    good.socket.destroy();

    const before = sample(await metricsOf(pipeline.display), 'sensorpipe_display_live_disconnects_total{reason="protocol"}');
    // A message that never ends, one byte a fragment: ws's default would hold 16,384 of them per client.
    const hostile = await rawLive();
    hostile.socket.write(Buffer.concat([frame(0x1, false, Buffer.from('{')), ...Array.from({ length: 200 }, () => frame(0x0, false, Buffer.from(' ')))]));
    await waitFor(() => closeCode(hostile.received()) !== undefined, 'a close frame', 5000);
    expect(closeCode(hostile.received())).toBe(1008);
    await hostile.closed;
    expect(sample(await metricsOf(pipeline.display), 'sensorpipe_display_live_disconnects_total{reason="protocol"}')).toBe(before + 1);
  });

  it('cuts off a client that sends pings and never reads the pongs (ws keeps at most 60 waiting)', async () => {
    const flood = await rawLive();
    flood.socket.pause(); // reads nothing more: the pongs pile up at the display
    const pings = Buffer.concat(Array.from({ length: 4000 }, () => frame(0x9, true, Buffer.alloc(125, 0x61))));
    const writing = setInterval(() => flood.socket.writable && flood.socket.write(pings), 20);
    let gaveUp = false;
    const guard = setTimeout(() => {
      gaveUp = true;
      flood.socket.destroy();
    }, 15_000);
    await flood.closed;
    clearInterval(writing);
    clearTimeout(guard);
    expect(gaveUp).toBe(false); // the display closed it, not the test
  }, 30_000);
});
