/**
 * How a `/live` client names the protocol and, from a browser, carries its viewer token. Kept apart from
 * core/live.ts so the dashboard can import it without zod.
 *
 * The WebSocket subprotocol of `/live`, which the server selects. A browser cannot set headers on a
 * WebSocket handshake, so the dashboard offers its viewer token as a second subprotocol
 * (`bearer.<base64url of the token>`): unlike a `?token=` query, it stays out of URLs, and so out of
 * proxy logs and browser history. The server never echoes it.
 */
export const LIVE_SUBPROTOCOL = 'sensorpipe.live.v1';
export const TOKEN_SUBPROTOCOL_PREFIX = 'bearer.';

/** The subprotocols to offer: ours, and the token when there is one. Runs in browsers and in Node. */
export function liveSubprotocols(token: string | null): string[] {
  if (token === null) return [LIVE_SUBPROTOCOL];
  let binary = '';
  for (const byte of new TextEncoder().encode(token)) binary += String.fromCharCode(byte);
  const base64url = btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  return [LIVE_SUBPROTOCOL, `${TOKEN_SUBPROTOCOL_PREFIX}${base64url}`];
}
