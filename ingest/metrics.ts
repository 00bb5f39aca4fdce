/**
 * ingest's Prometheus metrics, on one registry per ingest instance (served at /metrics). Store calls are
 * measured in the same registry by the store port's wrapper (store/metrics.ts: sensorpipe_store_*).
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export function createIngestMetrics() {
  const registry = new Registry();
  const registers = [registry];
  return {
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
    rejected: new Counter({ name: 'sensorpipe_ingest_rejected_total', help: 'Messages (or store-refused points) quarantined, by reason.', labelNames: ['reason'] as const, registers }),
    batchPoints: new Histogram({ name: 'sensorpipe_ingest_batch_points', help: 'Points per batch.', buckets: [1, 10, 100, 500, 1000, 2500, 5000, 10000], registers }),
    spoolBytes: new Gauge({ name: 'sensorpipe_ingest_spool_bytes', help: 'Bytes waiting in the disk spool.', registers }),
    spoolOldestAgeSeconds: new Gauge({ name: 'sensorpipe_ingest_spool_oldest_age_seconds', help: 'Age of the oldest spooled batch.', registers }),
    spoolFull: new Gauge({ name: 'sensorpipe_ingest_spool_full', help: '1 while the spool is full and acknowledgements are paused (alarm).', registers }),
    unacknowledged: new Gauge({ name: 'sensorpipe_ingest_unacknowledged_messages', help: 'Messages received and not yet acknowledged.', registers }),
    quarantineEvicted: new Gauge({ name: 'sensorpipe_ingest_quarantine_evicted_total', help: 'Quarantine entries evicted to keep it bounded.', registers }),
    deviceMissing: new Gauge({ name: 'sensorpipe_ingest_device_missing_readings', help: 'Readings known missing (seq gaps), per device.', labelNames: ['device'] as const, registers }),
    deviceCompleteness: new Gauge({ name: 'sensorpipe_ingest_device_completeness_ratio', help: 'received / (received + missing), per device.', labelNames: ['device'] as const, registers }),
  };
}

export type IngestMetrics = ReturnType<typeof createIngestMetrics>;
