/**
 * The soak's webhook receivers: HTTP servers on loopback that the alerts process POSTs its events to.
 * Every body is outside input: its signature (x-sensorpipe-signature, HMAC-SHA256 with the webhook's
 * secret) and its shape (AlertEventSchema) are checked, and one that fails is counted, not recorded.
 * A delivery is recorded only once its 2xx answer has been written: what the sender saw as delivered.
 *
 * `healthy` answers 200 at once, always. `flapping`, from a seeded random draw per request, answers 200
 * most of the time, but sometimes 500, sometimes only after 1–3 s (well inside the webhook's timeout, so
 * the sender sees the 200), and sometimes drops the connection after reading the request (no answer).
 * `down(ms)` (the `webhook-down` strike) closes its listening socket and every open connection, so
 * connections are refused, and listens on the same port again afterwards. `calm()` ends the misbehaviour
 * for the drain at the end of the soak.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { AlertEventSchema } from '../core/alerts.ts';
import { prng } from '../firmware-sim/signals.ts';
import type { Delivery } from './reconcile-alerts.ts';

const MAX_BODY_BYTES = 64 * 1024;

export interface ReceiverCounts {
  requests: number;
  answered200: number;
  answered500: number;
  slow: number;
  dropped: number;
  invalid: number;
  /** Connections refused while down are not seen here; the sender counts them (its failures metric). */
  downs: number;
}

export interface WebhookReceiver {
  name: string;
  url: string;
  /** The webhook's secret, for the rules file. */
  secret: string;
  readonly deliveries: Delivery[];
  readonly counts: ReceiverCounts;
  /** When it was down (ms since the epoch). */
  readonly outages: { from: number; to: number }[];
  /** Refuses connections for `ms`, then listens again. */
  down(ms: number): Promise<void>;
  /** No more 500s, slow answers or dropped connections (the drain at the end). */
  calm(): void;
  close(): Promise<void>;
}

export interface ReceiverOptions {
  name: string;
  secret: string;
  flapping: boolean;
  seed: number;
}

function signatureOk(secret: string, body: Buffer, header: string | string[] | undefined): boolean {
  if (typeof header !== 'string' || !header.startsWith('sha256=')) return false;
  const given = Buffer.from(header.slice(7), 'hex');
  const expected = createHmac('sha256', secret).update(body).digest();
  return given.length === expected.length && timingSafeEqual(given, expected);
}

function readBody(request: IncomingMessage): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    request.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= MAX_BODY_BYTES) chunks.push(chunk);
    });
    request.on('end', () => resolve(size <= MAX_BODY_BYTES ? Buffer.concat(chunks) : undefined));
    request.on('error', () => resolve(undefined));
  });
}

export async function startWebhookReceiver(options: ReceiverOptions): Promise<WebhookReceiver> {
  const random = prng(options.seed);
  const deliveries: Delivery[] = [];
  const outages: { from: number; to: number }[] = [];
  const counts: ReceiverCounts = { requests: 0, answered200: 0, answered500: 0, slow: 0, dropped: 0, invalid: 0, downs: 0 };
  let calm = !options.flapping;
  const timers = new Set<NodeJS.Timeout>();

  const handle = async (request: IncomingMessage, response: ServerResponse) => {
    counts.requests++;
    const body = await readBody(request);
    const parsed = body === undefined || !signatureOk(options.secret, body, request.headers['x-sensorpipe-signature']) ? undefined : (() => {
      try {
        return AlertEventSchema.safeParse(JSON.parse(body.toString('utf8')));
      } catch {
        return undefined;
      }
    })();
    if (parsed === undefined || !parsed.success) {
      counts.invalid++;
      response.writeHead(400).end();
      return;
    }
    const id = parsed.data.id;
    const draw = calm ? 1 : random();
    if (draw < 0.1) {
      counts.answered500++;
      response.writeHead(500).end();
      return;
    }
    if (draw < 0.2) {
      // The request was read; the connection goes before any answer (a receiver crashing mid-request).
      counts.dropped++;
      request.socket.destroy();
      return;
    }
    if (draw < 0.35) {
      counts.slow++;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          timers.delete(timer);
          resolve();
        }, 1000 + random() * 2000);
        timers.add(timer);
      });
    }
    // Gone meanwhile (a `down` closed it): the sender saw no answer and will try again.
    if (response.destroyed || request.socket.destroyed) return;
    // Recorded once the answer is written, so a delivery counts only if the sender could see it.
    response.once('finish', () => {
      counts.answered200++;
      deliveries.push({ id, at: Date.now() });
    });
    response.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
  };

  let server: Server | undefined;
  const listen = (port: number) =>
    new Promise<Server>((resolve, reject) => {
      const s = createServer((request, response) => {
        handle(request, response).catch(() => response.destroy());
      });
      s.keepAliveTimeout = 5_000;
      s.once('error', reject);
      s.listen(port, '127.0.0.1', () => {
        s.off('error', reject);
        resolve(s);
      });
    });
  const shut = (s: Server) =>
    new Promise<void>((resolve) => {
      s.close(() => resolve());
      s.closeAllConnections();
    });

  server = await listen(0);
  const port = (server.address() as AddressInfo).port;
  return {
    name: options.name,
    url: `http://127.0.0.1:${port}/hook`,
    secret: options.secret,
    deliveries,
    counts,
    outages,
    async down(ms) {
      counts.downs++;
      const from = Date.now();
      if (server !== undefined) await shut(server);
      server = undefined;
      await new Promise((resolve) => setTimeout(resolve, ms));
      // The same port again (SO_REUSEADDR): the webhook's URL does not change.
      server = await listen(port);
      outages.push({ from, to: Date.now() });
    },
    calm() {
      calm = true;
    },
    async close() {
      for (const timer of timers) clearTimeout(timer);
      if (server !== undefined) await shut(server);
      server = undefined;
    },
  };
}
