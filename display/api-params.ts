/**
 * Which URL parameters each /api route takes, and the check that refuses any other before the route
 * reads its query. Each route's own schema (core/api.ts, core/query.ts) is strict too, but a route
 * without one (GET /api/devices/{id}, the API descriptions) accepted anything, and one that borrowed
 * another's parser (GET /api/devices/{id} read the history parameters) accepted those: a client's typo
 * or a misplaced `from` was silently ignored. Here every route names its parameters, taken from its
 * schema's keys, so a parameter added to a schema is accepted without a second list to keep in step.
 *
 * `token` (the viewer token as a last resort, display/http.ts) is taken on every /api route, as it
 * always was; `format` only where it means something, on the readings.
 */
import { AlertsQuerySchema, DevicesQuerySchema, QuarantineQuerySchema } from '../core/api.ts';
import { SensorpipeError } from '../core/errors.ts';
import { historyRequestSchema, queryParamsOf } from '../core/query.ts';

/** Parameters of the transport, not of a route: taken everywhere under /api/. */
export const TRANSPORT_PARAMS = ['token'] as const;

/** `format` of the readings: json (default) or csv. */
export const FORMAT_PARAM = 'format';

/** Each /api route's own URL parameters, by its path in display/routes.ts (transport ones aside). */
export const API_ROUTE_PARAMS: Readonly<Record<string, readonly string[]>> = {
  '/api/devices': Object.keys(DevicesQuerySchema.shape),
  '/api/devices/{id}': [],
  // The device of a history request is the path's, never a parameter.
  '/api/devices/{id}/readings': [...Object.keys(historyRequestSchema(0).shape).filter((name) => name !== 'device'), FORMAT_PARAM],
  '/api/alerts': Object.keys(AlertsQuerySchema.shape),
  '/api/quarantine': Object.keys(QuarantineQuerySchema.shape),
  '/api/openapi.json': [],
  '/api/asyncapi.json': [],
};

/** Longest parameter name quoted back: the name is the client's text. */
const NAME_QUOTE_MAX = 64;

/**
 * Throws QUERY_INVALID naming the first parameter the route does not take, empty or not (an empty
 * value counts as absent for a parameter the route takes, never as permission for one it does not),
 * or one given twice (core/query.ts queryParamsOf: on every route, those without a schema included).
 * A route missing from the table takes only the transport parameters.
 */
export function refuseUnknownParams(routePath: string, params: URLSearchParams): void {
  queryParamsOf(params);
  const own = API_ROUTE_PARAMS[routePath] ?? [];
  for (const name of params.keys()) {
    if (own.includes(name) || (TRANSPORT_PARAMS as readonly string[]).includes(name)) continue;
    const param = name.slice(0, NAME_QUOTE_MAX);
    const takes = own.length === 0 ? 'this route takes no parameters' : `this route takes ${own.join(', ')}`;
    const hint = name === 'device' && routePath.includes('{id}') ? ' (the device is named by the path)' : '';
    throw new SensorpipeError('QUERY_INVALID', `${param}: unknown parameter${hint}; ${takes}`, { param });
  }
}
