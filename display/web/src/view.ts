/** What every view gets from the app shell, and what it gives back: a function that tears it down. */
import type { AlertsFeed } from './alerts-feed.ts';
import type { LiveClient } from './live.ts';

export interface ViewContext {
  live: LiveClient;
  /** The fleet's alerts, polled from GET /api/alerts (the banner, the fleet's badges and history). */
  alerts: AlertsFeed;
  /** The API or /live refused the token: the shell replaces the view with the token form. */
  authRequired(): void;
}

export type Unmount = () => void;
