/**
 * The broker's ops port (core/ops-http.ts, wired in broker/index.ts): /metrics, /healthz (503 once the
 * broker is shutting down), 404 elsewhere, and the port closed by the broker's shutdown.
 */
import { connect as netConnect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { makeFleet, type Fleet } from './helpers.ts';
import { within } from './raw.ts';

let fleet: Fleet;
let broker: TestBroker;
beforeAll(async () => {
  fleet = await makeFleet(['dev-a']);
  broker = await startTestBroker({ registryPath: fleet.registryPath });
});
afterAll(async () => {
  await broker?.close();
  await fleet?.dir.remove();
});

const base = () => broker.metricsUrl.replace(/\/metrics$/, '');

describe('the ops port', () => {
  it('serves Prometheus text on /metrics', async () => {
    const response = await fetch(`${base()}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    expect(await response.text()).toContain('sensorpipe_broker_connections ');
  });

  it('answers /healthz with 200 {ok: true} while running', async () => {
    const response = await fetch(`${base()}/healthz`);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ ok: true });
  });

  it('answers any other path with 404 NOT_FOUND', async () => {
    const response = await fetch(`${base()}/nope`);
    expect(response.status).toBe(404);
    expect(await response.json()).toMatchObject({ code: 'NOT_FOUND' });
  });

  it('answers /healthz with 503 {ok: false} once shutting down, and closes the port with the broker', async () => {
    const port = broker.broker.ports.metrics;
    // Connected before the shutdown starts; the request is sent in the same turn as the shutdown starts, so
    // the broker reads it once it is shutting down, before it gets to closing the port.
    const socket = netConnect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    let reply = '';
    socket.on('data', (chunk: Buffer) => (reply += chunk.toString()));
    socket.on('error', () => {});
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    const closed = broker.broker.close();
    await within(new Promise<void>((resolve) => socket.once('close', () => resolve())), 'the health answer');
    expect(reply.split('\r\n')[0]).toBe('HTTP/1.1 503 Service Unavailable');
    expect(reply.slice(reply.indexOf('\r\n\r\n'))).toContain('{"ok":false}');
    await closed;
    await expect(fetch(`${base()}/healthz`)).rejects.toThrow();
  });
});
