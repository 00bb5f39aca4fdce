/**
 * The admin API's OpenAPI description: admin/openapi.json is what the code generates (regenerate with
 * `npx tsx admin/openapi.ts --write`), it has the shape of an OpenAPI 3.1 document (checked here
 * structurally: no OpenAPI 3.1 meta-schema validator is installed, ajv here is 6.x, draft-07 only), and
 * it describes every route the server answers and nothing it does not: probed on a real listener.
 */
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { OPENAPI_PATH, adminOpenApi, openApiFileCurrent } from '../../admin/openapi.ts';
import { ADMIN_ROUTES } from '../../admin/routes.ts';
import { ERROR_CODES } from '../../core/errors.ts';
import { startTestAdmin, type TestAdmin } from './helpers.ts';

const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'] as const;

/** The parts of the OpenAPI 3.1 specification (spec.openapis.org/oas/v3.1.0) this document uses, strictly. */
const Schema = z.record(z.string(), z.unknown());
const MediaTypes = z.record(z.string().regex(/^[a-z]+\/[a-z0-9.+-]+$/), z.strictObject({ schema: Schema }));
const Header = z.strictObject({ description: z.string().optional(), schema: Schema });
const Response = z.strictObject({ description: z.string().min(1), headers: z.record(z.string(), Header).optional(), content: MediaTypes.optional() });
const Parameter = z.strictObject({ name: z.string(), in: z.enum(['path', 'query', 'header', 'cookie']), required: z.boolean().optional(), description: z.string().optional(), schema: Schema });
const Operation = z.strictObject({
  operationId: z.string().regex(/^[A-Za-z][A-Za-z0-9]*$/),
  summary: z.string().optional(),
  parameters: z.array(Parameter).optional(),
  requestBody: z.strictObject({ required: z.boolean().optional(), content: MediaTypes }).optional(),
  responses: z.record(z.string().regex(/^([1-5]\d\d|default)$/), Response).refine((r) => Object.keys(r).length > 0),
});
const OpenApi31 = z.strictObject({
  openapi: z.string().regex(/^3\.1\.\d+$/),
  jsonSchemaDialect: z.string().url().optional(),
  info: z.strictObject({ title: z.string().min(1), version: z.string().min(1), description: z.string().optional() }),
  servers: z.array(z.strictObject({ url: z.string(), description: z.string().optional() })).optional(),
  security: z.array(z.record(z.string(), z.array(z.string()))).optional(),
  paths: z.record(z.string().regex(/^\//), z.partialRecord(z.enum(METHODS), Operation)),
  components: z.strictObject({
    securitySchemes: z.record(z.string(), z.strictObject({ type: z.literal('http'), scheme: z.string() })),
    schemas: z.record(z.string().regex(/^[A-Za-z0-9._-]+$/), Schema),
  }),
});

const doc = adminOpenApi() as z.infer<typeof OpenApi31>;

describe('admin/openapi.json', () => {
  it('is current (npx tsx admin/openapi.ts --write)', async () => {
    expect(await openApiFileCurrent(), `${OPENAPI_PATH} is stale`).toBe(true);
    expect(JSON.parse(readFileSync(OPENAPI_PATH, 'utf8'))).toEqual(doc);
  });

  it('has the shape of an OpenAPI 3.1 document', () => {
    const parsed = OpenApi31.safeParse(doc);
    expect(parsed.success, parsed.success ? '' : JSON.stringify(parsed.error.issues.slice(0, 3))).toBe(true);
    // Every $ref resolves inside the document; every operationId is unique; path templates declare their parameters.
    const text = JSON.stringify(doc);
    for (const [, ref] of text.matchAll(/"\$ref":"([^"]+)"/g)) {
      expect(ref).toMatch(/^#\/components\/schemas\//);
      expect(doc.components.schemas, ref).toHaveProperty([ref!.split('/').pop()!]);
    }
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
