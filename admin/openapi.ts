/**
 * The admin API's OpenAPI 3.1 description, generated from its route table (admin/routes.ts) and the zod
 * schemas of its messages (admin/schemas.ts). The server answers it at GET /admin/openapi.json, and it is
 * written beside the code as admin/openapi.json (`npx tsx admin/openapi.ts --write`); a test keeps the
 * file current and checks that it describes every route the server answers.
 *
 * OpenAPI 3.1's schema dialect is JSON Schema 2020-12, which is what zod's toJSONSchema writes.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { ERROR_CODES, type ErrorCode } from '../core/errors.ts';
import { ADMIN_ROUTES, BODY_ERRORS, COMMON_ERRORS, type AdminRoute } from './routes.ts';
import { ErrorSchema } from './schemas.ts';

export const OPENAPI_PATH = fileURLToPath(new URL('./openapi.json', import.meta.url));

type JsonObject = Record<string, unknown>;

/** A schema as a reference into components.schemas (its `$defs`, named by their zod meta ids, are moved there). */
function reference(schema: z.ZodType, components: JsonObject): JsonObject {
  const text = JSON.stringify(z.toJSONSchema(schema, { target: 'draft-2020-12', unrepresentable: 'any' })).replaceAll('"#/$defs/', '"#/components/schemas/');
  const json = JSON.parse(text) as JsonObject & { $defs?: JsonObject };
  const { $schema: _dialect, $defs, ...root } = json;
  Object.assign(components, $defs ?? {});
  return root;
}

function errorResponses(route: AdminRoute, components: JsonObject): JsonObject {
  const codes: ErrorCode[] = [...COMMON_ERRORS, ...(route.body === undefined ? ['UNSUPPORTED_MEDIA_TYPE' as const] : BODY_ERRORS), ...route.errors];
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) byStatus.set(ERROR_CODES[code].http, [...(byStatus.get(ERROR_CODES[code].http) ?? []), code]);
  const errorRef = reference(ErrorSchema, components);
  return Object.fromEntries(
    [...byStatus.entries()]
      .sort(([a], [b]) => a - b)
      .map(([status, list]) => [
        String(status),
        {
          description: `${list.map((code) => `\`${code}\``).join(', ')}: ${list.map((code) => ERROR_CODES[code].text).join(' ')}`,
          ...(status === 405 ? { headers: { Allow: { description: 'The methods the path takes.', schema: { type: 'string' } } } } : {}),
          ...(status === 401 ? { headers: { 'WWW-Authenticate': { schema: { type: 'string' } } } } : {}),
          ...(status === 429 ? { headers: { 'Retry-After': { description: 'Seconds until the ban ends.', schema: { type: 'integer' } } } } : {}),
          content: { 'application/json': { schema: errorRef } },
        },
      ]),
  );
}

function operation(route: AdminRoute, components: JsonObject): JsonObject {
  const success: JsonObject = { description: route.response.description };
  if (route.response.schema !== undefined) {
    const content: JsonObject = { 'application/json': { schema: reference(route.response.schema, components) } };
    if (route.response.csv === true) {
      content['text/csv'] = { schema: { type: 'string', description: 'device_id,mqtt_username,mqtt_password,alg,signing_key,public_key — one row per device.' } };
    }
    success.content = content;
  } else {
    success.content = { 'application/json': { schema: { type: 'object', description: 'An OpenAPI 3.1 document.' } } };
  }
  if (route.response.secrets === true) {
    success.headers = { 'Cache-Control': { description: 'Always no-store: the answer holds secrets shown once.', schema: { type: 'string', const: 'no-store' } } };
  }
  const op: JsonObject = {
    operationId: route.operationId,
    summary: route.summary,
    ...(route.path.includes('{id}')
      ? { parameters: [{ name: 'id', in: 'path', required: true, description: 'Device id (a lowercase slug).', schema: { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,47}$' } }] }
      : {}),
    responses: { [String(route.response.status)]: success, ...errorResponses(route, components) },
  };
  if (route.body !== undefined) {
    const schema = reference(route.body.schema, components);
    op.requestBody = {
      required: !route.body.optional,
      content: Object.fromEntries(
        route.body.types.map((type) => [type, type === 'text/csv' ? { schema: { type: 'string', description: 'Header row id,alg,trust,payload,site,model,profile (id required, any order); one device per row.' } } : { schema }]),
      ),
    };
  }
  return op;
}

export function adminOpenApi(): JsonObject {
  const components: JsonObject = {};
  const paths: Record<string, JsonObject> = {};
  for (const route of ADMIN_ROUTES) {
    paths[route.path] = { ...paths[route.path], [route.method.toLowerCase()]: operation(route, components) };
  }
  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'sensorpipe admin API',
      version: '1',
      description:
        'Device provisioning for sensorpipe: the same operations, validation and error codes as `sensorpipe devices`. ' +
        'Off unless SENSORPIPE_ADMIN_TOKEN is set; every request needs `Authorization: Bearer <token>`. ' +
        'Secrets appear only in the answers of add, rotate and bulk add, once. Error codes: docs/ERRORS.md.',
    },
    servers: [{ url: '/', description: 'The admin listener (SENSORPIPE_ADMIN_HOST, SENSORPIPE_ADMIN_PORT).' }],
    security: [{ bearer: [] }],
    paths,
    components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } }, schemas: components },
  };
}

export const openApiText = (): string => `${JSON.stringify(adminOpenApi(), null, 2)}\n`;

/** True when admin/openapi.json is what the code generates now. */
export async function openApiFileCurrent(): Promise<boolean> {
  return (await readFile(OPENAPI_PATH, 'utf8').catch(() => '')) === openApiText();
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes('--write')) {
  await writeFile(OPENAPI_PATH, openApiText());
  process.stdout.write(`wrote ${OPENAPI_PATH}\n`);
}
