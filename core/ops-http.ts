/**
 * The operational endpoints every process serves: `/metrics` (Prometheus text) and `/healthz` (JSON,
 * 200 when healthy, 503 when not). One implementation, so the broker's and ingest's small ops ports and
 * the display's main port answer alike, and errors have one shape: `{code, message}` (core/errors.ts).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { SensorpipeError } from './errors.ts';

/** What `/healthz` reports: `ok` decides the status code; the rest is the process's own detail. */
export type Health = { ok: boolean } & Record<string, unknown>;

export interface OpsEndpoints {
  metrics: Registry;
  health(): Health | Promise<Health>;
}

export function sendJson(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...headers });
  response.end(JSON.stringify(body));
}

export function sendError(response: ServerResponse, err: SensorpipeError, headers: Record<string, string> = {}): void {
  sendJson(response, err.httpStatus, err.toJSON(), headers);
}

/** Answers `/metrics` and `/healthz`; resolves false (and writes nothing) for any other path. */
export async function answerOps(pathname: string, response: ServerResponse, ops: OpsEndpoints): Promise<boolean> {
  if (pathname === '/metrics') {
    const text = await ops.metrics.metrics();
    response.writeHead(200, { 'content-type': ops.metrics.contentType, 'cache-control': 'no-store' });
    response.end(text);
    return true;
  }
  if (pathname === '/healthz') {
    const health = await ops.health();
    sendJson(response, health.ok ? 200 : 503, health);
    return true;
  }
  return false;
}

export interface OpsServer {
  server: Server;
  port: number;
  close(): Promise<void>;
}

/**
 * A small HTTP server with only the ops endpoints (the broker's and ingest's metrics ports). A port
 * already taken rejects (and reaches the CLI, which names the option) rather than throwing from an
 * unhandled 'error' event.
 */
export async function serveOps(host: string, port: number, ops: OpsEndpoints): Promise<OpsServer> {
  const server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const pathname = (request.url ?? '/').split('?')[0]!;
    answerOps(pathname, response, ops).then(
      (answered) => {
        if (!answered) sendError(response, new SensorpipeError('NOT_FOUND', 'try /metrics or /healthz'));
      },
      (err: unknown) => {
        if (response.headersSent) response.destroy();
        else sendError(response, new SensorpipeError('INTERNAL', `ops endpoint failed: ${(err as Error).message}`));
      },
    );
  });
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
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
