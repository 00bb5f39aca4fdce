/**
 * ingest — verifies every telemetry message and writes accepted readings to the store, losing nothing.
 *
 * Talks to: the MQTT broker (as the `svc:ingest` service account; telemetry in, the verified live feed
 * out on pipeline/readings/{device}), the store (the store port, measured into ingest's metrics by
 * store/metrics.ts), and its data folder (seq memory, spool, quarantine). Serves /metrics and /healthz
 * on a small HTTP port (core/ops-http.ts), on 127.0.0.1 only.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { ConfigOf, configSpecs } from '../core/config.ts';
import { SensorpipeError } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { serveOps } from '../core/ops-http.ts';
import { PROTOCOL_VERSION, type CompletenessMessage, type VerifiedReadings } from '../core/schemas.ts';
import { topics } from '../core/topics.ts';
import { instrumentStore } from '../store/metrics.ts';
import type { StorePoint, TimeSeriesStore } from '../store/port.ts';
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
  const metrics = createIngestMetrics();
  // Every store call ingest makes (writes, spool replays, health probes) is measured in its registry.
  const store = instrumentStore(givenStore, metrics.registry);
  const registry = await RegistrySource.open(registryPath, logger);
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
  metrics.spoolBytes.set(spool.bytes);

  const subscription = config.shareGroup ? topics.shared(config.shareGroup, topics.allTelemetry) : topics.allTelemetry;
  const link: IngestLink = new IngestLink({
    url: config.mqttUrl,
    username: INGEST_USERNAME,
    password: config.ingestPassword,
    clientId: config.ingestClientId,
    subscriptions: [subscription],
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
      logger,
      signal: stopping.signal,
      publishVerified: (device, readings, meta) => {
        const message: VerifiedReadings = { v: PROTOCOL_VERSION, device, readings, meta, verifiedAt: Date.now() };
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
    metrics.quarantineEvicted.set(quarantine.evictedCount);
    for (const [device] of seqs.tracker.devicesTracked()) {
      const c = seqs.tracker.completeness(device);
      if (c === undefined) continue;
      metrics.deviceMissing.set({ device }, c.missing);
      metrics.deviceCompleteness.set({ device }, c.ratio);
      const key = `${c.received}/${c.missing}`;
      if (lastPublished.get(device) === key || !link.client.connected) continue;
      lastPublished.set(device, key);
      const message: CompletenessMessage = { v: PROTOCOL_VERSION, device, ...c, at: Date.now() };
      link.publish(topics.completeness(device), JSON.stringify(message), { retain: true });
    }
  }, config.completenessIntervalMs);
  completenessTimer.unref();

  const ops = await serveOps('127.0.0.1', config.ingestMetricsPort, {
    metrics: metrics.registry,
    health: async () => {
      const status = {
        broker: link.client.connected,
        store: await store.health().then(
          (health) => health.ok,
          () => false,
        ),
        spoolBytes: spool.bytes,
        spoolFull: pipeline.spoolFull,
      };
      return { ok: status.broker && status.store, ...status };
    },
  });
  link.connect();

  return {
    metrics,
    metricsPort: ops.port,
    pipeline,
    link,
    close: async () => {
      clearInterval(completenessTimer);
      stopping.abort();
      // Stop taking messages, make everything received durable and acknowledged, then disconnect.
      await pipeline.drain();
      await link.close();
      await pipeline.close();
      await seqs.close();
      await quarantine.close();
      await spool.close();
      registry.close();
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
