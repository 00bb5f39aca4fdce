/**
 * The display's OpenAPI description (display/openapi.json) against its code and a running display:
 * the file is what the code generates (`npx tsx display/openapi.ts --write`), it validates against the
 * OpenAPI 3.1 schema (@seriousme/openapi-schema-validator, every $ref resolved), it describes every
 * route of the route table (display/routes.ts) that the server routes by, with the query parameters of
 * core/'s zod schemas, and on a real pipeline (broker, ingest, embedded store, display with a viewer
 * token): every described operation answers, with a status it describes and a body its schema accepts;
 * every method or path it does not describe is 404 or 405; the documents are served without the token.
 */
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asyncApi } from '../../core/asyncapi.ts';
import { AlertsQuerySchema, DevicesQuerySchema, QuarantineQuerySchema } from '../../core/api.ts';
import { ERROR_CODES } from '../../core/errors.ts';
import { liveSubprotocols } from '../../core/live-subprotocol.ts';
import { historyRequestSchema } from '../../core/query.ts';
import { API_ROUTE_PARAMS } from '../../display/api-params.ts';
import { OPENAPI_PATH, displayOpenApi, openApiFileCurrent } from '../../display/openapi.ts';
import { DISPLAY_ROUTES, matchRoute } from '../../display/routes.ts';
import { startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { schemaValidator, validateOpenApi } from '../core/api-doc-validators.ts';
import { bodyText, sendRaw } from './http-helpers.ts';

type Json = Record<string, unknown>;
interface Operation {
  operationId: string;
  parameters?: { name: string; in: string; required?: boolean; description?: string }[];
  responses: Record<string, { description: string; content?: Record<string, unknown>; headers?: Json }>;
  security?: Json[];
}
const doc = displayOpenApi() as Json & { paths: Record<string, Record<string, Operation>>; components: Json };
const METHODS = ['get', 'head', 'options', 'post', 'put', 'delete', 'patch'] as const;
const operationsOf = (path: string) => Object.entries(doc.paths[path] ?? {}).filter(([method]) => (METHODS as readonly string[]).includes(method)) as [string, Operation][];

describe('display/openapi.json', () => {
  it('is current (npx tsx display/openapi.ts --write)', async () => {
    expect(await openApiFileCurrent(), `${OPENAPI_PATH} is stale`).toBe(true);
    expect(JSON.parse(readFileSync(OPENAPI_PATH, 'utf8'))).toEqual(doc);
  });

  it('is a valid OpenAPI 3.1 document (and the validator refuses a broken one)', async () => {
    const result = await validateOpenApi(doc);
    expect(result.valid, JSON.stringify(result.errors)).toBe(true);
    const broken = structuredClone(doc);
    broken.paths['/api/devices']!.get!.responses['200'] = { content: {} } as never; // a response needs a description
    expect((await validateOpenApi(broken)).valid).toBe(false);
  });

  it('describes every route of the route table, and nothing else', () => {
    expect(Object.keys(doc.paths).sort(), 'routes of display/routes.ts without a description in display/openapi.ts (ROUTE_DOCS)').toEqual(DISPLAY_ROUTES.map((r) => r.path).sort());
    for (const route of DISPLAY_ROUTES) {
      const methods = operationsOf(route.path).map(([m]) => m).sort();
      expect(methods, route.path).toEqual(route.kind === 'live' ? ['get', 'options'] : ['get', 'head', 'options']);
    }
    const ids = Object.keys(doc.paths).flatMap((path) => operationsOf(path).map(([, op]) => op.operationId));
    expect(new Set(ids).size).toBe(ids.length);
  });

  it('the route table routes: each template matches its own paths, and no other', () => {
    for (const route of DISPLAY_ROUTES) expect(matchRoute(route.path.replace('{id}', 'dev-0'))?.route).toBe(route);
    for (const path of ['/api', '/api/', '/api/devices/', '/api/devices/a/b', '/api/devices/dev-0/readings/x', '/live/x', '/metricsx']) expect(matchRoute(path), path).toBeUndefined();
  });

  it('query parameters are those of the zod schemas, each with a description; path templates declare theirs', () => {
    const expected: Record<string, string[]> = {
      '/api/devices': Object.keys(DevicesQuerySchema.shape),
      '/api/devices/{id}/readings': [...Object.keys(historyRequestSchema(0).shape).filter((k) => k !== 'device'), 'format'],
      '/api/alerts': Object.keys(AlertsQuerySchema.shape),
      '/api/quarantine': Object.keys(QuarantineQuerySchema.shape),
    };
    for (const path of Object.keys(doc.paths)) {
      const get = doc.paths[path]!.get!;
      const query = (get.parameters ?? []).filter((p) => p.in === 'query');
      expect(query.map((p) => p.name).sort(), path).toEqual([...(expected[path] ?? [])].sort());
      for (const p of query) expect(p.description, `${path} ${p.name}`).toBeTruthy();
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      expect((get.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name), path).toEqual(templated);
    }
  });

  it('the parameters the server takes on each /api route (display/api-params.ts) are the ones described', () => {
    const apiRoutes = DISPLAY_ROUTES.filter((r) => r.kind === 'api' || r.kind === 'docs').map((r) => r.path);
    expect(Object.keys(API_ROUTE_PARAMS).sort(), 'an /api route without its list of parameters').toEqual(apiRoutes.sort());
    for (const path of apiRoutes) {
      const described = (doc.paths[path]!.get!.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name);
      expect([...API_ROUTE_PARAMS[path]!].sort(), path).toEqual(described.sort());
      // Every one of them answers QUERY_INVALID for a parameter it does not take.
      expect(doc.paths[path]!.get!.responses['400']?.description, path).toContain('`QUERY_INVALID`');
    }
  });

  it('each error answer names codes whose HTTP status it is filed under (core/errors.ts)', () => {
    for (const path of Object.keys(doc.paths)) {
      for (const [, op] of operationsOf(path)) {
        for (const [status, response] of Object.entries(op.responses)) {
          const codes = [...response.description.matchAll(/`([A-Z_]+)`/g)].map((m) => m[1] as keyof typeof ERROR_CODES);
          if (Number(status) < 400 || codes.length === 0) continue; // 503 of /healthz is a health body, not an error
          for (const code of codes) expect(ERROR_CODES[code]?.http, `${path} ${status} ${code}`).toBe(Number(status));
        }
      }
    }
  });

  it('the viewer token guards the API and /live, not the documents nor the probes', () => {
    for (const route of DISPLAY_ROUTES) {
      const security = doc.paths[route.path]!.get!.security ?? [];
      expect(security.length > 0, route.path).toBe(route.kind === 'api' || route.kind === 'live');
      if (route.kind === 'api') expect(doc.paths[route.path]!.get!.responses).toHaveProperty('401');
    }
  });
});

// ---- against a running display -----------------------------------------------------------------------------

const TOKEN = 'openapi-viewer-token';
const ALLOWED = 'https://ops.example.com';
const FOREIGN = 'https://evil.example';
const NOW = Date.now();
let pipeline: TestPipeline;

beforeAll(async () => {
  pipeline = await startTestPipeline({ devices: 2, displayEnv: { SENSORPIPE_VIEWER_TOKEN: TOKEN, SENSORPIPE_ALLOWED_ORIGINS: ALLOWED } });
  await pipeline.store.write(Array.from({ length: 60 }, (_, i) => ({ device: 'dev-0', metric: 'temperature', ts: NOW - 3_000_000 + i * 10_000, value: 20 + i / 10 })));
}, 60_000);
afterAll(async () => pipeline?.close());

/** Asks for gzip, as browsers do; the text is the body decompressed. */
async function send(method: string, path: string, headers: Record<string, string> = {}) {
  const answer = await sendRaw(pipeline.display.port, method, path, { 'accept-encoding': 'gzip', ...headers });
  return { ...answer, text: bodyText(answer) };
}

const withToken = { authorization: `Bearer ${TOKEN}` };
/** A path of the template that names something that exists, with parameters that make the history non-empty. */
const concrete = (template: string) =>
  template.replace('{id}', 'dev-0') + (template.endsWith('/readings') ? `?metrics=temperature&from=${NOW - 3_600_000}&to=${NOW}` : '');
const pointer = (...tokens: string[]) => `#/${tokens.map((t) => t.replaceAll('~', '~0').replaceAll('/', '~1')).join('/')}`;

describe('the running display against its description', () => {
  it('serves both documents at /api/openapi.json and /api/asyncapi.json, without the token', async () => {
    const openapi = await send('GET', '/api/openapi.json');
    expect(openapi.status).toBe(200);
    expect(JSON.parse(openapi.text)).toEqual(JSON.parse(readFileSync(OPENAPI_PATH, 'utf8')));
    const asyncapi = await send('GET', '/api/asyncapi.json');
    expect(asyncapi.status).toBe(200);
    expect(JSON.parse(asyncapi.text)).toEqual(asyncApi());
    // Still the API's origin rule: a page of a foreign origin may not read it.
    expect((await send('GET', '/api/openapi.json', { origin: FOREIGN })).status).toBe(403);
    // …while the data it describes needs the token.
    expect((await send('GET', '/api/devices')).status).toBe(401);
  });

  it.each(DISPLAY_ROUTES.filter((r) => r.kind !== 'live').map((r) => r.path))('GET, HEAD and OPTIONS %s answer as described, with bodies the schemas accept', async (template) => {
    const path = concrete(template);
    for (const [method, op] of operationsOf(template)) {
      const headers = method === 'options' ? { origin: ALLOWED } : withToken;
      const answer = await send(method.toUpperCase(), path, headers);
      expect(Object.keys(op.responses), `${method} ${path}: ${answer.status} is not described`).toContain(String(answer.status));
      expect(answer.status, `${method} ${path}`).toBeLessThan(300);
      const content = op.responses[String(answer.status)]!.content;
      if (method !== 'get' || content === undefined) continue;
      const type = String(answer.headers['content-type']).split(';')[0]!;
      expect(Object.keys(content), `${path} answered ${type}`).toContain(type);
      if (type !== 'application/json') continue;
      const validate = schemaValidator(doc, pointer('paths', template, 'get', 'responses', String(answer.status), 'content', type, 'schema'), '2020-12');
      expect(validate(JSON.parse(answer.text)), `${path}: ${JSON.stringify(validate.errors?.slice(0, 3))}`).toBe(true);
    }
  });

  it('the CSV export answers as described', async () => {
    const answer = await send('GET', `${concrete('/api/devices/{id}/readings')}&format=csv&mode=raw`, withToken);
    expect(answer.status).toBe(200);
    expect(Object.keys(doc.paths['/api/devices/{id}/readings']!.get!.responses['200']!.content!)).toContain(String(answer.headers['content-type']).split(';')[0]);
    expect(answer.text.split('\n')[0]).toBe('time,ts,metric,value');
  });

  it('refusals are described with their status: no token, an unknown device, a bad parameter, a foreign preflight', async () => {
    const cases: [method: string, template: string, path: string, headers: Record<string, string>, code: string][] = [
      ['get', '/api/devices', '/api/devices', {}, 'AUTH_REQUIRED'],
      ['get', '/api/devices/{id}', '/api/devices/nope', withToken, 'NOT_FOUND'],
      ['get', '/api/devices', '/api/devices?status=asleep', withToken, 'QUERY_INVALID'],
      ['get', '/api/devices/{id}/readings', '/api/devices/dev-0/readings?fn=median', withToken, 'QUERY_FUNCTION_UNKNOWN'],
      ['get', '/api/devices/{id}/readings', '/api/devices/dev-0/readings?from=-1h&to=-2h', withToken, 'QUERY_RANGE_INVALID'],
      ['get', '/api/alerts', '/api/alerts?limit=many', withToken, 'QUERY_INVALID'],
      ['get', '/api/quarantine', '/api/quarantine?reason=NOPE', withToken, 'QUERY_INVALID'],
      ['get', '/api/devices/{id}', '/api/devices/dev-0?from=-1h', withToken, 'QUERY_INVALID'],
      ['get', '/api/devices/{id}/readings', '/api/devices/dev-0/readings?colour=red', withToken, 'QUERY_INVALID'],
      ['get', '/api/openapi.json', '/api/openapi.json?v=2', {}, 'QUERY_INVALID'],
      ['get', '/api/asyncapi.json', '/api/asyncapi.json?format=yaml', {}, 'QUERY_INVALID'],
      ['options', '/api/devices', '/api/devices', { origin: FOREIGN }, 'FORBIDDEN'],
    ];
    for (const [method, template, path, headers, code] of cases) {
      const answer = await send(method.toUpperCase(), path, headers);
      const described = doc.paths[template]![method]!.responses[String(answer.status)];
      expect(described, `${method} ${path}: ${answer.status} not described`).toBeDefined();
      if (method !== 'options') expect(JSON.parse(answer.text)).toMatchObject({ code });
      expect(described!.description).toContain(`\`${code}\``);
    }
  });

  it('/live: the WebSocket opens as described (101), and its welcome frame is what core/asyncapi.json says', async () => {
    const ws = new WebSocket(`ws://127.0.0.1:${pipeline.display.port}/live`, liveSubprotocols(TOKEN));
    const first = await new Promise<string>((resolve, reject) => {
      ws.once('message', (data: Buffer) => resolve(data.toString('utf8')));
      ws.once('error', reject);
      ws.once('unexpected-response', (_req, res) => reject(new Error(`upgrade refused: ${res.statusCode ?? 0}`)));
    });
    ws.close();
    expect(doc.paths['/live']!.get!.responses).toHaveProperty('101');
    const validate = schemaValidator(asyncApi(), '#/components/messages/liveWelcome/payload', 'draft-07');
    expect(validate(JSON.parse(first)), JSON.stringify(validate.errors)).toBe(true);
    // Without the token the upgrade is refused with a status the description names.
    const refused = await new Promise<number>((resolve, reject) => {
      const anonymous = new WebSocket(`ws://127.0.0.1:${pipeline.display.port}/live`, liveSubprotocols(null));
      anonymous.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
      anonymous.once('open', () => reject(new Error('opened without a token')));
      anonymous.once('error', () => undefined);
    });
    expect(doc.paths['/live']!.get!.responses).toHaveProperty(String(refused));
  });

  it('every method a path is not described for, and every path not described, is 404 or 405', async () => {
    const extra = ['/api', '/api/', '/api/devices/', '/api/devices/dev-0/extra', '/api/devices/dev-0/readings/x', '/api/nothing', '/api/openapi.yaml', '/healthz/x', '/live/x'];
    for (const template of new Set([...Object.keys(doc.paths), ...DISPLAY_ROUTES.map((r) => r.path), ...extra])) {
      const path = template.replace('{id}', 'dev-0');
      for (const method of [...METHODS, 'propfind']) {
        const described = doc.paths[template]?.[method];
        if (described !== undefined) continue; // answered above
        const answer = await send(method.toUpperCase(), path, withToken);
        expect([404, 405], `${method} ${path} is answered ${answer.status} but not described`).toContain(answer.status);
        if (answer.status === 405) expect(answer.headers.allow).toBe('GET, HEAD, OPTIONS');
      }
    }
  });
});
