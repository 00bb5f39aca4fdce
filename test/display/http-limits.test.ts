/**
 * The display's HTTP port against hostile clients, on real sockets against a real pipeline: requests
 * of every odd shape (paths, percent-escapes, queries, methods, headers, upgrades) are answered 4xx and
 * never 5xx, and the process lives on; a request trickled a byte at a time is closed within the header
 * timeout; one address cannot hold more than its share of connections or /live clients, and closing one
 * frees a slot, while another address still gets in.
 *
 * Everything here is loopback; a second client address is 127.0.0.2 (Linux routes all of 127/8 to lo).
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.ts';
import { startDisplay, type RunningDisplay } from '../../display/index.ts';
import { LiveTestClient, displayConfig, startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { waitFor } from '../../harness/publisher.ts';

let pipeline: TestPipeline;

beforeAll(async () => {
  pipeline = await startTestPipeline({ devices: 2 });
  const now = Date.now();
  await pipeline.store.write(Array.from({ length: 50 }, (_, i) => ({ device: 'dev-0', metric: 'temperature', ts: now - 60_000 + i * 1000, value: i })));
}, 60_000);
afterAll(async () => pipeline?.close());

/** A display of its own on the test pipeline, with these options. */
async function displayWith(env: Record<string, string>): Promise<RunningDisplay> {
  const display = await startDisplay({
    config: displayConfig(pipeline.broker, pipeline.dir.path, env),
    registryPath: pipeline.registryPath,
    store: pipeline.store,
    logger: createLogger({ level: 'silent' }),
  });
  await display.feed.ready;
  return display;
}

/** An open TCP connection to the display that records what it is sent. */
async function openSocket(port: number, localAddress = '127.0.0.1'): Promise<{ socket: Socket; received: () => string; closed: Promise<number> }> {
  const socket = connect({ host: '127.0.0.1', port, localAddress });
  let data = '';
  socket.on('data', (chunk: Buffer) => (data += chunk.toString('latin1')));
  socket.on('error', () => {}); // a refused connection is reset: the test looks at `closed` and the data
  const opened = Date.now();
  const closed = new Promise<number>((resolve) => socket.on('close', () => resolve(Date.now() - opened)));
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  return { socket, received: () => data, closed };
}

/** Sends raw bytes and returns the status of the answer (undefined: closed without one). */
async function rawRequest(port: number, request: string | Buffer): Promise<number | undefined> {
  const { socket, received, closed } = await openSocket(port);
  socket.write(request);
  const timer = setTimeout(() => socket.destroy(), 5000);
  await closed;
  clearTimeout(timer);
  const status = /^HTTP\/1\.1 (\d{3})/.exec(received());
  return status === null ? undefined : Number(status[1]);
}

describe('requests of every shape', () => {
  const PATHS = [
    '/api/devices/%E0%A4%A/readings',
    '/api/devices/%/readings',
    '/api/devices/%zz',
    '/api/devices/%',
    '/api/devices/%%',
    '/api/devices/%C0%AF/readings',
    '/api/devices/%FF',
    '/api/devices/%ED%A0%80/readings', // a lone UTF-16 surrogate, UTF-8 encoded
    '/api/devices/%00',
    '/api/devices/dev-0%00/readings',
    '/api/devices/dev%2D0/readings',
    '/api/devices/%2F/readings',
    '/api/devices/..%2F..%2Fetc%2Fpasswd',
    '/api/devices/dev-0/readings/',
    '/api/devices//readings',
    '/api/devices/dev-0/readings/extra',
    '/api//devices',
    '/api/',
    '/api',
    '/api/devices/' + 'a'.repeat(4000),
    '//',
    '///api/devices',
    '//evil.example/api/devices',
    '//[/api/devices',
    '/..',
    '/../../etc/passwd',
    '/%2e%2e/%2e%2e/etc/passwd',
    '/\\..\\..\\windows',
    '/%',
    '/%zz',
    '/index.html%00',
    '/live',
    '/healthz/',
    '/metrics?%zz',
    '*',
    'http://[',
    'http://[::1]:99999/',
    'http://evil.example/api/devices',
    'mailto:someone',
    'api/devices',
  ];
  const QUERIES = [
    '%',
    '%zz=1',
    'from=%zz',
    '__proto__=1',
    'constructor=x',
    'toString=x',
    'hasOwnProperty=1',
    'from=-9007199254740991&to=9007199254740991',
    'from=9007199254740000&to=9007199254740991',
    'from=8640000000000001&to=8640000000001000',
    'from=-8640000000001000&to=-8640000000000001',
    'from=-9000000000000&to=-8999999990000',
    'every=99999999999999999999',
    'every=0.0000001s',
    'every=1&from=-20y',
    'every=1&maxPoints=10000',
    'maxPoints=-1',
    'maxPoints=1e3',
    'metrics=,,,',
    `metrics=${Array.from({ length: 40 }, (_, i) => `m${i}`).join(',')}`,
    'from=2026-13-45T99:99:99Z',
    'from=now-99999999999999999d',
    'from=-0ms',
    'fn=__proto__',
    'mode=__proto__',
    'format=csv&format=json',
    `token=${'x'.repeat(1000)}`,
    'status=online&status=offline',
    'q=%00',
    'site=%FF',
    'from=1&to=2&mode=raw&metrics=temperature',
  ];
  const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'PROPFIND', 'BREW', 'CONNECT', 'get'];
  const HEADERS = [
    'Authorization: Bearer',
    'Authorization: Basic %%%',
    `Authorization: Bearer ${'x'.repeat(8000)}`,
    'Origin: null',
    'Origin: http://[',
    'Origin: %',
    'Sec-WebSocket-Protocol: bearer.%%%, ,,',
    'Connection: Upgrade\r\nUpgrade: websocket',
    'Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==',
    'Connection: Upgrade\r\nUpgrade: h2c',
    'Content-Length: 5\r\n\r\nhello',
    'Transfer-Encoding: chunked\r\n\r\nzz\r\n',
    'Content-Length: -1',
    'Content-Length: 1\r\nContent-Length: 2',
    'Host: a\r\nHost: b',
    'Expect: 100-continue',
    'X-Bad\u0001Header: 1',
    `X-Long: ${'y'.repeat(20_000)}`,
  ];

  /** Deterministic odd paths: percent signs, hex digits, dots and slashes in random order. */
  function randomPaths(count: number): string[] {
    let seed = 42;
    const random = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
    const alphabet = ['%', '%', '%', 'e', '0', 'A', 'f', 'F', 'z', '/', '.', '-', '~', '?', '&', '=', '#', '\\', 'dev-0', 'readings', 'api', 'devices', '%C3', '%A9', '%E2%82'];
    return Array.from({ length: count }, () => `/api/devices/${Array.from({ length: 1 + Math.floor(random() * 12) }, () => alphabet[Math.floor(random() * alphabet.length)]).join('')}`);
  }

  const request = (method: string, target: string, headers: string[] = []) => {
    // A header entry may carry a body after its own blank line; the bytes after it are harmless.
    return `${[`${method} ${target} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close', ...headers].join('\r\n')}\r\n\r\n`;
  };

  it('answers every one of a few hundred odd requests with less than 500, and stays up', async () => {
    const port = pipeline.display.port;
    const cases: [string, string | Buffer][] = [];
    for (const path of PATHS) cases.push([`GET ${path}`, request('GET', path)]);
    for (const query of QUERIES) {
      for (const path of ['/api/devices', '/api/devices/dev-0', '/api/devices/dev-0/readings']) cases.push([`GET ${path}?${query}`, request('GET', `${path}?${query}`)]);
      cases.push([`GET csv ?${query}`, request('GET', `/api/devices/dev-0/readings?format=csv&${query}`)]);
    }
    for (const method of METHODS) for (const path of ['/api/devices', '/api/devices/%zz', '/live', '/']) cases.push([`${method} ${path}`, request(method, path)]);
    for (const header of HEADERS) for (const path of ['/api/devices', '/api/devices/dev-0/readings', '/live', '/%zz']) cases.push([`${path} with ${header.slice(0, 60)}`, request('GET', path, [header])]);
    for (const path of randomPaths(100)) cases.push([`GET ${path}`, request('GET', path)]);
    cases.push(['non-ASCII bytes in the target', Buffer.concat([Buffer.from('GET /api/devices/'), Buffer.from([0xc3, 0xa9, 0xff]), Buffer.from(' HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')])]);
    cases.push(['HTTP/0.9', 'GET /\r\n\r\n']);
    cases.push(['HTTP/1.0 without Host', 'GET /api/devices/%zz HTTP/1.0\r\n\r\n']);
    cases.push(['garbage', '\u0000\u0001\u0002 nonsense\r\n\r\n']);
    expect(cases.length).toBeGreaterThan(300);

    const serverErrors: string[] = [];
    /** Closed without an answer: only CONNECT (Node drops it, having no tunnel to offer), never a handler that threw. */
    const unanswered: string[] = [];
    const statuses = new Map<number | undefined, number>();
    for (let i = 0; i < cases.length; i += 8) {
      await Promise.all(
        cases.slice(i, i + 8).map(async ([what, bytes]) => {
          const status = await rawRequest(port, bytes);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          if (status !== undefined && status >= 500) serverErrors.push(`${status} ${what}`);
          if (status === undefined && !what.startsWith('CONNECT ')) unanswered.push(what);
        }),
      );
    }
    expect(serverErrors).toEqual([]);
    expect(unanswered).toEqual([]);
    expect(statuses.get(400)).toBeGreaterThan(50); // the malformed ones were answered as such
    const health = await fetch(`${pipeline.display.url}/healthz`);
    expect(health.status).toBe(200);
    const metrics = await (await fetch(`${pipeline.display.url}/metrics`)).text();
    expect(metrics).not.toMatch(/sensorpipe_display_http_requests_total\{[^}]*status="5\d\d"\}/);
  }, 120_000);

  it.each([
    ['/api/devices/%E0%A4%A/readings', 400, 'QUERY_INVALID'],
    ['/api/devices/%/readings', 400, 'QUERY_INVALID'],
    ['/api/devices/%zz', 400, 'QUERY_INVALID'],
    ['/api/devices/%ED%A0%80', 400, 'QUERY_INVALID'],
    ['/api/devices/dev%2D0', 200, undefined],
    ['/api/devices/dev-0/readings?format=csv&from=8640000000000001&to=8640000000001000', 400, 'QUERY_RANGE_INVALID'],
  ])('answers %s with %i %s', async (path, status, code) => {
    const response = await fetch(`${pipeline.display.url}${path}`);
    expect(response.status).toBe(status);
    const body = (await response.json()) as { code?: string; details?: { param?: string } };
    expect(body.code).toBe(code);
    if (code === 'QUERY_INVALID') expect(body.details?.param).toBe('device');
  });

  it('refuses a /live upgrade with a target that is no path, without falling over', async () => {
    const status = await rawRequest(
      pipeline.display.port,
      'GET // HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
    );
    expect(status).toBe(404);
    expect((await fetch(`${pipeline.display.url}/healthz`)).status).toBe(200);
  });
});

describe('slow requests', () => {
  let display: RunningDisplay;
  beforeAll(async () => {
    display = await displayWith({ SENSORPIPE_HTTP_HEADERS_TIMEOUT: '500ms', SENSORPIPE_HTTP_REQUEST_TIMEOUT: '1s', SENSORPIPE_HTTP_IDLE_TIMEOUT: '1s' });
  });
  afterAll(async () => display?.close());

  /** Writes `text` a byte every `everyMs` until the socket closes; resolves how long it stayed open. */
  const trickle = async (text: string, everyMs = 50) => {
    const { socket, received, closed } = await openSocket(display.port);
    let i = 0;
    const timer = setInterval(() => {
      if (!socket.destroyed && !socket.writableEnded) socket.write(text[i++ % text.length]!);
    }, everyMs);
    const guard = setTimeout(() => socket.destroy(), 20_000);
    const openMs = await closed;
    clearInterval(timer);
    clearTimeout(guard);
    return { openMs, received: received() };
  };

  it('closes a request whose headers trickle in, within the headers timeout', async () => {
    const { openMs, received } = await trickle('GET /api/devices HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ' + 'a'.repeat(10_000));
    expect(openMs).toBeLessThan(3000); // 500 ms, checked every 125 ms; Node's defaults keep it ~60-90 s
    expect(received).toMatch(/^HTTP\/1\.1 408/);
  });

  it('closes a connection that never sends a byte', async () => {
    const { closed } = await openSocket(display.port);
    expect(await closed).toBeLessThan(3000);
  });

  it('closes a request whose body trickles in, within the request timeout', async () => {
    const { socket, closed } = await openSocket(display.port);
    socket.write('GET /api/devices HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n');
    const timer = setInterval(() => socket.writable && socket.write('x'), 50);
    const guard = setTimeout(() => socket.destroy(), 20_000);
    const openMs = await closed;
    clearInterval(timer);
    clearTimeout(guard);
    expect(openMs).toBeLessThan(4000);
  });

  it('closes a connection whose client stopped reading a CSV export, after the idle timeout', async () => {
    // dev-1: 16 metrics × 10,000 points, about 8 MB of CSV, more than the kernel's socket buffers take.
    const base = Date.now() - 3_000_000;
    await pipeline.store.write(Array.from({ length: 10_000 }, (_, i) => Array.from({ length: 16 }, (_, m) => ({ device: 'dev-1', metric: `m${m}`, ts: base + i * 250, value: i + m / 100 }))).flat());
    const { socket, received, closed } = await openSocket(display.port);
    // Never reads: the receive window stays small, the server's writes stop once the kernel's buffers are full.
    socket.pause();
    socket.write(`GET /api/devices/dev-1/readings?from=${base}&mode=raw&maxPoints=10000&format=csv HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    await new Promise((resolve) => setTimeout(resolve, 4000));
    socket.resume();
    const guard = setTimeout(() => socket.destroy(), 20_000);
    await closed;
    clearTimeout(guard);
    // The export began, and was cut off after the 1 s idle timeout: no end of the chunked body
    // (Node's default has no such timeout: the server would wait for this reader for ever).
    expect(received()).toMatch(/^HTTP\/1\.1 200 /);
    expect(received()).not.toMatch(/\r\n0\r\n\r\n$/);
  }, 40_000);

  it('leaves /live connections alone: they outlive every HTTP timeout', async () => {
    const client = await LiveTestClient.connect(`${display.url.replace('http', 'ws')}/live`);
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect(client.ws.readyState).toBe(client.ws.OPEN);
    client.send({ type: 'subscribe', id: 'still-here', devices: ['dev-0'] });
    await client.next((f) => f.type === 'subscribed' && f.id === 'still-here');
    await client.close();
  });

  it('refuses contradicting timeouts at start, naming the variable', async () => {
    await expect(displayWith({ SENSORPIPE_HTTP_HEADERS_TIMEOUT: '20s', SENSORPIPE_HTTP_REQUEST_TIMEOUT: '10s' })).rejects.toMatchObject({
      code: 'CONFIG_INVALID',
      details: { variable: 'SENSORPIPE_HTTP_HEADERS_TIMEOUT' },
    });
  });
});

describe('connections per address', () => {
  let display: RunningDisplay;
  beforeAll(async () => {
    display = await displayWith({ SENSORPIPE_HTTP_MAX_CONNECTIONS_PER_ADDRESS: '5', SENSORPIPE_LIVE_MAX_CLIENTS_PER_ADDRESS: '3', SENSORPIPE_HTTP_HEADERS_TIMEOUT: '10s', SENSORPIPE_HTTP_REQUEST_TIMEOUT: '10s' });
  });
  afterAll(async () => display?.close());

  /** A kept-alive connection that has been answered once, so the server surely counts it. */
  const served = async (localAddress = '127.0.0.1') => {
    const connection = await openSocket(display.port, localAddress);
    connection.socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await waitFor(() => /^HTTP\/1\.1 200/.test(connection.received()) || connection.socket.destroyed, 'the answer', 5000, 10);
    return connection;
  };
  /** Whether a new connection from `localAddress` is served (true) or closed unanswered (false). */
  const admitted = async (localAddress = '127.0.0.1') => {
    const { socket, received, closed } = await openSocket(display.port, localAddress);
    socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
    const guard = setTimeout(() => socket.destroy(), 5000);
    await closed;
    clearTimeout(guard);
    return /^HTTP\/1\.1 200/.test(received());
  };

  it('closes connection N+1 from one address at once, serves another address, and frees a slot when one closes', async () => {
    const open = [];
    for (let i = 0; i < 5; i++) open.push(await served());
    expect(open.every((c) => /^HTTP\/1\.1 200/.test(c.received()))).toBe(true);
    expect(await admitted()).toBe(false);
    expect(await admitted('127.0.0.2')).toBe(true);

    open.pop()!.socket.destroy();
    await waitFor(() => admitted(), 'a slot after one closed', 5000, 50);
    for (const c of open) c.socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const metrics = await (await fetch(`${display.url}/metrics`)).text();
    expect(metrics).toMatch(/sensorpipe_display_connections_refused_total\{reason="per_address"\} [1-9]/);
  });

  it('refuses /live client N+1 from one address with 429, and takes it once one left', async () => {
    const url = `${display.url.replace('http', 'ws')}/live`;
    const clients = [];
    for (let i = 0; i < 3; i++) clients.push(await LiveTestClient.connect(url));
    await expect(LiveTestClient.connect(url)).rejects.toThrow('HTTP 429');
    const other = await LiveTestClient.connect(url, { localAddress: '127.0.0.2' });
    await clients.pop()!.close();
    await waitFor(async () => {
      try {
        clients.push(await LiveTestClient.connect(url));
        return true;
      } catch {
        return false;
      }
    }, 'a /live slot after one closed', 5000, 50);
    for (const c of [...clients, other]) await c.close();
    const metrics = await (await fetch(`${display.url}/metrics`)).text();
    expect(metrics).toMatch(/sensorpipe_display_live_refused_total\{code="LIMIT_EXCEEDED"\} [1-9]/);
  });
});
