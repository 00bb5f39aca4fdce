/**
 * Connections that never finish their transport handshake (issue 15, item 5): on every listener the
 * connect timeout, the per-address cap and the login ban apply from the TCP accept, not from the end of
 * the TLS handshake or the WebSocket upgrade. Before, a silent socket on the TLS port stayed open for
 * minutes and one on the WebSocket port for ~90 s, neither counted towards the cap, and a banned address
 * still got a TLS handshake. The metrics port is a listener too.
 *
 * Each case uses an address of its own in 127/8 (Linux routes all of it to loopback), so the caps and the
 * ban of one case do not touch another.
 */
import { request } from 'node:http';
import { connect as tlsConnect, type ConnectionOptions } from 'node:tls';
import { WebSocket } from 'ws';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../core/topics.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { connect, deviceOptions, makeFleet, metricValue, type Fleet } from './helpers.ts';
import { connectPacket, rawConnect, within, type RawConnection } from './raw.ts';

const CONNECT_TIMEOUT_MS = 3_000;
const PER_ADDRESS = 5;
/** Long enough for the broker under load, far shorter than what the sockets were held before (90 s, minutes). */
const CLOSED_WITHIN_MS = CONNECT_TIMEOUT_MS + 12_000;

let fleet: Fleet;
let broker: TestBroker;
const opened: RawConnection[] = [];

/** A raw TCP connection that the test closes afterwards if the broker did not. */
async function raw(port: number, address: string): Promise<RawConnection> {
  const connection = await rawConnect(port, address);
  opened.push(connection);
  return connection;
}

/** The first bytes of a TLS ClientHello: a handshake record announcing 512 bytes, then only 9 of them. */
const HALF_CLIENT_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0x00, 0x01, 0x02]);

beforeAll(async () => {
  fleet = await makeFleet(['good', 'dev-x']);
  broker = await startTestBroker({
    registryPath: fleet.registryPath,
    tls: true,
    connectTimeoutMs: CONNECT_TIMEOUT_MS,
    maxConnectionsPerAddress: PER_ADDRESS,
    loginFailuresMax: 3,
    loginFailureWindowMs: 60_000,
    loginBanMs: 60_000,
  });
});

afterEach(() => {
  for (const connection of opened.splice(0)) connection.socket.destroy();
});

afterAll(async () => {
  await broker?.close();
  await fleet?.dir.remove();
});

const ports = () => broker.broker.ports;

describe('the connect timeout runs from the TCP accept, on every listener', () => {
  const cases: [string, () => Promise<RawConnection>][] = [
    ['a TCP connection to the TLS port that sends nothing', () => raw(ports().tls!, '127.0.0.11')],
    ['half a TLS ClientHello', async () => {
      const c = await raw(ports().tls!, '127.0.0.12');
      c.socket.write(HALF_CLIENT_HELLO);
      return c;
    }],
    ['a TCP connection to the WebSocket port that never sends its upgrade', () => raw(ports().ws, '127.0.0.13')],
    ['an upgrade request that never ends', async () => {
      const c = await raw(ports().ws, '127.0.0.14');
      c.socket.write('GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n');
      return c;
    }],
    ['a plain HTTP request on the WebSocket port, then silence on the kept-alive connection', async () => {
      const c = await raw(ports().ws, '127.0.0.15');
      c.socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
      return c;
    }],
    ['a TCP connection to the metrics port that sends nothing', () => raw(ports().metrics, '127.0.0.16')],
  ];
  for (const [name, open] of cases) {
    it(`closes ${name}`, async () => {
      const before = metricValue(await broker.metricsText(), 'sensorpipe_broker_drops_total', 'reason="connect_timeout"');
      const connection = await open();
      const mqttListener = connection.socket.remotePort !== ports().metrics;
      await within(connection.closed, `${name}: closed by the broker`, CLOSED_WITHIN_MS);
      // Counted as a drop on the MQTT listeners (the metrics port has no MQTT to time out).
      const after = metricValue(await broker.metricsText(), 'sensorpipe_broker_drops_total', 'reason="connect_timeout"');
      expect(after).toBe(mqttListener ? before + 1 : before);
    });
  }

  it('closes a WebSocket that completed its upgrade but sends no CONNECT', async () => {
    const ws = new WebSocket(broker.wsUrl, 'mqtt', { localAddress: '127.0.0.17' });
    const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()));
    ws.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    await within(closed, 'upgraded WebSocket closed', CLOSED_WITHIN_MS);
  });

  it('keeps clients that send their CONNECT in time, on every transport, past the deadline', async () => {
    const clients = [
      await connect(broker.url, deviceOptions(fleet, 'good', { keepalive: 60 })),
      await connect(broker.wsUrl, { ...broker.services.display, clientId: 'display-ws', keepalive: 60 }),
      await connect(broker.tlsUrl!, { ...broker.services.admin, clientId: 'admin-tls', ca: broker.ca, servername: 'localhost', keepalive: 60 }),
    ];
    await new Promise((resolve) => setTimeout(resolve, CONNECT_TIMEOUT_MS + 1_000));
    expect(clients.map((c) => c.connected)).toEqual([true, true, true]);
    await clients[0]!.publishAsync(topics.telemetry('good'), 'still here', { qos: 1 });
    await clients[2]!.publishAsync('some/topic', 'still here', { qos: 1 });
    for (const client of clients) await client.endAsync();
  });
});

describe('the per-address cap counts raw TCP connections on every listener', () => {
  it('refuses the next connection from an address holding the cap in unfinished TLS and WebSocket handshakes, on every port', async () => {
    const address = '127.0.0.21';
    // Five sockets that never finish their handshake: two on the TLS port, two on the WebSocket port, one on TCP.
    const holders = [
      await raw(ports().tls!, address),
      await raw(ports().tls!, address),
      await raw(ports().ws, address),
      await raw(ports().ws, address),
      await raw(ports().mqtt, address),
    ];
    holders[1]!.socket.write(HALF_CLIENT_HELLO);
    const before = metricValue(await broker.metricsText(), 'sensorpipe_broker_drops_total', 'reason="connection_limit_address"');
    for (const port of [ports().tls!, ports().ws, ports().mqtt]) {
      const extra = await raw(port, address);
      await within(extra.closed, `connection over the cap on port ${port} closed at once`, CONNECT_TIMEOUT_MS);
      expect(extra.received().length).toBe(0);
    }
    // The holders were still open when the extra ones were refused: the cap, not the timeout, refused them.
    expect(holders.every((h) => !h.socket.destroyed)).toBe(true);
    expect(metricValue(await broker.metricsText(), 'sensorpipe_broker_drops_total', 'reason="connection_limit_address"')).toBe(before + 3);
    // Another address is not affected.
    const client = await connect(broker.url, deviceOptions(fleet, 'good'));
    await client.endAsync();
  });

  it('holds no more than the cap of 300 silent sockets from one address on the TLS and WebSocket ports', async () => {
    const address = '127.0.0.22';
    const sockets = await Promise.all(Array.from({ length: 300 }, (_, i) => raw(i % 2 === 0 ? ports().tls! : ports().ws, address).catch(() => undefined)));
    // Give the broker a moment to refuse the excess, then count what it still holds.
    await within((async () => {
      while (sockets.filter((s) => s !== undefined && !s.socket.destroyed).length > PER_ADDRESS) await new Promise((r) => setTimeout(r, 50));
    })(), 'excess sockets refused', CONNECT_TIMEOUT_MS);
    expect(sockets.filter((s) => s !== undefined && !s.socket.destroyed).length).toBeLessThanOrEqual(PER_ADDRESS);
  });
});

describe('the metrics port has caps of its own', () => {
  it('closes a ninth connection from one address at once', async () => {
    const address = '127.0.0.41';
    const holders = await Promise.all(Array.from({ length: 8 }, () => raw(ports().metrics, address)));
    const extra = await raw(ports().metrics, address);
    await within(extra.closed, 'connection over the metrics port\'s cap closed at once', CONNECT_TIMEOUT_MS);
    expect(holders.every((h) => !h.socket.destroyed)).toBe(true);
    // Another address is still answered.
    expect((await fetch(broker.metricsUrl)).status).toBe(200);
  });
});

describe('a banned address is refused at the TCP accept, on every listener', () => {
  const address = '127.0.0.31';

  beforeAll(async () => {
    // Three failed logins (the limit here) from the address get it banned.
    for (let i = 0; i < 3; i++) {
      const c = await rawConnect(ports().mqtt, address);
      c.socket.write(connectPacket({ clientId: 'dev-x', username: 'dev-x', password: 'guess' }));
      await within(c.closed, 'failed login closed');
    }
    const c = await rawConnect(ports().mqtt, address);
    await within(c.closed, 'banned connection closed');
    expect(metricValue(await broker.metricsText(), 'sensorpipe_broker_banned_addresses')).toBe(1);
  });

  it('gets no TLS handshake on the TLS port', async () => {
    const before = metricValue(await broker.metricsText(), 'sensorpipe_broker_drops_total', 'reason="banned_address"');
    // tls.connect takes net.connect's options too (its typings omit localAddress).
    const options: ConnectionOptions & { localAddress: string } = { port: ports().tls!, host: '127.0.0.1', localAddress: address, ca: broker.ca, servername: 'localhost' };
    const socket = tlsConnect(options);
    let secured = false;
    socket.once('secureConnect', () => (secured = true));
    socket.on('error', () => {});
    await within(new Promise((resolve) => socket.once('close', resolve)), 'TLS connection from a banned address closed');
    expect(secured).toBe(false);
    expect(metricValue(await broker.metricsText(), 'sensorpipe_broker_drops_total', 'reason="banned_address"')).toBe(before + 1);
  });

  it('gets no byte back on the WebSocket port, even for a complete upgrade request', async () => {
    const c = await raw(ports().ws, address);
    c.socket.write('GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n');
    await within(c.closed, 'WebSocket connection from a banned address closed');
    expect(c.received().length).toBe(0);
  });

  it('gets no answer from the metrics port', async () => {
    const outcome = await new Promise<string>((resolve) => {
      const req = request({ host: '127.0.0.1', port: ports().metrics, path: '/healthz', localAddress: address }, (res) => {
        res.resume();
        resolve(`answered ${res.statusCode}`);
      });
      req.on('error', () => resolve('refused'));
      req.end();
    });
    expect(outcome).toBe('refused');
    // Another address still is answered.
    expect((await fetch(broker.metricsUrl.replace('/metrics', '/healthz'))).status).toBe(200);
  });
});

describe('slots', () => {
  it('are all given back: once every connection above has closed, the broker counts none open', async () => {
    for (const connection of opened.splice(0)) connection.socket.destroy();
    await within((async () => {
      while (metricValue(await broker.metricsText(), 'sensorpipe_broker_connections') !== 0) await new Promise((r) => setTimeout(r, 100));
    })(), 'no connection counted open', CLOSED_WITHIN_MS);
  });
});
