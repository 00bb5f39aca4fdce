import { createHash } from 'node:crypto';

/**
 * How a receiver is named wherever people can read it (the `webhook` label of /metrics, log lines):
 * `scheme://host:port/…#<first 8 hex digits of the SHA-256 of the whole URL>`. Never the path, user
 * info, query or fragment: any of them may be the secret (Slack's and Discord's webhook URLs carry theirs
 * in the path), and /metrics is read by whoever can reach Prometheus. The digest tells two receivers on
 * one host apart and names the same URL the same way everywhere (`printf %s URL | sha256sum`); the port
 * is always written (443 and 80 too). Its values are the webhooks of the rules file (at most 50).
 */
export function webhookLabel(url: string): string {
  try {
    const u = new URL(url);
    // The rules file takes http and https URLs only.
    const port = u.port !== '' ? u.port : u.protocol === 'https:' ? '443' : '80';
    return `${u.protocol}//${u.hostname}:${port}/…#${createHash('sha256').update(url).digest('hex').slice(0, 8)}`;
  } catch {
    return '(invalid url)'; // the rules file's schema lets no such URL in; nothing of it is shown regardless
  }
}
