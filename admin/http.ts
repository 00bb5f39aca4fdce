/**
 * The admin HTTP API: device provisioning (add, list, get, update, revoke, rotate, bulk add) over HTTP,
 * on a listener of its own, apart from the read-only viewer API. Off unless SENSORPIPE_ADMIN_TOKEN is
 * set; every request must carry it as `Authorization: Bearer <token>`, compared in constant time
 * (core/secret.ts). It talks to the device registry only, through admin/devices.ts (the implementation
 * `sensorpipe devices` uses too) and the RegistryStore behind it.
 *
 * A request is checked in this order, each step answered with its stable code (core/errors.ts):
 * banned address (429 LIMIT_EXCEEDED), token (401 AUTH_REQUIRED; failures are counted per address and
 * slow down, then ban, that address), route (404 NOT_FOUND, 405 METHOD_NOT_ALLOWED with Allow), media
 * type (415 UNSUPPORTED_MEDIA_TYPE), body size (413 PAYLOAD_TOO_LARGE), strict JSON (400 PAYLOAD_INVALID:
 * not UTF-8, not JSON, a key given twice, `__proto__`; core/decode.ts), then the device rules (400
 * DEVICE_INVALID, 404 DEVICE_UNKNOWN, 409 REGISTRY_CONFLICT). Nothing a client sends is answered 5xx.
 *
 * Every request is logged once it is answered: method, route, device, outcome, status, address. Never
 * the token, a body or a secret: credentials exist only in the answers of add, rotate and bulk add,
 * which are `Cache-Control: no-store`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SensorpipeError, isSensorpipeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { sendError, sendJson } from '../core/ops-http.ts';
import { DeviceIdSchema } from '../core/schemas.ts';
import { sameSecret } from '../core/secret.ts';
import { credentialsCsv, devicesFromCsv } from './csv.ts';
import type { DeviceService } from './devices.ts';
import { bulkInputFromJson, decodeStrictJson, decodeUtf8 } from './input.ts';
import { adminOpenApi } from './openapi.ts';
import { matchPath, type AdminRoute, type BodyType } from './routes.ts';

export interface AdminServerOptions {
  service: DeviceService;
  /** The bearer token every request must carry. */
  token: string;
  host: string;
  port: number;
  logger: Logger;
  maxBodyBytes: number;
  /** Failed authentications from one address within `authFailureWindowMs` that get it banned. */
  authFailures: number;
  authBanMs: number;
  authFailureWindowMs?: number;
  /** Longest delay added to a failed authentication's answer (default 1 s; it grows by a tenth of it per failure from the address). */
  authFailureDelayMaxMs?: number;
}

export interface RunningAdmin {
  url: string;
  port: number;
  close(): Promise<void>;
}

const HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
};

/** Added to each failed authentication's answer: a tenth of this per failure so far from the address, at most this. */
const FAILURE_DELAY_MAX_MS = 1_000;
/** Addresses tracked at most; beyond, expired entries are dropped first, then the oldest. */
const MAX_TRACKED_ADDRESSES = 10_000;

/** Failed authentications per address: a count within a window, then a ban. */
export class AuthFailures {
  private readonly failures = new Map<string, { count: number; since: number }>();
  private readonly bannedUntil = new Map<string, number>();

  constructor(private readonly limits: { max: number; windowMs: number; banMs: number }) {}

  /** Milliseconds the address stays banned (0: not banned). */
  banRemaining(address: string, now = Date.now()): number {
    const until = this.bannedUntil.get(address);
    if (until === undefined) return 0;
    if (until > now) return until - now;
    this.bannedUntil.delete(address);
    return 0;
  }

  /** Counts a failure; returns the failures of this window so far (the one that bans resets the count). */
  fail(address: string, now = Date.now()): { count: number; banned: boolean } {
    this.prune(now);
    const entry = this.failures.get(address);
    const current = entry !== undefined && now - entry.since < this.limits.windowMs ? entry : { count: 0, since: now };
    current.count++;
    this.failures.set(address, current);
    if (current.count >= this.limits.max) {
      this.failures.delete(address);
      this.bannedUntil.set(address, now + this.limits.banMs);
      return { count: current.count, banned: true };
    }
    return { count: current.count, banned: false };
  }

  private prune(now: number): void {
    if (this.failures.size + this.bannedUntil.size < MAX_TRACKED_ADDRESSES) return;
    for (const [address, entry] of this.failures) if (now - entry.since >= this.limits.windowMs) this.failures.delete(address);
    for (const [address, until] of this.bannedUntil) if (until <= now) this.bannedUntil.delete(address);
    // Still full (a scan from many addresses): forget the oldest tenth of the failure windows at once (so
    // the next prune is far off), never the bans.
    for (const address of this.failures.keys()) {
      if (this.failures.size + this.bannedUntil.size < MAX_TRACKED_ADDRESSES * 0.9) break;
      this.failures.delete(address);
    }
  }
}

/** The bearer token of a request, or undefined. */
function bearerToken(request: IncomingMessage): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined || !/^Bearer /i.test(header)) return undefined;
  return header.slice(7).trim();
}

/** `type/subtype` of a Content-Type, lower case, and whether its charset (if any) is UTF-8. */
function mediaType(header: string | undefined): { type: string; utf8: boolean } | undefined {
  if (header === undefined) return undefined;
  const [type, ...params] = header.split(';').map((part) => part.trim().toLowerCase());
  const charset = params.find((p) => p.startsWith('charset='))?.slice('charset='.length).replace(/^"|"$/g, '');
  return { type: type ?? '', utf8: charset === undefined || charset === 'utf-8' || charset === 'utf8' };
}

function hasBody(request: IncomingMessage): boolean {
  const length = request.headers['content-length'];
  return request.headers['transfer-encoding'] !== undefined || (length !== undefined && length !== '0');
}

/** Reads the body, refusing it as soon as it is known to be over `max` bytes (by its Content-Length, or while it arrives). */
function readBody(request: IncomingMessage, max: number): Promise<Buffer> {
  const declared = Number(request.headers['content-length'] ?? '0');
  if (declared > max) return Promise.reject(new SensorpipeError('PAYLOAD_TOO_LARGE', `the body is ${declared} bytes; at most ${max} (SENSORPIPE_ADMIN_MAX_BODY)`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        request.off('data', onData);
        request.pause();
        reject(new SensorpipeError('PAYLOAD_TOO_LARGE', `the body is over ${max} bytes (SENSORPIPE_ADMIN_MAX_BODY)`));
        return;
      }
      chunks.push(chunk);
    };
    request.on('data', onData);
    request.once('end', () => resolve(Buffer.concat(chunks)));
    request.once('error', () => reject(new SensorpipeError('PAYLOAD_INVALID', 'the body was not received in full')));
    request.once('close', () => {
      if (!request.complete) reject(new SensorpipeError('PAYLOAD_INVALID', 'the body was not received in full'));
    });
  });
}

/** What a route's handler gets: the device id of the path (decoded, not yet validated) and the body, read. */
interface Call {
  id: string | undefined;
  /** A JSON body (strictly parsed), or the text of a CSV body. */
  body: { json: unknown } | { csv: string } | undefined;
  /** The answer may be CSV (bulk add, with Accept: text/csv). */
  wantsCsv: boolean;
  /** Set by a handler: the device the call is about, for the log. */
  device?: string;
}

interface Answer {
  status: number;
  body: unknown;
  /** The body as text of this media type, instead of JSON. */
  text?: { type: string; content: string };
  attachment?: string;
}

/** Reads and checks the body a route takes: media type, size, strict UTF-8 JSON (or CSV for bulk add). */
async function readRouteBody(request: IncomingMessage, route: AdminRoute, maxBodyBytes: number): Promise<Call['body']> {
  if (route.body === undefined) {
    if (hasBody(request)) throw new SensorpipeError('UNSUPPORTED_MEDIA_TYPE', `${route.method} ${route.path} takes no body`);
    return undefined;
  }
  if (!hasBody(request)) {
    if (route.body.optional) return undefined;
    throw new SensorpipeError('PAYLOAD_INVALID', `${route.method} ${route.path} needs a body (${route.body.types.join(' or ')})`);
  }
  const media = mediaType(request.headers['content-type']);
  const type = route.body.types.find((t) => t === media?.type) as BodyType | undefined;
  if (media === undefined || type === undefined || !media.utf8) {
    throw new SensorpipeError('UNSUPPORTED_MEDIA_TYPE', `the body must be ${route.body.types.join(' or ')} (UTF-8); got ${JSON.stringify((request.headers['content-type'] ?? 'none').slice(0, 80))}`);
  }
  const bytes = await readBody(request, maxBodyBytes);
  // JSON is read as strictly as every message from MQTT (admin/input.ts); the route's own schema is
  // checked by the device service, so the CLI and this API refuse the same input with the same codes.
  return type === 'text/csv' ? { csv: decodeUtf8(bytes) } : { json: decodeStrictJson(bytes, maxBodyBytes) };
}

function jsonOf(call: Call): unknown {
  return call.body !== undefined && 'json' in call.body ? call.body.json : undefined;
}

let openApi: unknown;

/** A device id for the log: only a valid one, so no client text of its choosing reaches the log. */
const loggableId = (id: unknown): string => (DeviceIdSchema.safeParse(id).success ? (id as string) : '(not a device id)');

function handlers(service: DeviceService): Record<AdminRoute['operationId'], (call: Call) => Promise<Answer>> {
  const idOf = (call: Call): string => {
    let id: string;
    try {
      id = decodeURIComponent(call.id ?? '');
    } catch {
      throw new SensorpipeError('DEVICE_INVALID', 'the device id in the path has a malformed percent-encoding');
    }
    call.device = loggableId(id);
    return id;
  };
  return {
    getOpenApi: async () => ({ status: 200, body: (openApi ??= adminOpenApi()) }),
    listDevices: async () => ({ status: 200, body: { devices: await service.list() } }),
    addDevice: async (call) => {
      const json = jsonOf(call);
      call.device = loggableId((json as { id?: unknown } | undefined)?.id);
      const { credentials } = await service.add(json);
      return { status: 201, body: credentials };
    },
    bulkAddDevices: async (call) => {
      const input = call.body !== undefined && 'csv' in call.body ? devicesFromCsv(call.body.csv) : bulkInputFromJson(jsonOf(call));
      const all = await service.bulkAdd(input);
      call.device = `${all.length} devices`;
      const stamp = new Date().toISOString().replace(/[:.]/g, '');
      return call.wantsCsv
        ? { status: 201, body: undefined, text: { type: 'text/csv; charset=utf-8', content: credentialsCsv(all) }, attachment: `sensorpipe-credentials-${stamp}.csv` }
        : { status: 201, body: { devices: all }, attachment: `sensorpipe-credentials-${stamp}.json` };
    },
    getDevice: async (call) => ({ status: 200, body: await service.get(idOf(call)) }),
    updateDevice: async (call) => ({ status: 200, body: await service.update(idOf(call), jsonOf(call)) }),
    revokeDevice: async (call) => ({ status: 200, body: await service.revoke(idOf(call)) }),
    rotateDevice: async (call) => {
      const id = idOf(call);
      const { credentials } = await service.rotate(id, jsonOf(call) ?? {});
      return { status: 200, body: credentials };
    },
  };
}

function requestPath(target: string): string | undefined {
  try {
    return new URL(target.startsWith('/') ? `http://admin.invalid${target}` : target, 'http://admin.invalid/').pathname;
  } catch {
    return undefined;
  }
}

export async function startAdminServer(options: AdminServerOptions): Promise<RunningAdmin> {
  const logger = options.logger.child({ component: 'admin' });
  const failures = new AuthFailures({ max: options.authFailures, windowMs: options.authFailureWindowMs ?? 60_000, banMs: options.authBanMs });
  const answer = handlers(options.service);
  let requestSeq = 0;

  const onRequest = async (request: IncomingMessage, response: ServerResponse, call: Call, log: { route: string }): Promise<void> => {
    const address = request.socket.remoteAddress ?? 'unknown';
    const banned = failures.banRemaining(address);
    if (banned > 0) {
      response.setHeader('retry-after', String(Math.ceil(banned / 1000)));
      throw new SensorpipeError('LIMIT_EXCEEDED', 'too many failed authentications from this address; try again later');
    }
    const token = bearerToken(request);
    if (token === undefined || !sameSecret(token, options.token)) {
      const { count, banned: nowBanned } = failures.fail(address);
      if (nowBanned) logger.warn({ address, failures: count }, 'admin API: address banned after failed authentications');
      const delayMax = options.authFailureDelayMaxMs ?? FAILURE_DELAY_MAX_MS;
      await new Promise((resolve) => setTimeout(resolve, Math.min((count * delayMax) / 10, delayMax)));
      response.setHeader('www-authenticate', 'Bearer realm="sensorpipe-admin"');
      throw new SensorpipeError('AUTH_REQUIRED', token === undefined ? 'the admin API needs Authorization: Bearer <token>' : 'the admin token is wrong');
    }
    const pathname = requestPath(request.url ?? '/');
    if (pathname === undefined) throw new SensorpipeError('NOT_FOUND', 'the request target is not a path');
    const { routes, id } = matchPath(pathname);
    if (routes.length === 0) throw new SensorpipeError('NOT_FOUND', `no admin route ${pathname.slice(0, 100)}`);
    const route = routes.find((r) => r.method === request.method);
    if (route === undefined) {
      response.setHeader('allow', routes.map((r) => r.method).join(', '));
      log.route = routes[0]!.path;
      throw new SensorpipeError('METHOD_NOT_ALLOWED', `${routes[0]!.path} takes ${routes.map((r) => r.method).join(', ')}`);
    }
    log.route = route.path;
    call.id = id;
    call.wantsCsv = route.response.csv === true && /\btext\/csv\b/i.test(request.headers.accept ?? '');
    call.body = await readRouteBody(request, route, options.maxBodyBytes);
    const result = await answer[route.operationId](call);
    const headers: Record<string, string> = { ...HEADERS };
    if (route.response.secrets === true) headers.pragma = 'no-cache';
    if (result.attachment !== undefined) headers['content-disposition'] = `attachment; filename="${result.attachment}"`;
    if (result.text !== undefined) {
      response.writeHead(result.status, { 'content-type': result.text.type, 'cache-control': 'no-store', ...headers });
      response.end(result.text.content);
    } else {
      sendJson(response, result.status, result.body, headers);
    }
  };

  const server = createServer((request, response) => {
    const started = Date.now();
    const call: Call = { id: undefined, body: undefined, wantsCsv: false };
    const log = { route: 'unknown' };
    const seq = ++requestSeq;
    let outcome = 'ok';
    // The one line per request, also for a client that went away before its answer was sent: never the
    // token, a body or an answer's secrets.
    response.once('close', () => {
      logger.info({ request: seq, method: request.method, route: log.route, device: call.device, outcome: response.writableFinished ? outcome : 'CLIENT_GONE', status: response.statusCode, address: request.socket.remoteAddress, ms: Date.now() - started }, 'admin request');
    });
    onRequest(request, response, call, log).catch((err: unknown) => {
      const known = isSensorpipeError(err) ? err : undefined;
      if (known === undefined) logger.error({ err, route: log.route, device: call.device }, 'admin request failed');
      const error = known ?? new SensorpipeError('INTERNAL', 'internal error');
      outcome = error.code;
      if (response.headersSent) {
        response.destroy();
        return;
      }
      // A body that was refused unread is not read now: the connection is closed after the answer.
      if (!request.complete) response.setHeader('connection', 'close');
      sendError(response, error, HEADERS);
    });
  });
  server.headersTimeout = 5_000;
  server.requestTimeout = 30_000;
  server.maxHeadersCount = 64;
  // An operator's API, not a public one: a bound on open connections keeps a flood from taking file descriptors.
  server.maxConnections = 256;

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const host = options.host.includes(':') ? `[${options.host}]` : options.host;
  const url = `http://${host === '0.0.0.0' ? '127.0.0.1' : host}:${port}${'/admin'}`;
  logger.info({ url, registry: options.service.location }, 'admin API listening');
  return {
    url,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
