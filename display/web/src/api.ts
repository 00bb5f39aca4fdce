/**
 * The display's HTTP API (core/api.ts, core/query.ts), same origin as the page. URLs are relative to
 * the page, so the dashboard also works behind a reverse proxy under a sub-path.
 */
import type { DevicesResponse } from '../../../core/api.ts';
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

export function readingsCsvUrl(device: string, from: string): string {
  return apiUrl(`api/devices/${encodeURIComponent(device)}/readings`, { from, format: 'csv' });
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
