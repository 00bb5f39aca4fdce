/**
 * ingest — verifies every telemetry message and writes accepted readings to the store, losing nothing.
 *
 * Talks to: the MQTT broker (as the `svc:ingest` service account; telemetry in, the verified live feed
 * out on pipeline/readings/{device}), the store (through a PointSink adapted from store/), and its data
 * folder (seq memory, spool, quarantine). Serves /metrics and /healthz on a small HTTP port.
 */
import { mkdir } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { ConfigOf, configSpecs } from '../core/config.ts';
import type { Logger } from '../core/logger.ts';
import { PROTOCOL_VERSION, type CompletenessMessage, type VerifiedReadings } from '../core/schemas.ts';
import { topics } from '../core/topics.ts';
import { createIngestMetrics, type IngestMetrics } from './metrics.ts';
import { IngestLink } from './mqtt-link.ts';
import { IngestPipeline, type IngestPoint, type PointSink } from './pipeline.ts';
import { Quarantine } from './quarantine.ts';
import { RegistrySource } from './registry-source.ts';
import { SeqStore } from './seq-store.ts';
import { Spool } from './spool.ts';

export type IngestConfig = ConfigOf<typeof configSpecs.ingest>;
export type { IngestPoint, PointSink } from './pipeline.ts';

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
  sink: PointSink;
  /** Reports store health for /healthz. */
  storeHealthy(): Promise<boolean>;
  logger: Logger;
}

export async function startIngest({ config, registryPath, sink, storeHealthy, logger }: StartIngestOptions): Promise<RunningIngest> {
  const dir = join(config.dataDir, 'ingest');
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const metrics = createIngestMetrics();
  const registry = await RegistrySource.open(registryPath, logger);
  const seqs = await SeqStore.open(dir, { gapWindow: config.seqGapWindow, redeliveryWindow: config.redeliveryWindow });
  const quarantine = await Quarantine.open(join(dir, 'quarantine'), { maxEntries: config.quarantineMaxEntries });
  const spool = await Spool.open<IngestPoint>(join(dir, 'spool'), { maxBytes: config.spoolMaxBytes });
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
    logger,
    onMessage: (message) => pipeline.handle(message),
  });

  const pipeline = new IngestPipeline(
    {
      registry: () => registry.registry,
      seqs,
      quarantine,
      spool,
      sink: instrument(sink, metrics),
      metrics,
      logger,
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

  const server = await serveMetrics(config.ingestMetricsPort, metrics, async () => ({
    broker: link.client.connected,
    store: await storeHealthy().catch(() => false),
    spoolBytes: spool.bytes,
    spoolFull: pipeline.spoolFull,
  }));
  link.connect();

  return {
    metrics,
    metricsPort: (server.address() as AddressInfo).port,
    pipeline,
    link,
    close: async () => {
      clearInterval(completenessTimer);
      // Stop taking messages, make everything received durable and acknowledged, then disconnect.
      await pipeline.drain();
      await link.close();
      await pipeline.close();
      await seqs.close();
      await quarantine.close();
      await spool.close();
      registry.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

function instrument(sink: PointSink, metrics: IngestMetrics): PointSink {
  return {
    async write(points) {
      const stop = metrics.writeSeconds.startTimer();
      try {
        const result = await sink.write(points);
        stop();
        return result;
      } catch (err) {
        metrics.storeErrors.inc({ disposition: 'retry' });
        throw err;
      }
    },
  };
}

async function serveMetrics(port: number, metrics: IngestMetrics, health: () => Promise<Record<string, unknown>>): Promise<Server> {
  const server = createServer((request, response) => {
    void (async () => {
      if (request.url === '/metrics') {
        response.writeHead(200, { 'content-type': metrics.registry.contentType });
        response.end(await metrics.registry.metrics());
      } else if (request.url === '/healthz') {
        const status = await health();
        const ok = status.broker === true && status.store === true;
        response.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ ok, ...status }));
      } else {
        response.writeHead(404, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ code: 'NOT_FOUND', message: 'try /metrics or /healthz' }));
      }
    })();
  });
  // A port already taken must reject (and reach the CLI, which names the option), not throw from an
  // unhandled 'error' event.
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return server;
}
