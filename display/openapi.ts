/**
 * The display's OpenAPI 3.1 description, generated from its route table (display/routes.ts) and the zod
 * schemas of core/ (query parameters: core/api.ts, core/query.ts; answers: the same; errors:
 * core/errors.ts). The display serves it at GET /api/openapi.json, and it is written beside the code as
 * display/openapi.json (`npx tsx display/openapi.ts --write`); a test keeps the file current, checks it
 * against the OpenAPI 3.1 schema, and checks that it describes every route the server answers.
 *
 * Each route of the table has one entry in ROUTE_DOCS, keyed by its path; a route without one is left
 * out of the document, and the test names it.
 */
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { documentText, errorResponses, generatedFileCurrent, schemaRef, writeWhenRun, type HeadersByStatus, type JsonObject } from '../core/api-docs.ts';
import {
  AlertsQuerySchema,
  AlertsResponseSchema,
  DeviceSummarySchema,
  DevicesQuerySchema,
  DevicesResponseSchema,
  HealthResponseSchema,
  QuarantineQuerySchema,
  QuarantineResponseSchema,
} from '../core/api.ts';
import type { ErrorCode } from '../core/errors.ts';
import { HistoryResultSchema, historyRequestSchema } from '../core/query.ts';
import { DeviceIdSchema } from '../core/schemas.ts';
import { DISPLAY_ROUTES, type DisplayRoute } from './routes.ts';

export const OPENAPI_PATH = fileURLToPath(new URL('./openapi.json', import.meta.url));

/** Names for the answers' schemas, so each is one entry of components.schemas rather than repeated inline. */
const names = z.registry<{ id?: string }>();
names.add(DevicesResponseSchema, { id: 'DeviceList' });
names.add(DeviceSummarySchema, { id: 'DeviceSummary' });
names.add(AlertsResponseSchema, { id: 'AlertList' });
names.add(HealthResponseSchema, { id: 'Health' });
names.add(HistoryResultSchema, { id: 'HistoryResult' });
names.add(QuarantineResponseSchema, { id: 'QuarantinePage' });

/** A query parameter schema: zod's object of URL parameters, and what each one means. */
interface QueryDoc {
  schema: z.ZodObject;
  /** Members of the schema that are not URL parameters (the device of a history request is the path's). */
  omit?: readonly string[];
  docs: Record<string, string>;
}

/** One success answer: its media types (`schema` undefined: described by `description` alone). */
interface SuccessDoc {
  status: number;
  description: string;
  content: Record<string, { schema: z.ZodType | JsonObject }>;
  headers?: JsonObject;
}

interface RouteDoc {
  operationId: string;
  summary: string;
  description?: string;
  query?: QueryDoc;
  /** Parameters the display reads itself, besides the query schema (`format`). */
  extraParams?: JsonObject[];
  success: SuccessDoc[];
  /** Error codes the route answers (AUTH_REQUIRED, FORBIDDEN and INTERNAL are added by its kind). */
  errors: readonly ErrorCode[];
}

const HEADER_STRING = { schema: { type: 'string' } };

/** Headers of error answers, by status. */
const ERROR_HEADERS: HeadersByStatus = {
  503: { 'Retry-After': { description: 'With SERVER_BUSY: seconds to wait before asking again.', schema: { type: 'integer' } } },
};

/** Headers of every API answer (display/http.ts): CORS for the allowed origins, gzip when it is worth it. */
const API_HEADERS = {
  'Access-Control-Allow-Origin': { description: 'The request\'s Origin, when it is an allowed one (the dashboard\'s own, SENSORPIPE_ALLOWED_ORIGINS).', ...HEADER_STRING },
  Vary: { description: 'Always names Origin (and Accept-Encoding).', ...HEADER_STRING },
  'Content-Encoding': { description: '`gzip` when the request accepts it and the body is not tiny.', ...HEADER_STRING },
};

const HISTORY_PARAMS: Record<string, string> = {
  metrics: 'Metric names, comma-separated (default: every metric of the device).',
  from: 'Start (inclusive): ms since the epoch, an ISO-8601 date, `now`, or relative to now (`-15m`, `now-7d`). Default: an hour ago.',
  to: 'End (exclusive), written as `from`. Default: now.',
  mode: '`raw` (the stored readings) or `aggregate` (windows); chosen from the range when left out.',
  fn: 'Aggregation of a window: mean, min, max, last, count (default mean).',
  every: 'Window length: ms or a duration (`30s`, `5m`, `1h`); chosen from the range and maxPoints when left out.',
  maxPoints: 'Most points per series (default 1000, at most 10,000): windows grow to fit; a raw answer is cut (`truncated`).',
};

/** What the viewer API's routes say; keyed by their path in DISPLAY_ROUTES. */
const ROUTE_DOCS: Record<string, RouteDoc> = {
  '/api/devices': {
    operationId: 'listDevices',
    summary: 'The fleet: every registered device with its status, newest values and completeness.',
    query: {
      schema: DevicesQuerySchema,
      docs: {
        status: 'Only devices in this state.',
        site: 'Only devices of this site (exact).',
        profile: 'Only devices of this profile (exact).',
        q: 'Text search over id, site and model (case-insensitive substring).',
      },
    },
    success: [{ status: 200, description: 'The devices that match, and counts before filtering.', content: { 'application/json': { schema: DevicesResponseSchema } } }],
    errors: ['QUERY_INVALID'],
  },
  '/api/devices/{id}': {
    operationId: 'getDevice',
    summary: 'One device, as in the list.',
    success: [{ status: 200, description: 'The device.', content: { 'application/json': { schema: DeviceSummarySchema } } }],
    errors: ['NOT_FOUND'],
  },
  '/api/devices/{id}/readings': {
    operationId: 'getReadings',
    summary: 'A device\'s history: raw readings or windows (mean, min, max, last, count with their envelope), as JSON or CSV.',
    description:
      'Read within a slot of the fleet-wide bound on history loads (SENSORPIPE_HISTORY_MAX_CONCURRENT, shared with /live): over it, 503 SERVER_BUSY with Retry-After. ' +
      'The CSV is streamed, one row per point (long format): with mode=raw every stored point of the range, `time,ts,metric,value`; aggregated, the windows of the answer, `time,ts,metric,<fn>_<window>,low_<window>,high_<window>` (e.g. mean_1m; low and high: the least and greatest value in the window).',
    query: { schema: historyRequestSchema(0), omit: ['device'], docs: HISTORY_PARAMS },
    extraParams: [{ name: 'format', in: 'query', required: false, description: '`json` (default) or `csv` (a file download).', schema: { type: 'string', enum: ['json', 'csv'] } }],
    success: [
      {
        status: 200,
        description: 'The series of the range, one per metric.',
        content: {
          'application/json': { schema: HistoryResultSchema },
          'text/csv': { schema: { type: 'string', description: 'Header `time,ts,metric,value` (raw) or `time,ts,metric,<fn>_<window>,low_<window>,high_<window>` (aggregated); one row per point; `time` is ISO-8601, `ts` ms.' } },
        },
        headers: { 'Content-Disposition': { description: 'With format=csv: `attachment; filename="<device>-raw-<from>-<to>.csv"` or `"<device>-aggregated-<fn>-<window>-<from>-<to>.csv"`.', ...HEADER_STRING } },
      },
    ],
    errors: ['QUERY_INVALID', 'QUERY_RANGE_INVALID', 'QUERY_FUNCTION_UNKNOWN', 'NOT_FOUND', 'SERVER_BUSY', 'STORE_UNAVAILABLE'],
  },
  '/api/alerts': {
    operationId: 'listAlerts',
    summary: 'Alerts across the fleet (or of one device): rules firing or pending now, and the newest state changes.',
    query: {
      schema: AlertsQuerySchema,
      docs: {
        device: 'Only this device\'s alerts; the answer then also lists every rule of the device (`rules`).',
        limit: 'Most entries of each list (default 100, at most 500).',
      },
    },
    success: [{ status: 200, description: 'The alerts.', content: { 'application/json': { schema: AlertsResponseSchema } } }],
    errors: ['QUERY_INVALID', 'NOT_FOUND'],
  },
  '/api/quarantine': {
    operationId: 'listQuarantine',
    summary: 'What ingest rejected, newest first, with the reason code and the start of the payload (attacker-controlled: show it as text only).',
    query: {
      schema: QuarantineQuerySchema,
      docs: {
        device: 'Only entries naming this device (registered or not: DEVICE_UNKNOWN entries name made-up ids).',
        reason: 'Only entries with this reason code.',
        limit: 'Most entries of the page (default 100, at most 1000).',
        before: 'Entries older than this time (ms), or the `next` of the previous page.',
      },
    },
    success: [{ status: 200, description: 'One page of entries; `next` leads to the older ones.', content: { 'application/json': { schema: QuarantineResponseSchema } } }],
    errors: ['QUERY_INVALID'],
  },
  '/api/openapi.json': {
    operationId: 'getOpenApi',
    summary: 'This description of the HTTP API (OpenAPI 3.1). No token needed: it describes, it holds no data.',
    success: [{ status: 200, description: 'The OpenAPI document.', content: { 'application/json': { schema: { type: 'object', description: 'An OpenAPI 3.1 document.' } } } }],
    errors: ['QUERY_INVALID'],
  },
  '/api/asyncapi.json': {
    operationId: 'getAsyncApi',
    summary: 'The description of the MQTT topics and of /live (AsyncAPI 3.0). No token needed: it describes, it holds no data.',
    success: [{ status: 200, description: 'The AsyncAPI document.', content: { 'application/json': { schema: { type: 'object', description: 'An AsyncAPI 3.0 document.' } } } }],
    errors: ['QUERY_INVALID'],
  },
  '/metrics': {
    operationId: 'getMetrics',
    summary: 'Prometheus metrics of the display process (HTTP requests by route, /live clients, history loads, store calls, process).',
    success: [{ status: 200, description: 'The Prometheus text exposition format.', content: { 'text/plain': { schema: { type: 'string' } } } }],
    errors: [],
  },
  '/healthz': {
    operationId: 'getHealth',
    summary: 'Health: 200 when the broker link and the store are up, 503 (same body) when not.',
    success: [
      { status: 200, description: 'Healthy.', content: { 'application/json': { schema: HealthResponseSchema } } },
      { status: 503, description: 'Not healthy: the body says what is down.', content: { 'application/json': { schema: HealthResponseSchema } } },
    ],
    errors: [],
  },
  '/livez': {
    operationId: 'getLiveness',
    summary: 'Liveness: 200 while the process answers (restart it if this fails).',
    success: [{ status: 200, description: 'Alive.', content: { 'application/json': { schema: { type: 'object', properties: { ok: { type: 'boolean', const: true } }, required: ['ok'] } } } }],
    errors: [],
  },
  '/readyz': {
    operationId: 'getReadiness',
    summary: 'Readiness: as /healthz (the API and /live can answer when the broker link and the store are up).',
    success: [
      { status: 200, description: 'Ready.', content: { 'application/json': { schema: HealthResponseSchema } } },
      { status: 503, description: 'Not ready: the body says what is down.', content: { 'application/json': { schema: HealthResponseSchema } } },
    ],
    errors: [],
  },
  '/live': {
    operationId: 'openLive',
    summary: 'The live feed: a WebSocket (subprotocol `sensorpipe.live.v1`) whose frames /api/asyncapi.json describes.',
    description:
      'A browser cannot set headers on a WebSocket handshake: it offers its token as a second subprotocol `bearer.<base64url of the token>` (never echoed). ' +
      'A request without `Upgrade: websocket` is answered 404. Refusals come before the handshake, as HTTP answers with the error body.',
    extraParams: [
      { name: 'Upgrade', in: 'header', required: true, schema: { type: 'string', const: 'websocket' } },
      { name: 'Sec-WebSocket-Protocol', in: 'header', required: false, description: '`sensorpipe.live.v1`, and optionally `bearer.<base64url token>`.', schema: { type: 'string' } },
    ],
    success: [{ status: 101, description: 'Switching protocols: the WebSocket is open; the server sends `welcome` first.', content: {} }],
    errors: ['NOT_FOUND', 'LIMIT_EXCEEDED'],
  },
};

/** Errors every route of a kind may answer besides its own. */
const KIND_ERRORS: Record<DisplayRoute['kind'], readonly ErrorCode[]> = {
  api: ['QUERY_INVALID', 'AUTH_REQUIRED', 'FORBIDDEN', 'INTERNAL'],
  docs: ['FORBIDDEN', 'INTERNAL'],
  ops: ['INTERNAL'],
  live: ['AUTH_REQUIRED', 'FORBIDDEN'],
};

/** The security of a kind: the viewer token where the display asks for one. */
const KIND_SECURITY: Record<DisplayRoute['kind'], JsonObject[]> = {
  api: [{ viewerToken: [] }, { viewerTokenQuery: [] }],
  docs: [],
  ops: [],
  live: [{ viewerToken: [] }, { viewerTokenQuery: [] }],
};

/** A URL parameter is text: a schema that takes a number or a string (zod's input side) is described as the string. */
function urlText(schema: JsonObject): JsonObject {
  const { default: _default, ...rest } = schema;
  if (Array.isArray(rest.type) && rest.type.includes('string')) return { ...rest, type: 'string' };
  if (Array.isArray(rest.anyOf)) {
    const text = (rest.anyOf as JsonObject[]).find((branch) => branch.type === 'string');
    if (text !== undefined) return text;
  }
  return rest;
}

function queryParameters(query: QueryDoc, components: JsonObject): JsonObject[] {
  const object = schemaRef(query.schema, components, { io: 'input' }) as { properties?: Record<string, JsonObject>; required?: string[] };
  return Object.entries(object.properties ?? {})
    .filter(([name]) => !(query.omit ?? []).includes(name))
    .map(([name, schema]) => ({
      name,
      in: 'query',
      required: (object.required ?? []).includes(name),
      ...(query.docs[name] === undefined ? {} : { description: query.docs[name] }),
      schema: urlText(schema),
    }));
}

function successResponse(success: SuccessDoc, kind: DisplayRoute['kind'], components: JsonObject): JsonObject {
  const content = Object.fromEntries(
    Object.entries(success.content).map(([type, { schema }]) => [type, { schema: schema instanceof z.ZodType ? schemaRef(schema, components, { names }) : schema }]),
  );
  const headers = { ...(kind === 'api' || kind === 'docs' ? API_HEADERS : {}), ...success.headers };
  return {
    description: success.description,
    ...(Object.keys(headers).length === 0 ? {} : { headers }),
    ...(Object.keys(content).length === 0 ? {} : { content }),
  };
}

function getOperation(route: DisplayRoute, doc: RouteDoc, components: JsonObject): JsonObject {
  const parameters = [
    ...(route.path.includes('{id}') ? [{ name: 'id', in: 'path', required: true, description: 'Device id (a lowercase slug), percent-encoded.', schema: schemaRef(DeviceIdSchema, components) }] : []),
    ...(doc.query === undefined ? [] : queryParameters(doc.query, components)),
    ...(doc.extraParams ?? []),
  ];
  return {
    operationId: doc.operationId,
    summary: doc.summary,
    ...(doc.description === undefined ? {} : { description: doc.description }),
    ...(parameters.length === 0 ? {} : { parameters }),
    security: KIND_SECURITY[route.kind],
    responses: {
      ...Object.fromEntries(doc.success.map((success) => [String(success.status), successResponse(success, route.kind, components)])),
      ...errorResponses([...KIND_ERRORS[route.kind], ...doc.errors], components, ERROR_HEADERS),
    },
  };
}

/** HEAD: the GET without its body (the headers, and the status, are the GET's). */
function headOperation(get: JsonObject): JsonObject {
  const responses = Object.fromEntries(
    Object.entries(get.responses as Record<string, JsonObject>).map(([status, { content: _body, ...response }]) => [status, response]),
  );
  return { ...get, operationId: `${String(get.operationId)}Head`, summary: `${String(get.summary)} Headers only.`, responses };
}

/**
 * OPTIONS: 204 with `Allow`; on the API (and its documents) a CORS preflight when it has an Origin:
 * an allowed origin gets the methods and headers it may use, any other is refused. No token is asked:
 * a browser never sends one with a preflight (Fetch standard, CORS-preflight request).
 */
function optionsOperation(route: DisplayRoute, doc: RouteDoc, components: JsonObject): JsonObject {
  const cors = route.kind === 'api' || route.kind === 'docs';
  const headers: JsonObject = { Allow: { description: 'Always `GET, HEAD, OPTIONS`.', schema: { type: 'string', const: 'GET, HEAD, OPTIONS' } } };
  if (cors) {
    Object.assign(headers, {
      'Access-Control-Allow-Origin': { description: 'The allowed Origin of the preflight.', ...HEADER_STRING },
      'Access-Control-Allow-Methods': { schema: { type: 'string', const: 'GET, HEAD' } },
      'Access-Control-Allow-Headers': { schema: { type: 'string', const: 'authorization' } },
      'Access-Control-Max-Age': { schema: { type: 'integer' } },
    });
  }
  return {
    operationId: `${doc.operationId}Options`,
    summary: cors ? 'CORS preflight (and the methods the path takes).' : 'The methods the path takes.',
    security: [],
    responses: { '204': { description: 'The methods the path takes; on the API, for an allowed Origin, what a cross-origin request may use.', headers }, ...errorResponses(cors ? ['FORBIDDEN'] : [], components) },
  };
}

export function displayOpenApi(): JsonObject {
  const components: JsonObject = {};
  const paths: Record<string, JsonObject> = {};
  for (const route of DISPLAY_ROUTES) {
    const doc = ROUTE_DOCS[route.path];
    if (doc === undefined) continue; // the test names every route left undescribed
    const get = getOperation(route, doc, components);
    paths[route.path] = {
      description: 'Any method but GET, HEAD and OPTIONS is answered 405 METHOD_NOT_ALLOWED with `Allow: GET, HEAD, OPTIONS`: the display is read-only.',
      get,
      ...(route.kind === 'live' ? {} : { head: headOperation(get) }),
      options: optionsOperation(route, doc, components),
    };
  }
  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'sensorpipe display API',
      version: '1',
      description:
        'The read-only viewer API of sensorpipe\'s display: devices, their history (JSON or CSV), alerts, health and metrics; the live feed is the /live WebSocket (its frames: /api/asyncapi.json). ' +
        'With SENSORPIPE_VIEWER_TOKEN set, the API and /live need the token (`Authorization: Bearer <token>`, or `?token=` as a last resort); without it they are open. ' +
        'Browser requests are refused (403 FORBIDDEN) unless their Origin is the dashboard\'s own or in SENSORPIPE_ALLOWED_ORIGINS. ' +
        'Every error is `{code, message}` with the HTTP status of its code (docs/ERRORS.md). ' +
        'A URL parameter a route does not list, or one given twice, is refused (400 QUERY_INVALID, `details.param` naming it); `token` is taken on every /api route. ' +
        'Paths outside /api/ and the routes here are files of the dashboard.',
    },
    servers: [{ url: '/', description: 'The display (SENSORPIPE_HTTP_HOST, SENSORPIPE_HTTP_PORT).' }],
    paths,
    components: {
      securitySchemes: {
        viewerToken: { type: 'http', scheme: 'bearer', description: 'The viewer token (SENSORPIPE_VIEWER_TOKEN), when one is set.' },
        viewerTokenQuery: { type: 'apiKey', in: 'query', name: 'token', description: 'The viewer token as a URL parameter: a last resort, since URLs end up in logs.' },
      },
      schemas: components,
    },
  };
}

export const openApiText = (): string => documentText(displayOpenApi());

/** True when display/openapi.json is what the code generates now. */
export const openApiFileCurrent = (): Promise<boolean> => generatedFileCurrent(OPENAPI_PATH, openApiText());

await writeWhenRun(import.meta.url, OPENAPI_PATH, openApiText);
