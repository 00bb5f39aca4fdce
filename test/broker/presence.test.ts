/**
 * Device presence (broker/presence.ts): the online/offline state machine and the reason a device went
 * offline, which registry changes disconnect a device, and, on a real broker, the reasons the other
 * suites do not see: keepalive, shutdown (kept across the restart), and "last seen" on publish.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from '../../core/registry.ts';
import { topics } from '../../core/topics.ts';
import type { Principal } from '../../broker/acl.ts';
import { Presence, stillAuthorized, type StatusReason } from '../../broker/presence.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { connect, deviceOptions, inbox, makeFleet, type Fleet } from './helpers.ts';
import { connectPacket, rawConnect, within } from './raw.ts';

type Step =
  | ['connected', string, object, number]
  | ['ending', object, StatusReason]
  | ['disconnected', string, object, number, boolean, StatusReason | undefined];

describe('Presence', () => {
  const a1 = { name: 'first connection of a' };
  const a2 = { name: 'second connection of a' };
  const b1 = { name: 'connection of b' };
  const cases: [string, Step[], Record<string, { state: string; since: number } | undefined>, number][] = [
    ['a device that logged in is online', [['connected', 'a', a1, 10]], { a: { state: 'online', since: 10 } }, 1],
    ['a DISCONNECT makes it offline, "clean"', [['connected', 'a', a1, 10], ['disconnected', 'a', a1, 20, true, 'clean']], { a: { state: 'offline', since: 20 } }, 0],
    ['a lost socket: "socket"', [['connected', 'a', a1, 10], ['disconnected', 'a', a1, 20, false, 'socket']], { a: { state: 'offline', since: 20 } }, 0],
    ['a keepalive timeout: "keepalive"', [['connected', 'a', a1, 10], ['ending', a1, 'keepalive'], ['disconnected', 'a', a1, 20, false, 'keepalive']], { a: { state: 'offline', since: 20 } }, 0],
    ['the broker\'s reason wins over a DISCONNECT', [['connected', 'a', a1, 10], ['ending', a1, 'revoked'], ['disconnected', 'a', a1, 20, true, 'revoked']], { a: { state: 'offline', since: 20 } }, 0],
    [
      'a replaced connection that closes leaves the device online',
      [['connected', 'a', a1, 10], ['connected', 'a', a2, 15], ['disconnected', 'a', a1, 16, false, undefined]],
      { a: { state: 'online', since: 15 } },
      1,
    ],
    [
      'the reason of an ended connection does not stick to the next one',
      [['connected', 'a', a1, 10], ['ending', a1, 'shutdown'], ['disconnected', 'a', a1, 11, false, 'shutdown'], ['connected', 'a', a2, 12], ['disconnected', 'a', a2, 13, false, 'socket']],
      { a: { state: 'offline', since: 13 } },
      0,
    ],
    ['a connection that never was a device\'s changes nothing', [['disconnected', 'a', a1, 10, true, undefined]], { a: undefined }, 0],
    ['a disconnect under another device\'s id changes nothing', [['connected', 'a', a1, 10], ['disconnected', 'b', a1, 11, true, undefined]], { a: { state: 'online', since: 10 }, b: undefined }, 1],
    ['devices are apart', [['connected', 'a', a1, 10], ['connected', 'b', b1, 11], ['disconnected', 'a', a1, 12, true, 'clean']], { a: { state: 'offline', since: 12 }, b: { state: 'online', since: 11 } }, 1],
  ];

  for (const [name, steps, expected, online] of cases) {
    it(name, () => {
      const presence = new Presence<object>();
      for (const step of steps) {
        if (step[0] === 'connected') presence.connected(step[1], step[2], step[3]);
        else if (step[0] === 'ending') presence.ending(step[1], step[2]);
        else expect(presence.disconnected(step[1], step[2], step[3], step[4])).toBe(step[5]);
      }
      for (const [deviceId, state] of Object.entries(expected)) {
        if (state === undefined) expect(presence.state(deviceId)).toBeUndefined();
        else expect(presence.state(deviceId)).toMatchObject(state);
      }
      expect(presence.onlineCount).toBe(online);
      expect([...presence.online()].length).toBe(online);
    });
  }

  it('records when a device was last heard from, and only for a device it knows', () => {
    const presence = new Presence<object>();
    presence.seen('a', 5);
    expect(presence.state('a')).toBeUndefined();
    presence.connected('a', a1, 10);
    presence.seen('a', 42);
    expect(presence.state('a')).toEqual({ state: 'online', since: 10, lastSeen: 42 });
  });

  it('hands out copies of its state', () => {
    const presence = new Presence<object>();
    presence.connected('a', a1, 10);
    presence.state('a')!.state = 'offline';
    expect(presence.state('a')?.state).toBe('online');
  });
});

describe('stillAuthorized', () => {
  const registry = new Registry();
  registry.add('active');
  registry.add('revoked');
  registry.revoke('revoked');
  registry.add('rotated');
  const loggedIn = (id: string): Principal => ({ kind: 'device', deviceId: id, verifier: registry.get(id)!.mqtt.hash });
  const before = loggedIn('rotated');
  registry.rotate('rotated');
  const cases: [string, Principal | undefined, string, boolean][] = [
    ['an active device with the credentials it logged in with', loggedIn('active'), 'active', true],
    ['a revoked device', loggedIn('revoked'), 'revoked', false],
    ['a device removed from the registry', { kind: 'device', deviceId: 'gone', verifier: 'x' }, 'gone', false],
    ['a device whose credentials were rotated', before, 'rotated', false],
    ['a connection with no principal', undefined, 'active', false],
    ['a service on a device id', { kind: 'service', service: 'admin' }, 'active', false],
  ];
  for (const [name, principal, id, stays] of cases) {
    it(`${name}: ${stays ? 'stays' : 'goes'}`, () => expect(stillAuthorized(principal, registry.get(id))).toBe(stays));
  }
});

describe('on a real broker', () => {
  let fleet: Fleet;
  let data: TempDir;
  let broker: TestBroker;
  beforeAll(async () => {
    fleet = await makeFleet(['quiet', 'stopped', 'chatty']);
    data = await tempDir('sensorpipe-broker-presence-');
    broker = await startTestBroker({ registryPath: fleet.registryPath, dataDir: join(data.path, 'a'), keepaliveMinS: 1, keepaliveMaxS: 1 });
  });
  afterAll(async () => {
    await broker?.close();
    await fleet?.dir.remove();
    await data?.remove();
  });
  const online = (id: string) => within((async () => {
    while (broker.broker.deviceState(id)?.state !== 'online') await new Promise((r) => setTimeout(r, 20));
  })(), `${id} online`);

  it('publishes a silent device offline with reason "keepalive"', async () => {
    const display = await connect(broker.url, { ...broker.services.display, clientId: 'display-keepalive', keepalive: 1 });
    const box = inbox(display);
    await display.subscribeAsync(topics.status('quiet'), { qos: 1 });
    const raw = await rawConnect(broker.broker.ports.mqtt);
    raw.socket.write(connectPacket({ clientId: 'quiet', username: 'quiet', password: fleet.creds.get('quiet')!.mqttPassword, keepalive: 1 }));
    expect([...(await raw.bytes(4))]).toEqual([0x20, 0x02, 0x00, 0x00]);
    const offline = await box.waitFor((m) => m.payload.includes('"offline"'), 'offline status');
    expect(JSON.parse(offline.payload.toString())).toMatchObject({ device: 'quiet', state: 'offline', reason: 'keepalive' });
    await within(raw.closed, 'silent client closed');
    await display.endAsync();
  });

  it('records when a device was last heard from', async () => {
    const dev = await connect(broker.url, deviceOptions(fleet, 'chatty', { keepalive: 1 }));
    await online('chatty');
    const since = broker.broker.deviceState('chatty')!.since;
    await new Promise((r) => setTimeout(r, 30));
    await dev.publishAsync(topics.telemetry('chatty'), 'hello', { qos: 1 });
    const state = broker.broker.deviceState('chatty')!;
    expect(state).toMatchObject({ state: 'online', since });
    expect(state.lastSeen).toBeGreaterThanOrEqual(since + 30);
    await dev.endAsync();
  });

  it('leaves devices offline with reason "shutdown" when it stops, kept across the restart', async () => {
    const dev = await connect(broker.url, deviceOptions(fleet, 'stopped', { keepalive: 1 }));
    await online('stopped');
    await broker.close();
    dev.end(true);
    const next = await startTestBroker({ registryPath: fleet.registryPath, dataDir: join(data.path, 'a') });
    try {
      const admin = await connect(next.url, { ...next.services.admin, clientId: 'admin-after' });
      const box = inbox(admin);
      await admin.subscribeAsync(topics.status('stopped'), { qos: 1 });
      const status = await box.waitFor((m) => m.topic === topics.status('stopped'), 'retained status');
      expect(JSON.parse(status.payload.toString())).toMatchObject({ device: 'stopped', state: 'offline', reason: 'shutdown' });
      await admin.endAsync();
    } finally {
      await next.close();
    }
  });
});
