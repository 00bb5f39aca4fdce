/**
 * /live with real `ws` clients against a real pipeline (our broker, ingest, the embedded store, real
 * signing devices): subscriptions, history then live without gap or overlap, hostile frames and
 * tokens, a slow client conflated and then disconnected while a normal client gets every reading.
 *
 * The flood for the slow-client tests is published straight on pipeline/readings by the ingest service
 * account (big verified-readings messages), because filling a socket's kernel buffers with signed
 * device readings through ingest would take minutes; the display cannot tell the difference.
 */
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { LIVE_CLOSE, LIVE_HISTORY_RAW_CAP, type LiveServerFrame } from '../../core/live.ts';
import { LIVE_SUBPROTOCOL, liveSubprotocols } from '../../core/live-subprotocol.ts';
import { topics } from '../../core/topics.ts';
import { DevicePublisher, signedPayload, waitFor } from '../../harness/publisher.ts';
import { createLogger } from '../../core/logger.ts';
import { startDisplay, type RunningDisplay } from '../../display/index.ts';
import { LiveTestClient, displayConfig, startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';

let pipeline: TestPipeline;
let liveUrl: string;
const publishers: DevicePublisher[] = [];

beforeAll(async () => {
  pipeline = await startTestPipeline({
    devices: 30,
    displayEnv: { SENSORPIPE_LIVE_HEARTBEAT: '1s', SENSORPIPE_VIEWER_TOKEN: 'viewer-secret' },
  });
  liveUrl = `${pipeline.display.url.replace('http', 'ws')}/live?token=viewer-secret`;
  for (const device of pipeline.devices.slice(0, 3)) publishers.push(await DevicePublisher.connect(pipeline.broker.url, device));
}, 60_000);
afterAll(async () => {
  for (const p of publishers) await p.close();
  await pipeline?.close();
});

const isReadings = (f: LiveServerFrame): f is Extract<LiveServerFrame, { type: 'readings' }> => f.type === 'readings';
const metricText = async () => (await fetch(`${pipeline.display.url}/metrics`)).text();

describe('subscriptions', () => {
  it('delivers the subscribed devices and metrics only, batched into frames, until unsubscribed', async () => {
    const client = await LiveTestClient.connect(liveUrl);
    client.send({ type: 'subscribe', id: 'one', devices: ['dev-0'], metrics: ['temperature'] });
    await client.next((f) => f.type === 'subscribed' && f.id === 'one');
    for (let i = 0; i < 5; i++) {
      await publishers[0]!.send({ temperature: 20 + i, humidity: 50 });
      await publishers[1]!.send({ temperature: 30 + i });
    }
    await waitFor(() => client.readings().length >= 5, 'five dev-0 readings');
    const got = client.readings();
    expect(got.map((r) => [r.device, r.metric, r.value])).toEqual([20, 21, 22, 23, 24].map((v) => ['dev-0', 'temperature', v]));
    expect(got.map((r) => r.ts)).toEqual(publishers[0]!.acked.slice(-5).map((r) => r.ts));

    client.send({ type: 'unsubscribe', id: 'one' });
    await client.next((f) => f.type === 'unsubscribed' && f.id === 'one');
    client.send({ type: 'subscribe', id: 'marker', devices: ['dev-1'] });
    await client.next((f) => f.type === 'subscribed' && f.id === 'marker');
    const before = client.readings().length;
    await publishers[0]!.send({ temperature: 99 });
    // A reading sent after it, on the subscription still held: once it is here, dev-0's would be too.
    await publishers[1]!.send({ temperature: 98 });
    await waitFor(() => client.readings().some((r) => r.device === 'dev-1' && r.value === 98), 'the later reading of dev-1');
    expect(client.readings().slice(before).filter((r) => r.device === 'dev-0')).toEqual([]);
    await client.close();
  });

  it('sends the whole fleet with devices "*", and only the newest value per metric with latest', async () => {
    const batcher = await DevicePublisher.connect(pipeline.broker.url, pipeline.devices[3]!);
    const all = await LiveTestClient.connect(liveUrl);
    const latest = await LiveTestClient.connect(liveUrl);
    all.send({ type: 'subscribe', id: 'all', devices: '*' });
    latest.send({ type: 'subscribe', id: 'overview', devices: '*', latest: true });
    await all.next((f) => f.type === 'subscribed');
    await latest.next((f) => f.type === 'subscribed');
    // Three readings in one message (a catch-up batch): `latest` keeps the newest only.
    const now = Date.now();
    const payload = signedPayload(batcher.device, [
      { seq: 1001, ts: now - 30, values: { temperature: 1 } },
      { seq: 1002, ts: now - 20, values: { temperature: 2 } },
      { seq: 1003, ts: now - 10, values: { temperature: 3 } },
    ]);
    await batcher.sendRaw(payload);
    // Then a reading of another device: once both clients have it, they have had all of dev-3's.
    await publishers[2]!.send({ temperature: 77 });
    const marked = (client: LiveTestClient) => client.readings().some((r) => r.device === 'dev-2' && r.value === 77);
    await waitFor(() => marked(all) && marked(latest), 'the later reading on both clients');
    expect(all.readings().filter((r) => r.device === 'dev-3').map((r) => r.value)).toEqual([1, 2, 3]);
    expect(latest.readings().filter((r) => r.device === 'dev-3').map((r) => [r.seq, r.value])).toEqual([[1003, 3]]);
    await batcher.close();
    await all.close();
    await latest.close();
  });
});

describe('history then live', () => {
  /** Publishes a reading every 10 ms from `publisher` until stopped. */
  const stream = (publisher: DevicePublisher) => {
    let running = true;
    const done = (async () => {
      let i = 0;
      while (running) {
        await publisher.send({ temperature: i++ / 10 });
        await new Promise((r) => setTimeout(r, 10));
      }
    })();
    return async () => {
      running = false;
      await done;
    };
  };

  const points = (client: LiveTestClient, device: string, id: string) => {
    const history = client.frames.find((f): f is Extract<LiveServerFrame, { type: 'history' }> => f.type === 'history' && f.id === id && f.device === device)!;
    const historyIndex = client.frames.indexOf(history);
    const liveBefore = client.frames.slice(0, historyIndex).filter(isReadings).flatMap((f) => f.items).filter(([d]) => d === device);
    const series = history.series.find((s) => s.metric === 'temperature')?.points ?? [];
    const raw = series.filter((p) => p.length === 2).map(([ts]) => ts);
    const live = client.frames.slice(historyIndex).filter(isReadings).flatMap((f) => f.items).filter(([d]) => d === device).map(([, , ts]) => ts);
    return { history, liveBefore, raw, live };
  };

  it('raw history: every acknowledged reading exactly once, history first', async () => {
    const publisher = publishers[1]!;
    const stop = stream(publisher);
    // Readings in the store, and (the stream goes on) in flight and in ingest's batch.
    const stored = async () => pipeline.store.count({ device: 'dev-1', from: Date.now() - 600_000 });
    const storedBefore = await stored();
    await waitFor(async () => (await stored()) >= storedBefore + 60, 'readings of the stream stored');
    const client = await LiveTestClient.connect(liveUrl);
    const subscribedAt = Date.now();
    client.send({ type: 'subscribe', id: 'h', devices: ['dev-1'], metrics: ['temperature'], history: { from: subscribedAt - 600_000 } });
    await client.next((f) => f.type === 'history');
    await waitFor(() => points(client, 'dev-1', 'h').live.length > 20, 'live readings after the history');
    await stop();
    const acked = publisher.acked.filter((r) => r.ts >= subscribedAt - 600_000).map((r) => r.ts);
    await waitFor(() => points(client, 'dev-1', 'h').live.includes(acked.at(-1)!), 'the last reading live');
    const { history, liveBefore, raw, live } = points(client, 'dev-1', 'h');
    expect(history.mode).toBe('raw');
    expect(liveBefore).toEqual([]);
    expect(raw.length).toBeGreaterThan(50);
    expect(live.length).toBeGreaterThan(20);
    const all = [...raw, ...live];
    expect(new Set(all).size).toBe(all.length); // no overlap
    expect(all.sort((a, b) => a - b)).toEqual(acked); // no gap
  });

  it('aggregated history: windows, then a raw join with live, every recent reading exactly once', async () => {
    const publisher = publishers[0]!;
    // Older history so that the range holds more than maxPoints points and is aggregated.
    const old = Date.now() - 1_800_000;
    await pipeline.store.write(Array.from({ length: 500 }, (_, i) => ({ device: 'dev-0', metric: 'temperature', ts: old + i * 1000, value: i })));
    const stop = stream(publisher);
    const stored = async () => pipeline.store.count({ device: 'dev-0', from: Date.now() - 600_000 });
    const storedBefore = await stored();
    await waitFor(async () => (await stored()) >= storedBefore + 60, 'readings of the stream stored');
    const client = await LiveTestClient.connect(liveUrl);
    const subscribedAt = Date.now();
    client.send({ type: 'subscribe', id: 'agg', devices: ['dev-0'], metrics: ['temperature'], history: { from: '-1h', maxPoints: 100 } });
    const frame = await client.next((f): f is Extract<LiveServerFrame, { type: 'history' }> => f.type === 'history');
    await waitFor(() => points(client, 'dev-0', 'agg').live.length > 20, 'live readings after the history');
    await stop();
    expect(frame.mode).toBe('aggregate');
    expect(frame.rawFrom).toBeGreaterThan(subscribedAt - 40_000);
    const windows = frame.series[0]!.points.filter((p) => p.length === 4);
    expect(windows.length).toBeGreaterThan(0);
    expect(windows.length).toBeLessThanOrEqual(100);
    const acked = publisher.acked.filter((r) => r.ts >= frame.rawFrom!).map((r) => r.ts);
    await waitFor(() => points(client, 'dev-0', 'agg').live.includes(acked.at(-1)!), 'the last reading live');
    const { raw, live, liveBefore } = points(client, 'dev-0', 'agg');
    expect(liveBefore).toEqual([]);
    const all = [...raw, ...live];
    expect(new Set(all).size).toBe(all.length);
    expect(all.sort((a, b) => a - b)).toEqual(acked);
  });
});

describe('a history cut at its cap', () => {
  it('says so: truncated, with nextFrom the first time left out and every point before it; a history at the cap is whole', async () => {
    // More points in the last seconds than a frame's raw part carries: dev-20's temperature 1 ms apart
    // (a device far faster than any real one, written straight into the store), its humidity sparse;
    // dev-21 has exactly the cap.
    const base = Date.now() - 20_000;
    const over = LIVE_HISTORY_RAW_CAP + 2000;
    await pipeline.store.write([
      ...Array.from({ length: over }, (_, i) => ({ device: 'dev-20', metric: 'temperature', ts: base + i, value: i })),
      ...Array.from({ length: 120 }, (_, i) => ({ device: 'dev-20', metric: 'humidity', ts: base + i * 100, value: i })),
      ...Array.from({ length: LIVE_HISTORY_RAW_CAP }, (_, i) => ({ device: 'dev-21', metric: 'temperature', ts: base + i, value: i })),
    ]);
    const client = await LiveTestClient.connect(liveUrl);
    // Every frame the client gets is parsed with core/live.ts's strict schemas (harness/pipeline.ts).
    client.send({ type: 'subscribe', id: 'cut', devices: ['dev-20', 'dev-21'], history: { from: '-1m' } });
    await waitFor(() => client.frames.filter((f) => f.type === 'history').length === 2, 'both histories');
    const history = (device: string) => client.frames.find((f): f is Extract<LiveServerFrame, { type: 'history' }> => f.type === 'history' && f.device === device)!;
    const cut = history('dev-20');
    expect(cut.truncated).toBe(true);
    expect(cut.nextFrom).toBe(base + LIVE_HISTORY_RAW_CAP);
    const temperature = cut.series.find((s) => s.metric === 'temperature')!.points.filter((p) => p.length === 2);
    expect(temperature.map(([ts]) => ts)).toEqual(Array.from({ length: LIVE_HISTORY_RAW_CAP }, (_, i) => base + i));
    // One time for every series: humidity keeps what lies before it, nothing after.
    const humidity = cut.series.find((s) => s.metric === 'humidity')!.points.map(([ts]) => ts);
    expect(humidity).toEqual(Array.from({ length: 100 }, (_, i) => base + i * 100));
    const whole = history('dev-21');
    expect(whole).not.toHaveProperty('truncated');
    expect(whole).not.toHaveProperty('nextFrom');
    expect(whole.series.find((s) => s.metric === 'temperature')!.points).toHaveLength(LIVE_HISTORY_RAW_CAP);
    await client.close();
  }, 30_000);
});

describe('hostile clients', () => {
  it.each([
    ['not JSON', '{"type":', 'PAYLOAD_INVALID'],
    ['an unknown frame type', { type: 'publish', topic: 'sensors/dev-0/telemetry' }, 'PAYLOAD_INVALID'],
    ['an extra field', { type: 'subscribe', id: 'x', devices: ['dev-0'], admin: true }, 'PAYLOAD_INVALID'],
    ['a bad device id', { type: 'subscribe', id: 'x', devices: ["dev-0' OR 1=1"] }, 'PAYLOAD_INVALID'],
    ['too many devices', { type: 'subscribe', id: 'x', devices: Array.from({ length: 1001 }, (_, i) => `d-${i}`) }, 'PAYLOAD_INVALID'],
    ['history of the whole fleet', { type: 'subscribe', id: 'x', devices: '*', history: { from: '-1h' } }, 'QUERY_INVALID'],
    ['history of 21 devices', { type: 'subscribe', id: 'x', devices: Array.from({ length: 21 }, (_, i) => `dev-${i}`), history: { from: '-1h' } }, 'LIMIT_EXCEEDED'],
    ['history from the future', { type: 'subscribe', id: 'x', devices: ['dev-0'], history: { from: Date.now() + 60_000 } }, 'QUERY_RANGE_INVALID'],
    ['an unreadable history time', { type: 'subscribe', id: 'x', devices: ['dev-0'], history: { from: 'last tuesday' } }, 'QUERY_RANGE_INVALID'],
    ['unsubscribing what was never subscribed', { type: 'unsubscribe', id: 'nope' }, 'NOT_FOUND'],
  ])('refuses %s with an error frame and stays connected', async (_what, frame, code) => {
    const client = await LiveTestClient.connect(liveUrl);
    client.send(frame);
    const error = await client.next((f) => f.type === 'error');
    expect(error).toMatchObject({ code });
    client.send({ type: 'subscribe', id: 'fine', devices: ['dev-0'] });
    await client.next((f) => f.type === 'subscribed');
    await client.close();
  });

  it('refuses binary frames, caps subscriptions, closes on an oversized frame and after ten bad frames', async () => {
    const bystander = await LiveTestClient.connect(liveUrl);
    bystander.send({ type: 'subscribe', id: 'b', devices: ['dev-2'] });
    await bystander.next((f) => f.type === 'subscribed');

    const binary = await LiveTestClient.connect(liveUrl);
    binary.ws.send(Buffer.from([1, 2, 3]));
    expect(await binary.next((f) => f.type === 'error')).toMatchObject({ code: 'PAYLOAD_INVALID' });
    for (let i = 0; i < 32; i++) binary.send({ type: 'subscribe', id: `s${i}`, devices: ['dev-1'] });
    binary.send({ type: 'subscribe', id: 's32', devices: ['dev-1'] });
    expect(await binary.next((f) => f.type === 'error' && f.id === 's32')).toMatchObject({ code: 'LIMIT_EXCEEDED' });
    await binary.close();

    const big = await LiveTestClient.connect(liveUrl);
    big.send(JSON.stringify({ type: 'subscribe', id: 'big', devices: ['dev-0'], pad: 'x'.repeat(20_000) }));
    expect((await big.closed).code).toBe(LIVE_CLOSE.tooBig);

    const noisy = await LiveTestClient.connect(liveUrl);
    for (let i = 0; i < 10; i++) noisy.send('nonsense');
    expect((await noisy.closed).code).toBe(LIVE_CLOSE.badFrames);

    // The well-behaved client was served throughout.
    await publishers[2]!.send({ temperature: 42 });
    await waitFor(() => bystander.readings().some((r) => r.value === 42), 'the bystander still served');
    await bystander.close();
    expect(await metricText()).toMatch(/sensorpipe_display_live_bad_frames_total\{code="PAYLOAD_INVALID"\} [1-9]/);
  });

  it('refuses a missing or wrong token and a foreign Origin before the handshake', async () => {
    const base = pipeline.display.url.replace('http', 'ws');
    await expect(LiveTestClient.connect(`${base}/live`)).rejects.toThrow('HTTP 401');
    await expect(LiveTestClient.connect(`${base}/live?token=guess`)).rejects.toThrow('HTTP 401');
    await expect(LiveTestClient.connect(liveUrl, { origin: 'https://evil.example' })).rejects.toThrow('HTTP 403');
    await expect(LiveTestClient.connect(`${base}/elsewhere?token=viewer-secret`)).rejects.toThrow('HTTP 404');
    const ok = await LiveTestClient.connect(`${base}/live`, { headers: { authorization: 'Bearer viewer-secret' }, origin: pipeline.display.url });
    await ok.close();
    expect(await metricText()).toMatch(/sensorpipe_display_live_refused_total\{code="AUTH_REQUIRED"\} 2/);
  });

  it('takes the token as a WebSocket subprotocol, the way the dashboard sends it, and never echoes it', async () => {
    const base = pipeline.display.url.replace('http', 'ws');
    const [ours, bearer] = liveSubprotocols('viewer-secret');
    expect(bearer).toMatch(/^bearer\.[A-Za-z0-9_-]+$/); // a valid RFC 6455 subprotocol token, whatever the secret
    const client = await LiveTestClient.connectWithProtocols(`${base}/live`, [ours!, bearer!]);
    expect(client.ws.protocol).toBe(LIVE_SUBPROTOCOL);
    await client.close();
    // A client that offers no subprotocol gets none (plain `ws` or a script with the header).
    const plain = await LiveTestClient.connect(`${base}/live`, { headers: { authorization: 'Bearer viewer-secret' } });
    expect(plain.ws.protocol).toBe('');
    await plain.close();
    const refused = (protocols: string[]) => LiveTestClient.connectWithProtocols(`${base}/live`, protocols);
    await expect(refused(liveSubprotocols('guess'))).rejects.toThrow('HTTP 401');
    await expect(refused([LIVE_SUBPROTOCOL, 'bearer.'])).rejects.toThrow('HTTP 401');
    await expect(refused([LIVE_SUBPROTOCOL])).rejects.toThrow('HTTP 401');
    // A non-ASCII secret survives the base64url round trip.
    const unicode = await startTestPipeline({ devices: 1, displayEnv: { SENSORPIPE_VIEWER_TOKEN: 'clé-🔑-viewer' } });
    try {
      const ok = await LiveTestClient.connectWithProtocols(`${unicode.display.url.replace('http', 'ws')}/live`, liveSubprotocols('clé-🔑-viewer'));
      await ok.close();
    } finally {
      await unicode.close();
    }
  });

  it('drops a client that stops answering pings', async () => {
    const silent = await LiveTestClient.connect(liveUrl, { autoPong: false });
    const closed = await silent.closed;
    expect(closed.code).toBe(1006); // terminated, no close handshake
    expect(await metricText()).toMatch(/sensorpipe_display_live_disconnects_total\{reason="heartbeat"\} [1-9]/);
  });
});

describe('slow clients', () => {
  // A display of its own: a small backlog limit, and heartbeats too rare to drop the stuck client first.
  let slowDisplay: RunningDisplay;
  let slowUrl: string;
  beforeAll(async () => {
    slowDisplay = await startDisplay({
      config: displayConfig(pipeline.broker, pipeline.dir.path, { SENSORPIPE_LIVE_SLOW_BYTES: '256KiB', SENSORPIPE_LIVE_STUCK_TIMEOUT: '4s', SENSORPIPE_LIVE_HEARTBEAT: '1m' }),
      registryPath: pipeline.registryPath,
      store: pipeline.store,
      logger: createLogger({ level: 'silent' }),
    });
    await slowDisplay.feed.ready;
    slowUrl = `${slowDisplay.url.replace('http', 'ws')}/live`;
  });
  afterAll(async () => slowDisplay?.close());
  const slowMetrics = async () => (await fetch(`${slowDisplay.url}/metrics`)).text();
  const socketOf = (c: LiveTestClient) => (c.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
  /** Publishes big verified-readings messages for dev-29 as the ingest service would, 1,000 readings each. */
  const flooder = async (clientId: string) => {
    const account = await mqtt.connectAsync(pipeline.broker.url, { ...pipeline.broker.services.ingest, clientId });
    let seq = 0;
    const base = Date.now() - 60_000;
    const message = () => {
      const readings = Array.from({ length: 1000 }, () => {
        seq++;
        return { seq, ts: base + seq, values: Object.fromEntries(Array.from({ length: 8 }, (_, m) => [`m${m}`, seq + m / 10])) };
      });
      return JSON.stringify({ v: 1, device: 'dev-29', readings, meta: {}, verifiedAt: Date.now() });
    };
    return {
      publish: () => account.publishAsync(topics.verified('dev-29'), message(), { qos: 1 }),
      sent: () => seq,
      end: () => account.endAsync(),
    };
  };

  it('conflates a paused client, then disconnects it if it stays stuck; a normal client gets every reading', async () => {
    const normal = await LiveTestClient.connect(slowUrl);
    const paused = await LiveTestClient.connect(slowUrl);
    const stuck = await LiveTestClient.connect(slowUrl);
    for (const c of [normal, paused, stuck]) {
      c.send({ type: 'subscribe', id: 'flood', devices: ['dev-29'] });
      await c.next((f) => f.type === 'subscribed');
    }
    // Stop reading: the server's unsent data grows past SENSORPIPE_LIVE_SLOW_BYTES (256 KiB).
    socketOf(paused).pause();
    socketOf(stuck).pause();

    const flood = await flooder('flood-ingest');
    for (let i = 0; i < 40; i++) await flood.publish();
    const sent = flood.sent();
    // The paused client catches up with the newest value of each metric and a count of what it missed.
    await waitFor(async () => /sensorpipe_display_live_readings_conflated_total [1-9]/.test(await slowMetrics()), 'conflation under way');
    // A frame it sends while behind waits unread (nothing is answered to a client over the mark)…
    paused.send({ type: 'subscribe', id: 'while-behind', devices: ['dev-28'] });
    socketOf(paused).resume();
    await waitFor(() => paused.frames.some((f) => isReadings(f) && (f.conflated ?? 0) > 0), 'a frame saying what was conflated');
    // …and is answered once it caught up.
    await paused.next((f) => f.type === 'subscribed' && f.id === 'while-behind');
    await waitFor(() => paused.readings().some((r) => r.metric === 'm7' && r.seq === sent), 'the newest value');
    const newest = paused.readings().filter((r) => r.seq === sent).map((r) => [r.metric, r.value]);
    expect(newest).toEqual(Array.from({ length: 8 }, (_, m) => [`m${m}`, sent + m / 10]));

    await waitFor(() => normal.readings().filter((r) => r.metric === 'm0').length === sent, 'every reading on the normal client', 20_000);
    expect(normal.frames.filter(isReadings).every((f) => f.conflated === undefined)).toBe(true);
    expect(paused.readings().length).toBeLessThan(normal.readings().length);

    // The one that never reads again is disconnected after SENSORPIPE_LIVE_STUCK_TIMEOUT.
    // Readings keep flowing (the kernel's socket buffers take a lot before the server sees a backlog).
    await waitFor(async () => {
      await flood.publish();
      return /sensorpipe_display_live_disconnects_total\{reason="slow"\} 1/.test(await slowMetrics());
    }, 'the stuck client disconnected', 30_000, 100);
    socketOf(stuck).resume(); // a paused socket does not see its own end until it reads again
    expect((await stuck.closed).code).toBe(1006); // terminated: a stuck client cannot take part in a close handshake
    expect(normal.ws.readyState).toBe(normal.ws.OPEN);
    await flood.end();
    await normal.close();
    await paused.close();
  }, 60_000);

  it('counts a slow client whose pong is stuck behind its backlog as slow, not as a dead connection', async () => {
    // Heartbeats more frequent than the stuck timeout: here the missed pong comes first.
    const display = await startDisplay({
      config: displayConfig(pipeline.broker, pipeline.dir.path, { SENSORPIPE_LIVE_SLOW_BYTES: '256KiB', SENSORPIPE_LIVE_STUCK_TIMEOUT: '1m', SENSORPIPE_LIVE_HEARTBEAT: '4s' }),
      registryPath: pipeline.registryPath,
      store: pipeline.store,
      logger: createLogger({ level: 'silent' }),
    });
    await display.feed.ready;
    const metrics = async () => (await fetch(`${display.url}/metrics`)).text();
    const flood = await flooder('flood-ingest-2');
    try {
      const behind = await LiveTestClient.connect(`${display.url.replace('http', 'ws')}/live`);
      behind.send({ type: 'subscribe', id: 'flood', devices: ['dev-29'] });
      await behind.next((f) => f.type === 'subscribed');
      socketOf(behind).pause();
      await waitFor(async () => {
        await flood.publish();
        return /sensorpipe_display_live_readings_conflated_total [1-9]/.test(await metrics());
      }, 'the client conflated', 10_000, 50);
      await waitFor(async () => /sensorpipe_display_live_disconnects_total\{reason="slow"\} 1/.test(await metrics()), 'dropped at a heartbeat', 15_000);
      expect(await metrics()).not.toMatch(/sensorpipe_display_live_disconnects_total\{reason="heartbeat"\}/);
    } finally {
      await flood.end();
      await display.close();
    }
  }, 40_000);
});

describe('a client that asks for history and reads nothing', () => {
  // History frames of about 1.8 MB each: dev-27, 8 metrics × 10,000 points in the last hour.
  const METRICS = 8;
  const POINTS = 10_000;
  let display: RunningDisplay;
  beforeAll(async () => {
    const base = Date.now() - 3_100_000;
    await pipeline.store.write(
      Array.from({ length: POINTS }, (_, i) => Array.from({ length: METRICS }, (_, m) => ({ device: 'dev-27', metric: `m${m}`, ts: base + i * 300, value: i + m / 10 }))).flat(),
    );
  }, 60_000);
  afterEach(async () => display?.close());

  const start = async (env: Record<string, string>) => {
    display = await startDisplay({
      config: displayConfig(pipeline.broker, pipeline.dir.path, { SENSORPIPE_LIVE_SLOW_BYTES: '256KiB', SENSORPIPE_LIVE_HEARTBEAT: '1m', ...env }),
      registryPath: pipeline.registryPath,
      store: pipeline.store,
      logger: createLogger({ level: 'silent' }),
    });
    await display.feed.ready;
    return `${display.url.replace('http', 'ws')}/live`;
  };
  /** A sample's value from /metrics; a labelled counter has none until it is first counted (undefined). */
  const metric = async (name: string) => {
    const text = await (await fetch(`${display.url}/metrics`)).text();
    const value = new RegExp(`^${name.replace(/[{}()[\].*+?^$|\\]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1];
    return value === undefined ? undefined : Number(value);
  };
  const socketOf = (c: LiveTestClient) => (c.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
  const historyRequest = (id: string) => ({ type: 'subscribe', id, devices: ['dev-27'], history: { from: '-1h', maxPoints: POINTS } });

  it('queues it no more than the slow mark plus one frame, reads nothing more from it meanwhile, and answers every request once it reads', async () => {
    const url = await start({ SENSORPIPE_LIVE_STUCK_TIMEOUT: '1m' });
    const client = await LiveTestClient.connect(url);
    socketOf(client).pause();
    // As in the report: a request every 100 ms or so, nothing read.
    const requests = 16;
    for (let i = 0; i < requests; i++) {
      client.send(historyRequest(`h${i}`));
      await new Promise((r) => setTimeout(r, 100));
    }
    await new Promise((r) => setTimeout(r, 1500));
    const unsentMax = await metric('sensorpipe_display_live_unsent_bytes_max');
    // The welcome, then a `subscribed` and a history per request the server took up: it stopped taking them.
    const framesWhilePaused = await metric('sensorpipe_display_live_frames_total');

    socketOf(client).resume();
    await waitFor(() => client.frames.filter((f) => f.type === 'history').length === requests, 'every history, once it reads', 60_000, 100);
    const histories = client.frames.filter((f): f is Extract<LiveServerFrame, { type: 'history' }> => f.type === 'history');
    expect(histories.map((f) => f.id)).toEqual(Array.from({ length: requests }, (_, i) => `h${i}`)); // deferred, in order, none refused
    expect(client.frames.filter((f) => f.type === 'error')).toEqual([]);
    expect(histories[0]!.series.map((s) => s.points.length)).toEqual(Array.from({ length: METRICS }, () => POINTS));
    const frameBytes = Math.max(...histories.map((f) => JSON.stringify(f).length));
    expect(frameBytes).toBeGreaterThan(1_000_000);
    // Before: every answer queued (16 × ~1.8 MB, less what the kernel's socket buffers took).
    expect(unsentMax).toBeDefined();
    expect(unsentMax).toBeLessThanOrEqual(256 * 1024 + frameBytes + 64 * 1024);
    expect(framesWhilePaused).toBeLessThan(1 + 2 * requests);
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    await client.close();
  }, 90_000);

  it('disconnects it as slow when it stays over the mark, with no live readings involved', async () => {
    const url = await start({ SENSORPIPE_LIVE_STUCK_TIMEOUT: '2s' });
    const client = await LiveTestClient.connect(url);
    socketOf(client).pause();
    for (let i = 0; i < 10; i++) client.send(historyRequest(`h${i}`));
    await waitFor(async () => (await metric('sensorpipe_display_live_disconnects_total{reason="slow"}')) === 1, 'the client dropped as slow', 20_000, 200);
    socketOf(client).resume();
    expect((await client.closed).code).toBe(1006);
    expect(await metric('sensorpipe_display_live_unsent_bytes')).toBe(0);
  }, 40_000);
});
