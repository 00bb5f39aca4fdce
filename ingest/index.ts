/**
 * ingest — verifies every telemetry message and writes accepted readings to the store, losing nothing.
 *
 * Talks to: the MQTT broker (as the `svc:ingest` service account; telemetry in, the verified live feed
 * out on pipeline/readings/{device}; per-device counts, retained, on pipeline/counts/{device}), the device registry (its file, or Redis), the store (the store
 * port, measured into ingest's metrics by store/metrics.ts), and its data folder (seq memory, spool, quarantine). Serves /metrics, /healthz,
 * /livez and /readyz on a small HTTP port (core/ops-http.ts), on 127.0.0.1 unless
 * SENSORPIPE_INGEST_METRICS_HOST says otherwise.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ConfigOf, configSpecs } from '../core/config.ts';
import { SensorpipeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { serveOps } from '../core/ops-http.ts';
import { instrumentRegistryStore, openRegistryStore } from '../core/registry-store.ts';
import { PROTOCOL_VERSION, type CompletenessMessage, type VerifiedReadings } from '../core/schemas.ts';
import { topics } from '../core/topics.ts';
import { instrumentStore } from '../store/metrics.ts';
import type { StorePoint, TimeSeriesStore } from '../store/port.ts';
import { COUNTS_INTERVAL_MS, DeviceCounts } from './device-counts.ts';
import { createIngestMetrics, type IngestMetrics } from './metrics.ts';
import { IngestLink } from './mqtt-link.ts';
import { IngestPipeline } from './pipeline.ts';
import { Quarantine } from './quarantine.ts';
import { RegistrySource } from './registry-source.ts';
import { SeqStore } from './seq-store.ts';
import { Spool } from './spool.ts';

export type IngestConfig = ConfigOf<typeof configSpecs.ingest>;
/**
 * The part of the store port ingest uses: it writes, looks up the rare message seen outside the
 * redelivery window (ingest/pipeline.ts), and reports the store's health at /healthz.
 */
export type IngestStore = Pick<TimeSeriesStore, 'kind' | 'write' | 'query' | 'health'>;

export const INGEST_USERNAME = 'svc:ingest';

export interface RunningIngest {
  metrics: IngestMetrics;
  metricsPort: number;
  pipeline: IngestPipeline;
  link: IngestLink;
  /** Per-device counts (what pipeline/counts/{device} carries). */
  counts: DeviceCounts;
  close(): Promise<void>;
}

export interface StartIngestOptions {
  config: IngestConfig;
  registryPath: string;
  /** Not closed by ingest: whoever opened it closes it (in `sensorpipe start` the display reads it too). */
  store: IngestStore;
  /** The process's logger; ingest adds `component: 'ingest'` itself. */
  logger: Logger;
}

export async function startIngest({ config, registryPath, store: givenStore, logger: parentLogger }: StartIngestOptions): Promise<RunningIngest> {
  const logger = parentLogger.child({ component: 'ingest' });
  checkRedeliveryWindows(config);
  const dir = join(config.dataDir, 'ingest');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Read when /metrics is scraped (after everything below is open): the quarantine's evicted count, the store, the link.
  const metrics = createIngestMetrics({
    perDevice: config.metricsPerDevice,
    quarantineEvicted: () => quarantine.evictedCount,
    storeUp: () => store.health().then((health) => health.ok, () => false),
    brokerConnected: () => link.client.connected,
    acknowledged: () => link.acknowledged,
  });
  // Every store call ingest makes (writes, spool replays, health probes) is measured in its registry.
  const store = instrumentStore(givenStore, metrics.registry);
  // The registry file (checked every 0.5 s), or Redis with SENSORPIPE_REDIS_URL (each change announced); its reloads on /metrics.
  const registryStore = instrumentRegistryStore(openRegistryStore({ registryPath, redisUrl: config.redisUrl, logger }), metrics.registry);
  const registry = await RegistrySource.open(registryStore, logger).catch(async (err: unknown) => {
    await registryStore.close();
    throw err;
  });
  // Aborted when ingest stops: writes that keep failing (disk, quarantine) stop retrying and leave
  // their messages unacknowledged, for the broker to redeliver to the next run.
  const stopping = new AbortController();
  const seqs = await SeqStore.open(dir, { gapWindow: config.seqGapWindow, redeliveryWindow: config.redeliveryWindow, fleetWindow: config.redeliveryFleetWindow }, { logger });
  const quarantine = await Quarantine.open(join(dir, 'quarantine'), {
    maxEntries: config.quarantineMaxEntries,
    retryMinMs: config.retryMinMs,
    retryMaxMs: config.retryMaxMs,
    logger,
    signal: stopping.signal,
  });
  const spool = await Spool.open<StorePoint>(join(dir, 'spool'), { maxBytes: config.spoolMaxBytes });
  const counts = await DeviceCounts.open(dir, { logger });
  metrics.spoolBytes.set(spool.bytes);

  // Signed telemetry, and the topics of the payload mappings of broker-authenticated devices.
  const subscriptions = topics.ingestFilters.map((filter) => (config.shareGroup ? topics.shared(config.shareGroup, filter) : filter));
  const link: IngestLink = new IngestLink({
    url: config.mqttUrl,
    username: INGEST_USERNAME,
    password: config.ingestPassword,
    clientId: config.ingestClientId,
    subscriptions,
    protocolVersion: config.mqttProtocol === '5' ? 5 : 4,
    maxUnacked: config.maxUnacked,
    maxUnackedBytes: config.maxUnackedBytes,
    logger,
    onMessage: (message) => pipeline.handle(message),
  });

  const pipeline = new IngestPipeline(
    {
      registry: () => registry.registry,
      seqs,
      quarantine,
      spool,
      store,
      metrics,
      counts,
      logger,
      signal: stopping.signal,
      publishVerified: (device, readings, meta, trust) => {
        const message: VerifiedReadings = { v: PROTOCOL_VERSION, device, readings, meta, verifiedAt: Date.now() };
        if (trust !== undefined) message.trust = trust;
        link.publish(topics.verified(device), JSON.stringify(message));
      },
    },
    {
      batchMaxPoints: config.batchMaxPoints,
      batchMaxDelayMs: config.batchMaxDelayMs,
      bounds: { maxFutureMs: config.maxFutureMs, maxAgeMs: config.maxAgeMs },
      quarantinePayloadBytes: config.quarantinePayloadBytes,
      retryMinMs: config.retryMinMs,
      retryMaxMs: config.retryMaxMs,
    },
  );

  // Completeness goes to the metrics every second, and to the display (retained) when it changed.
  const lastPublished = new Map<string, string>();
  const completenessTimer = setInterval(() => {
    metrics.unacknowledged.set(link.unacknowledged);
    for (const [device] of seqs.tracker.devicesTracked()) {
      const c = seqs.tracker.completeness(device);
      if (c === undefined) continue;
      if (metrics.perDevice) {
        metrics.deviceMissing.set({ device }, c.missing);
        metrics.deviceCompleteness.set({ device }, c.ratio);
      }
      const key = `${c.received}/${c.missing}`;
      if (lastPublished.get(device) === key || !link.client.connected) continue;
      lastPublished.set(device, key);
      const message: CompletenessMessage = { v: PROTOCOL_VERSION, device, ...c, at: Date.now() };
      link.publish(topics.completeness(device), JSON.stringify(message), { retain: true });
    }
  }, config.completenessIntervalMs);
  completenessTimer.unref();

  // Device counts: written to counts.json, then published retained (QoS 1), once a second when they
  // changed, and all of them after a start (ingest/device-counts.ts says what a kill -9 costs).
  const publishCounts = () =>
    counts.tick(
      (message) => link.publish(topics.counts(message.device), JSON.stringify(message), { retain: true, qos: 1 }),
      () => link.client.connected,
    );
  const countsTimer = setInterval(() => void publishCounts(), COUNTS_INTERVAL_MS);
  countsTimer.unref();

  const status = async () => ({
    broker: link.client.connected,
    store: await store.health().then(
      (health) => health.ok,
      () => false,
    ),
    spoolBytes: spool.bytes,
    spoolFull: pipeline.spoolFull,
  });
  const ops = await serveOps(config.ingestMetricsHost, config.ingestMetricsPort, {
    metrics: metrics.registry,
    health: async () => {
      const now = await status();
      return { ok: now.broker && now.store, ...now };
    },
    // Alive while it answers: a spooling ingest (store down, or spool full and acknowledgements paused) is
    // doing what it should, and a restart would only drop its session's unacknowledged messages for the
    // broker to resend. Ready when it does its whole job: linked to the broker and writing to the store.
    // See docs/OPERATIONS.md ("Liveness and readiness").
    liveness: () => ({ ok: true, spoolBytes: spool.bytes }),
    readiness: async () => {
      const now = await status();
      const reasons = [...(now.broker ? [] : ['broker']), ...(now.store ? [] : ['store']), ...(now.spoolFull ? ['spool_full'] : [])];
      return { ok: reasons.length === 0, notReady: reasons, ...now };
    },
  });
  link.connect();

  return {
    metrics,
    metricsPort: ops.port,
    pipeline,
    link,
    counts,
    close: async () => {
      clearInterval(completenessTimer);
      clearInterval(countsTimer);
      stopping.abort();
      // Stop taking messages, make everything received durable and acknowledged, then disconnect.
      await pipeline.drain();
      await publishCounts(); // the last counts, written and published (QoS 1: end waits for their PUBACK)
      await link.close();
      await pipeline.close();
      await seqs.close();
      await quarantine.close();
      await counts.close();
      await spool.close();
      registry.close();
      await registryStore.close();
      await ops.close();
    },
  };
}

/**
 * The fleet window must hold every message the broker can redeliver to ingest (seq-tracker.ts): those
 * ingest had not acknowledged when its connection dropped (at most maxUnacked) and those it reads on the
 * new connection before the broker's resend reaches them (at most maxUnacked again). Fails fast.
 */
function checkRedeliveryWindows(config: IngestConfig): void {
  if (config.redeliveryFleetWindow < 2 * config.maxUnacked) {
    throw new SensorpipeError(
      'CONFIG_INVALID',
      `SENSORPIPE_REDELIVERY_FLEET_WINDOW (${config.redeliveryFleetWindow}) must be at least twice SENSORPIPE_MAX_UNACKED (${config.maxUnacked}): a redelivery from the broker could otherwise be taken for a message outside the window`,
    );
  }
}
