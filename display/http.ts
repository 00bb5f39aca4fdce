/**
 * The display's HTTP side: the JSON API, CSV export, health and metrics, the dashboard's static files,
 * and the `/live` WebSocket upgrade (token, Origin and client-count checks before the handshake).
 * Every query string is checked against its route's parameters (display/api-params.ts: one it does not
 * take is refused, not ignored) and parsed with its core/ schema, every path parameter is decoded in one place
 * (`pathParam`); every error is `{code, message}` with the HTTP status of its code (core/errors.ts),
 * written by core/ops-http.ts as in every process, which also answers /metrics, /healthz, /livez and
 * /readyz. A request gets its own child logger when something is logged. The paths it answers are one
 * table, display/routes.ts, which its OpenAPI description (display/openapi.ts, served at /api/openapi.json
 * with the AsyncAPI one of core/asyncapi.ts at /api/asyncapi.json, both without a token) must describe.
 *
 * An API readings request (JSON or CSV) reads the store within a slot of the fleet-wide bound on
 * history loads (history-gate.ts), shared with /live: over it, 503 SERVER_BUSY with Retry-After.
 *
 * Methods: GET and HEAD; OPTIONS answers CORS preflights; any other method on a route that exists is
 * 405 METHOD_NOT_ALLOWED with `Allow`. The API is open to the browser origins /live admits (the
 * dashboard's own and SENSORPIPE_ALLOWED_ORIGINS): their requests get `Access-Control-Allow-Origin`,
 * everyone's `Vary: Origin`. JSON and CSV answers of the API are gzipped for a client that accepts it,
 * unless they are tiny; a CSV export stays streamed through the compressor.
 *
 * A request is read first (target, route, parameters, token), then answered. Whatever goes wrong while
 * reading it is the request's fault and is answered 4xx, never 500: a 5xx only ever means the display
 * or its store failed.
 */
import { readFile, readdir } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex, Writable } from 'node:stream';
import { pipeline } from 'node:stream';
import { constants as zlibConstants, createGzip } from 'node:zlib';
import { extname, join } from 'node:path';
import type { WebSocketServer } from 'ws';
import { parseAlertsQuery, parseDevicesQuery, parseQuarantineQuery, type AlertsQuery, type DevicesQuery, type QuarantineQuery } from '../core/api.ts';
import { ERROR_CODES, SensorpipeError, isSensorpipeError, type ErrorCode } from '../core/errors.ts';
import { TOKEN_SUBPROTOCOL_PREFIX } from '../core/live-subprotocol.ts';
import type { Logger } from '../core/logger.ts';
import { answerOps, OPS_PATHS, sendError as sendOpsError, type OpsEndpoints } from '../core/ops-http.ts';
import { sameSecret } from '../core/secret.ts';
import { parseHistoryParams, type HistoryParams } from '../core/query.ts';
import { DeviceIdSchema } from '../core/schemas.ts';
import { asyncApi } from '../core/asyncapi.ts';
import type { TimeSeriesStore } from '../store/index.ts';
import type { AlertBoard } from './alerts.ts';
import { sendAggregatedCsv, sendRawCsv, type CsvOut } from './csv.ts';
import type { FleetState } from './fleet.ts';
import { HISTORY_RETRY_AFTER_S, type HistoryGate } from './history-gate.ts';
import type { LiveHub } from './hub.ts';
import { displayOpenApi } from './openapi.ts';
import { FORMAT_PARAM, refuseUnknownParams } from './api-params.ts';
import { matchRoute, routeLabel } from './routes.ts';
import { answerQuarantine } from './quarantine.ts';
import type { DisplayMetrics } from './metrics.ts';

export interface HttpOptions {
  store: TimeSeriesStore;
  fleet: FleetState;
  /** The alert states of the fleet (GET /api/alerts). */
  alerts: AlertBoard;
  /** The quarantine folder GET /api/quarantine reads (read-only; absent: an empty, unavailable list). */
  quarantineDir: string;
  hub: LiveHub;
  /** The fleet-wide bound on history loads, shared with /live. */
  history: HistoryGate;
  wss: WebSocketServer;
  metrics: DisplayMetrics;
  logger: Logger;
  viewerToken: string | undefined;
  allowedOrigins: string[];
  maxClients: number;
  /** Most /live clients from one peer address. */
  maxClientsPerAddress: number;
  brokerConnected(): boolean;
  staticFiles: StaticFiles;
}

/** Parameters the API reads itself, besides each route's schema (left out of the schemas' checks). */
const PARAMS_READ_HERE = ['token', FORMAT_PARAM] as const;

const SECURITY_HEADERS = {
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
  'content-security-policy': "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
};

// ---- static files -------------------------------------------------------------------------------------------

export type StaticFiles = Map<string, { body: Buffer; type: string }>;

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.map': 'application/json',
  '.png': 'image/png',
  '.svg': 'image/svg+xml',
  '.ico': 'image/x-icon',
};

/**
 * The built dashboard (display/web/dist), read once at start-up: only files that exist there can be
 * served, so no request path ever reaches the file system.
 */
export async function loadStaticFiles(dir: string): Promise<StaticFiles> {
  const files: StaticFiles = new Map();
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    const type = CONTENT_TYPES[extname(name)];
    if (type !== undefined) files.set(`/${name}`, { body: await readFile(join(dir, name)), type });
  }
  return files;
}

// ---- helpers ----------------------------------------------------------------------------------------------------

/**
 * The request target as a URL, or undefined when it is none. An origin-form target (`/path?query`) is
 * always read as a path on this server: `//x` is the path `//x`, not the host `x`.
 */
function requestUrl(target: string): URL | undefined {
  try {
    return new URL(target.startsWith('/') ? `http://display.invalid${target}` : target, 'http://display.invalid/');
  } catch {
    return undefined;
  }
}

/**
 * One percent-encoded path segment, decoded: the one place path parameters are read. A malformed escape
 * (`%zz`, `%`, a cut UTF-8 sequence such as `%E0%A4%A`) is the client's error, answered 400.
 */
export function pathParam(segment: string, param: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new SensorpipeError('QUERY_INVALID', `${param}: malformed percent-encoding in the path`, { param });
  }
}

/** Date can name ±8.64e15 ms (ECMA-262 §21.4.1.1); a CSV file names its times as dates. */
const DATE_LIMIT_MS = 8.64e15;

/** What an API request asks for, read from its URL before anything is answered. */
type ApiRequest =
  | { route: 'devices'; query: DevicesQuery }
  | { route: 'alerts'; query: AlertsQuery }
  | { route: 'quarantine'; query: QuarantineQuery }
  | { route: 'device'; device: string }
  | { route: 'readings'; params: HistoryParams; format: 'json' | 'csv' };

/** Reads an API request (route, path parameter, query); throws the SensorpipeError that answers a bad one. */
function readApiRequest(url: URL): ApiRequest {
  const path = url.pathname;
  // Only the route table's API routes are answered (display/routes.ts): what it lacks, its description lacks too.
  const route = matchRoute(path)?.route;
  if (route?.kind !== 'api') throw new SensorpipeError('NOT_FOUND', `no such API route: ${path.slice(0, 100)}`);
  // A parameter the route does not take is refused, not ignored (display/api-params.ts).
  refuseUnknownParams(route.path, url.searchParams);
  if (path === '/api/devices') return { route: 'devices', query: parseDevicesQuery(url.searchParams, PARAMS_READ_HERE) };
  if (path === '/api/alerts') return { route: 'alerts', query: parseAlertsQuery(url.searchParams, PARAMS_READ_HERE) };
  if (path === '/api/quarantine') return { route: 'quarantine', query: parseQuarantineQuery(url.searchParams, PARAMS_READ_HERE) };
  const match = /^\/api\/devices\/([^/]+)(\/readings)?$/.exec(path);
  if (match === null) throw new SensorpipeError('NOT_FOUND', `no such API route: ${path.slice(0, 100)}`);
  const device = pathParam(match[1]!, 'device');
  if (match[2] === undefined) {
    // The device itself takes no parameters (refused above): only its id is read, as every device id is.
    const id = DeviceIdSchema.safeParse(device);
    if (!id.success) throw new SensorpipeError('QUERY_INVALID', `device: ${id.error.issues[0]?.message ?? 'not a device id'}`, { param: 'device' });
    return { route: 'device', device: id.data };
  }
  const params = parseHistoryParams(device, url.searchParams, Date.now(), PARAMS_READ_HERE);
  const format = url.searchParams.get('format') ?? 'json';
  if (format !== 'json' && format !== 'csv') throw new SensorpipeError('QUERY_INVALID', 'format must be json or csv', { param: 'format' });
  for (const param of ['from', 'to'] as const) {
    if (Math.abs(params[param]) > DATE_LIMIT_MS) throw new SensorpipeError('QUERY_RANGE_INVALID', `${param} is beyond the dates a calendar can name`, { param });
  }
  return { route: 'readings', params, format };
}

// ---- methods, CORS and compression ---------------------------------------------------------------------

/** The methods every route of the display answers (the display is read-only). */
const READ_METHODS = 'GET, HEAD';
/** What `Allow` lists: OPTIONS is answered too (CORS preflights). */
const ALLOW = 'GET, HEAD, OPTIONS';
/** Request headers a cross-origin API request may send: the token travels in Authorization. */
const CORS_ALLOW_HEADERS = 'authorization';
/** Response headers a cross-origin caller may read besides the CORS-safelisted ones. */
const CORS_EXPOSE_HEADERS = 'content-disposition, retry-after';
/** How long a browser may reuse a preflight's answer (s). */
const CORS_MAX_AGE_S = 600;

/**
 * Bodies smaller than this are sent as they are: gzip's header and trailer (18 bytes) and the CPU cost
 * are not worth it, and a small JSON document hardly shrinks.
 */
export const COMPRESS_MIN_BYTES = 1024;

/**
 * True if `Accept-Encoding` accepts gzip (RFC 9110 §12.5.3): `gzip` or `x-gzip` with a non-zero
 * q-value, or `*` when gzip is not named. Anything malformed is read as not accepting it (identity).
 */
export function acceptsGzip(header: string | undefined): boolean {
  if (header === undefined || header.length > 1024) return false;
  let gzip: number | undefined;
  let any: number | undefined;
  for (const part of header.split(',')) {
    const [name = '', ...params] = part.split(';').map((p) => p.trim());
    let q = 1;
    for (const param of params) {
      const m = /^q=(0(?:\.\d{0,3})?|1(?:\.0{0,3})?)$/i.exec(param);
      if (m === null) {
        q = 0; // a malformed parameter: this entry counts for nothing
        break;
      }
      q = Number(m[1]);
    }
    const coding = name.toLowerCase();
    if (coding === 'gzip' || coding === 'x-gzip') gzip = Math.max(gzip ?? 0, q);
    else if (coding === '*') any = q;
  }
  return (gzip ?? any ?? 0) > 0;
}

/** True if the path names something the display serves (an API route, ops, /live, a dashboard file), whatever the method. */
function routeExists(pathname: string, files: StaticFiles): boolean {
  const route = routeOf(pathname);
  if (route === 'api-other') return false;
  if (route === 'static') return files.has(pathname === '/' ? '/index.html' : pathname);
  return true;
}

/** Adds `value` to the response's `Vary` header (keeping what is there). */
function addVary(response: ServerResponse, value: string): void {
  const current = response.getHeader('vary');
  response.setHeader('vary', current === undefined ? value : `${String(current)}, ${value}`);
}

/**
 * Where an answer's body goes: the response itself, or a gzip stream into it when the client accepts
 * gzip and `compress` says the body is worth it. Sets the content-encoding and Vary headers, so it is
 * called before writeHead. A client that goes away destroys the compressor too.
 */
function bodySink(request: IncomingMessage, response: ServerResponse, compress: boolean): Writable {
  addVary(response, 'Accept-Encoding');
  if (!compress || request.method === 'HEAD' || !acceptsGzip(request.headers['accept-encoding'])) return response;
  response.setHeader('content-encoding', 'gzip');
  // zlib's default level; no flush per write: the CSV writer hands over 64 KiB chunks and the
  // compressor passes each on as its output fills, so an export stays streamed with backpressure.
  const gzip = createGzip({ level: zlibConstants.Z_DEFAULT_COMPRESSION });
  pipeline(gzip, response, () => undefined);
  return gzip;
}

// The one error shape of every process (core/ops-http.ts), with the display's headers.
const BUSY_HEADERS = { ...SECURITY_HEADERS, 'retry-after': String(HISTORY_RETRY_AFTER_S) };
const sendError = (response: ServerResponse, err: SensorpipeError): void => sendOpsError(response, err, err.code === 'SERVER_BUSY' ? BUSY_HEADERS : SECURITY_HEADERS);

/** An API answer (200, JSON): as core/ops-http.ts's sendJson, gzipped when the client accepts it and the body is not tiny. */
function sendApiJson(request: IncomingMessage, response: ServerResponse, body: unknown): void {
  const text = JSON.stringify(body);
  const sink = bodySink(request, response, Buffer.byteLength(text) >= COMPRESS_MIN_BYTES);
  response.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...SECURITY_HEADERS });
  sink.end(text);
}

/** The token from `Authorization: Bearer`, a `bearer.` WebSocket subprotocol, or `?token=` (last resort). */
function tokenOf(request: IncomingMessage, url: URL): string | undefined {
  const header = request.headers.authorization;
  if (header !== undefined && /^Bearer /i.test(header)) return header.slice(7).trim();
  const offered = request.headers['sec-websocket-protocol']?.split(',').map((p) => p.trim()).find((p) => p.startsWith(TOKEN_SUBPROTOCOL_PREFIX));
  if (offered !== undefined) return Buffer.from(offered.slice(TOKEN_SUBPROTOCOL_PREFIX.length), 'base64url').toString('utf8');
  return url.searchParams.get('token') ?? undefined;
}

/** A request's route label on the metrics: its route in the table (display/routes.ts), else api-other or static. */
function routeOf(pathname: string | undefined): string {
  if (pathname === undefined) return 'invalid';
  const matched = matchRoute(pathname);
  if (matched !== undefined) return routeLabel(matched.route);
  return pathname.startsWith('/api/') ? 'api-other' : 'static';
}

/**
 * The API's descriptions (display/openapi.ts, core/asyncapi.ts), generated once, when first asked for.
 * They need no token: they describe the API, as the source and README do, and hold no data; a client
 * (or a code generator) reads them before it has a token.
 */
const apiDocuments = new Map<string, unknown>();
function apiDocument(path: string): unknown {
  let document = apiDocuments.get(path);
  if (document === undefined) {
    document = path === '/api/openapi.json' ? displayOpenApi() : asyncApi();
    apiDocuments.set(path, document);
  }
  return document;
}

// ---- the server's request and upgrade handlers ---------------------------------------------------------------

export function createHandlers(options: HttpOptions) {
  const { store, fleet, hub, history, wss, metrics, logger } = options;

  /**
   * The store's health, one probe at a time: /healthz needs no token, and concurrent probes share the
   * one in flight instead of each asking the store (a flood of /healthz is not a flood of store queries).
   */
  let storeProbe: ReturnType<TimeSeriesStore['health']> | undefined;
  const storeHealthNow = () => (storeProbe ??= store.health().finally(() => (storeProbe = undefined)));

  /**
   * /metrics, /healthz, /livez and /readyz, answered as every process answers them. Ready (as /healthz):
   * the broker link and the store are up, so the API and /live can answer; live: the process answers.
   */
  const ops: OpsEndpoints = {
    metrics: metrics.registry,
    health: async () => {
      const storeHealth = await storeHealthNow();
      const broker = options.brokerConnected();
      return { ok: broker && storeHealth.ok, broker, store: storeHealth.ok, ...(storeHealth.detail === undefined ? {} : { storeDetail: storeHealth.detail }), clients: hub.clientCount };
    },
  };

  /** A request's own logger, made only when there is something to log. Never the query string: it may hold a token. */
  let requestSeq = 0;
  const requestLog = (request: IncomingMessage, url: URL | undefined): Logger =>
    logger.child({ request: ++requestSeq, method: request.method, path: (url?.pathname ?? '(not a path)').slice(0, 200), address: request.socket.remoteAddress });

  /** Checks a request's Origin (browsers send it on WebSocket and cross-site requests) and token. */
  const admit = (request: IncomingMessage, url: URL, needsToken: boolean): SensorpipeError | undefined => {
    const origin = request.headers.origin;
    if (origin !== undefined && !originAllowed(origin, request.headers.host, options.allowedOrigins)) {
      return new SensorpipeError('FORBIDDEN', `origin ${origin} is not allowed (SENSORPIPE_ALLOWED_ORIGINS)`);
    }
    if (needsToken && options.viewerToken !== undefined) {
      const token = tokenOf(request, url);
      if (token === undefined || !sameSecret(token, options.viewerToken)) return new SensorpipeError('AUTH_REQUIRED', 'a valid viewer token is required');
    }
    return undefined;
  };

  /** A CSV export's answer (display/csv.ts): the display's headers, gzip when worth it, and an early end on failure. */
  const csvOut = (request: IncomingMessage, response: ServerResponse, signal: AbortSignal): CsvOut => ({
    begin: (headers, compress) => {
      const sink = bodySink(request, response, compress);
      response.writeHead(200, { ...headers, 'cache-control': 'no-store', ...SECURITY_HEADERS });
      return sink;
    },
    bodyWanted: request.method !== 'HEAD',
    signal,
    fail: (err) => {
      requestLog(request, requestUrl(request.url ?? '/')).warn({ err }, 'CSV export ended early: the store failed');
      response.destroy();
    },
  });

  const answerApi = async (request: IncomingMessage, response: ServerResponse, api: ApiRequest): Promise<void> => {
    if (api.route === 'devices') {
      sendApiJson(request, response, fleet.list(api.query));
      return;
    }
    if (api.route === 'quarantine') {
      // Reading the quarantine's files is disk work like a history load (a filter that matches little
      // reads them whole): it takes a slot of the same fleet-wide bound.
      const gone = new AbortController();
      response.once('close', () => gone.abort());
      sendApiJson(request, response, await history.run('http', () => answerQuarantine(options.quarantineDir, api.query), gone.signal));
      return;
    }
    if (api.route === 'alerts') {
      if (api.query.device !== undefined && !fleet.has(api.query.device)) throw new SensorpipeError('NOT_FOUND', `no device ${api.query.device}`);
      sendApiJson(request, response, options.alerts.list(api.query));
      return;
    }
    const device = api.route === 'device' ? api.device : api.params.device;
    if (!fleet.has(device)) throw new SensorpipeError('NOT_FOUND', `no device ${device}`);
    if (api.route === 'device') {
      sendApiJson(request, response, fleet.get(device));
      return;
    }
    // A slot of the fleet-wide history bound while the store is read; a request that goes away while
    // it waits gives its place up. The answer is written after the slot is freed: a slow reader of a
    // CSV export holds its socket (bounded by the idle timeout), not a slot other viewers need.
    const gone = new AbortController();
    response.once('close', () => gone.abort());
    // A raw CSV export streams any range, a slot per page (display/csv.ts); JSON and aggregates are one load.
    if (api.format === 'csv' && api.params.mode === 'raw') return sendRawCsv({ store, history, params: api.params, out: csvOut(request, response, gone.signal) });
    const result = await history.run('http', () => store.query(api.params), gone.signal);
    if (api.format === 'json') sendApiJson(request, response, result);
    else await sendAggregatedCsv(csvOut(request, response, gone.signal), result);
  };

  /**
   * Reads the request: what it asks for, or the SensorpipeError that refuses it. Anything else thrown
   * here was still caused by the request's text (a parser that did not expect it): it is answered
   * 400, and logged, since it points at a parser to fix.
   */
  const readRequest = (request: IncomingMessage, url: URL | undefined): ApiRequest | { route: 'ops'; path: string } | { route: 'docs'; path: string } | { route: 'static'; path: string } => {
    try {
      if (url === undefined) throw new SensorpipeError('QUERY_INVALID', 'the request target is not a URL path', { param: 'path' });
      if (request.method !== 'GET' && request.method !== 'HEAD') {
        if (!routeExists(url.pathname, options.staticFiles)) throw new SensorpipeError('NOT_FOUND', 'no such resource');
        throw new SensorpipeError('METHOD_NOT_ALLOWED', `the display is read-only: ${READ_METHODS} (and OPTIONS for CORS)`);
      }
      if (OPS_PATHS.has(url.pathname)) return { route: 'ops', path: url.pathname };
      if (!url.pathname.startsWith('/api/')) return { route: 'static', path: url.pathname };
      const docs = matchRoute(url.pathname)?.route.kind === 'docs';
      const refused = admit(request, url, !docs);
      if (refused !== undefined) throw refused;
      if (docs) {
        refuseUnknownParams(url.pathname, url.searchParams);
        return { route: 'docs', path: url.pathname };
      }
      return readApiRequest(url);
    } catch (err) {
      if (isSensorpipeError(err)) throw err;
      requestLog(request, url).warn({ err }, 'request not readable');
      throw new SensorpipeError('QUERY_INVALID', 'the request could not be read');
    }
  };

  const onRequest = (request: IncomingMessage, response: ServerResponse): void => {
    const url = requestUrl(request.url ?? '/');
    const route = routeOf(url?.pathname);
    const stop = metrics.httpSeconds.startTimer({ route });
    response.on('finish', () => {
      stop();
      metrics.httpRequests.inc({ route, status: String(response.statusCode) });
    });
    void (async () => {
      try {
        if (request.method !== 'GET' && request.method !== 'HEAD') response.setHeader('allow', ALLOW);
        if (url?.pathname.startsWith('/api/') === true) {
          // Every API answer depends on the Origin (CORS headers or a refusal), errors included, and an
          // allowed origin's script may read them all: the error's code is what it needs to act on.
          addVary(response, 'Origin');
          const origin = request.headers.origin;
          if (origin !== undefined && originAllowed(origin, request.headers.host, options.allowedOrigins)) {
            response.setHeader('access-control-allow-origin', origin);
            response.setHeader('access-control-expose-headers', CORS_EXPOSE_HEADERS);
          }
        }
        if (request.method === 'OPTIONS' && url !== undefined) {
          answerOptions(request, response, url);
          return;
        }
        const what = readRequest(request, url);
        if (what.route === 'ops') {
          // answerOps takes no headers: set the display's beforehand, and its writeHead keeps them.
          for (const [name, value] of Object.entries(SECURITY_HEADERS)) response.setHeader(name, value);
          await answerOps(what.path, response, ops);
        } else if (what.route === 'static') {
          serveStatic(response, what.path, options.staticFiles);
        } else if (what.route === 'docs') {
          sendApiJson(request, response, apiDocument(what.path));
        } else {
          await answerApi(request, response, what);
        }
      } catch (err) {
        if (isSensorpipeError(err)) sendError(response, err);
        else {
          requestLog(request, url).error({ err }, 'display request failed');
          if (!response.headersSent) sendError(response, new SensorpipeError('INTERNAL', 'internal error'));
          else response.destroy();
        }
      }
    })();
  };

  /**
   * OPTIONS: 204 with `Allow` on any route that exists. On an API route it is a CORS preflight when it
   * has an Origin: an allowed origin gets the methods and headers it may use; any other is refused (403,
   * no CORS headers, so the browser blocks the request). No token is asked: a browser never sends one
   * with a preflight (Fetch standard, CORS-preflight request).
   */
  const answerOptions = (request: IncomingMessage, response: ServerResponse, url: URL): void => {
    if (!routeExists(url.pathname, options.staticFiles)) throw new SensorpipeError('NOT_FOUND', 'no such resource');
    const api = url.pathname.startsWith('/api/');
    if (api) {
      const refused = admit(request, url, false);
      if (refused !== undefined) throw refused;
    }
    const headers: Record<string, string | number> = { 'content-length': 0, 'cache-control': 'no-store', ...SECURITY_HEADERS };
    if (api && request.headers.origin !== undefined) {
      Object.assign(headers, {
        'access-control-allow-methods': READ_METHODS,
        'access-control-allow-headers': CORS_ALLOW_HEADERS,
        'access-control-max-age': CORS_MAX_AGE_S,
      });
    }
    response.writeHead(204, headers);
    response.end();
  };

  const onUpgrade = (request: IncomingMessage, socket: Duplex, head: Buffer): void => {
    const url = requestUrl(request.url ?? '/');
    const refuse = (code: ErrorCode, message: string) => {
      metrics.liveRefused.inc({ code });
      requestLog(request, url).debug({ code }, 'live upgrade refused');
      const status = ERROR_CODES[code].http;
      const body = JSON.stringify({ code, message });
      socket.end(`HTTP/1.1 ${status} ${code}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    };
    try {
      if (url?.pathname !== '/live') return refuse('NOT_FOUND', 'WebSocket endpoint is /live');
      const refused = admit(request, url, true);
      if (refused !== undefined) return refuse(refused.code, refused.message);
      if (hub.clientCount >= options.maxClients) return refuse('LIMIT_EXCEEDED', `at most ${options.maxClients} live clients`);
      // Counted from accept on; handleUpgrade accepts synchronously, so two upgrades cannot both pass.
      const address = request.socket.remoteAddress;
      if (address !== undefined && hub.clientsFrom(address) >= options.maxClientsPerAddress) {
        return refuse('LIMIT_EXCEEDED', `at most ${options.maxClientsPerAddress} live clients from one address`);
      }
      wss.handleUpgrade(request, socket, head, (ws) => hub.accept(ws, address));
    } catch (err) {
      // Nothing a client sends may take the process down: an 'upgrade' listener that throws would.
      requestLog(request, url).error({ err }, 'live upgrade failed');
      socket.destroy();
    }
  };

  return { onRequest, onUpgrade };
}

/** The dashboard's own origin is always allowed: the Origin's host equals the Host header. */
export function originAllowed(origin: string, host: string | undefined, allowed: readonly string[]): boolean {
  if (allowed.includes(origin)) return true;
  try {
    return host !== undefined && new URL(origin).host === host;
  } catch {
    return false;
  }
}

function serveStatic(response: ServerResponse, pathname: string, files: StaticFiles): void {
  const file = files.get(pathname === '/' ? '/index.html' : pathname);
  if (file === undefined) {
    if (files.size === 0) throw new SensorpipeError('NOT_FOUND', 'the dashboard is not built: run npm run build:web');
    throw new SensorpipeError('NOT_FOUND', 'no such file');
  }
  response.writeHead(200, {
    'content-type': file.type,
    'content-length': file.body.length,
    // index.html names the bundle; it must be re-read after an upgrade. The bundle may be cached briefly.
    'cache-control': file.type.startsWith('text/html') ? 'no-cache' : 'public, max-age=300',
    ...SECURITY_HEADERS,
  });
  response.end(file.body);
}
