/**
 * The overload phase (issue 14): for its strike's 30 s, the load generator — a second `sensorpipe sim`
 * of registered devices that sign every reading and publish at QoS 1 (soak/pipeline.ts) — publishes on
 * top of the fleet. Ingest's /metrics is sampled every second meanwhile. Then the generator gets SIGINT:
 * it stops taking readings, waits for the PUBACKs of what it has in flight, prints its summary and
 * closes its acknowledgement log, which run.ts reconciles with the store like the fleet's.
 *
 * What it reports is what the soak shows about overload: the rate offered, what was acknowledged, what
 * ingest received and accepted a second, how far its unacknowledged count and spool grew, and whatever
 * the broker's /metrics says about queues and backpressure.
 */
import type { ChaosEvent } from './chaos.ts';
import type { SoakPipeline } from './pipeline.ts';
import type { Exit } from './processes.ts';
import type { SimReport } from './reconcile.ts';
import { scrape } from './scrape.ts';
import type { OverloadReport } from './verdict.ts';

/** How long the generator may take to get its in-flight PUBACKs after SIGINT (the broker may be holding them). */
const STOP_GRACE_MS = 120_000;
/** Broker metrics worth reporting for an overload (sensorpipe_broker_queued_messages, _backpressure, _held_publishes…). */
const BROKER_QUEUE_METRIC = /queue|paus|backpressure|held/i;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class OverloadPhase {
  report: OverloadReport | null = null;
  /** The generator's summary, once it stopped. */
  summary: SimReport | undefined;
  stop: Exit | undefined;
  /** When the generator started and stopped (ms since the soak started): memory is not judged in between. */
  window: { from: number; to: number } | undefined;

  constructor(
    private readonly pipeline: SoakPipeline,
    private readonly shape: { devices: number; intervalMs: number },
    private readonly soakStart: number,
  ) {}

  get offeredPerS(): number {
    return Math.round((this.shape.devices * 1000) / this.shape.intervalMs);
  }

  async run(event: ChaosEvent): Promise<string> {
    const { pipeline } = this;
    const from = Date.now();
    const peaks = { unacknowledged: 0, spoolBytes: 0 };
    // Ingest's counters over the phase, summed sample to sample: a value lower than the last one means
    // ingest restarted (chaos may kill it meanwhile), and counts from 0 again.
    const counted = { received: 0, accepted: 0 };
    const last = { received: -1, accepted: -1 };
    const sampleIngest = async () => {
      const m = await scrape(pipeline.ingestMetricsUrl);
      if (m === undefined) return;
      peaks.unacknowledged = Math.max(peaks.unacknowledged, m.sensorpipe_ingest_unacknowledged_messages ?? 0);
      peaks.spoolBytes = Math.max(peaks.spoolBytes, m.sensorpipe_ingest_spool_bytes ?? 0);
      const now = { received: m.sensorpipe_ingest_received_total ?? 0, accepted: m.sensorpipe_ingest_accepted_readings_total ?? 0 };
      for (const key of ['received', 'accepted'] as const) {
        if (last[key] >= 0) counted[key] += now[key] >= last[key] ? now[key] - last[key] : now[key];
        last[key] = now[key];
      }
    };
    await sampleIngest();
    /** The broker's queue and backpressure metrics: the highest each reached during the phase. */
    const broker: Record<string, number> = {};
    const sampleBroker = async () => {
      for (const [name, value] of Object.entries((await scrape(pipeline.brokerMetricsUrl)) ?? {})) {
        if (BROKER_QUEUE_METRIC.test(name) && !name.includes('_bucket')) broker[name] = Math.max(broker[name] ?? value, value);
      }
    };
    const sampler = setInterval(() => {
      void sampleIngest();
      void sampleBroker();
    }, 1000);
    try {
      await pipeline.load.start();
      await sleep(Math.max(0, from + event.durationMs - Date.now()));
    } finally {
      clearInterval(sampler);
    }
    const runFor = (Date.now() - from) / 1000;
    await sampleIngest();
    await sampleBroker();
    const stopFrom = Date.now();
    this.stop = await pipeline.load.kill('SIGINT', STOP_GRACE_MS);
    const stopS = Math.round((Date.now() - stopFrom) / 100) / 10;
    this.window = { from: from - this.soakStart, to: Date.now() - this.soakStart };
    const line = pipeline.load.output.split('\n').reverse().find((l) => l.startsWith('{'));
    this.summary = line === undefined ? undefined : (JSON.parse(line) as SimReport & { buffered?: number });
    const summary = this.summary as (SimReport & { buffered?: number }) | undefined;
    this.report = {
      atS: Math.round((from - this.soakStart) / 1000),
      durationS: Math.round(runFor * 10) / 10,
      devices: this.shape.devices,
      intervalMs: this.shape.intervalMs,
      offeredPerS: this.offeredPerS,
      sent: summary?.sent ?? 0,
      acked: summary?.acked ?? 0,
      buffered: summary?.buffered ?? 0,
      ackedPerS: Math.round((summary?.acked ?? 0) / runFor),
      stopS,
      ingestReceivedPerS: Math.round(counted.received / runFor),
      ingestAcceptedReadingsPerS: Math.round(counted.accepted / runFor),
      ingestUnacknowledgedMax: peaks.unacknowledged,
      ingestSpoolBytesMax: peaks.spoolBytes,
      broker,
    };
    const r = this.report;
    return `${r.devices} devices offered ${r.offeredPerS}/s for ${r.durationS} s: ${r.sent} sent, ${r.acked} acknowledged (stop took ${stopS} s); ingest received ${r.ingestReceivedPerS} messages/s, unacknowledged up to ${r.ingestUnacknowledgedMax}`;
  }
}
