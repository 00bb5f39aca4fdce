/**
 * The alerts component's own small HTTP port: the ops endpoints every process serves (/metrics,
 * /healthz, /livez, /readyz: core/ops-http.ts) and the read-only alert API:
 *
 *   GET /api/alerts            every rule and device pair firing now: { firing: [...] }
 *   GET /api/alerts/history    the alert log, newest first: ?device=&rule=&from=&to=&limit= (default 100, at most 1000)
 *
 * Query parameters are outside input: checked with zod, errors answered as {code, message}; other
 * methods get 405 METHOD_NOT_ALLOWED with `Allow: GET, HEAD`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { AlertHistoryQuerySchema } from '../core/alert-rules.ts';
import type { AlertEvent, AlertRuleState } from '../core/alerts.ts';
import { SensorpipeError } from '../core/errors.ts';
import { answerOps, OPS_PATHS, sendError, sendJson, serveOps, type OpsEndpoints, type OpsServer } from '../core/ops-http.ts';
import { parseTimeParam, queryParamError, queryParamsOf } from '../core/query.ts';

export interface AlertsApi {
  firing(): (AlertRuleState & { device: string })[];
  history(filter: { device?: string | undefined; rule?: string | undefined; from?: number | undefined; to?: number | undefined; limit: number }): AlertEvent[];
}

const API_PATHS = new Set(['/api/alerts', '/api/alerts/history']);

export function parseHistoryQuery(params: URLSearchParams, now: number): { device?: string | undefined; rule?: string | undefined; from?: number | undefined; to?: number | undefined; limit: number } {
  const parsed = AlertHistoryQuerySchema.safeParse(queryParamsOf(params));
  if (!parsed.success) throw queryParamError(parsed.error);
  const time = (name: 'from' | 'to'): number | undefined => {
    const text = parsed.data[name];
    if (text === undefined) return undefined;
    const ms = parseTimeParam(text, now);
    if (!Number.isSafeInteger(ms)) throw new SensorpipeError('QUERY_RANGE_INVALID', `${name}: must be ms since the epoch, an ISO-8601 date, now, or relative such as -1h`, { param: name });
    return ms;
  };
  const from = time('from');
  const to = time('to');
  if (from !== undefined && to !== undefined && from >= to) throw new SensorpipeError('QUERY_RANGE_INVALID', 'from must be before to', { param: 'from' });
  return { device: parsed.data.device, rule: parsed.data.rule, from, to, limit: parsed.data.limit ?? 100 };
}

async function route(request: IncomingMessage, response: ServerResponse, api: AlertsApi, ops: OpsEndpoints): Promise<void> {
  const url = new URL(request.url ?? '/', 'http://alerts.invalid');
  const known = API_PATHS.has(url.pathname) || OPS_PATHS.has(url.pathname);
  if (!known) return sendError(response, new SensorpipeError('NOT_FOUND', 'try /api/alerts, /api/alerts/history, /metrics or /healthz'));
  if (request.method !== 'GET' && request.method !== 'HEAD') {
    return sendError(response, new SensorpipeError('METHOD_NOT_ALLOWED', `${url.pathname} takes GET and HEAD`), { allow: 'GET, HEAD' });
  }
  if (OPS_PATHS.has(url.pathname)) {
    await answerOps(url.pathname, response, ops);
    return;
  }
  try {
    if (url.pathname === '/api/alerts') {
      if ([...url.searchParams.keys()].length > 0) throw new SensorpipeError('QUERY_INVALID', '/api/alerts takes no parameters');
      return sendJson(response, 200, { firing: api.firing() });
    }
    return sendJson(response, 200, { events: api.history(parseHistoryQuery(url.searchParams, Date.now())) });
  } catch (err) {
    if (err instanceof SensorpipeError) return sendError(response, err);
    throw err;
  }
}

/** The alerts port: the alert API and the ops endpoints, on core/ops-http.ts's server (same limits, same close). */
export function serveAlertsHttp(host: string, port: number, api: AlertsApi, ops: OpsEndpoints): Promise<OpsServer> {
  return serveOps(host, port, ops, (request, response) => route(request, response, api, ops));
}
