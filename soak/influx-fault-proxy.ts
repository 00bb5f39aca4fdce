/**
 * A fault injector between ingest and influxd. Ingest's SENSORPIPE_INFLUX_URL points here; the soak
 * switches it, for a seeded time, from forwarding to one of the ways a store fails while it stays up:
 *
 *   ingest ──TCP──▶ link ──TCP──▶ responder (HTTP) ──HTTP──▶ influxd
 *                    │                 ├─ forward  (no fault)
 *                    │                 ├─ '500'    answers 500 at once, like an influxd that cannot write
 *                    │                 ├─ '429'    answers 429 with Retry-After, like a rate-limited 2.x/Cloud
 *                    │                 └─ 'hang'   reads the request and never answers: the server is wedged;
 *                    │                             requests it took while wedged are never answered
 *                    └─ 'partition'   both sides alive, nothing gets through: new connections are accepted
 *                                     and go nowhere, bytes on open ones are held in either direction.
 *                                     When it heals they are delivered, as TCP retransmits them, to
 *                                     whoever is still there (ingest gives up on a write after 10 s).
 *
 * The partition is a TCP relay because it must hold bytes mid-exchange (a response on its way back, a
 * request half sent); the HTTP faults need requests told apart, so they sit behind it in an HTTP server.
 * A connection influxd refuses (it is down) is closed on ingest the same way, not answered with a 502:
 * the proxy must not change what a failure looks like.
 */
import { request, createServer as createHttpServer, Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

export const INFLUX_FAULTS = ['500', '429', 'hang', 'partition'] as const;
export type InfluxFault = (typeof INFLUX_FAULTS)[number];

export interface InfluxLinkCounts {
  /** Requests passed on to influxd, and answered by it. */
  forwarded: number;
  answered500: number;
  answered429: number;
  /** Requests taken and never answered (hang). */
  hung: number;
  /** Connections opened during a partition, and bytes held by one (either direction). */
  partitionedConnections: number;
  heldBytes: number;
  /** Requests whose connection to influxd failed (refused: influxd is down); the client's was closed. */
  upstreamFailed: number;
}

export interface InfluxFaultProxy {
  /** What ingest uses as its InfluxDB URL. */
  url: string;
  readonly fault: InfluxFault | undefined;
  /** Starts a fault (ending the one before), or ends it with `undefined`. */
  set(fault: InfluxFault | undefined): void;
  /** Running totals (copy them before and after a fault for what it did). */
  readonly counts: Readonly<InfluxLinkCounts>;
  close(): Promise<void>;
}

/** One ingest connection through the link, and what a partition holds of it. */
interface Relay {
  client: Socket;
  upstream: Socket | undefined;
  toUpstream: Buffer[];
  toClient: Buffer[];
}

export async function startInfluxFaultProxy(influxUrl: string, options: { retryAfterSeconds?: number } = {}): Promise<InfluxFaultProxy> {
  const target = new URL(influxUrl);
  const retryAfter = String(options.retryAfterSeconds ?? 2);
  let fault: InfluxFault | undefined;
  const counts: InfluxLinkCounts = { forwarded: 0, answered500: 0, answered429: 0, hung: 0, partitionedConnections: 0, heldBytes: 0, upstreamFailed: 0 };
  const agent = new Agent({ keepAlive: true, maxSockets: 32 });
  const hung = new Set<ServerResponse>();

  const answer = (req: IncomingMessage, res: ServerResponse, status: number, headers: Record<string, string>) => {
    req.resume();
    req.once('end', () => {
      res.writeHead(status, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify({ error: `soak: injected ${status}` }));
    });
  };

  const forward = (req: IncomingMessage, res: ServerResponse) => {
    const upstream = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers, agent }, (reply) => {
      counts.forwarded++;
      res.writeHead(reply.statusCode ?? 502, reply.headers);
      reply.pipe(res);
    });
    let abandoned = false;
    upstream.on('error', () => {
      if (abandoned) return;
      counts.upstreamFailed++;
      res.socket?.destroy();
    });
    // Ingest gave up (its timeout): so does the request to influxd.
    res.on('close', () => {
      if (res.writableFinished) return;
      abandoned = true;
      upstream.destroy();
    });
    req.pipe(upstream);
  };

  const responder = createHttpServer((req, res) => {
    switch (fault) {
      case '500':
        counts.answered500++;
        answer(req, res, 500, {});
        return;
      case '429':
        counts.answered429++;
        answer(req, res, 429, { 'retry-after': retryAfter });
        return;
      case 'hang':
        counts.hung++;
        req.resume();
        hung.add(res);
        res.on('close', () => hung.delete(res));
        return;
      default:
        forward(req, res);
    }
  });
  // No request or keep-alive timeouts of its own: a hung request waits for ingest to give up.
  responder.requestTimeout = 0;
  responder.headersTimeout = 0;
  responder.keepAliveTimeout = 0;
  await listen(responder);
  const responderPort = (responder.address() as AddressInfo).port;

  const relays = new Set<Relay>();
  const partitioned = () => fault === 'partition';
  const drop = (relay: Relay) => {
    relays.delete(relay);
    relay.client.destroy();
    relay.upstream?.destroy();
  };
  const connectUpstream = (relay: Relay) => {
    const upstream = connect(responderPort, '127.0.0.1');
    relay.upstream = upstream;
    upstream.setNoDelay(true);
    upstream.on('data', (chunk: Buffer) => {
      if (partitioned()) {
        relay.toClient.push(chunk);
        counts.heldBytes += chunk.length;
      } else relay.client.write(chunk);
    });
    upstream.on('error', () => drop(relay));
    upstream.on('close', () => drop(relay));
    for (const chunk of relay.toUpstream.splice(0)) upstream.write(chunk);
  };
  const link: Server = createServer((client) => {
    const relay: Relay = { client, upstream: undefined, toUpstream: [], toClient: [] };
    relays.add(relay);
    client.setNoDelay(true);
    client.on('data', (chunk: Buffer) => {
      if (partitioned() || relay.upstream === undefined) {
        relay.toUpstream.push(chunk);
        counts.heldBytes += chunk.length;
      } else relay.upstream.write(chunk);
    });
    client.on('error', () => drop(relay));
    client.on('close', () => drop(relay));
    if (partitioned()) counts.partitionedConnections++;
    else connectUpstream(relay);
  });
  await listen(link);

  /** The partition heals: what was held goes through, connections made meanwhile reach the responder. */
  const heal = () => {
    for (const relay of relays) {
      if (relay.upstream === undefined) connectUpstream(relay);
      else for (const chunk of relay.toUpstream.splice(0)) relay.upstream.write(chunk);
      for (const chunk of relay.toClient.splice(0)) relay.client.write(chunk);
    }
  };

  return {
    url: `http://127.0.0.1:${(link.address() as AddressInfo).port}`,
    get fault() {
      return fault;
    },
    set(next) {
      const wasPartitioned = partitioned();
      fault = next;
      if (wasPartitioned && !partitioned()) heal();
    },
    counts,
    async close() {
      fault = undefined;
      for (const relay of [...relays]) drop(relay);
      for (const res of hung) res.socket?.destroy();
      agent.destroy();
      responder.closeAllConnections();
      await Promise.all([close(link), close(responder)]);
    },
  };
}

function listen(server: Server | ReturnType<typeof createHttpServer>): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
}

function close(server: Server | ReturnType<typeof createHttpServer>): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
