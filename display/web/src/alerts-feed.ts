/**
 * The fleet's alerts for the whole page: GET /api/alerts, read every ALERTS_POLL_MS while the page is
 * visible (and at once when it becomes visible again), handed to whoever listens (the banner, the fleet
 * view). Polled rather than pushed over /live: alert states change seldom, a few seconds late is soon
 * enough for them, and the live protocol stays as it is.
 */
import type { AlertsResponse } from '../../../core/api.ts';
import { AuthRequiredError, fetchAlerts } from './api.ts';

export const ALERTS_POLL_MS = 5000;
/** Entries of each list the page asks for: more firing alerts than a banner can usefully show. */
export const ALERTS_PAGE_LIMIT = 100;

type Listener = (alerts: AlertsResponse) => void;

export class AlertsFeed {
  private current: AlertsResponse | null = null;
  private readonly listeners = new Set<Listener>();
  private timer: ReturnType<typeof setInterval> | null = null;
  private loading = false;

  /** The newest answer, or null before the first one. */
  get latest(): AlertsResponse | null {
    return this.current;
  }

  /** Calls `listener` with every new answer (and at once with the newest one, if any); returns the unsubscribe. */
  onUpdate(listener: Listener): () => void {
    this.listeners.add(listener);
    if (this.current !== null) listener(this.current);
    return () => this.listeners.delete(listener);
  }

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => {
      if (document.visibilityState === 'visible') void this.refresh();
    }, ALERTS_POLL_MS);
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState === 'visible') void this.refresh();
    });
    void this.refresh();
  }

  /** Reads the alerts now (one request at a time); a failure keeps the last answer shown. */
  async refresh(): Promise<void> {
    if (this.loading) return;
    this.loading = true;
    try {
      const alerts = await fetchAlerts({ limit: ALERTS_PAGE_LIMIT });
      this.current = alerts;
      for (const listener of this.listeners) listener(alerts);
    } catch (error) {
      if (error instanceof AuthRequiredError) {
        // The token form is the views' to show; what the last token could read is no longer shown.
        this.current = { active: [], firing: 0, pending: 0, recent: [] };
        for (const listener of this.listeners) listener(this.current);
      } else console.warn('alerts not loaded (tried again at the next poll)', error);
    } finally {
      this.loading = false;
    }
  }
}
