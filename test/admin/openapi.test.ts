/**
 * The admin API's OpenAPI description: admin/openapi.json is what the code generates (regenerate with
 * `npx tsx admin/openapi.ts --write`), it validates against the OpenAPI 3.1 schema
 * (@seriousme/openapi-schema-validator, every $ref resolved: test/core/api-doc-validators.ts), it keeps
 * the rules that schema cannot express (unique operationIds, path templates that declare their
 * parameters, error answers filed under their codes' status), it describes every route the server
 * answers and nothing it does not, and the real listener's answers are what their described schemas
 * accept.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { OPENAPI_PATH, adminOpenApi, openApiFileCurrent } from '../../admin/openapi.ts';
import { ADMIN_ROUTES } from '../../admin/routes.ts';
import { ERROR_CODES } from '../../core/errors.ts';
import { schemaValidator, validateOpenApi } from '../core/api-doc-validators.ts';
import { startTestAdmin, type TestAdmin } from './helpers.ts';

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

type Json = Record<string, unknown>;
interface Operation {
  operationId: string;
  parameters?: { name: string; in: string; required?: boolean }[];
  requestBody?: Json;
  responses: Record<string, { description: string; content?: Record<string, { schema: Json }> }>;
}
const doc = adminOpenApi() as Json & { paths: Record<string, Partial<Record<(typeof METHODS)[number], Operation>>>; components: Json };

describe('admin/openapi.json', () => {
  it('is current (npx tsx admin/openapi.ts --write)', async () => {
    expect(await openApiFileCurrent(), `${OPENAPI_PATH} is stale`).toBe(true);
    expect(JSON.parse(readFileSync(OPENAPI_PATH, 'utf8'))).toEqual(doc);
  });

  it('is a valid OpenAPI 3.1 document (and the validator refuses a broken one)', async () => {
    const result = await validateOpenApi(doc);
    expect(result.valid, JSON.stringify(result.errors)).toBe(true);
    const noDescription = structuredClone(doc);
    noDescription.paths['/admin/devices']!.get!.responses['200'] = { content: {} } as never; // a response needs a description
    expect((await validateOpenApi(noDescription)).valid).toBe(false);
    const danglingRef = structuredClone(doc);
    danglingRef.paths['/admin/devices']!.get!.responses['200']!.content!['application/json']!.schema = { $ref: '#/components/schemas/Nothing' };
    expect((await validateOpenApi(danglingRef)).valid).toBe(false);
  });

  it('keeps what the schema cannot check: unique operationIds, declared path parameters, error codes under their status', () => {
    const operations = Object.entries(doc.paths).flatMap(([path, item]) => Object.entries(item).map(([method, op]) => ({ path, method, op: op! })));
    expect(new Set(operations.map((o) => o.op.operationId)).size).toBe(operations.length);
    for (const { path, op } of operations) {
      const templated = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]);
      expect((op.parameters ?? []).filter((p) => p.in === 'path').map((p) => p.name), path).toEqual(templated);
      for (const p of op.parameters ?? []) if (p.in === 'path') expect(p.required).toBe(true);
    }
    // Each error answer names codes whose HTTP status it is filed under.
    for (const { op } of operations) {
      for (const [status, response] of Object.entries(op.responses)) {
        if (Number(status) < 400) continue;
        const codes = [...response.description.matchAll(/`([A-Z_]+)`/g)].map((m) => m[1] as keyof typeof ERROR_CODES);
        expect(codes.length).toBeGreaterThan(0);
        for (const code of codes) expect(ERROR_CODES[code].http, code).toBe(Number(status));
      }
    }
  });

  it('describes exactly the routes of the route table, with their bodies and answers', () => {
    const described = Object.entries(doc.paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`));
    expect(described.sort()).toEqual(ADMIN_ROUTES.map((r) => `${r.method} ${r.path}`).sort());
    for (const route of ADMIN_ROUTES) {
      const op = doc.paths[route.path]![route.method.toLowerCase() as 'get']!;
      expect(op.operationId).toBe(route.operationId);
      expect(op.responses).toHaveProperty(String(route.response.status));
      expect(op.responses).toHaveProperty('401');
      expect(Boolean(op.requestBody)).toBe(route.body !== undefined);
    }
  });
});

describe('the running server against its description', () => {
  let t: TestAdmin;
  beforeAll(async () => {
    t = await startTestAdmin();
    await t.call('POST', '/admin/devices', { body: { id: 'probe-1' } });
  });
  afterAll(async () => {
    await t?.close();
  });

  it('serves the description at GET /admin/openapi.json, behind the token', async () => {
    const served = await t.call('GET', '/admin/openapi.json');
    expect(served.status).toBe(200);
    expect(served.json()).toEqual(JSON.parse(readFileSync(OPENAPI_PATH, 'utf8')));
    expect((await t.call('GET', '/admin/openapi.json', { token: null })).status).toBe(401);
  });

  it("answers with a status its operation describes and a body that status's schema accepts", async () => {
    const pointer = (...tokens: string[]) => `#/${tokens.map((t) => t.replaceAll('~', '~0').replaceAll('/', '~1')).join('/')}`;
    const calls: [method: string, template: string, path: string, options?: Parameters<TestAdmin['call']>[2]][] = [
      ['POST', '/admin/devices', '/admin/devices', { body: { id: 'probe-2' } }],
      ['POST', '/admin/devices', '/admin/devices', { body: { id: 'probe-2' } }], // 409 REGISTRY_CONFLICT
      ['POST', '/admin/devices', '/admin/devices', { body: { id: 'Not An Id!' } }], // 400
      ['POST', '/admin/devices', '/admin/devices', { body: 'not json', contentType: 'application/json' }], // 400
      ['GET', '/admin/devices', '/admin/devices'],
      ['GET', '/admin/devices', '/admin/devices', { token: null }], // 401
      ['GET', '/admin/devices/{id}', '/admin/devices/probe-2'],
      ['GET', '/admin/devices/{id}', '/admin/devices/nobody'], // 404
      ['POST', '/admin/devices/{id}/rotate', '/admin/devices/probe-2/rotate'],
      ['POST', '/admin/devices/{id}/revoke', '/admin/devices/probe-2/revoke'],
    ];
    const statuses: number[] = [];
    for (const [method, template, path, options] of calls) {
      const reply = await t.call(method, path, options);
      statuses.push(reply.status);
      const described = doc.paths[template]![method.toLowerCase() as 'get']!.responses[String(reply.status)];
      expect(described, `${method} ${path} answered ${reply.status}, which it does not describe`).toBeDefined();
      const validate = schemaValidator(doc, pointer('paths', template, method.toLowerCase(), 'responses', String(reply.status), 'content', 'application/json', 'schema'), '2020-12');
      expect(validate(reply.json()), `${method} ${path} ${reply.status}: ${JSON.stringify(validate.errors)}`).toBe(true);
      // The schema is not one that takes anything.
      expect(validate({ unexpected: true }), `${method} ${path} ${reply.status}`).toBe(false);
    }
    expect(statuses).toEqual([201, 409, 400, 400, 200, 401, 200, 404, 200, 200]);
  });

  it('answers every described operation (neither 404 nor 405), and 404 or 405 for everything else it is asked', async () => {
    const paths = Object.keys(doc.paths);
    const probes = [...paths, '/admin', '/admin/', '/admin/devices/probe-1/', '/admin/devices/probe-1/delete', '/admin/device', '/admin/openapi.yaml', '/admin/devices/probe-1/rotate/x', '/'];
    for (const template of probes) {
      const path = template.replace('{id}', 'probe-1');
      for (const method of [...METHODS.filter((m) => m !== 'head' && m !== 'trace'), 'propfind']) {
        const reply = await t.call(method.toUpperCase(), path);
        const describedOp = doc.paths[template]?.[method as 'get'];
        if (describedOp !== undefined) expect([404, 405], `${method} ${path} is described but not answered`).not.toContain(reply.status);
        else expect([404, 405], `${method} ${path} is answered (${reply.status}) but not described`).toContain(reply.status);
        expect(reply.status).toBeLessThan(500);
      }
    }
  });
});
