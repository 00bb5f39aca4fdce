/**
 * Thin listeners around a stream-based broker: MQTT over TCP, over WebSocket (path /mqtt) and over TLS.
 * Each accepted connection is admitted (or closed at once), its incoming bytes guarded in place
 * (broker/packet-guard.ts), and the stream handed to `onConnection`. Sockets are tracked so that
 * shutdown can destroy stragglers.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
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
  /** Returns false to refuse the connection (it is closed before a byte is read). */
  admit(connection: GuardedConnection): boolean;
  release(connection: GuardedConnection): void;
  onViolation(connection: GuardedConnection, reason: GuardViolation): void;
  onConnection(stream: Duplex, connection: GuardedConnection): void;
}

export interface Listeners {
  ports: { mqtt: number; ws: number; tls?: number };
  /** Stops accepting new connections; resolves once every server has closed (after `destroyAll` at the latest). */
  stopAccepting(): Promise<void>;
  /** Destroys every connection still open. */
  destroyAll(): void;
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
  const sockets = new Set<Socket>();

  const accept = (transport: GuardedConnection['transport'], socket: Socket, stream: Duplex): void => {
    const connection: GuardedConnection = { address: socket.remoteAddress ?? 'unknown', transport };
    if (!options.admit(connection)) {
      socket.destroy();
      return;
    }
    sockets.add(socket);
    socket.once('close', () => {
      sockets.delete(socket);
      options.release(connection);
    });
    socket.on('error', () => {}); // reported through the stream; a reset must not crash the process
    socket.setNoDelay(true);
    guardIncoming(stream, options.maxPacketBytes, (reason) => options.onViolation(connection, reason));
    coalesceWrites(stream);
    options.onConnection(stream, connection);
  };

  const tcp = createNetServer((socket) => accept('tcp', socket, socket));
  const servers: (NetServer | HttpServer)[] = [tcp];
  const ports: Listeners['ports'] = { mqtt: await listen(tcp, options.mqttPort, options.host), ws: 0 };

  const http = createHttpServer((_req, res) => {
    res.writeHead(404).end();
  });
  // A WebSocket message carries one or more MQTT packets; the PacketGuard checks each packet, and this
  // bounds the frame ws itself buffers to the same size.
  const wss = new WebSocketServer({ server: http, path: '/mqtt', maxPayload: options.maxPacketBytes });
  wss.on('connection', (ws, req) => {
    const stream = createWebSocketStream(ws);
    stream.on('error', () => {});
    // mqtt-packet writes a packet in pieces (header, length, topic, payload) between cork and uncork; ws'
    // stream would send each piece as a WebSocket message of its own. Joined, what was corked (a packet,
    // or a turn's packets: coalesceWrites) is one message; receivers must not assume packets align with
    // messages [MQTT-6.0.0-2]. (The stream decodes strings, so every chunk is a Buffer; a server-side ws
    // is open already.)
    stream._writev = (chunks, callback) => ws.send(Buffer.concat(chunks.map(({ chunk }) => chunk as Buffer)), callback);
    accept('ws', req.socket, stream);
  });
  wss.on('error', () => {});
  servers.push(http);
  ports.ws = await listen(http, options.wsPort, options.host);

  if (options.tls) {
    const tls = createTlsServer({ cert: options.tls.cert, key: options.tls.key }, (socket) => accept('tls', socket, socket));
    tls.on('tlsClientError', () => {}); // a failed handshake is the client's problem
    servers.push(tls);
    ports.tls = await listen(tls, options.tlsPort, options.host);
  }

  return {
    ports,
    async stopAccepting() {
      wss.close();
      await Promise.all(servers.map(closeServer));
    },
    destroyAll() {
      for (const client of wss.clients) client.terminate();
      for (const socket of sockets) socket.destroy();
    },
  };
}
