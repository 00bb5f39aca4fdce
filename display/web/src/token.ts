/**
 * The viewer token, when the display is configured with one. Kept in localStorage so a reload does not
 * ask again; held in memory as well, because storage can be disabled (private modes, strict policies).
 */
const STORAGE_KEY = 'sensorpipe.viewerToken';
let memory: string | null = null;

export function getToken(): string | null {
  try {
    return localStorage.getItem(STORAGE_KEY) ?? memory;
  } catch {
    return memory;
  }
}

export function setToken(token: string | null): void {
  memory = token;
  try {
    if (token === null) localStorage.removeItem(STORAGE_KEY);
    else localStorage.setItem(STORAGE_KEY, token);
  } catch {
    // Storage refused: the in-memory copy serves this page until it is reloaded.
  }
}
