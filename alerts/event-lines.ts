/**
 * The file format the alert log and the webhook outboxes share: one AlertEvent per line (JSON). A line
 * that does not parse or does not match the schema (a torn last write after a crash) is skipped; the
 * caller decides whether to count it.
 */
import { readFile } from 'node:fs/promises';
import { AlertEventSchema, type AlertEvent } from '../core/alerts.ts';

/** The file's text, or '' when it does not exist yet. */
export async function readTextIfExists(path: string): Promise<string> {
  return readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? '' : Promise.reject(err)));
}

export function parseEventLines(text: string): { events: AlertEvent[]; skipped: number } {
  const events: AlertEvent[] = [];
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      const parsed = AlertEventSchema.safeParse(JSON.parse(line));
      if (parsed.success) events.push(parsed.data);
      else skipped++;
    } catch {
      skipped++;
    }
  }
  return { events, skipped };
}
