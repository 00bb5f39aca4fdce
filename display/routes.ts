/**
 * The display's routes, one table: the server (display/http.ts) answers a path only if it is here (any
 * other /api/ path is 404; any other path is a file of the dashboard, if it has one), its metrics label
 * requests by the route, and the OpenAPI description (display/openapi.ts) must describe every route of
 * it, which a test checks. A route added here without a description fails that test; a route answered
 * without being added here is not answered at all.
 *
 * Every route answers GET and HEAD, OPTIONS (CORS preflights on the API), and 405 with `Allow` to any
 * other method: the display is read-only.
 */
import { OPS_PATHS } from '../core/ops-http.ts';
import { templatePattern } from '../core/path-template.ts';

/**
 * What answers a route: `api` (the viewer API: token, CORS), `docs` (the API descriptions: no token),
 * `ops` (core/ops-http.ts: metrics and probes, no token), `live` (the WebSocket upgrade).
 */
export type DisplayRouteKind = 'api' | 'docs' | 'ops' | 'live';

export interface DisplayRoute {
  /** OpenAPI path template; `{id}` is one path segment, a device id. */
  path: string;
  kind: DisplayRouteKind;
}

export const DISPLAY_ROUTES: readonly DisplayRoute[] = [
  { path: '/api/devices', kind: 'api' },
  { path: '/api/devices/{id}', kind: 'api' },
  { path: '/api/devices/{id}/readings', kind: 'api' },
  { path: '/api/alerts', kind: 'api' },
  { path: '/api/quarantine', kind: 'api' },
  { path: '/api/openapi.json', kind: 'docs' },
  { path: '/api/asyncapi.json', kind: 'docs' },
  ...[...OPS_PATHS].map((path): DisplayRoute => ({ path, kind: 'ops' })),
  { path: '/live', kind: 'live' },
];

/** A route's label on the display's metrics: its path, `{id}` written `:id` (the labels /metrics always had). */
export const routeLabel = (route: DisplayRoute): string => route.path.replaceAll('{id}', ':id');

// Literal paths first: a literal path wins over a template that would also match it.
const PATTERNS = [...DISPLAY_ROUTES]
  .sort((a, b) => Number(a.path.includes('{')) - Number(b.path.includes('{')))
  .map((route) => ({ route, pattern: templatePattern(route.path) }));

/** The route a path names, with its `{id}` segment (still percent-encoded), or undefined. */
export function matchRoute(pathname: string): { route: DisplayRoute; id: string | undefined } | undefined {
  for (const { route, pattern } of PATTERNS) {
    const match = pattern.exec(pathname);
    if (match !== null) return { route, id: match[1] };
  }
  return undefined;
}
