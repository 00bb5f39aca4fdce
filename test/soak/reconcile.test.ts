/**
 * The soak's judgement, on hand-made inputs: each rule of soak/reconcile.ts, soak/memory.ts and
 * soak/chaos.ts catches what it is there for and lets the legitimate cases (a message in flight at a cut
 * stored without its acknowledgement, a bad message redelivered after a crash) pass.
 */
import { describe, expect, it } from 'vitest';
import type { QuarantineEntry } from '../../ingest/quarantine.ts';
import { CHAOS_KINDS, planChaos, targetOf } from '../../soak/chaos.ts';
import { judgeMemory, LEAK_MIN_MIB } from '../../soak/memory.ts';
import { checkViewers, parseAckedLog, reconcileQuarantine, reconcileReadings, stalledDevices, type SimDeviceReport, type SimReport } from '../../soak/reconcile.ts';
import type { StoredByDevice } from '../../soak/stored.ts';
import { failuresOf } from '../../soak/verdict.ts';
import { reconcileAlerts } from '../../soak/reconcile-alerts.ts';

const T0 = 1_800_000_000_000;
const window = { from: T0, to: T0 + 600_000, origin: T0 };

function device(id: string, overrides: Partial<SimDeviceReport> = {}): SimDeviceReport {
  return { id, faults: [], sent: 3, acked: 3, buffered: 0, faultMessages: {}, ...overrides };
}

function report(...devices: SimDeviceReport[]): SimReport {
  return { sent: devices.reduce((n, d) => n + d.sent, 0), acked: devices.reduce((n, d) => n + d.acked, 0), perDevice: devices };
}

/**
 * Stored readings per device: [ts, copies, values (default { t: 1 }), seq of each copy (default: every
 * copy the seq ts - T0, as the acknowledged readings below are made)].
 */
function store(entries: Record<string, [ts: number, copies: number, values?: Record<string, number>, seqs?: number[]][]>): StoredByDevice {
  return new Map(
    Object.entries(entries).map(([id, rows]) => [id, new Map(rows.map(([ts, copies, values, seqs]) => [ts, { copies, values: values ?? { t: 1 }, seqs: seqs ?? Array<number>(copies).fill(ts - T0) }]))]),
  );
}

/** `device seq ts` lines get the values { t: 1 } (what store() holds by default) unless they give their own. */
const ackedLog = (lines: string[]) => parseAckedLog(lines.map((l) => (l.split(' ').length === 3 ? `${l} {"t":1}` : l)).join('\n'));

function entry(device: string, reason: QuarantineEntry['reason'], payload: string): QuarantineEntry {
  return { at: T0, reason, device, topic: `sensors/${device}/telemetry`, message: '', payload, encoding: 'utf8', payloadBytes: payload.length, truncated: false };
}

const telemetry = (device: string, seqs: number[]) => JSON.stringify({ v: 1, device, readings: seqs.map((seq) => ({ seq, ts: T0 + seq, values: { t: 1 } })), sig: 'x' });

describe('reconcileReadings', () => {
  const acked = ackedLog([`d1 1 ${T0 + 1}`, `d1 2 ${T0 + 2}`, `d1 3 ${T0 + 3}`]);
  const cases: [string, SimReport, StoredByDevice, Partial<ReturnType<typeof reconcileReadings>>][] = [
    ['all stored once', report(device('d1')), store({ d1: [[T0 + 1, 1], [T0 + 2, 1], [T0 + 3, 1]] }), { acknowledged: 3, stored: 3, lost: 0, duplicated: 0, unexplained: 0 }],
    ['one missing', report(device('d1')), store({ d1: [[T0 + 1, 1], [T0 + 3, 1]] }), { lost: 1 }],
    ['one stored under two tag sets', report(device('d1')), store({ d1: [[T0 + 1, 1], [T0 + 2, 2], [T0 + 3, 1]] }), { duplicated: 1 }],
    ['in flight at a cut: stored, not acknowledged, within what was sent', report(device('d1', { sent: 4 })), store({ d1: [[T0 + 1, 1], [T0 + 2, 1], [T0 + 3, 1], [T0 + 4, 1]] }), { storedUnacknowledged: 1, unexplained: 0 }],
    ['more stored unacknowledged than sent unacknowledged', report(device('d1')), store({ d1: [[T0 + 1, 1], [T0 + 2, 1], [T0 + 3, 1], [T0 + 4, 1]] }), { unexplained: 1 }],
    ['a reading dated a month back (a clock fault stored)', report(device('d1', { sent: 4 })), store({ d1: [[T0 + 1, 1], [T0 + 2, 1], [T0 + 3, 1], [T0 - 30 * 86_400_000, 1]] }), { unexplained: 1 }],
    ['the acknowledged count disagrees with the log', report(device('d1', { acked: 4, sent: 4 })), store({ d1: [[T0 + 1, 1], [T0 + 2, 1], [T0 + 3, 1]] }), { ackLogMismatch: 1 }],
    // InfluxDB overwrites a rewrite of the same series and time, so a reading written twice at one time
    // leaves one copy; written again at another time (or, unacknowledged, a message in flight stored
    // twice), only its seq gives it away.
    ['a reading written again at another time: its seq held twice', report(device('d1', { sent: 4 })), store({ d1: [[T0 + 1, 1], [T0 + 2, 1], [T0 + 3, 1], [T0 + 9, 1, { t: 1 }, [2]]] }), { duplicated: 1, duplicatedBySeq: 1, duplicatedByTs: 0, unexplained: 0 }],
    ['a seq held at three times', report(device('d1', { sent: 5 })), store({ d1: [[T0 + 1, 1], [T0 + 2, 1], [T0 + 3, 1], [T0 + 8, 1, { t: 1 }, [3]], [T0 + 9, 1, { t: 1 }, [3]]] }), { duplicatedBySeq: 2 }],
    ['two tag sets at one time, one seq', report(device('d1')), store({ d1: [[T0 + 1, 1], [T0 + 2, 2], [T0 + 3, 1]] }), { duplicated: 1, duplicatedByTs: 1, duplicatedBySeq: 0 }],
    ['every value and seq as sent', report(device('d1')), store({ d1: [[T0 + 1, 1], [T0 + 2, 1], [T0 + 3, 1]] }), { mismatched: 0 }],
    ['a value that differs', report(device('d1')), store({ d1: [[T0 + 1, 1], [T0 + 2, 1, { t: 1.0000001 }], [T0 + 3, 1]] }), { mismatched: 1, lost: 0 }],
    ['a metric missing', report(device('d1')), store({ d1: [[T0 + 1, 1], [T0 + 2, 1, {}], [T0 + 3, 1]] }), { mismatched: 1 }],
    ['a metric the device did not send', report(device('d1')), store({ d1: [[T0 + 1, 1], [T0 + 2, 1, { t: 1, u: 2 }], [T0 + 3, 1]] }), { mismatched: 1 }],
    ['another seq at its time', report(device('d1')), store({ d1: [[T0 + 1, 1], [T0 + 2, 1, { t: 1 }, [7]], [T0 + 3, 1]] }), { mismatched: 1 }],
    ['stored without a seq', report(device('d1')), store({ d1: [[T0 + 1, 1], [T0 + 2, 1, { t: 1 }, []], [T0 + 3, 1]] }), { mismatched: 1 }],
  ];
  for (const [name, sim, stored, expected] of cases) {
    it(name, () => expect(reconcileReadings(sim, acked, stored, window)).toMatchObject(expected));
  }

  it('compares every metric of every acknowledged reading and says what differs', () => {
    const log = ackedLog([`d1 1 ${T0 + 1} {"temperature":21.5,"humidity":40}`, `d1 2 ${T0 + 2} {"temperature":-0.25,"humidity":41}`, `d1 3 ${T0 + 3}`]);
    const stored = store({ d1: [[T0 + 1, 1, { temperature: 21.5, humidity: 40 }], [T0 + 2, 1, { temperature: -0.25, humidity: 14 }], [T0 + 3, 1]] });
    const result = reconcileReadings(report(device('d1')), log, stored, window);
    expect(result.mismatched).toBe(1);
    expect(result.examples.mismatched).toEqual(['d1 seq 2 t=0.0s: humidity sent 41, stored 14']);
  });

  it('two acknowledged readings stamped with one time: the store keeps one, the other is a mismatch that says why', () => {
    const log = ackedLog([`d1 1 ${T0 + 1} {"t":1}`, `d1 2 ${T0 + 1} {"t":2}`, `d1 3 ${T0 + 3}`]);
    const result = reconcileReadings(report(device('d1')), log, store({ d1: [[T0 + 1, 1, { t: 2 }, [2]], [T0 + 3, 1]] }), window);
    expect(result).toMatchObject({ lost: 0, mismatched: 1 });
    expect(result.examples.mismatched).toEqual(['d1 seq 1 t=0.0s: t sent 1, stored 2; stored with seq 2 (seqs 1, 2 were all acknowledged at this time: the device stamped them alike)']);
  });

  it('a log line without values (an older simulator, a torn line) cannot pass: it counts as a mismatch', () => {
    const log = parseAckedLog(`d1 1 ${T0 + 1}\nd1 2 ${T0 + 2} {"t":`);
    expect(reconcileReadings(report(device('d1', { sent: 2, acked: 2 })), log, store({ d1: [[T0 + 1, 1], [T0 + 2, 1]] }), window).mismatched).toBe(2);
  });
});

describe('reconcileQuarantine', () => {
  const badSig = device('d1', { faults: ['bad-signature'], faultMessages: { 'bad-signature': { count: 2, acked: 1, seqs: [10, 20] } } });
  const replay = device('d2', { faults: ['replay'], faultMessages: { replay: { count: 2, acked: 2, seqs: [] } } });
  const nonJson = device('d3', { faults: ['non-json'], faultMessages: { 'non-json': { count: 1, acked: 1, seqs: [] } } });
  const good = device('d4');
  const sim = report(badSig, replay, nonJson, good);
  const acked = ackedLog([`d2 1 ${T0 + 1}`, `d2 2 ${T0 + 2}`, `d4 1 ${T0 + 1}`]);
  const first = telemetry('d2', [1]);
  const fine = [entry('d1', 'READING_BAD_SIGNATURE', telemetry('d1', [10])), entry('d2', 'READING_REPLAYED', first), entry('d2', 'READING_REPLAYED', first), entry('d3', 'PAYLOAD_INVALID', 'temperature=21.5')];
  const cases: [string, QuarantineEntry[], Partial<ReturnType<typeof reconcileQuarantine>>][] = [
    ['every acknowledged bad message, under its reason', fine, { misclassified: 0, missing: 0, excess: 0 }],
    ['a redelivered bad message (the same one twice) is fine', [...fine, entry('d1', 'READING_BAD_SIGNATURE', telemetry('d1', [10]))], { misclassified: 0, excess: 0 }],
    ['an acknowledged bad message missing', fine.slice(1), { missing: 1 }],
    ['a good device quarantined', [...fine, entry('d4', 'READING_REPLAYED', telemetry('d4', [1]))], { misclassified: 1 }],
    ['a good reading of a faulty device under its fault\'s reason', [...fine, entry('d1', 'READING_BAD_SIGNATURE', telemetry('d1', [11]))], { misclassified: 1 }],
    ['a second, different message quarantined as a replay', [...fine, entry('d2', 'READING_REPLAYED', telemetry('d2', [2]))], { misclassified: 1 }],
    ['JSON quarantined as PAYLOAD_INVALID', [...fine, entry('d3', 'PAYLOAD_INVALID', '{"v":1}')], { misclassified: 1 }],
    ['more distinct bad messages than sent', [...fine, entry('d1', 'READING_BAD_SIGNATURE', telemetry('d1', [20])), entry('d1', 'READING_BAD_SIGNATURE', telemetry('d1', [10, 20]))], { excess: 1 }],
  ];
  for (const [name, entries, expected] of cases) {
    it(name, () => expect(reconcileQuarantine(sim, acked, entries)).toMatchObject(expected));
  }
  it('allows acknowledged replays missing from the quarantine up to what ingest counted as unverified, no more', () => {
    // d2's two acknowledged replays, one quarantined: the other acknowledged unverified (the store could not be asked).
    const oneReplay = fine.filter((e, i) => !(e.reason === 'READING_REPLAYED' && i === 2));
    expect(reconcileQuarantine(sim, acked, oneReplay)).toMatchObject({ missing: 1, unverifiedReplays: 0 });
    expect(reconcileQuarantine(sim, acked, oneReplay, 1)).toMatchObject({ missing: 0, unverifiedReplays: 1 });
    // Unverified counts never excuse another reason's missing entry.
    expect(reconcileQuarantine(sim, acked, fine.slice(1), 5)).toMatchObject({ missing: 1, unverifiedReplays: 0 });
  });

  it('sums expected and quarantined by reason', () => {
    const result = reconcileQuarantine(sim, acked, fine);
    expect(result.expectedByReason).toEqual({ READING_BAD_SIGNATURE: { min: 1, max: 2 }, READING_REPLAYED: { min: 2, max: 2 }, PAYLOAD_INVALID: { min: 1, max: 1 } });
    expect(result.quarantinedByReason).toEqual({ READING_BAD_SIGNATURE: 1, READING_REPLAYED: 2, PAYLOAD_INVALID: 1 });
  });
});

describe('checkViewers', () => {
  const sim = report(device('d1', { faults: ['clock-ahead'], faultMessages: { 'clock-ahead': { count: 1, acked: 1, seqs: [5] } } }));
  const acked = ackedLog([`d1 1 ${T0 + 1}`]);
  const stored = store({ d1: [[T0 + 1, 1, { t: 21.5 }]] });
  const viewer = (live: { device: string; seq: number; ts: number; values: Record<string, number> }[], history: { device: string; ts: number; values: Record<string, number> }[] = []) => [{ name: 'v', live, history, inconsistent: [], unparsable: 0 }];
  const cases: [string, ReturnType<typeof viewer>, number][] = [
    ['a stored reading with its value', viewer([{ device: 'd1', seq: 1, ts: T0 + 1, values: { t: 21.5 } }], [{ device: 'd1', ts: T0 + 1, values: { t: 21.5 } }]), 0],
    ['a value that differs from the store', viewer([{ device: 'd1', seq: 1, ts: T0 + 1, values: { t: 99 } }]), 1],
    ['a reading that is not in the store', viewer([{ device: 'd1', seq: 2, ts: T0 + 2, values: { t: 21.5 } }]), 1],
    ['a bad message shown (it is not in the store either)', viewer([{ device: 'd1', seq: 5, ts: T0 + 3_600_000, values: { t: 1 } }]), 2],
    ['a seq shown at another time than the device gave it', viewer([{ device: 'd1', seq: 1, ts: T0 + 2, values: { t: 21.5 } }]), 2],
    ['a history point not in the store', viewer([], [{ device: 'd1', ts: T0 + 9, values: { t: 1 } }]), 1],
  ];
  for (const [name, viewers, violations] of cases) {
    it(name, () => expect(checkViewers(sim, acked, stored, viewers).violations).toBe(violations));
  }
});

describe('stalledDevices', () => {
  it('names the devices with nothing acknowledged after the mark', () => {
    const acked = ackedLog([`d1 1 ${T0 + 1}`, `d1 2 ${T0 + 500}`, `d2 1 ${T0 + 1}`]);
    expect(stalledDevices(report(device('d1'), device('d2'), device('d3')), acked, T0 + 100)).toEqual(['d2', 'd3']);
  });
});

describe('judgeMemory', () => {
  const series = (from: number, to: number, mib: (i: number) => number) => Array.from({ length: (to - from) / 5000 + 1 }, (_, i) => ({ t: from + i * 5000, rssMiB: mib(i) }));
  const once = { starts: [0], warmupMs: 60_000 };
  it('a flat process with a GC sawtooth is not a leak', () => {
    expect(judgeMemory(series(0, 300_000, (i) => 100 + (i % 4) * 8), once).leak).toBe(false);
  });
  it('a steady climb past the limit is', () => {
    const memory = judgeMemory(series(0, 300_000, (i) => 100 + i * 2), once);
    expect(memory.leak).toBe(true);
    expect(memory.judged!.growthMiB).toBeGreaterThan(LEAK_MIN_MIB);
  });
  it('judges each life on its own, after its warm-up: a restart is not growth', () => {
    // 100 MiB before a restart at 200 s, then flat at 300 (another footprint, not a climb).
    const samples = [...series(0, 195_000, () => 100), ...series(200_000, 600_000, () => 300)];
    expect(judgeMemory(samples, { starts: [0, 200_000], warmupMs: 60_000 })).toMatchObject({ leak: false, restarts: 1, livesJudged: 2, judged: { fromS: 260, firstMiB: 300, lastMiB: 300 } });
  });
  it('catches a leak in an earlier life, and leaves out a life too short to judge', () => {
    const samples = [...series(0, 400_000, (i) => 100 + i * 2), ...series(405_000, 430_000, () => 100)];
    expect(judgeMemory(samples, { starts: [0, 402_000], warmupMs: 60_000 })).toMatchObject({ leak: true, livesJudged: 1, judged: { fromS: 60 } });
  });
  it('leaves a pause (the overload phase) out: a burst that stays is not growth, a climb after it still is', () => {
    // 100 MiB, 200 MiB during and after a burst at 200-230 s, flat: no leak.
    const burst = [...series(0, 195_000, () => 100), ...series(200_000, 600_000, () => 200)];
    const pauses = [{ from: 200_000, to: 230_000 }];
    expect(judgeMemory(burst, once).leak).toBe(true);
    expect(judgeMemory(burst, { ...once, pauses })).toMatchObject({ leak: false, restarts: 0, livesJudged: 2 });
    // The same burst, then a steady climb: still a leak.
    const climbing = [...series(0, 195_000, () => 100), ...series(200_000, 600_000, (i) => 200 + i * 4)];
    expect(judgeMemory(climbing, { ...once, pauses }).leak).toBe(true);
  });

  it('judges nothing when no life is long enough', () => {
    expect(judgeMemory(series(0, 60_000, (i) => 100 + i * 10), once)).toMatchObject({ leak: false, judged: null, livesJudged: 0 });
  });
});

describe('planChaos', () => {
  const window = { fromMs: 20_000, toMs: 110_000, viewers: 4 };
  it('is the same for the same seed and has every kind, within the window', () => {
    const plan = planChaos(7, window);
    expect(planChaos(7, window)).toEqual(plan);
    expect(new Set(plan.map((e) => e.kind))).toEqual(new Set(CHAOS_KINDS));
    for (const e of plan) expect(e.at).toBeGreaterThanOrEqual(window.fromMs);
  });

  it('kills the broker with SIGKILL at least once, on the broker as target', () => {
    for (const seed of [1, 2, 3]) {
      const plan = planChaos(seed, window);
      const kill = plan.find((e) => e.kind === 'broker-kill')!;
      expect(kill.durationMs).toBeGreaterThan(0);
      expect(targetOf('broker-kill')).toBe(targetOf('broker-restart'));
    }
  });

  it('has one overload phase of 30 s, however long the soak', () => {
    for (const toMs of [110_000, 900_000]) {
      const overloads = planChaos(5, { ...window, toMs }).filter((e) => e.kind === 'overload');
      expect(overloads).toEqual([expect.objectContaining({ durationMs: 30_000 })]);
    }
  });
  it('never overlaps strikes on the same target', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const plan = planChaos(seed, { ...window, toMs: 900_000 });
      for (const [i, e] of plan.entries()) {
        const next = plan.slice(i + 1).find((n) => targetOf(n.kind) === targetOf(e.kind));
        if (next) expect(next.at).toBeGreaterThanOrEqual(e.at + e.durationMs);
      }
    }
  });
});

describe('failuresOf', () => {
  const clean = {
    readings: reconcileReadings(report(device('d1', { sent: 1, acked: 1 })), ackedLog([`d1 1 ${T0 + 1}`]), store({ d1: [[T0 + 1, 1]] }), window),
    quarantine: reconcileQuarantine(report(device('d1')), new Map(), []),
    viewers: { readingsChecked: 1, historyPointsChecked: 0, violations: 0, examples: [] },
    // One event, delivered to both receivers at once, logged while the flapping one was down.
    alerts: {
      check: reconcileAlerts({
        log: [{ v: 1, id: 'e1', device: 'd1', rule: 'r', kind: 'silent', severity: 'critical', state: 'firing', value: 1, threshold: 1, at: T0, message: '' }],
        receivers: [
          { name: 'healthy', deliveries: [{ id: 'e1', at: T0 + 1 }], invalid: 0 },
          { name: 'flapping', deliveries: [{ id: 'e1', at: T0 + 9_000 }], invalid: 0 },
        ],
        alertsStarts: [T0 - 1],
        healthy: 'healthy',
        flapping: 'flapping',
        outages: [{ from: T0 - 1, to: T0 + 8_000 }],
        isolationLimitMs: 5_000,
      }),
      drained: true,
      minEvents: 1,
    },
    memory: {},
    chaos: [],
    crashes: [],
    stops: { ingest: { code: 0, signal: null } },
    drained: true,
    simSummary: true,
    stalled: [] as string[],
  };
  it('passes a clean run and names each kind of failure', () => {
    expect(failuresOf(clean)).toEqual([]);
    expect(failuresOf({ ...clean, readings: { ...clean.readings, lost: 2 } })).toEqual(['2 acknowledged readings are not in the store']);
    expect(failuresOf({ ...clean, readings: { ...clean.readings, mismatched: 3 } })).toEqual([expect.stringContaining('3 acknowledged readings are stored with other values')]);
    expect(failuresOf({ ...clean, readings: { ...clean.readings, duplicated: 1, duplicatedBySeq: 1 } })).toEqual([expect.stringContaining('(device, seq)')]);
    expect(failuresOf({ ...clean, drained: false })).toEqual([expect.stringContaining('did not drain')]);
    expect(failuresOf({ ...clean, alerts: { ...clean.alerts, drained: false } })).toEqual([expect.stringContaining('alerts did not drain')]);
    expect(failuresOf({ ...clean, alerts: { ...clean.alerts, check: { ...clean.alerts.check, doubleFirings: 1 } } })).toEqual([expect.stringContaining('fired again without a resolve')]);
    expect(failuresOf({ ...clean, stalled: ['d1'] })).toEqual([expect.stringContaining('stalled')]);
    expect(failuresOf({ ...clean, stops: { ingest: { code: 1, signal: null } } })).toEqual([expect.stringContaining('ingest did not stop cleanly')]);
    expect(failuresOf({ ...clean, crashes: [{ process: 'broker', atS: 5, code: 1, signal: null, logTail: '' }] })).toEqual([expect.stringContaining('broker exited unasked')]);
  });
});
