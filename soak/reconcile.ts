/**
 * The reconciliation at the end of a soak, pure: what the simulator says it did, what the store holds,
 * what the quarantine holds and what the viewers were shown, turned into counts and a list of
 * violations. No I/O here, so every rule has a table-driven test (test/soak/reconcile.test.ts).
 *
 * The rules:
 *  - readings: every reading the broker acknowledged to a device is stored, with the values and the seq
 *    the device sent, once per (device, ts) and once per (device, seq): InfluxDB overwrites a rewrite of
 *    the same series and time, so a reading written twice shows only as its seq held at two times (or a
 *    time held by two tag sets). A stored reading nobody acknowledged is fine only if the device sent
 *    that many good readings without an acknowledgement (in flight at a cut or at the end) and it lies
 *    within the soak.
 *  - quarantine: per device and reason, at least the bad messages the broker acknowledged; no more
 *    distinct ones than were sent (the same message twice is a redelivery after a cut or a crash); every
 *    entry is one a fault of that device produces, and its content is the bad message, not a good
 *    reading: signature/clock rejects carry exactly the seqs of those faults, replays are the device's
 *    first message, PAYLOAD_INVALID is not JSON.
 *  - viewers: every reading shown is stored with the values shown, is not one of the bad messages, and
 *    has the seq the device gave that ts.
 */
import { EXPECTED_REASON, type FaultName } from '../firmware-sim/index.ts';
import type { QuarantineEntry } from '../ingest/quarantine.ts';
import type { StoredByDevice, StoredReading } from './stored.ts';
import type { SeenReading } from './viewers.ts';

/** One device in the JSON summary `sensorpipe sim` prints. */
export interface SimDeviceReport {
  id: string;
  faults: FaultName[];
  sent: number;
  acked: number;
  buffered: number;
  faultMessages: Partial<Record<FaultName, { count: number; acked: number; seqs: number[] }>>;
}

export interface SimReport {
  sent: number;
  acked: number;
  perDevice: SimDeviceReport[];
}

/** An acknowledged good reading: its time and the values the device signed (undefined: the log line had none). */
export interface AckedReading {
  ts: number;
  values: Record<string, number> | undefined;
}

/** Acknowledged good readings, from `sensorpipe sim --acked-log`: per device, by seq. */
export type AckedByDevice = Map<string, Map<number, AckedReading>>;

/** `device seq ts {"metric":value,…}` lines (the values JSON has no spaces); several logs may be merged. */
export function parseAckedLog(text: string, into: AckedByDevice = new Map()): AckedByDevice {
  for (const line of text.split('\n')) {
    const [device, seq, ts, json] = line.split(' ', 4);
    if (device === undefined || seq === undefined || ts === undefined || device === '') continue;
    let values: Record<string, number> | undefined;
    try {
      values = json === undefined ? undefined : (JSON.parse(json) as Record<string, number>);
    } catch {
      values = undefined; // a torn last line: compared as "no values", so it cannot pass unseen
    }
    let bySeq = into.get(device);
    if (bySeq === undefined) into.set(device, (bySeq = new Map()));
    bySeq.set(Number(seq), { ts: Number(ts), values });
  }
  return into;
}

const EXAMPLES = 10;

function pushExample<T>(list: T[], item: T): void {
  if (list.length < EXAMPLES) list.push(item);
}

// ---- readings ---------------------------------------------------------------------------------------

export interface ReadingsReconciliation {
  sent: number;
  acknowledged: number;
  /** Distinct (device, ts) in the store. */
  stored: number;
  lost: number;
  /** duplicatedByTs + duplicatedBySeq. */
  duplicated: number;
  /** Extra copies of a (device, ts): another tag set holds the same time. */
  duplicatedByTs: number;
  /** Extra times a (device, seq) is stored at: a reading written again somewhere else. */
  duplicatedBySeq: number;
  /** Acknowledged readings stored with other values (any metric, missing or extra) or another seq. */
  mismatched: number;
  /** Stored, not acknowledged, within what was sent without an acknowledgement. */
  storedUnacknowledged: number;
  /** Stored and not explainable as a good reading: more than sent unacknowledged, or outside the soak. */
  unexplained: number;
  /** The simulator's acknowledged count and its log disagree (a lost log line would hide a loss). */
  ackLogMismatch: number;
  /** The first lost readings, for the diagnosis (where did they get to?). */
  lostReadings: { device: string; seq: number; ts: number }[];
  examples: { lost: string[]; duplicated: string[]; mismatched: string[]; unexplained: string[] };
}

/** Why a stored reading is not the acknowledged one (values or seq), or undefined when it is. */
export function storedDiffers(seq: number, acked: AckedReading, stored: StoredReading): string | undefined {
  if (acked.values === undefined) return 'the acknowledgement log carries no values for it';
  const problems: string[] = [];
  for (const [metric, value] of Object.entries(acked.values)) {
    const got = stored.values[metric];
    if (got !== value) problems.push(`${metric} sent ${value}, stored ${got ?? 'nothing'}`);
  }
  for (const [metric, value] of Object.entries(stored.values)) if (!Object.hasOwn(acked.values, metric)) problems.push(`${metric} stored ${value}, not sent`);
  if (stored.seqs.length === 0 || stored.seqs.some((s) => s !== seq)) problems.push(`stored with seq ${stored.seqs.length === 0 ? 'none' : stored.seqs.join(',')}`);
  return problems.length === 0 ? undefined : problems.join('; ');
}

/** `window`: the times a good reading can have (ms); `origin`: t = 0 of the examples. */
export function reconcileReadings(sim: SimReport, acked: AckedByDevice, stored: StoredByDevice, window: { from: number; to: number; origin: number }): ReadingsReconciliation {
  const at = (ts: number) => `t=${((ts - window.origin) / 1000).toFixed(1)}s`;
  const result: ReadingsReconciliation = {
    sent: sim.sent,
    acknowledged: 0,
    stored: 0,
    lost: 0,
    duplicated: 0,
    duplicatedByTs: 0,
    duplicatedBySeq: 0,
    mismatched: 0,
    storedUnacknowledged: 0,
    unexplained: 0,
    ackLogMismatch: 0,
    lostReadings: [],
    examples: { lost: [], duplicated: [], mismatched: [], unexplained: [] },
  };
  const devices = new Map(sim.perDevice.map((d) => [d.id, d]));
  for (const id of new Set([...devices.keys(), ...stored.keys(), ...acked.keys()])) {
    const report = devices.get(id);
    const ackedHere = acked.get(id) ?? new Map<number, AckedReading>();
    const storedHere = stored.get(id) ?? new Map<number, StoredReading>();
    result.acknowledged += ackedHere.size;
    result.ackLogMismatch += Math.abs((report?.acked ?? 0) - ackedHere.size);
    result.stored += storedHere.size;
    // ts → the acknowledged seqs stamped with it: more than one can only be stored as one (the identity
    // is (device, ts)), which the mismatch then names.
    const seqsAt = new Map<number, number[]>();
    for (const [seq, { ts }] of ackedHere) {
      const seqs = seqsAt.get(ts);
      if (seqs === undefined) seqsAt.set(ts, [seq]);
      else seqs.push(seq);
    }
    const ackedTs = new Set(seqsAt.keys());
    for (const [seq, reading] of ackedHere) {
      const inStore = storedHere.get(reading.ts);
      if (inStore === undefined) {
        result.lost++;
        if (result.lostReadings.length < 100) result.lostReadings.push({ device: id, seq, ts: reading.ts });
        pushExample(result.examples.lost, `${id} seq ${seq} ${at(reading.ts)}`);
        continue;
      }
      const differs = storedDiffers(seq, reading, inStore);
      if (differs !== undefined) {
        result.mismatched++;
        const alike = seqsAt.get(reading.ts)!;
        const note = alike.length > 1 ? ` (seqs ${alike.join(', ')} were all acknowledged at this time: the device stamped them alike)` : '';
        pushExample(result.examples.mismatched, `${id} seq ${seq} ${at(reading.ts)}: ${differs}${note}`);
      }
    }
    // (device, seq) → the times it is stored at: more than one is a reading written twice.
    const timesOfSeq = new Map<number, number[]>();
    for (const [ts, reading] of storedHere) {
      for (const seq of new Set(reading.seqs)) {
        const times = timesOfSeq.get(seq);
        if (times === undefined) timesOfSeq.set(seq, [ts]);
        else times.push(ts);
      }
    }
    for (const [seq, times] of timesOfSeq) {
      if (times.length < 2) continue;
      result.duplicatedBySeq += times.length - 1;
      pushExample(result.examples.duplicated, `${id} seq ${seq} stored at ${times.length} times: ${times.sort((a, b) => a - b).map(at).join(', ')}`);
    }
    let unacknowledged = 0;
    for (const [ts, reading] of storedHere) {
      if (reading.copies > 1) {
        result.duplicatedByTs += reading.copies - 1;
        pushExample(result.examples.duplicated, `${id} ${at(ts)}: ${reading.copies} copies`);
      }
      if (ackedTs.has(ts)) continue;
      if (ts < window.from || ts > window.to) {
        result.unexplained++;
        pushExample(result.examples.unexplained, `${id} ${at(ts)}: outside the soak`);
      } else unacknowledged++;
    }
    const allowance = report === undefined ? 0 : Math.max(0, report.sent - report.acked);
    result.storedUnacknowledged += Math.min(unacknowledged, allowance);
    if (unacknowledged > allowance) {
      result.unexplained += unacknowledged - allowance;
      pushExample(result.examples.unexplained, `${id}: ${unacknowledged} stored unacknowledged, but only ${allowance} sent without an acknowledgement`);
    }
  }
  result.duplicated = result.duplicatedByTs + result.duplicatedBySeq;
  return result;
}

/**
 * Devices with no acknowledged reading taken after `since`: a pipeline that wedged (nothing acknowledged
 * any more) loses nothing and would pass every other check.
 */
export function stalledDevices(sim: SimReport, acked: AckedByDevice, since: number): string[] {
  return sim.perDevice
    .filter((d) => {
      let newest = -Infinity;
      for (const { ts } of acked.get(d.id)?.values() ?? []) if (ts > newest) newest = ts;
      return newest < since;
    })
    .map((d) => d.id);
}

// ---- quarantine -------------------------------------------------------------------------------------

export interface QuarantineRow {
  device: string;
  reason: string;
  entries: number;
  distinct: number;
  /** Bad messages the broker acknowledged (must all be here) and all that were sent. */
  min: number;
  max: number;
}

export interface QuarantineReconciliation {
  quarantinedByReason: Record<string, number>;
  expectedByReason: Record<string, { min: number; max: number }>;
  rows: QuarantineRow[];
  /** Entries that are not the bad message a fault of their device produces (a good reading among them). */
  misclassified: number;
  /** Acknowledged bad messages not quarantined (beyond the unverified replays allowed). */
  missing: number;
  /**
   * Acknowledged replays not quarantined because ingest could not ask the store (core/PROTOCOL.md §5:
   * a message whose seqs were all accepted before, outside the redelivery window, is looked up in the
   * store; while the store is down or the spool holds readings, it is acknowledged, neither written nor
   * quarantined, and counted as unverified). Allowed up to ingest's unverified count, no more.
   */
  unverifiedReplays: number;
  /** More distinct messages than the faults sent. */
  excess: number;
  examples: string[];
}

function telemetrySeqs(entry: QuarantineEntry): number[] | undefined {
  if (entry.encoding !== 'utf8' || entry.truncated) return undefined;
  try {
    const body = JSON.parse(entry.payload) as { readings?: { seq?: unknown }[] };
    return Array.isArray(body.readings) ? body.readings.map((r) => Number(r.seq)) : undefined;
  } catch {
    return undefined;
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** Why an entry is not the bad message its reason stands for, or undefined when it is. */
function contentProblem(entry: QuarantineEntry, faults: FaultName[], report: SimDeviceReport, acked: Map<number, AckedReading>): string | undefined {
  const producing = faults.filter((f) => EXPECTED_REASON[f] === entry.reason);
  if (producing.length === 0) return `no fault of the device produces ${entry.reason} (faults: ${faults.join(', ') || 'none'})`;
  switch (entry.reason) {
    case 'PAYLOAD_INVALID':
      return entry.encoding === 'utf8' && !entry.truncated && isJson(entry.payload) ? 'valid JSON quarantined as PAYLOAD_INVALID' : undefined;
    case 'READING_REPLAYED': {
      const seqs = telemetrySeqs(entry);
      if (seqs === undefined) return 'replay entry without readings';
      // The replay fault sends its first accepted message's seqs again, re-signed with other values (one payload: checked per row).
      return seqs.every((seq) => acked.has(seq)) ? undefined : `seqs ${seqs.join(',')} were never acknowledged to the device`;
    }
    default: {
      const seqs = telemetrySeqs(entry);
      if (seqs === undefined) return 'entry without readings';
      const bad = new Set(producing.flatMap((f) => report.faultMessages[f]?.seqs ?? []));
      const good = seqs.filter((seq) => !bad.has(seq));
      return good.length === 0 ? undefined : `good reading seq ${good.join(',')} quarantined as ${entry.reason}`;
    }
  }
}

/** `unverified`: messages ingest counted as unverified (sensorpipe_ingest_outside_redelivery_window_total{outcome="unverified"}). */
export function reconcileQuarantine(sim: SimReport, acked: AckedByDevice, entries: QuarantineEntry[], unverified = 0): QuarantineReconciliation {
  const result: QuarantineReconciliation = { quarantinedByReason: {}, expectedByReason: {}, rows: [], misclassified: 0, missing: 0, unverifiedReplays: 0, excess: 0, examples: [] };
  let unverifiedLeft = unverified;
  const rows = new Map<string, QuarantineRow & { payloads: Set<string> }>();
  const rowOf = (device: string, reason: string) => {
    const key = `${device} ${reason}`;
    let row = rows.get(key);
    if (row === undefined) rows.set(key, (row = { device, reason, entries: 0, distinct: 0, min: 0, max: 0, payloads: new Set() }));
    return row;
  };
  const devices = new Map(sim.perDevice.map((d) => [d.id, d]));
  for (const report of sim.perDevice) {
    for (const [fault, sent] of Object.entries(report.faultMessages) as [FaultName, { count: number; acked: number }][]) {
      const reason = EXPECTED_REASON[fault];
      if (reason === undefined) continue;
      const row = rowOf(report.id, reason);
      row.min += sent.acked;
      row.max += sent.count;
      const total = (result.expectedByReason[reason] ??= { min: 0, max: 0 });
      total.min += sent.acked;
      total.max += sent.count;
    }
  }
  for (const entry of entries) {
    result.quarantinedByReason[entry.reason] = (result.quarantinedByReason[entry.reason] ?? 0) + 1;
    const device = entry.device ?? '(none)';
    const row = rowOf(device, entry.reason);
    row.entries++;
    row.payloads.add(entry.payload);
    const report = devices.get(device);
    const problem = report === undefined ? 'not a device of the simulator' : contentProblem(entry, report.faults, report, acked.get(device) ?? new Map());
    if (problem !== undefined) {
      result.misclassified++;
      pushExample(result.examples, `${device} ${entry.reason}: ${problem}`);
    }
  }
  for (const { payloads, ...row } of rows.values()) {
    row.distinct = payloads.size;
    if (row.entries < row.min) {
      let short = row.min - row.entries;
      if (row.reason === 'READING_REPLAYED') {
        const allowed = Math.min(short, unverifiedLeft);
        unverifiedLeft -= allowed;
        result.unverifiedReplays += allowed;
        short -= allowed;
      }
      if (short > 0) {
        result.missing += short;
        pushExample(result.examples, `${row.device} ${row.reason}: ${row.entries} quarantined, ${row.min} acknowledged by the broker${row.reason === 'READING_REPLAYED' ? ` (ingest counted ${unverified} unverified in all)` : ''}`);
      }
    }
    if (row.reason === 'READING_REPLAYED' && row.distinct > 1) {
      // Every replay is the same one message: another payload under this reason is a good one.
      result.misclassified += row.distinct - 1;
      pushExample(result.examples, `${row.device} READING_REPLAYED: ${row.distinct} different messages, the replay fault sends one`);
    }
    if (row.distinct > row.max && row.max > 0) {
      result.excess += row.distinct - row.max;
      pushExample(result.examples, `${row.device} ${row.reason}: ${row.distinct} distinct messages, only ${row.max} sent`);
    }
    result.rows.push(row);
  }
  result.rows.sort((a, b) => a.device.localeCompare(b.device) || a.reason.localeCompare(b.reason));
  return result;
}

// ---- viewers ----------------------------------------------------------------------------------------

export interface ViewerInput {
  name: string;
  live: Iterable<SeenReading>;
  history: Iterable<{ device: string; ts: number; values: Record<string, number> }>;
  inconsistent: string[];
  unparsable: number;
}

export interface ViewerReconciliation {
  readingsChecked: number;
  historyPointsChecked: number;
  violations: number;
  examples: string[];
}

export function checkViewers(sim: SimReport, acked: AckedByDevice, stored: StoredByDevice, viewers: ViewerInput[]): ViewerReconciliation {
  const result: ViewerReconciliation = { readingsChecked: 0, historyPointsChecked: 0, violations: 0, examples: [] };
  const badSeqs = new Map(
    sim.perDevice.map((d) => [d.id, new Set((Object.entries(d.faultMessages) as [FaultName, { seqs: number[] }][]).filter(([f]) => EXPECTED_REASON[f] !== undefined).flatMap(([, m]) => m.seqs))]),
  );
  const violation = (text: string) => {
    result.violations++;
    pushExample(result.examples, text);
  };
  const checkValues = (viewer: string, device: string, ts: number, values: Record<string, number>, what: string) => {
    const inStore = stored.get(device)?.get(ts);
    if (inStore === undefined) return violation(`${viewer}: ${what} ${device} ts ${ts} is not in the store`);
    for (const [metric, value] of Object.entries(values)) {
      if (inStore.values[metric] !== value) violation(`${viewer}: ${what} ${device} ts ${ts} ${metric}=${value}, stored ${inStore.values[metric]}`);
    }
  };
  for (const viewer of viewers) {
    for (const text of viewer.inconsistent) violation(`${viewer.name}: shown inconsistently: ${text}`);
    if (viewer.unparsable > 0) violation(`${viewer.name}: ${viewer.unparsable} frames did not parse`);
    for (const reading of viewer.live) {
      result.readingsChecked++;
      const bad = badSeqs.get(reading.device);
      if (bad === undefined) {
        violation(`${viewer.name}: reading of unknown device ${reading.device}`);
        continue;
      }
      if (bad.has(reading.seq)) violation(`${viewer.name}: shown the bad message ${reading.device} seq ${reading.seq}`);
      const ackedTs = acked.get(reading.device)?.get(reading.seq)?.ts;
      if (ackedTs !== undefined && ackedTs !== reading.ts) violation(`${viewer.name}: ${reading.device} seq ${reading.seq} shown at ts ${reading.ts}, sent at ${ackedTs}`);
      checkValues(viewer.name, reading.device, reading.ts, reading.values, 'live reading');
    }
    for (const point of viewer.history) {
      result.historyPointsChecked++;
      checkValues(viewer.name, point.device, point.ts, point.values, 'history point');
    }
  }
  return result;
}
