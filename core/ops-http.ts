/**
 * The operational endpoints every process serves: `/metrics` (Prometheus text), `/livez` (liveness:
 * restart me if this fails), `/readyz` (readiness: I am doing my whole job) and `/healthz` (the original
 * combined check, kept for compatibility). All JSON, 200 when true, 503 when not. One implementation, so
 * the broker's and ingest's small ops ports and the display's main port answer alike, and errors have
 * one shape: `{code, message}` (core/errors.ts). What each process calls live and ready: docs/OPERATIONS.md.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, type Registry } from 'prom-client';
import { SensorpipeError } from './errors.ts';

/** What `/healthz`, `/livez` and `/readyz` report: `ok` decides the status code; the rest is the process's own detail. */
export type Health = { ok: boolean } & Record<string, unknown>;

export interface OpsEndpoints {
  metrics: Registry;
  /** `/healthz`, as it always answered (compatibility: existing probes and scripts rely on its body). */
  health(): Health | Promise<Health>;
  /** `/livez`: false only when a restart would help. Default: alive while the process answers. */
  liveness?(): Health | Promise<Health>;
  /** `/readyz`: true when the process does its whole job now. Default: what `/healthz` says. */
  readiness?(): Health | Promise<Health>;
}

/** The paths answerOps serves (the display routes these to it before its own API). */
export const OPS_PATHS: ReadonlySet<string> = new Set(['/metrics', '/healthz', '/livez', '/readyz']);

/**
 * prom-client's gauges whose names end in `_total` like a counter's: Prometheus' conventions (and tools
 * that apply `rate()` to `*_total`) take them for counters. Each is the sum of a gauge served beside it
 * (`nodejs_active_handles` by type, …): `sum(nodejs_active_handles)` gives the same number.
 */
const GAUGES_NAMED_TOTAL = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * prom-client's default process metrics (`process_*`: CPU, memory, open files, start time; `nodejs_*`:
 * event-loop lag, heap, GC, active handles) in `registry`, less its gauges named `*_total`. Each
 * component's registry gets them, so each scrape target reports its process, whether the components
 * share one process (`sensorpipe start`) or not.
 */
export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry });
  for (const name of GAUGES_NAMED_TOTAL) registry.removeSingleMetric(name);
}

export function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers });
  response.end(JSON.stringify(body));
}

export function sendError(response: ServerResponse, err: SensorpipeError, headers: Record<string, string> = {}): void {
  sendJson(response, err.httpStatus, err.toJSON(), headers);
}

const ALIVE = (): Health => ({ ok: true });

/** Answers `/metrics`, `/healthz`, `/livez` and `/readyz`; resolves false (and writes nothing) for any other path. */
export async function answerOps(pathname: string, response: ServerResponse, ops: OpsEndpoints): Promise<boolean> {
  if (pathname === '/metrics') {
    const text = await ops.metrics.metrics();
    response.writeHead(200, { 'content-type': ops.metrics.contentType, 'cache-control': 'no-store' });
    response.end(text);
    return true;
  }
  const check = pathname === '/healthz' ? ops.health : pathname === '/livez' ? (ops.liveness ?? ALIVE) : pathname === '/readyz' ? (ops.readiness ?? ops.health) : undefined;
  if (check === undefined) return false;
  const health = await check.call(ops);
  sendJson(response, health.ok ? 200 : 503, health);
  return true;
}

export interface OpsServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/** Answers one request; a rejection is an unexpected failure, answered 500 (or the connection ended). */
export type OpsHandler = (request: IncomingMessage, response: ServerResponse) => Promise<void>;

/** How long the ops port keeps answering once its process closes it. */
const OPS_CLOSE_GRACE_MS = 200;

/**
 * A small HTTP server with the ops endpoints (the broker's and ingest's metrics ports), or with
 * `handler` answering instead, for a process whose port serves more (the alerts API; the handler calls
 * answerOps for the ops paths). A port already taken rejects (and reaches the CLI, which names the
 * option) rather than throwing from an unhandled 'error' event.
 */
export async function serveOps(host: string, port: number, ops: OpsEndpoints, handler?: OpsHandler): Promise<OpsServer> {
  const answer: OpsHandler =
    handler ??
    (async (request, response) => {
      const answered = await answerOps((request.url ?? '/').split('?')[0]!, response, ops);
      if (!answered) sendError(response, new SensorpipeError('NOT_FOUND', 'try /metrics, /healthz, /livez or /readyz'));
    });
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    answer(request, response).catch((err: unknown) => {
      if (response.headersSent) response.destroy();
      else sendError(response, new SensorpipeError('INTERNAL', `endpoint failed: ${(err as Error).message}`));
    });
  });
  // A client that sends its request slowly (or never) is cut off, not kept forever.
  server.headersTimeout = 5_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    server,
    port: (server.address() as AddressInfo).port,
    close: async () => {
      // A probe sent just as the process started shutting down gets its answer (503: not ready) rather
      // than a dropped connection: its request may not have been read yet, and closing at once (or
      // closing "idle" connections, which includes one whose request is still unread) would drop it.
      await new Promise((resolve) => setTimeout(resolve, OPS_CLOSE_GRACE_MS));
      await new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      });
    },
  };
}
