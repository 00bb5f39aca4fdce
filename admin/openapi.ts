/**
 * The admin API's OpenAPI 3.1 description, generated from its route table (admin/routes.ts) and the zod
 * schemas of its messages (admin/schemas.ts). The server answers it at GET /admin/openapi.json, and it is
 * written beside the code as admin/openapi.json (`npx tsx admin/openapi.ts --write`); a test keeps the
 * file current and checks that it describes every route the server answers.
 *
 * OpenAPI 3.1's schema dialect is JSON Schema 2020-12, which is what zod's toJSONSchema writes; the
 * conversion, the error answers and the file check are core/api-docs.ts's, shared with the display's.
 */
import { fileURLToPath } from 'node:url';
import { documentText, errorResponses, generatedFileCurrent, schemaRef as reference, writeWhenRun, type JsonObject } from '../core/api-docs.ts';
import type { ErrorCode } from '../core/errors.ts';
import { ADMIN_ROUTES, BODY_ERRORS, COMMON_ERRORS, type AdminRoute } from './routes.ts';

export const OPENAPI_PATH = fileURLToPath(new URL('./openapi.json', import.meta.url));

/** Headers of the admin API's error answers, by status. */
const ERROR_HEADERS = {
  401: { 'WWW-Authenticate': { schema: { type: 'string' } } },
  405: { Allow: { description: 'The methods the path takes.', schema: { type: 'string' } } },
  429: { 'Retry-After': { description: 'Seconds until the ban ends.', schema: { type: 'integer' } } },
};

function routeErrors(route: AdminRoute, components: JsonObject): JsonObject {
  const codes: ErrorCode[] = [...COMMON_ERRORS, ...(route.body === undefined ? ['UNSUPPORTED_MEDIA_TYPE' as const] : BODY_ERRORS), ...route.errors];
  return errorResponses(codes, components, ERROR_HEADERS);
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
    responses: { [String(route.response.status)]: success, ...routeErrors(route, components) },
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

export const openApiText = (): string => documentText(adminOpenApi());

/** True when admin/openapi.json is what the code generates now. */
export const openApiFileCurrent = (): Promise<boolean> => generatedFileCurrent(OPENAPI_PATH, openApiText());

await writeWhenRun(import.meta.url, OPENAPI_PATH, openApiText);
