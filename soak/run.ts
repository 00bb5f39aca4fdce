/**
 * `npm run soak -- --minutes N`: the whole pipeline in separate processes against a real influxd, a
 * simulated fleet with every fault, live viewers, and a seeded chaos schedule (influxd restarted and
 * killed -9, influxd answering 500 and 429, hanging, cut off from ingest by a partition, ingest killed
 * -9, the broker restarted and killed -9, connections cut, a viewer frozen, 30 s of overload, the alerts
 * process killed -9, a webhook receiver down). At the end the fleets are stopped, ingest and the alerts'
 * outboxes drained, and everything reconciled:
 * nothing acknowledged lost, duplicated or stored with other values, every bad message quarantined
 * under its reason and no good one, the viewers shown only verified readings, every logged alert event
 * delivered to every webhook that wants it, in order, none fired twice, the healthy webhook never held
 * up by the flapping one, no process leaking memory or crashing. Prints one JSON verdict; exits 1 if anything failed.
 *
 *   npm run soak -- --minutes 2 [--seed 1] [--devices 40] [--interval 500] [--overload-rate 6000]
 *                   [--out FILE] [--keep]
 *
 * Talks to: the processes it starts (cli/bin.js broker|ingest|display|alerts|sim), influxd, /live, and
 * the alerts' webhook POSTs (its own receivers).
 * Its folder (logs, data, the acknowledgement log) is removed after a pass and kept after a failure.
 */
import { writeFile, readFile, rm, mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { LiveClientFrame } from '../core/live.ts';
import { prng } from '../firmware-sim/signals.ts';
import { readQuarantine } from '../ingest/quarantine.ts';
import { ALERTS_SETTLE_MS, ISOLATION_LIMIT_MS, MIN_ALERT_EVENTS, readAlertLog, SILENT_AFTER_MS, untilFileWritten, waitForAlertsDrain } from './alerts.ts';
import { planChaos, runChaos, type ChaosActions, type ChaosEvent } from './chaos.ts';
import type { InfluxFault, InfluxLinkCounts } from './influx-fault-proxy.ts';
import { judgeMemory, rssMiB, type ProcessMemory, type RssSample } from './memory.ts';
import { OverloadPhase } from './overload.ts';
import { loadShape, startPipeline, type SoakPipeline } from './pipeline.ts';
import { checkViewers, parseAckedLog, reconcileQuarantine, reconcileReadings, stalledDevices, type SimReport } from './reconcile.ts';
import { reconcileAlerts } from './reconcile-alerts.ts';
import { CounterTotals, scrape } from './scrape.ts';
import { readStored } from './stored.ts';
import { failuresOf, type Verdict } from './verdict.ts';
import { Viewer } from './viewers.ts';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '2' },
    seed: { type: 'string', default: '1' },
    devices: { type: 'string', default: '40' },
    interval: { type: 'string', default: '500' },
    // Readings a second the overload generator adds for 30 s (see README: why this default).
    'overload-rate': { type: 'string', default: '6000' },
    out: { type: 'string' },
    dir: { type: 'string' },
    keep: { type: 'boolean', default: false },
  },
});
const minutes = Number(args.minutes);
const seed = Number(args.seed);
const devices = Number(args.devices);
const intervalMs = Number(args.interval);
const overloadRate = Number(args['overload-rate']);
if (!(minutes > 0) || !Number.isInteger(seed) || !(devices >= 12) || !(intervalMs >= 50) || !(overloadRate >= 10 && overloadRate <= 100_000)) {
  process.stderr.write('usage: npm run soak -- --minutes N [--seed S] [--devices N (>= 12)] [--interval MS (>= 50)] [--overload-rate R (readings/s, 10..100000)] [--out FILE] [--keep]\n');
  process.exit(2);
}

const SAMPLE_EVERY_MS = 5_000;
const DRAIN_TIMEOUT_MS = 180_000;
const ALERTS_DRAIN_TIMEOUT_MS = 60_000;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const note = (text: string) => process.stderr.write(`soak: ${text}\n`);

/** Waits until ingest holds nothing unacknowledged, its spool is empty and nothing new arrives. */
async function waitForDrain(url: string): Promise<boolean> {
  const deadline = Date.now() + DRAIN_TIMEOUT_MS;
  let quietPolls = 0;
  let lastReceived = -1;
  while (Date.now() < deadline) {
    const m = await scrape(url);
    const received = m?.sensorpipe_ingest_received_total ?? -1;
    const idle = m !== undefined && m.sensorpipe_ingest_unacknowledged_messages === 0 && m.sensorpipe_ingest_spool_bytes === 0 && received === lastReceived;
    quietPolls = idle ? quietPolls + 1 : 0;
    lastReceived = received;
    // The unacknowledged gauge is refreshed every second: three quiet seconds in a row.
    if (quietPolls >= 3) return true;
    await sleep(1000);
  }
  return false;
}

/** `${device} ${seq}` of every seq ingest's seq log records as accepted (what reached the store or the spool). */
async function acceptedByIngest(path: string): Promise<Set<string>> {
  const accepted = new Set<string>();
  for (const line of (await readFile(path, 'utf8').catch(() => '')).split('\n')) {
    try {
      const entry = JSON.parse(line) as { d: string; s: number[] };
      for (const seq of entry.s) accepted.add(`${entry.d} ${seq}`);
    } catch {
      // a torn last line, or the empty one
    }
  }
  return accepted;
}

function viewerSubscriptions(ids: string[]): [string, LiveClientFrame[]][] {
  return [
    ['fleet', [{ type: 'subscribe', id: 'all', devices: '*' }]],
    ['latest', [{ type: 'subscribe', id: 'latest', devices: '*', latest: true }]],
    // The faulty devices first: their bad messages must never show, in history or live.
    // Subscribed again every 20 s (viewers.ts), so history-then-live joins happen throughout the chaos.
    ['history', [{ type: 'subscribe', id: 'h', devices: ids.slice(0, 8), history: { from: '-2m' } }]],
    ['metrics', [{ type: 'subscribe', id: 'm', devices: ids.slice(4, 20), metrics: ['temperature', 'motor_temp', 'voltage'] }]],
  ];
}

async function main(): Promise<number> {
  const dir = args.dir ?? (await mkdtemp(join(tmpdir(), 'sensorpipe-soak-')));
  const durationMs = minutes * 60_000;
  const load = loadShape(overloadRate);
  note(`${minutes} min, seed ${seed}, ${devices} devices every ${intervalMs} ms, overload ${load.devices} devices every ${load.intervalMs} ms; folder ${dir}`);
  const pipeline: SoakPipeline = await startPipeline({ dir, devices, intervalMs, seed, minutes, load });
  let verdict: Verdict | undefined;
  try {
    verdict = await soak(pipeline, dir, durationMs);
  } finally {
    await pipeline.close();
  }
  const json = JSON.stringify(verdict, null, 2);
  process.stdout.write(`${json}\n`);
  if (args.out !== undefined) await writeFile(args.out, `${json}\n`);
  if (verdict.verdict === 'pass' && !args.keep && args.dir === undefined) await rm(dir, { recursive: true, force: true });
  else note(`kept ${dir} (logs in ${join(dir, 'logs')})`);
  return verdict.verdict === 'pass' ? 0 : 1;
}

async function soak(pipeline: SoakPipeline, dir: string, durationMs: number): Promise<Verdict> {
  const { broker, ingest, display, sim, alerts, receivers } = pipeline;
  await broker.start();
  await ingest.start();
  await display.start();
  await alerts.start();
  const viewers = viewerSubscriptions(pipeline.deviceIds).map(([name, frames]) => new Viewer(name, pipeline.liveUrl, frames));
  await Promise.all(viewers.map((v) => v.start()));

  // t = 0: the fleet starts.
  const soakStart = Date.now();
  const memory = new Map<string, RssSample[]>(pipeline.processes.map((p) => [p.name, []]));
  const sampler = setInterval(() => {
    for (const p of pipeline.processes) {
      const pid = p.pid;
      if (pid === undefined) continue;
      void rssMiB(pid).then((mib) => mib !== undefined && memory.get(p.name)!.push({ t: Date.now() - soakStart, rssMiB: mib }));
    }
  }, SAMPLE_EVERY_MS);
  await sim.start();
  note('pipeline up, fleet started');
  // Replays ingest acknowledged unverified (the store could not be asked), over all of ingest's lives.
  const unverifiedMetric = 'sensorpipe_ingest_outside_redelivery_window_total{outcome="unverified"}';
  const ingestTotals = new CounterTotals(pipeline.ingestMetricsUrl, [unverifiedMetric]);
  const counterSampler = setInterval(() => void ingestTotals.sample(), 1000);

  const random = prng(seed ^ 0x51ce);
  const overload = new OverloadPhase(pipeline, loadShape(overloadRate), soakStart);
  const down = (e: ChaosEvent) => `down ${(e.durationMs / 1000).toFixed(1)} s`;
  /** One fault of the link between ingest and influxd for the strike's duration, and what it did. */
  const linkFault = (fault: InfluxFault) => async (e: ChaosEvent) => {
    const before: InfluxLinkCounts = { ...pipeline.influxLink.counts };
    pipeline.influxLink.set(fault);
    await sleep(e.durationMs);
    pipeline.influxLink.set(undefined);
    const did = Object.entries(pipeline.influxLink.counts)
      .map(([name, n]) => [name, n - before[name as keyof InfluxLinkCounts]] as const)
      .filter(([, n]) => n > 0)
      .map(([name, n]) => `${name} ${n}`);
    return `${(e.durationMs / 1000).toFixed(1)} s${did.length > 0 ? `: ${did.join(', ')}` : ''}`;
  };
  const actions: ChaosActions = {
    'influxd-restart': async (e) => {
      await pipeline.influx.stop();
      await sleep(e.durationMs);
      await pipeline.influx.start();
      return down(e);
    },
    'influxd-kill': async (e) => {
      const pid = pipeline.influx.pid;
      if (pid === undefined) throw new Error('influxd is not running');
      process.kill(pid, 'SIGKILL');
      await pipeline.influx.stop(); // reaps it (the harness waits for its exit)
      await sleep(e.durationMs);
      await pipeline.influx.start(); // on the same data: its WAL is replayed
      return `SIGKILL; ${down(e)}`;
    },
    'influxd-500': linkFault('500'),
    'influxd-429': linkFault('429'),
    'influxd-hang': linkFault('hang'),
    'influxd-partition': linkFault('partition'),
    overload: (e) => overload.run(e),
    'broker-kill': async (e) => {
      const exit = await broker.kill('SIGKILL');
      await sleep(e.durationMs);
      await broker.start();
      return `signal ${exit.signal}; ${down(e)}`;
    },
    'ingest-kill': async (e) => {
      await ingestTotals.sample(); // what this life counted, before it is gone
      await ingest.kill('SIGKILL');
      await sleep(e.durationMs);
      await ingest.start();
      return `down ${(e.durationMs / 1000).toFixed(1)} s`;
    },
    'broker-restart': async (e) => {
      const exit = await broker.stop('SIGTERM');
      await sleep(e.durationMs);
      await broker.start();
      return `exit code ${exit.code}; down ${(e.durationMs / 1000).toFixed(1)} s`;
    },
    'devices-cut': async (e) => {
      const open = pipeline.devicesProxy.connections;
      return `cut ${pipeline.devicesProxy.cut(e.fraction ?? 1, random)} of ${open} device connections`;
    },
    'ingest-link-cut': async () => `cut ${pipeline.ingestProxy.cut(1, random)} ingest connection(s)`,
    'viewer-freeze': (e) => viewers[e.viewer ?? 0]!.freeze(e.durationMs),
    'alerts-kill': async (e) => {
      // Timed on the log: killed as an event was just appended, before (or while) its outboxes take it.
      const onAppend = await untilFileWritten(pipeline.alertLogPath, 3_000);
      const exit = await alerts.kill('SIGKILL');
      await sleep(e.durationMs);
      await alerts.start();
      return `signal ${exit.signal} ${onAppend ? 'as an event was logged' : '(no event logged within 3 s)'}; ${down(e)}`;
    },
    'webhook-down': async (e) => {
      const before = receivers.flapping.counts.requests;
      await receivers.flapping.down(e.durationMs);
      return `flapping receiver refused connections for ${(e.durationMs / 1000).toFixed(1)} s (${receivers.flapping.counts.requests - before} requests before it was back)`;
    },
  };
  const plan = planChaos(seed, { fromMs: 20_000, toMs: durationMs - 10_000, viewers: viewers.length });
  note(`chaos plan: ${plan.map((e) => `${e.kind}@${Math.round(e.at / 1000)}s`).join(', ')}`);
  const chaos = runChaos(plan, actions, soakStart, (r) => note(`${r.atS}s ${r.kind}${r.detail ? `: ${r.detail}` : ''}${r.error ? ` FAILED: ${r.error}` : ''}`));

  await sleep(Math.max(0, soakStart + durationMs - Date.now()));
  await chaos.stop();
  // Whatever a failed strike left down comes back before the end (the strike is still reported).
  for (const p of [broker, ingest, alerts]) if (!p.running) await p.start().catch((err: unknown) => note(`${p.name} would not start: ${(err as Error).message}`));
  pipeline.influxLink.set(undefined);
  if (pipeline.influx.pid === undefined) await pipeline.influx.start().catch((err: unknown) => note(`influxd would not start: ${(err as Error).message}`));

  // The end: the fleet stops (in-flight messages get their PUBACKs), then ingest drains.
  const stops: Verdict['stops'] = {};
  stops.sim = await sim.stop('SIGINT');
  const fleetStoppedAt = Date.now();
  // The drain: the flapping receiver stops misbehaving, so what the alerts hold goes out at once.
  receivers.flapping.calm();
  const summaryLine = sim.output.split('\n').reverse().find((l) => l.startsWith('{'));
  const simReport = summaryLine === undefined ? undefined : (JSON.parse(summaryLine) as SimReport & Record<string, unknown>);
  const drainStart = Date.now();
  const drained = await waitForDrain(pipeline.ingestMetricsUrl);
  const drainedAfterS = drained ? Math.round((Date.now() - drainStart) / 100) / 10 : null;
  note(drained ? `ingest drained after ${drainedAfterS} s` : 'ingest did NOT drain');
  // Once the rules have settled (silence fired, rejections resolved), both outboxes empty and nothing new logged.
  const alertsDrainStart = Date.now();
  const alertsDrained = await waitForAlertsDrain(pipeline.alertsMetricsUrl, fleetStoppedAt + ALERTS_SETTLE_MS, ALERTS_DRAIN_TIMEOUT_MS);
  const alertsDrainedAfterS = alertsDrained ? Math.round((Date.now() - alertsDrainStart) / 100) / 10 : null;
  note(alertsDrained ? `alerts drained after ${alertsDrainedAfterS} s` : 'alerts did NOT drain');
  await sleep(1500); // the last live frames reach the viewers
  clearInterval(sampler);
  await Promise.all(viewers.map((v) => v.stop()));
  const ingestMetrics = (await scrape(pipeline.ingestMetricsUrl)) ?? {};
  clearInterval(counterSampler);
  await ingestTotals.sample();
  const soakEnd = Date.now();

  // Reconcile: the fleet and the overload generator alike (one report, one acknowledgement record).
  const fleetReport: SimReport = simReport ?? { sent: 0, acked: 0, perDevice: [] };
  const loadReport: SimReport = overload.summary ?? { sent: 0, acked: 0, perDevice: [] };
  const report: SimReport = { sent: fleetReport.sent + loadReport.sent, acked: fleetReport.acked + loadReport.acked, perDevice: [...fleetReport.perDevice, ...loadReport.perDevice] };
  const acked = parseAckedLog(await readFile(pipeline.ackedLogPath, 'utf8').catch(() => ''));
  parseAckedLog(await readFile(pipeline.loadAckedLogPath, 'utf8').catch(() => ''), acked);
  const storedDevices = [...pipeline.deviceIds, ...(overload.report === null ? [] : pipeline.loadDeviceIds)];
  const stored = await readStored(pipeline.influx.url, pipeline.database, storedDevices, soakStart - 31 * 86_400_000, soakEnd + 2 * 3_600_000, soakStart - 60_000);
  const { entries } = await readQuarantine(join(pipeline.dataDir, 'ingest', 'quarantine'));
  const readings = reconcileReadings(report, acked, stored, { from: soakStart - 1000, to: soakEnd, origin: soakStart });
  const quarantine = reconcileQuarantine(report, acked, entries, ingestTotals.total(unverifiedMetric));
  const viewerCheck = checkViewers(
    report,
    acked,
    stored,
    viewers.map((v) => ({ name: v.name, live: v.live.values(), history: v.history.values(), inconsistent: v.inconsistent, unparsable: v.stats.badFrames.filter((f) => f.startsWith('unparsable')).length })),
  );

  for (const p of [display, alerts, ingest, broker]) stops[p.name] = await p.stop('SIGTERM');
  // The alert log, read back after the process stopped, as the component itself reads it at start.
  const alertLog = await readAlertLog(pipeline.alertLogPath);
  const alertsCheck = reconcileAlerts({
    log: alertLog.events,
    receivers: (['healthy', 'flapping'] as const).map((name) => ({ name, ...pipeline.receiverFilters[name], deliveries: receivers[name].deliveries, invalid: receivers[name].counts.invalid })),
    alertsStarts: alerts.starts,
    healthy: 'healthy',
    flapping: 'flapping',
    outages: receivers.flapping.outages,
    isolationLimitMs: ISOLATION_LIMIT_MS,
  });
  // Did cutting the devices make them silent? Silent firings within 3 s after each devices-cut.
  const cuts = chaos.records.filter((r) => r.kind === 'devices-cut').map((r) => soakStart + r.atS * 1000);
  const silentAfterCuts = alertLog.events.filter((e) => e.rule === 'quiet' && e.state === 'firing' && cuts.some((c) => e.at >= c && e.at <= c + 3_000)).length;
  if (overload.stop !== undefined) stops.load = overload.stop;
  // Where did a lost reading get to? Shown live means ingest verified it; in ingest's seq log means it
  // was accepted and durable (store or spool) before it was acknowledged.
  const acceptedSeqs = await acceptedByIngest(join(pipeline.dataDir, 'ingest', 'seq.log'));
  const lostTrace = readings.lostReadings.slice(0, 10).map((r) => {
    const shown = viewers.some((v) => v.live.get(`${r.device} ${r.ts}`)?.seq === r.seq);
    return `${r.device} seq ${r.seq} t=${((r.ts - soakStart) / 1000).toFixed(1)}s: ${shown ? 'shown live' : 'never shown live'}, ${acceptedSeqs.has(`${r.device} ${r.seq}`) ? 'accepted by ingest' : 'never accepted by ingest'}`;
  });

  const warmupMs = Math.min(60_000, durationMs / 4);
  const memoryVerdict: Record<string, ProcessMemory> = {};
  // The overload phase is not judged: a burst leaves a bigger footprint without leaking (memory.ts).
  const pauses = overload.window === undefined ? [] : [overload.window];
  for (const p of pipeline.processes) {
    memoryVerdict[p.name] = judgeMemory(memory.get(p.name)!, { starts: p.starts.map((at) => at - soakStart), warmupMs, pauses });
  }
  const crashes = pipeline.processes.flatMap((p) => p.crashes.map((c) => ({ process: p.name, atS: Math.round((c.at - soakStart) / 1000), code: c.code, signal: c.signal, logTail: c.logTail })));
  // Every device must still have been getting readings through in the last quarter of the run.
  // (The fleet's devices: the overload generator's run only during their phase.)
  const stalled = stalledDevices(fleetReport, acked, soakStart + durationMs * 0.75);
  const failures = failuresOf({
    readings,
    quarantine,
    viewers: viewerCheck,
    alerts: { check: alertsCheck, drained: alertsDrained, minEvents: MIN_ALERT_EVENTS },
    memory: memoryVerdict,
    chaos: chaos.records,
    crashes,
    stops,
    drained,
    simSummary: simReport !== undefined,
    stalled,
  });

  const { perDevice, ...simTotals } = simReport ?? { perDevice: [] };
  return {
    verdict: failures.length === 0 ? 'pass' : 'fail',
    failures,
    soak: { minutes, seed, devices, intervalMs, faults: pipeline.faults, startedAt: new Date(soakStart).toISOString(), durationS: Math.round((soakEnd - soakStart) / 1000), drainedAfterS, ...(failures.length > 0 || args.keep ? { dir } : {}) },
    sent: readings.sent,
    acknowledged: readings.acknowledged,
    stored: readings.stored,
    lost: readings.lost,
    duplicated: readings.duplicated,
    mismatched: readings.mismatched,
    storedUnacknowledged: readings.storedUnacknowledged,
    duplicatedBy: { ts: readings.duplicatedByTs, seq: readings.duplicatedBySeq },
    unexplainedStored: readings.unexplained,
    quarantined: quarantine.quarantinedByReason,
    expected: quarantine.expectedByReason,
    misclassified: quarantine.misclassified,
    quarantineMissing: quarantine.missing,
    quarantineUnverifiedReplays: quarantine.unverifiedReplays,
    quarantineExcess: quarantine.excess,
    viewerViolations: viewerCheck.violations,
    viewers: { readingsChecked: viewerCheck.readingsChecked, historyPointsChecked: viewerCheck.historyPointsChecked, stats: viewers.map((v) => ({ ...v.stats, badFrames: v.stats.badFrames.slice(0, 5) })) },
    alerts: {
      ...alertsCheck,
      drainedAfterS: alertsDrainedAfterS,
      kills: alerts.starts.length - 1,
      logLinesSkipped: alertLog.skippedLines,
      silentAfterMs: SILENT_AFTER_MS,
      silentFiringsAfterDevicesCuts: silentAfterCuts,
      devicesCuts: cuts.length,
      receiverCounts: { healthy: { ...receivers.healthy.counts }, flapping: { ...receivers.flapping.counts } },
    },
    memory: memoryVerdict,
    chaos: [...chaos.records].sort((a, b) => a.atS - b.atS),
    crashes,
    stops,
    overload: overload.report,
    influxLink: { ...pipeline.influxLink.counts },
    ingest: Object.fromEntries(Object.entries(ingestMetrics).filter(([k]) => /received|accepted|duplicates|rejected|store_errors|spool_full|quarantine_evicted|outside_redelivery/.test(k) && !k.includes('_bucket'))),
    sim: { ...simTotals, connects: perDevice.reduce((n, d) => n + Number((d as { connects?: number }).connects ?? 0), 0) },
    examples: { ...readings.examples, lost: lostTrace, quarantine: quarantine.examples, viewers: viewerCheck.examples },
  };
}

process.exit(await main());
