/**
 * What one client may hold of the display's port, as the broker limits its MQTT listeners: how long it
 * may take to send a request (Node's defaults let a request trickled a byte at a time hold its socket
 * for over a minute), how long a connection may sit with nothing moving either way, and how many
 * connections may be open, in total and from one address, HTTP and /live together. The counts are taken
 * at the TCP connection, before anything is read: a connection over a cap is closed at once.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { SensorpipeError } from '../core/errors.ts';
import type { DisplayMetrics } from './metrics.ts';

export interface ConnectionLimits {
  /** A request's headers must have arrived this long after it began (SENSORPIPE_HTTP_HEADERS_TIMEOUT). */
  headersTimeoutMs: number;
  /** A request must have arrived in full this long after it began (SENSORPIPE_HTTP_REQUEST_TIMEOUT). */
  requestTimeoutMs: number;
  /** A connection on which no byte moves this long is closed (SENSORPIPE_HTTP_IDLE_TIMEOUT). */
  idleTimeoutMs: number;
  /** Open connections from one address (SENSORPIPE_HTTP_MAX_CONNECTIONS_PER_ADDRESS). */
  maxConnectionsPerAddress: number;
  /** Open connections in total (SENSORPIPE_HTTP_MAX_CONNECTIONS). */
  maxConnections: number;
}

/** How long a kept-alive connection may wait for its next request (Node's default, said out loud). */
const KEEP_ALIVE_MS = 5000;

/** Throws CONFIG_INVALID for limits that contradict each other (Node itself would throw a RangeError). */
export function checkConnectionLimits(limits: ConnectionLimits): void {
  if (limits.headersTimeoutMs > limits.requestTimeoutMs) {
    throw new SensorpipeError('CONFIG_INVALID', 'SENSORPIPE_HTTP_HEADERS_TIMEOUT must not be longer than SENSORPIPE_HTTP_REQUEST_TIMEOUT (the headers are part of the request)', {
      variable: 'SENSORPIPE_HTTP_HEADERS_TIMEOUT',
      flag: 'http-headers-timeout',
    });
  }
}

/** The display's HTTP server, with the limits applied (checked with checkConnectionLimits first). */
export function createLimitedServer(onRequest: (request: IncomingMessage, response: ServerResponse) => void, limits: ConnectionLimits, metrics: DisplayMetrics): Server {
  checkConnectionLimits(limits);
  const server = createServer(
    {
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: Math.min(KEEP_ALIVE_MS, limits.requestTimeoutMs),
      // Node checks the two timeouts above only this often (30 s by default): a quarter of the shorter
      // one keeps a slow request's socket within a little more than its timeout.
      connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(limits.headersTimeoutMs / 4))),
    },
    onRequest,
  );
  // No byte in either direction for this long: a client that stopped reading a response. /live sockets
  // are exempt (ws clears the timeout on upgrade); their heartbeat and slow-client rule apply instead.
  server.timeout = limits.idleTimeoutMs;

  let total = 0;
  const perAddress = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress;
    if (address === undefined) {
      socket.destroy(); // already gone
      return;
    }
    // The total first, as the broker does: many addresses together may not exhaust the process's
    // file descriptors (or starve the /live clients already open) any more than one address may.
    if (total >= limits.maxConnections) {
      metrics.connectionsRefused.inc({ reason: 'total' });
      socket.destroy();
      return;
    }
    const open = perAddress.get(address) ?? 0;
    if (open >= limits.maxConnectionsPerAddress) {
      metrics.connectionsRefused.inc({ reason: 'per_address' });
      socket.destroy();
      return;
    }
    perAddress.set(address, open + 1);
    total++;
    socket.once('close', () => {
      total--;
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left > 0) perAddress.set(address, left);
      else perAddress.delete(address);
    });
  });
  return server;
}
