/**
 * GET /api/quarantine: what ingest rejected, newest first, read-only from the quarantine's files
 * (core/quarantine-file.ts; the folder is SENSORPIPE_DISPLAY_QUARANTINE_DIR, by default ingest's under the
 * data folder). A folder that does not exist is not an error: the answer says `available: false`.
 * Entries are passed on as ingest wrote them, with the reason's text added: their payload and topic are
 * attacker-controlled text, which the dashboard shows as text only (display/web/src/quarantine-view.ts).
 */
import { QUARANTINE_DEFAULT_LIMIT, type QuarantineQuery, type QuarantineResponse } from '../core/api.ts';
import { ERROR_CODES } from '../core/errors.ts';
import { formatQuarantineCursor, readQuarantinePage } from '../core/quarantine-file.ts';

export async function answerQuarantine(dir: string, query: QuarantineQuery): Promise<QuarantineResponse> {
  const page = await readQuarantinePage(dir, { device: query.device, reason: query.reason, limit: query.limit ?? QUARANTINE_DEFAULT_LIMIT, before: query.before });
  return {
    available: page.available,
    entries: page.entries.map((e) => ({
      at: e.at,
      reason: e.reason,
      reasonText: ERROR_CODES[e.reason].text,
      device: e.device ?? null,
      topic: e.topic,
      message: e.message,
      payload: e.payload,
      encoding: e.encoding,
      bytes: e.payloadBytes,
      truncated: e.truncated,
    })),
    next: page.next === undefined ? null : formatQuarantineCursor(page.next),
    evicted: page.evicted,
  };
}
