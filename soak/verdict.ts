/**
 * The soak's verdict: one JSON object with the counts a reader checks first, then the detail, and the
 * list of reasons it failed (empty: passed). `failuresOf` is the single place that decides.
 */
import type { ChaosRecord } from './chaos.ts';
import type { ProcessMemory } from './memory.ts';
import type { Exit } from './processes.ts';
import type { QuarantineReconciliation, ReadingsReconciliation, ViewerReconciliation } from './reconcile.ts';
import { alertsFailures, type AlertsReconciliation } from './reconcile-alerts.ts';
import type { ReceiverCounts } from './webhook-receiver.ts';
import type { ViewerStats } from './viewers.ts';

/** The reading counts, at the top so that they are read first. */
type ReadingCounts = Pick<ReadingsReconciliation, 'sent' | 'acknowledged' | 'stored' | 'lost' | 'duplicated' | 'mismatched' | 'storedUnacknowledged'>;

export interface Verdict extends ReadingCounts {
  verdict: 'pass' | 'fail';
  failures: string[];
  soak: { minutes: number; seed: number; devices: number; intervalMs: number; faults: string; startedAt: string; durationS: number; drainedAfterS: number | null; dir?: string };
  /** `duplicated`, by what gave it away: a (device, ts) in two tag sets, a (device, seq) at two times. */
  duplicatedBy: { ts: number; seq: number };
  unexplainedStored: number;
  quarantined: Record<string, number>;
  expected: Record<string, { min: number; max: number }>;
  misclassified: number;
  quarantineMissing: number;
  quarantineExcess: number;
  /** Acknowledged replays ingest could not check against the store (unverified, core/PROTOCOL.md §5): allowed, not quarantined. */
  quarantineUnverifiedReplays: number;
  viewerViolations: number;
  viewers: { readingsChecked: number; historyPointsChecked: number; stats: ViewerStats[] };
  /** The alerts component: its log checked, each webhook receiver reconciled with it (reconcile-alerts.ts). */
  alerts: AlertsReconciliation & {
    drainedAfterS: number | null;
    /** SIGKILLs of the alerts process (alerts-kill strikes). */
    kills: number;
    /** Lines of the alert log that did not parse (a kill mid-write): skipped by the component too. */
    logLinesSkipped: number;
    silentAfterMs: number;
    /** `quiet` firings within 3 s after a devices-cut strike, of how many cuts. */
    silentFiringsAfterDevicesCuts: number;
    devicesCuts: number;
    receiverCounts: Record<string, ReceiverCounts>;
  };
  memory: Record<string, ProcessMemory>;
  chaos: ChaosRecord[];
  crashes: { process: string; atS: number; code: number | null; signal: string | null; logTail: string }[];
  /** Exit of each process when the soak stopped it with SIGTERM (SIGINT for the simulator). */
  stops: Record<string, Exit>;
  /** The overload phase: what the extra generator offered and what got through (see run.ts). */
  overload: OverloadReport | null;
  /** The influx fault proxy's counts over the whole run. */
  influxLink: Record<string, number>;
  ingest: Record<string, number>;
  sim: Record<string, unknown>;
  examples: { lost: string[]; duplicated: string[]; mismatched: string[]; unexplained: string[]; quarantine: string[]; viewers: string[] };
}

export interface OverloadReport {
  atS: number;
  durationS: number;
  devices: number;
  intervalMs: number;
  /** Readings a second the generator was set to offer. */
  offeredPerS: number;
  /** From the generator's summary: good readings published, acknowledged, still buffered at its stop. */
  sent: number;
  acked: number;
  buffered: number;
  /** The generator's acknowledged readings over the phase, per second. */
  ackedPerS: number;
  /** How long its SIGINT stop took: waiting for the PUBACKs of what it had in flight. */
  stopS: number;
  /** Ingest during the phase, from its /metrics sampled every second (across a restart, if chaos killed it). */
  ingestReceivedPerS: number;
  ingestAcceptedReadingsPerS: number;
  /** Peaks, sampled every second. */
  ingestUnacknowledgedMax: number;
  ingestSpoolBytesMax: number;
  /** Broker metrics about queues and backpressure, if it has any: the highest each reached in the phase. */
  broker: Record<string, number>;
}

export interface VerdictParts {
  readings: ReadingsReconciliation;
  quarantine: QuarantineReconciliation;
  viewers: ViewerReconciliation;
  alerts: { check: AlertsReconciliation; drained: boolean; minEvents: number };
  memory: Record<string, ProcessMemory>;
  chaos: ChaosRecord[];
  crashes: Verdict['crashes'];
  stops: Record<string, Exit>;
  drained: boolean;
  simSummary: boolean;
  /** Devices that had nothing acknowledged in the last part of the run. */
  stalled: string[];
}

export function failuresOf(parts: VerdictParts): string[] {
  const failures: string[] = [];
  const { readings, quarantine, viewers } = parts;
  if (!parts.simSummary) failures.push('the simulator printed no summary');
  if (readings.acknowledged === 0) failures.push('nothing was acknowledged: the soak measured nothing');
  if (parts.stalled.length > 0) failures.push(`no reading acknowledged near the end for ${parts.stalled.length} devices (${parts.stalled.slice(0, 5).join(', ')}): the pipeline stalled`);
  if (readings.lost > 0) failures.push(`${readings.lost} acknowledged readings are not in the store`);
  if (readings.duplicated > 0) failures.push(`${readings.duplicated} duplicates in the store (${readings.duplicatedByTs} extra copies of a (device, ts), ${readings.duplicatedBySeq} extra times a (device, seq) is stored at)`);
  if (readings.mismatched > 0) failures.push(`${readings.mismatched} acknowledged readings are stored with other values or another seq than the device sent`);
  if (readings.unexplained > 0) failures.push(`${readings.unexplained} stored readings are not good readings the devices sent`);
  if (readings.ackLogMismatch > 0) failures.push(`the simulator's acknowledged counts and its log differ by ${readings.ackLogMismatch}`);
  if (quarantine.misclassified > 0) failures.push(`${quarantine.misclassified} quarantine entries are not the bad message their reason stands for`);
  if (quarantine.missing > 0) failures.push(`${quarantine.missing} acknowledged bad messages are not quarantined`);
  if (quarantine.excess > 0) failures.push(`${quarantine.excess} more distinct messages quarantined than the faults sent`);
  if (viewers.violations > 0) failures.push(`${viewers.violations} viewer violations (shown data that is not verified and stored)`);
  if (viewers.readingsChecked === 0) failures.push('the viewers saw no readings');
  if (!parts.alerts.drained) failures.push('alerts did not drain (webhook outboxes not empty, or still logging, 60 s after the end)');
  failures.push(...alertsFailures(parts.alerts.check, parts.alerts.minEvents));
  for (const [name, memory] of Object.entries(parts.memory)) {
    if (memory.leak) failures.push(`${name}: RSS grew ${memory.judged?.growthMiB} MiB after warm-up (limit ${memory.judged?.limitMiB} MiB): looks like a leak`);
  }
  for (const crash of parts.crashes) failures.push(`${crash.process} exited unasked at ${crash.atS} s (code ${crash.code}, signal ${crash.signal})`);
  for (const record of parts.chaos) if (record.error !== undefined) failures.push(`chaos ${record.kind} at ${record.atS} s failed: ${record.error}`);
  for (const [name, exit] of Object.entries(parts.stops)) if (exit.code !== 0) failures.push(`${name} did not stop cleanly (code ${exit.code}, signal ${exit.signal})`);
  if (!parts.drained) failures.push('ingest did not drain (unacknowledged messages or spool bytes left)');
  return failures;
}
