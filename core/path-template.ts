/**
 * OpenAPI path templates (`/admin/devices/{id}/rotate`) as patterns, for the servers whose route tables
 * are written in them (admin/routes.ts, display/routes.ts), so a route and its description are one string.
 */

/** A template as a pattern: literal segments exactly, each `{name}` one segment (captured, still percent-encoded). */
export function templatePattern(path: string): RegExp {
  const source = path
    .split('/')
    .map((segment) => (/^\{[^}]+\}$/.test(segment) ? '([^/]+)' : segment.replace(/[.*+?^$()|[\]\\]/g, '\\$&')))
    .join('/');
  return new RegExp(`^${source}$`);
}
