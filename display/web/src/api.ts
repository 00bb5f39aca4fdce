/**
 * The display's HTTP API (core/api.ts, core/query.ts), same origin as the page. URLs are relative to
 * the page, so the dashboard also works behind a reverse proxy under a sub-path.
 */
import type { AlertsResponse, DevicesResponse, QuarantineResponse } from '../../../core/api.ts';
import { getToken } from './token.ts';

/** The API answered 401 AUTH_REQUIRED: there is no token, or it is not the configured one. */
export class AuthRequiredError extends Error {
  constructor() {
    super('a viewer token is required');
  }
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

export function apiUrl(path: string, params: Record<string, string> = {}): string {
  const url = new URL(path, document.baseURI);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  return url.href;
}

function withToken(signal?: AbortSignal): RequestInit {
  const token = getToken();
  const init: RequestInit = token === null ? {} : { headers: { authorization: `Bearer ${token}` } };
  if (signal !== undefined) init.signal = signal;
  return init;
}

async function apiFetch(url: string, signal?: AbortSignal): Promise<Response> {
  const response = await fetch(url, withToken(signal));
  if (response.status === 401) throw new AuthRequiredError();
  if (!response.ok) {
    // Errors are {code, message} (core/errors.ts); anything else (a proxy's HTML page) keeps the status.
    const body = (await response.json().catch(() => null)) as { code?: unknown; message?: unknown } | null;
    const code = typeof body?.code === 'string' ? body.code : `HTTP_${response.status}`;
    const message = typeof body?.message === 'string' ? body.message : response.statusText;
    throw new ApiError(response.status, code, message);
  }
  return response;
}

/**
 * Whether the API refuses our token (or its absence). The display refuses a /live handshake with a bad
 * token by an HTTP 401, which a browser's WebSocket reports only as close code 1006, the same as a
 * network error: asking the API tells the two apart. Network errors count as "no".
 */
export async function tokenRefused(): Promise<boolean> {
  try {
    // A small answer whatever the fleet's size: revoked devices are few.
    const response = await fetch(apiUrl('api/devices', { status: 'revoked' }), withToken());
    return response.status === 401;
  } catch {
    return false;
  }
}

export async function fetchDevices(params: Record<string, string> = {}, signal?: AbortSignal): Promise<DevicesResponse> {
  const response = await apiFetch(apiUrl('api/devices', params), signal);
  return (await response.json()) as DevicesResponse;
}

/** GET /api/alerts: the fleet's firing and pending alerts and recent events, or one device's (with its rules). */
export async function fetchAlerts(params: { device?: string; limit?: number } = {}, signal?: AbortSignal): Promise<AlertsResponse> {
  const query: Record<string, string> = {};
  if (params.device !== undefined) query.device = params.device;
  if (params.limit !== undefined) query.limit = String(params.limit);
  const response = await apiFetch(apiUrl('api/alerts', query), signal);
  return (await response.json()) as AlertsResponse;
}

/** GET /api/quarantine: rejected messages, newest first, filtered; `before` is the previous page's `next`. */
export async function fetchQuarantine(params: { device?: string; reason?: string; before?: string; limit?: number } = {}, signal?: AbortSignal): Promise<QuarantineResponse> {
  const query: Record<string, string> = {};
  if (params.device) query.device = params.device;
  if (params.reason) query.reason = params.reason;
  if (params.before) query.before = params.before;
  if (params.limit !== undefined) query.limit = String(params.limit);
  const response = await apiFetch(apiUrl('api/quarantine', query), signal);
  return (await response.json()) as QuarantineResponse;
}

/** The raw CSV export of a device's readings from `from` on: every stored point, streamed (display/csv.ts). */
export function readingsCsvUrl(device: string, from: string): string {
  return apiUrl(`api/devices/${encodeURIComponent(device)}/readings`, { from, mode: 'raw', format: 'csv' });
}

/**
 * The time of a device's first reading from `from` on, or undefined when it has none: the first raw
 * point of each metric (`maxPoints=1`; a cut answer holds each series' first point), the earliest of them.
 */
export async function fetchFirstReading(device: string, from: string, signal?: AbortSignal): Promise<number | undefined> {
  const response = await apiFetch(apiUrl(`api/devices/${encodeURIComponent(device)}/readings`, { from, mode: 'raw', maxPoints: '1' }), signal);
  const body = (await response.json()) as { series?: { points?: { ts?: unknown }[] }[] };
  let first: number | undefined;
  for (const series of body.series ?? []) {
    const ts = series.points?.[0]?.ts;
    if (typeof ts === 'number' && (first === undefined || ts < first)) first = ts;
  }
  return first;
}

/**
 * Saves the CSV export. A plain link cannot carry an Authorization header, so with a token the file is
 * fetched here and handed to the browser as a blob.
 */
export async function downloadCsv(url: string, filename: string): Promise<void> {
  const blob = await (await apiFetch(url)).blob();
  const objectUrl = URL.createObjectURL(blob);
  const link = Object.assign(document.createElement('a'), { href: objectUrl, download: filename });
  document.body.append(link);
  link.click();
  link.remove();
  // Revoked on a later turn: revoking at once can cancel the download in some browsers.
  setTimeout(() => URL.revokeObjectURL(objectUrl), 10_000);
}
