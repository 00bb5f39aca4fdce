/**
 * Thin listeners around a stream-based broker: MQTT over TCP, over WebSocket (path /mqtt) and over TLS.
 *
 * Every listener is a plain TCP server, and a connection is admitted (or closed at once: ban, caps) as
 * its TCP connection is accepted, before a byte is read: before the TLS handshake, before the HTTP
 * request that asks for the WebSocket upgrade. From that accept it has one deadline, the connect
 * timeout, to deliver a CONNECT, whatever the transport (broker/index.ts clears it when aedes sees the
 * CONNECT). Only an admitted socket is handed to Node's TLS or HTTP code (a TLSSocket, or a
 * non-listening http.Server), so a banned address never costs a handshake, and a socket that stalls in
 * the handshake or never sends its upgrade counts towards the caps and is closed on time. (Listening
 * with tls.createServer or http.createServer, as before, admitted only after the handshake or upgrade:
 * such sockets were held uncounted, for about 90 s on the WebSocket port and over 200 s on the TLS port.)
 *
 * The stream MQTT flows on is guarded in place (broker/packet-guard.ts) and handed to `onConnection`.
 * Sockets are tracked so that shutdown can destroy stragglers.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { createSecureContext, TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import { WebSocketServer, createWebSocketStream } from 'ws';
import { coalesceWrites } from './coalesce-writes.ts';
import { guardIncoming, type GuardViolation, type GuardedConnection } from './packet-guard.ts';

export interface ListenerOptions {
  host: string;
  mqttPort: number;
  wsPort: number;
  tlsPort: number;
  tls?: { cert: Buffer; key: Buffer } | undefined;
  maxPacketBytes: number;
  /** Time from a connection's TCP accept to its CONNECT (TLS handshake and WebSocket upgrade included). */
  connectTimeoutMs: number;
  /** Returns false to refuse the connection (it is closed at its TCP accept, before a byte is read). */
  admit(connection: GuardedConnection): boolean;
  release(connection: GuardedConnection): void;
  onViolation(connection: GuardedConnection, reason: GuardViolation): void;
  /** The connection was closed for not delivering its CONNECT in time. */
  onConnectTimeout(connection: GuardedConnection): void;
  onConnection(stream: Duplex, connection: GuardedConnection): void;
}

export interface Listeners {
  ports: { mqtt: number; ws: number; tls?: number };
  /** Stops accepting new connections; resolves once every server has closed (after `destroyAll` at the latest). */
  stopAccepting(): Promise<void>;
  /** Destroys every connection still open. */
  destroyAll(): void;
}

/** Connect deadlines of connections whose CONNECT has not arrived yet. */
const connectDeadlines = new WeakMap<GuardedConnection, NodeJS.Timeout>();

/** The connection's CONNECT has arrived: its connect deadline no longer applies. */
export function connectArrived(connection: GuardedConnection | undefined): void {
  if (connection === undefined) return;
  clearTimeout(connectDeadlines.get(connection));
  connectDeadlines.delete(connection);
}

/** The URLs clients use for the bound ports; a wildcard host is reached on loopback. */
export function brokerUrls(host: string, ports: Listeners['ports'] & { metrics: number }): { mqtt: string; ws: string; tls?: string; metrics: string } {
  const h = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  const urls: { mqtt: string; ws: string; tls?: string; metrics: string } = { mqtt: `mqtt://${h}:${ports.mqtt}`, ws: `ws://${h}:${ports.ws}/mqtt`, metrics: `http://${h}:${ports.metrics}/metrics` };
  if (ports.tls !== undefined) urls.tls = `mqtts://${h}:${ports.tls}`;
  return urls;
}

function listen(server: NetServer | HttpServer, port: number, host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as AddressInfo).port);
    });
  });
}

function closeServer(server: NetServer | HttpServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

export async function openListeners(options: ListenerOptions): Promise<Listeners> {
  /** Every admitted TCP socket, with the stream wrapped around it (a TLSSocket), if any. */
  const sockets = new Map<Socket, Duplex | undefined>();
  const destroy = (socket: Socket): void => {
    sockets.get(socket)?.destroy();
    socket.destroy();
  };

  /** Admits a TCP connection as it is accepted, or closes it; starts its connect deadline. */
  const admitSocket = (transport: GuardedConnection['transport'], socket: Socket): GuardedConnection | undefined => {
    const connection: GuardedConnection = { address: socket.remoteAddress ?? 'unknown', transport };
    if (!options.admit(connection)) {
      socket.destroy();
      return undefined;
    }
    sockets.set(socket, undefined);
    const deadline = setTimeout(() => {
      connectDeadlines.delete(connection);
      options.onConnectTimeout(connection);
      destroy(socket);
    }, options.connectTimeoutMs);
    connectDeadlines.set(connection, deadline);
    socket.once('close', () => {
      clearTimeout(deadline);
      sockets.delete(socket);
      options.release(connection);
    });
    socket.on('error', () => {}); // reported through the stream; a reset must not crash the process
    socket.setNoDelay(true);
    return connection;
  };

  /** The stream MQTT flows on: guarded, writes coalesced, handed to the broker. */
  const handOver = (stream: Duplex, connection: GuardedConnection): void => {
    guardIncoming(stream, options.maxPacketBytes, (reason) => options.onViolation(connection, reason));
    coalesceWrites(stream);
    options.onConnection(stream, connection);
  };

  const tcp = createNetServer((socket) => {
    const connection = admitSocket('tcp', socket);
    if (connection !== undefined) handOver(socket, connection);
  });
  const servers: NetServer[] = [tcp];
  const ports: Listeners['ports'] = { mqtt: await listen(tcp, options.mqttPort, options.host), ws: 0 };

  // WebSocket: the HTTP server never listens; it is given admitted sockets only.
  const http = createHttpServer((_req, res) => {
    res.writeHead(404).end();
  });
  // A WebSocket message carries one or more MQTT packets; the PacketGuard checks each packet, and this
  // bounds the frame ws itself buffers to the same size.
  const wss = new WebSocketServer({ server: http, path: '/mqtt', maxPayload: options.maxPacketBytes });
  const wsConnections = new WeakMap<Socket, GuardedConnection>();
  wss.on('connection', (ws, req) => {
    const connection = wsConnections.get(req.socket);
    if (connection === undefined) {
      ws.terminate(); // not a socket of ours: cannot happen, the HTTP server does not listen
      return;
    }
    const stream = createWebSocketStream(ws);
    stream.on('error', () => {});
    // mqtt-packet writes a packet in pieces (header, length, topic, payload) between cork and uncork; ws'
    // stream would send each piece as a WebSocket message of its own. Joined, what was corked (a packet,
    // or a turn's packets: coalesceWrites) is one message; receivers must not assume packets align with
    // messages [MQTT-6.0.0-2]. (The stream decodes strings, so every chunk is a Buffer; a server-side ws
    // is open already.)
    stream._writev = (chunks, callback) => ws.send(Buffer.concat(chunks.map(({ chunk }) => chunk as Buffer)), callback);
    handOver(stream, connection);
  });
  wss.on('error', () => {});
  const wsListener = createNetServer((socket) => {
    const connection = admitSocket('ws', socket);
    if (connection === undefined) return;
    wsConnections.set(socket, connection);
    http.emit('connection', socket); // documented for http.Server: the way to give it a connection
  });
  servers.push(wsListener);
  ports.ws = await listen(wsListener, options.wsPort, options.host);

  if (options.tls) {
    const secureContext = createSecureContext({ cert: options.tls.cert, key: options.tls.key });
    const tlsListener = createNetServer((socket) => {
      const connection = admitSocket('tls', socket);
      if (connection === undefined) return;
      const secure = new TLSSocket(socket, { isServer: true, secureContext });
      sockets.set(socket, secure);
      secure.on('error', () => {}); // a failed handshake is the client's problem; the socket closes
      secure.once('secure', () => handOver(secure, connection));
    });
    servers.push(tlsListener);
    ports.tls = await listen(tlsListener, options.tlsPort, options.host);
  }

  return {
    ports,
    async stopAccepting() {
      wss.close();
      await Promise.all(servers.map(closeServer));
    },
    destroyAll() {
      for (const client of wss.clients) client.terminate();
      for (const socket of [...sockets.keys()]) destroy(socket);
    },
  };
}

export interface OpsPortLimits {
  isBanned(address: string): boolean;
  /** How long one connection may stay open at most. */
  lifetimeMs: number;
  maxConnections: number;
  maxConnectionsPerAddress: number;
}

/**
 * The metrics port (/metrics, /healthz) gets the same gate at accept as the MQTT listeners: a banned
 * address is closed at once, connections are capped in all and per address (its own small caps: a
 * scraper needs one), and each one is closed after `lifetimeMs`, whatever it sends (a scrape takes
 * milliseconds; Node's own HTTP timeouts held a silent socket for up to 90 s).
 */
export function guardOpsPort(server: NetServer | HttpServer, limits: OpsPortLimits): void {
  let total = 0;
  const perAddress = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? 'unknown';
    const fromAddress = perAddress.get(address) ?? 0;
    if (limits.isBanned(address) || total >= limits.maxConnections || fromAddress >= limits.maxConnectionsPerAddress) {
      socket.destroy();
      return;
    }
    total++;
    perAddress.set(address, fromAddress + 1);
    const deadline = setTimeout(() => socket.destroy(), limits.lifetimeMs);
    socket.once('close', () => {
      clearTimeout(deadline);
      total--;
      const left = (perAddress.get(address) ?? 1) - 1;
      if (left <= 0) perAddress.delete(address);
      else perAddress.set(address, left);
    });
  });
}
