/**
 * The pieces of the live hub that are pure logic, without sockets: what a client's subscriptions add
 * up to, conflation, and the fan-out of one tick to clients of every kind (whole fleet, one device,
 * filtered, `latest`, slow, stuck). The sockets are stand-ins that record what they were sent; the
 * real thing, end to end, is live.test.ts.
 */
import type { WebSocket } from 'ws';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LiveServerFrameSchema, type LiveReading, type LiveServerFrame } from '../../core/live.ts';
import { createLogger } from '../../core/logger.ts';
import { FanOut, conflate } from '../../display/fan-out.ts';
import { LiveClient, mergeSubscriptions, type Subscription } from '../../display/live-client.ts';
import { Liveness } from '../../display/liveness.ts';
import { createDisplayMetrics } from '../../display/metrics.ts';

const silent = createLogger({ level: 'silent' });

/** Records frames; `bufferedAmount` is set by the test to make the client slow. */
class RecordingSocket {
  readonly OPEN = 1;
  readyState = 1;
  bufferedAmount = 0;
  readonly sent: string[] = [];
  terminated = false;
  send(text: string): void {
    this.sent.push(text);
  }
  ping(): void {}
  terminate(): void {
    this.terminated = true;
    this.readyState = 3;
  }
  close(): void {
    this.readyState = 3;
  }
  frames(): LiveServerFrame[] {
    return this.sent.map((text) => LiveServerFrameSchema.parse(JSON.parse(text)));
  }
  readings(): LiveReading[] {
    return this.frames().flatMap((f) => (f.type === 'readings' ? f.items : []));
  }
}

const subscription = (devices: '*' | string[], metrics?: string[], latest = false): Subscription => ({
  devices: devices === '*' ? '*' : new Set(devices),
  metrics: metrics === undefined ? undefined : new Set(metrics),
  latest,
});

function setUp(options: { slowBytes?: number; stuckMs?: number } = {}) {
  const metrics = createDisplayMetrics();
  const liveness = new Liveness({ slowBytes: options.slowBytes ?? 1000, metrics });
  /** Clients the fan-out found drained after a slow spell (the hub then takes up their waiting frames). */
  const drained: LiveClient[] = [];
  const fanOut = new FanOut(liveness, {
    slowBytes: options.slowBytes ?? 1000,
    stuckMs: options.stuckMs ?? 10_000,
    metrics,
    drained: (client) => {
      client.slowSince = undefined;
      drained.push(client);
    },
  });
  const connect = (...subscriptions: Subscription[]) => {
    const socket = new RecordingSocket();
    const client = new LiveClient(socket as unknown as WebSocket, silent, metrics);
    subscriptions.forEach((s, i) => client.subscriptions.set(`s${i}`, s));
    client.changed();
    liveness.add(client);
    return { socket, client };
  };
  const counter = async (name: 'liveConflated' | 'liveDelivered') => (await metrics[name].get()).values[0]?.value ?? 0;
  return { metrics, liveness, fanOut, connect, counter, drained };
}

afterEach(() => vi.restoreAllMocks());

describe('mergeSubscriptions', () => {
  it.each([
    ['nothing', [], null],
    ['one with every metric', [subscription('*')], { metrics: undefined, latest: false }],
    ['two metric lists', [subscription(['d'], ['a']), subscription('*', ['b', 'a'])], { metrics: new Set(['a', 'b']), latest: false }],
    ['a list and every metric', [subscription(['d'], ['a']), subscription(['d'])], { metrics: undefined, latest: false }],
    ['every metric, then a list', [subscription(['d']), subscription(['d'], ['a'])], { metrics: undefined, latest: false }],
    ['all latest', [subscription('*', undefined, true), subscription(['d'], ['a'], true)], { metrics: undefined, latest: true }],
    ['latest and not', [subscription('*', undefined, true), subscription(['d'], ['a'])], { metrics: undefined, latest: false }],
  ])('merges %s', (_what, subscriptions, expected) => {
    expect(mergeSubscriptions(subscriptions)).toEqual(expected);
  });
});

describe('LiveClient', () => {
  it('answers per device from its subscriptions, and forgets the answers when they change', () => {
    const { connect } = setUp();
    const { client } = connect(subscription(['a', 'b'], ['t']));
    expect(client.effective('a')).toEqual({ metrics: new Set(['t']), latest: false });
    expect(client.effective('c')).toBeNull();
    expect([...client.explicitDevices()]).toEqual(['a', 'b']);
    expect(client.wildcard).toBe(false);
    expect(client.simple).toBe(false);

    client.subscriptions.set('all', subscription('*'));
    client.changed();
    expect(client.effective('c')).toEqual({ metrics: undefined, latest: false });
    expect(client.effective('a')).toEqual({ metrics: undefined, latest: false });
    expect(client.wildcard).toBe(true);

    client.subscriptions.delete('s0');
    client.changed();
    expect(client.simple).toBe(true);
    client.holds.set('a', []);
    client.changed();
    expect(client.simple).toBe(false);
  });
});

describe('conflate', () => {
  it('keeps the newest value per device and metric, and counts what it replaced', () => {
    const merged = new Map<string, LiveReading>();
    expect(conflate(merged, ['d', 1, 100, { t: 1, h: 10 }])).toBe(0);
    expect(conflate(merged, ['d', 2, 200, { t: 2 }])).toBe(1);
    expect(conflate(merged, ['e', 1, 150, { t: 5 }])).toBe(0);
    // An older catch-up reading replaces nothing: the newest value stays.
    expect(conflate(merged, ['d', 0, 50, { t: 0, h: 0 }])).toBe(0);
    expect([...merged.values()]).toEqual([
      ['d', 2, 200, { t: 2 }],
      ['d', 1, 100, { h: 10 }],
      ['e', 1, 150, { t: 5 }],
    ]);
    // The same timestamp again (a redelivery) is the newest too.
    expect(conflate(merged, ['d', 3, 200, { t: 3 }])).toBe(1);
    expect(merged.get('d\u0000t')).toEqual(['d', 3, 200, { t: 3 }]);
  });
});

describe('FanOut', () => {
  const r = (device: string, seq: number, values: Record<string, number>): LiveReading => [device, seq, 1_000 + seq, values];

  it('sends each client what it subscribed to, sharing one serialisation between the whole-fleet clients', async () => {
    const { fanOut, connect, counter } = setUp();
    const fleet1 = connect(subscription('*'));
    const fleet2 = connect(subscription('*'));
    const one = connect(subscription(['b']));
    const filtered = connect(subscription(['a'], ['t']));
    const latest = connect(subscription('*', undefined, true));
    fanOut.add('a', [r('a', 1, { t: 1, h: 1 }), r('a', 2, { t: 2, h: 2 })]);
    fanOut.add('b', [r('b', 1, { t: 9 })]);
    fanOut.add('a', [r('a', 3, { t: 3 })]);
    const stringify = vi.spyOn(JSON, 'stringify');
    fanOut.tick();
    // Each reading serialised once for every unfiltered client together; one frame each for the other two.
    expect(stringify).toHaveBeenCalledTimes(4 + 2);
    stringify.mockRestore();

    expect(fleet1.socket.sent).toHaveLength(1);
    expect(fleet1.socket.sent[0]).toBe(fleet2.socket.sent[0]);
    expect(fleet1.socket.readings()).toEqual([r('a', 1, { t: 1, h: 1 }), r('a', 2, { t: 2, h: 2 }), r('a', 3, { t: 3 }), r('b', 1, { t: 9 })]);
    expect(one.socket.readings()).toEqual([r('b', 1, { t: 9 })]);
    expect(filtered.socket.readings()).toEqual([r('a', 1, { t: 1 }), r('a', 2, { t: 2 }), r('a', 3, { t: 3 })]);
    expect(latest.socket.readings()).toEqual([r('a', 3, { t: 3 }), r('a', 2, { h: 2 }), r('b', 1, { t: 9 })]);
    expect(latest.socket.frames().every((f) => f.type !== 'readings' || f.conflated === undefined)).toBe(true); // asked for: nothing lost
    expect(await counter('liveDelivered')).toBe(4 + 4 + 1 + 3 + 3);

    // A tick with nothing new sends nothing.
    fanOut.tick();
    expect(fleet1.socket.sent).toHaveLength(1);
    expect(one.socket.sent).toHaveLength(1);
  });

  it('conflates a slow client to the newest values, says how many it lost once it drains, and leaves the others alone', async () => {
    const { fanOut, connect, counter } = setUp({ slowBytes: 1000 });
    const normal = connect(subscription(['a']));
    const slow = connect(subscription(['a']));
    slow.socket.bufferedAmount = 5000;
    for (let seq = 1; seq <= 10; seq++) {
      fanOut.add('a', [r('a', seq, { t: seq, h: seq * 10 })]);
      fanOut.tick();
    }
    expect(slow.socket.sent).toHaveLength(0);
    expect(normal.socket.readings()).toHaveLength(10);
    expect(await counter('liveConflated')).toBe(18); // 9 older values of each of two metrics

    slow.socket.bufferedAmount = 0;
    fanOut.tick();
    const frames = slow.socket.frames();
    expect(frames).toEqual([{ type: 'readings', items: [r('a', 10, { t: 10 }), r('a', 10, { h: 100 })], conflated: 18 }]);
    // Caught up: the next reading goes out as it is, with no count.
    fanOut.add('a', [r('a', 11, { t: 11, h: 110 })]);
    fanOut.tick();
    expect(slow.socket.frames()[1]).toEqual({ type: 'readings', items: [r('a', 11, { t: 11, h: 110 })] });
  });

  it('disconnects a client that stays slow for longer than stuckMs, as slow', async () => {
    const { fanOut, connect, liveness, metrics } = setUp({ slowBytes: 1000, stuckMs: 5000 });
    const stuck = connect(subscription('*'));
    const fine = connect(subscription('*'));
    stuck.socket.bufferedAmount = 5000;
    const clock = vi.spyOn(Date, 'now').mockReturnValue(1_000_000);
    fanOut.tick();
    clock.mockReturnValue(1_005_000);
    fanOut.tick();
    expect(stuck.socket.terminated).toBe(false);
    clock.mockReturnValue(1_005_001);
    fanOut.add('a', [r('a', 1, { t: 1 })]);
    fanOut.tick();
    expect(stuck.socket.terminated).toBe(true);
    expect(liveness.clients.has(stuck.client)).toBe(false);
    expect((await metrics.liveDisconnects.get()).values).toEqual([expect.objectContaining({ labels: { reason: 'slow' }, value: 1 })]);
    expect(fine.socket.readings()).toEqual([r('a', 1, { t: 1 })]);
  });

  it('holds status frames while a client is slow, the newest per device, and says once that it drained', () => {
    const { fanOut, connect, drained } = setUp({ slowBytes: 1000 });
    const { socket, client } = connect(subscription(['a', 'b']));
    socket.bufferedAmount = 5000;
    client.statuses.set('a', { type: 'status', device: 'a', state: 'offline', since: 5 });
    fanOut.tick();
    client.statuses.set('a', { type: 'status', device: 'a', state: 'online', since: 6 });
    client.statuses.set('b', { type: 'status', device: 'b', state: 'online', since: 7 });
    fanOut.tick();
    expect(socket.sent).toEqual([]);
    expect(drained).toEqual([]);
    socket.bufferedAmount = 0;
    fanOut.tick();
    fanOut.tick();
    expect(socket.frames()).toEqual([
      { type: 'status', device: 'a', state: 'online', since: 6 },
      { type: 'status', device: 'b', state: 'online', since: 7 },
    ]);
    expect(drained).toEqual([client]);
  });

  it('sends status frames first, once', () => {
    const { fanOut, connect } = setUp();
    const { socket, client } = connect(subscription(['a']));
    client.statuses.set('a', { type: 'status', device: 'a', state: 'online', since: 5 });
    fanOut.add('a', [r('a', 1, { t: 1 })]);
    fanOut.tick();
    fanOut.tick();
    expect(socket.frames().map((f) => f.type)).toEqual(['status', 'readings']);
  });
});
