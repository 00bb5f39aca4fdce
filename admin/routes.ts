/**
 * The admin API's routes, one table: the server (admin/http.ts) answers exactly these, and the OpenAPI
 * description (admin/openapi.ts) is generated from them, so neither can list a route the other lacks.
 */
import type { z } from 'zod';
import type { ErrorCode } from '../core/errors.ts';
import { templatePattern } from '../core/path-template.ts';
import {
  AddDeviceSchema,
  BulkAddSchema,
  BulkCredentialsSchema,
  CredentialsSchema,
  DeviceListSchema,
  DeviceSummarySchema,
  RotateDeviceSchema,
  UpdateDeviceSchema,
} from './schemas.ts';

export const ADMIN_PREFIX = '/admin';

export type BodyType = 'application/json' | 'text/csv';

export interface AdminRoute {
  operationId: 'getOpenApi' | 'listDevices' | 'addDevice' | 'bulkAddDevices' | 'getDevice' | 'updateDevice' | 'revokeDevice' | 'rotateDevice';
  method: 'GET' | 'POST' | 'PATCH';
  /** OpenAPI path template; `{id}` is a device id. */
  path: string;
  summary: string;
  /** The body the route reads: its schema, the media types it takes, and whether it may be left out. */
  body?: { schema: z.ZodType; types: readonly BodyType[]; optional: boolean };
  /** The success answer. `secrets`: it carries credentials (shown once, never cached). */
  response: { status: 200 | 201; schema: z.ZodType | undefined; description: string; secrets?: boolean; csv?: boolean };
  /** Error codes this route answers besides those of every route (auth, ban, method, size). */
  errors: readonly ErrorCode[];
}

/** Codes any route may answer: token missing or wrong, address banned, wrong method, unknown path. */
export const COMMON_ERRORS: readonly ErrorCode[] = ['AUTH_REQUIRED', 'LIMIT_EXCEEDED', 'METHOD_NOT_ALLOWED', 'NOT_FOUND'];
/** Codes any route with a body may answer besides. */
export const BODY_ERRORS: readonly ErrorCode[] = ['PAYLOAD_TOO_LARGE', 'PAYLOAD_INVALID', 'UNSUPPORTED_MEDIA_TYPE'];

const device = `${ADMIN_PREFIX}/devices/{id}`;

export const ADMIN_ROUTES: readonly AdminRoute[] = [
  {
    operationId: 'getOpenApi',
    method: 'GET',
    path: `${ADMIN_PREFIX}/openapi.json`,
    summary: 'This description of the admin API (OpenAPI 3.1).',
    response: { status: 200, schema: undefined, description: 'The OpenAPI document.' },
    errors: [],
  },
  {
    operationId: 'listDevices',
    method: 'GET',
    path: `${ADMIN_PREFIX}/devices`,
    summary: 'Every registered device, without secrets.',
    response: { status: 200, schema: DeviceListSchema, description: 'The devices, by id.' },
    errors: [],
  },
  {
    operationId: 'addDevice',
    method: 'POST',
    path: `${ADMIN_PREFIX}/devices`,
    summary: 'Register a device; its credentials are in this answer and nowhere else.',
    body: { schema: AddDeviceSchema, types: ['application/json'], optional: false },
    response: { status: 201, schema: CredentialsSchema, description: 'The new device\'s credentials (shown once).', secrets: true },
    errors: ['DEVICE_INVALID', 'REGISTRY_CONFLICT'],
  },
  {
    operationId: 'bulkAddDevices',
    method: 'POST',
    path: `${ADMIN_PREFIX}/devices/_bulk`,
    summary: 'Register many devices, all or none: every row is checked before any is written. Answers a file of credentials (CSV with Accept: text/csv, else JSON), shown once.',
    body: { schema: BulkAddSchema, types: ['application/json', 'text/csv'], optional: false },
    response: { status: 201, schema: BulkCredentialsSchema, description: 'The credentials of every device added (shown once), as an attachment.', secrets: true, csv: true },
    errors: ['DEVICE_INVALID', 'REGISTRY_CONFLICT'],
  },
  {
    operationId: 'getDevice',
    method: 'GET',
    path: device,
    summary: 'One device, without secrets.',
    response: { status: 200, schema: DeviceSummarySchema, description: 'The device.' },
    errors: ['DEVICE_INVALID', 'DEVICE_UNKNOWN'],
  },
  {
    operationId: 'updateDevice',
    method: 'PATCH',
    path: device,
    summary: 'Change a device\'s metadata (site, model, profile).',
    body: { schema: UpdateDeviceSchema, types: ['application/json'], optional: false },
    response: { status: 200, schema: DeviceSummarySchema, description: 'The device as changed.' },
    errors: ['DEVICE_INVALID', 'DEVICE_UNKNOWN'],
  },
  {
    operationId: 'revokeDevice',
    method: 'POST',
    path: `${device}/revoke`,
    summary: 'Revoke a device: the broker disconnects it within seconds and refuses it from then on.',
    response: { status: 200, schema: DeviceSummarySchema, description: 'The revoked device.' },
    errors: ['DEVICE_INVALID', 'DEVICE_UNKNOWN'],
  },
  {
    operationId: 'rotateDevice',
    method: 'POST',
    path: `${device}/rotate`,
    summary: 'Issue a new MQTT password and signing key; the old ones stop working (a connected device is disconnected).',
    body: { schema: RotateDeviceSchema, types: ['application/json'], optional: true },
    response: { status: 200, schema: CredentialsSchema, description: 'The device\'s new credentials (shown once).', secrets: true },
    errors: ['DEVICE_INVALID', 'DEVICE_UNKNOWN'],
  },
];

const PATTERNS = ADMIN_ROUTES.map((route) => ({ route, pattern: templatePattern(route.path), literal: !route.path.includes('{') }));

/**
 * The routes a path names, with its `{id}` segment (still percent-encoded). A literal path wins over a
 * template (`/admin/devices/_bulk` is not the device `_bulk`, which could not exist anyway: ids have no `_`).
 */
export function matchPath(pathname: string): { routes: AdminRoute[]; id: string | undefined } {
  const matches = PATTERNS.map((p) => ({ ...p, match: p.pattern.exec(pathname) })).filter((p) => p.match !== null);
  const chosen = matches.some((m) => m.literal) ? matches.filter((m) => m.literal) : matches;
  return { routes: chosen.map((m) => m.route), id: chosen[0]?.match?.[1] };
}
