/**
 * ingest's Prometheus metrics, on one registry per ingest instance (served at /metrics). Store calls are
 * measured in the same registry by the store port's wrapper (store/metrics.ts: sensorpipe_store_*).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from '../core/ops-http.ts';

/** How long a scrape waits for the store's health probe before it reports the store down. */
const STORE_PROBE_MS = 2_000;

export interface IngestMetricsOptions {
  /**
   * false (SENSORPIPE_METRICS_PER_DEVICE=false): the per-device gauges are not registered, so /metrics
   * serves none of their series (two per device tracked); the gauges still accept values, unseen.
   */
  perDevice?: boolean;
  /** What `sensorpipe_ingest_quarantine_evicted_total` reads when scraped (a count kept across restarts). */
  quarantineEvicted?: () => number;
  /**
   * Read when /metrics is scraped, for the alerts (ops/prometheus/alerts.yml): the store's health probe,
   * the broker link, and the PUBACKs sent. A series whose reader is not given is not served.
   */
  storeUp?: () => Promise<boolean>;
  brokerConnected?: () => boolean;
  acknowledged?: () => number;
}

export function createIngestMetrics(options: IngestMetricsOptions = {}) {
  const registry = new Registry();
  collectProcessMetrics(registry);
  const registers = [registry];
  const perDevice = options.perDevice === false ? [] : registers;
  const evicted = options.quarantineEvicted ?? (() => 0);
  const { storeUp, brokerConnected, acknowledged } = options;
  if (storeUp) {
    new Gauge({
      name: 'sensorpipe_ingest_store_up',
      help: `1 when the store answered its health probe at this scrape (within ${STORE_PROBE_MS / 1000} s), else 0 (readings go to the spool meanwhile).`,
      registers,
      async collect() {
        // Bounded well below Prometheus' scrape timeout (10 s by default): a store that hangs must show
        // as down, not make the whole scrape of ingest fail (that would read as ingest being down).
        let timer: NodeJS.Timeout | undefined;
        const late = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), STORE_PROBE_MS)));
        const up = await Promise.race([storeUp().catch(() => false), late]);
        clearTimeout(timer);
        this.set(up ? 1 : 0);
      },
    });
  }
  if (brokerConnected) new Gauge({ name: 'sensorpipe_ingest_broker_connected', help: '1 while ingest\'s MQTT connection to the broker is up, else 0.', registers, collect() { this.set(brokerConnected() ? 1 : 0); } });
  if (acknowledged) new Counter({ name: 'sensorpipe_ingest_acknowledged_messages_total', help: 'Messages acknowledged to the broker (PUBACK sent: their readings are durable, or they were quarantined or duplicates).', registers, collect() { this.reset(); this.inc(acknowledged()); } });
  return {
    perDevice: options.perDevice !== false,
    registry,
    received: new Counter({ name: 'sensorpipe_ingest_received_total', help: 'Telemetry messages received.', registers }),
    acceptedMessages: new Counter({ name: 'sensorpipe_ingest_accepted_messages_total', help: 'Messages that passed verification.', registers }),
    acceptedReadings: new Counter({ name: 'sensorpipe_ingest_accepted_readings_total', help: 'Readings accepted (new seqs only).', registers }),
    duplicates: new Counter({ name: 'sensorpipe_ingest_duplicates_total', help: 'Redelivered messages (identical to an accepted one) acknowledged without writing.', registers }),
    outsideWindow: new Counter({
      name: 'sensorpipe_ingest_outside_redelivery_window_total',
      help: 'Messages whose seqs were all accepted by a message no longer remembered, by how the store lookup resolved them: duplicate (stored as sent; also in duplicates_total), replay (also in rejected_total), unverified (the store could not be asked; acknowledged, not written, not quarantined).',
      labelNames: ['outcome'] as const,
      registers,
    }),
    ignored: new Counter({ name: 'sensorpipe_ingest_ignored_total', help: 'Messages of broker-authenticated devices that were read and carry no measurement (a Shelly NotifyEvent): acknowledged, not stored.', registers }),
    rejected: new Counter({ name: 'sensorpipe_ingest_rejected_total', help: 'Messages (or store-refused points) quarantined, by reason.', labelNames: ['reason'] as const, registers }),
    batchPoints: new Histogram({ name: 'sensorpipe_ingest_batch_points', help: 'Points per batch.', buckets: [1, 10, 100, 500, 1000, 2500, 5000, 10000], registers }),
    spoolBytes: new Gauge({ name: 'sensorpipe_ingest_spool_bytes', help: 'Bytes waiting in the disk spool.', registers }),
    spoolOldestAgeSeconds: new Gauge({ name: 'sensorpipe_ingest_spool_oldest_age_seconds', help: 'Age of the oldest spooled batch.', registers }),
    spoolFull: new Gauge({ name: 'sensorpipe_ingest_spool_full', help: '1 while the spool is full and acknowledgements are paused (alarm).', registers }),
    unacknowledged: new Gauge({ name: 'sensorpipe_ingest_unacknowledged_messages', help: 'Messages received and not yet acknowledged.', registers }),
    // A counter (it was a gauge until issue 19, wrongly for a name ending in _total): the count only grows,
    // and is read from the quarantine, which keeps it across restarts, when /metrics is scraped.
    quarantineEvicted: new Counter({ name: 'sensorpipe_ingest_quarantine_evicted_total', help: 'Quarantine entries evicted to keep it bounded (kept across restarts).', registers, collect() { this.reset(); this.inc(evicted()); } }),
    deviceMissing: new Gauge({ name: 'sensorpipe_ingest_device_missing_readings', help: 'Readings known missing (seq gaps), per device (off with SENSORPIPE_METRICS_PER_DEVICE=false).', labelNames: ['device'] as const, registers: perDevice }),
    deviceCompleteness: new Gauge({ name: 'sensorpipe_ingest_device_completeness_ratio', help: 'received / (received + missing), per device (off with SENSORPIPE_METRICS_PER_DEVICE=false).', labelNames: ['device'] as const, registers: perDevice }),
  };
}

export type IngestMetrics = ReturnType<typeof createIngestMetrics>;
