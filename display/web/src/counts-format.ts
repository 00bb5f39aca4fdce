/**
 * How a device's message counts (ingest's pipeline/counts/{id}, in DeviceSummary.counts) read on the
 * dashboard: one short cell for the fleet table and a hint naming each rejection reason. Pure.
 */
import type { DeviceCountsSummary } from '../../../core/api.ts';
import type { RejectReason } from '../../../core/errors.ts';

/** Rejections summed over every reason. */
export function rejectedTotal(counts: DeviceCountsSummary): number {
  let total = 0;
  for (const n of Object.values(counts.rejected)) total += n ?? 0;
  return total;
}

/** The reasons with their counts, most first (then by code). */
export function rejectionsByReason(counts: DeviceCountsSummary): [RejectReason, number][] {
  return (Object.entries(counts.rejected) as [RejectReason, number | undefined][])
    .filter((entry): entry is [RejectReason, number] => (entry[1] ?? 0) > 0)
    .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1));
}

/** "accepted / duplicates / rejected" for a table cell, and a hint with the reasons; "–" before ingest reported. */
export function formatCountsCell(counts: DeviceCountsSummary | null): { text: string; hint: string } {
  if (counts === null) return { text: '–', hint: 'ingest has not reported counts for this device yet' };
  const reasons = rejectionsByReason(counts);
  const since = new Date(counts.since).toISOString();
  const hint = [
    `readings accepted ${counts.accepted}, duplicates ${counts.duplicates}, messages rejected ${rejectedTotal(counts)} (since ${since})`,
    ...reasons.map(([reason, n]) => `${reason}: ${n}`),
  ].join('\n');
  return { text: `${counts.accepted} / ${counts.duplicates} / ${rejectedTotal(counts)}`, hint };
}
