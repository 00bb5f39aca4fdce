/**
 * The ingest pipeline: every message is verified, accepted readings are batched and written to the
 * store, and each message is acknowledged only once what it carried is durable — in the store, in the
 * disk spool, or (when rejected) in the quarantine.
 *
 *   handle() ─ verify ─┬─ accepted ─ live feed ─ batch ─┬─ store ok ──────────────┐
 *                      │                                ├─ store down ─ spool ─────┤─ seq log fsync ─ ack
 *                      │                                └─ point refused ─ quarantine┘
 *                      ├─ duplicate ─────────────────────────────────────────────────── ack
 *                      └─ rejected ─ quarantine (fsync) ──────────────────────────────── ack
 *
 * Batches are written one at a time, in order. While the spool holds anything, new batches go to the
 * spool too (the store is down, or catching up), and a replayer drains it oldest first with capped
 * exponential backoff and jitter. When the spool is full, batches wait in memory unacknowledged: the
 * unacknowledged limit then stops reading from the broker, which holds the rest.
 */
import { SensorpipeError, type RejectReason } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { Registry } from '../core/registry.ts';
import type { DeviceMeta, Reading } from '../core/schemas.ts';
import type { StorePoint, TimeSeriesStore } from '../store/port.ts';
import type { IncomingMessage } from './mqtt-link.ts';
import type { IngestMetrics } from './metrics.ts';
import { quarantineEntry, type Quarantine } from './quarantine.ts';
import type { SeqStore } from './seq-store.ts';
import type { Spool } from './spool.ts';
import { verifyTelemetryMessage } from './verify.ts';

/** The part of the store port the pipeline writes through. */
export type PointWriter = Pick<TimeSeriesStore, 'write'>;

export interface PipelineOptions {
  batchMaxPoints: number;
  batchMaxDelayMs: number;
  bounds: { maxFutureMs: number; maxAgeMs: number };
  quarantinePayloadBytes: number;
  retryMinMs: number;
  retryMaxMs: number;
}

export interface PipelineDeps {
  registry: () => Registry;
  seqs: SeqStore;
  quarantine: Quarantine;
  spool: Spool<StorePoint>;
  /** The store, already measured (ingest/index.ts wraps it with store/metrics.ts). */
  store: PointWriter;
  publishVerified(device: string, readings: Reading[], meta: DeviceMeta): void;
  metrics: IngestMetrics;
  logger: Logger;
  now?: () => number;
}

/** What the pipeline keeps of a message until it is durable: its acknowledgement. */
type Acknowledgeable = Pick<IncomingMessage, 'ack'>;

interface Batch {
  points: StorePoint[];
  /** Messages to acknowledge once the batch is durable (the messages themselves: no closure each). */
  acks: Acknowledgeable[];
  /** seq-log lines of the batch's messages, written once its points are durable. */
  seqLines: string[];
}

export class IngestPipeline {
  private current: Batch = { points: [], acks: [], seqLines: [] };
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  /** Batches that found the spool full; written (or spooled) once there is room again. */
  private blocked: Batch[] = [];
  private rejectAcks: Acknowledgeable[] = [];
  private rejectFlush: Promise<void> | undefined;
  private replaying: Promise<void> | undefined;
  private closed = false;
  private readonly now: () => number;

  constructor(
    private readonly deps: PipelineDeps,
    private readonly options: PipelineOptions,
  ) {
    this.now = deps.now ?? Date.now;
    if (!deps.spool.isEmpty) this.startReplay();
  }

  handle(message: IncomingMessage): void {
    const { metrics } = this.deps;
    metrics.received.inc();
    const verdict = verifyTelemetryMessage(message.topic, message.payload, {
      registry: this.deps.registry(),
      seqs: this.deps.seqs.tracker,
      now: this.now(),
      bounds: this.options.bounds,
    });
    switch (verdict.kind) {
      case 'duplicate':
        // The original may still sit in a batch that is not durable yet (a redelivery after a
        // reconnect): acknowledge with the current batch, which persists after every earlier one.
        metrics.duplicates.inc();
        this.current.acks.push(message);
        this.timer ??= setTimeout(() => this.flushBatch(), this.options.batchMaxDelayMs);
        return;
      case 'rejected':
        this.reject(verdict.reason, message.topic, verdict.device, verdict.message, message.payload, message);
        return;
      case 'accepted': {
        this.current.seqLines.push(this.deps.seqs.accept(verdict.device, verdict.fresh, verdict.range));
        metrics.acceptedMessages.inc();
        metrics.acceptedReadings.inc(verdict.readings.length);
        this.deps.publishVerified(verdict.device, verdict.readings, verdict.meta);
        const points = this.current.points;
        for (const reading of verdict.readings) {
          const values = reading.values;
          for (const metric of Object.keys(values)) points.push({ device: verdict.device, metric, ts: reading.ts, value: values[metric]!, meta: verdict.meta });
        }
        this.current.acks.push(message);
        if (this.current.points.length >= this.options.batchMaxPoints) this.flushBatch();
        else this.timer ??= setTimeout(() => this.flushBatch(), this.options.batchMaxDelayMs);
      }
    }
  }

  /** Writes what is batched and waits for every write (not the spool replay) to finish. */
  async drain(): Promise<void> {
    this.flushBatch();
    await this.writing;
    await this.rejectFlush;
  }

  async close(): Promise<void> {
    await this.drain();
    this.closed = true;
    await this.replaying;
  }

  get spoolFull(): boolean {
    return this.blocked.length > 0;
  }

  private reject(reason: RejectReason, topic: string, device: string | undefined, text: string, payload: Uint8Array, message: Acknowledgeable): void {
    this.deps.metrics.rejected.inc({ reason });
    const { logger } = this.deps;
    // A child logger per device only when the line is written: rejections can come in floods.
    if (logger.isLevelEnabled('debug')) (device === undefined ? logger : logger.child({ device })).debug({ reason, topic }, 'message rejected');
    this.deps.quarantine.add(quarantineEntry({ reason, topic, device, message: text, payload, at: this.now() }, this.options.quarantinePayloadBytes));
    this.rejectAcks.push(message);
    this.rejectFlush ??= Promise.resolve().then(async () => {
      const acks = this.rejectAcks;
      this.rejectAcks = [];
      this.rejectFlush = undefined;
      await this.deps.quarantine.flush();
      for (const pending of acks) pending.ack();
    });
  }

  private flushBatch(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.current.points.length === 0 && this.current.acks.length === 0) return;
    const batch = this.current;
    this.current = { points: [], acks: [], seqLines: [] };
    this.writing = this.writing.then(() => this.persist(batch)).catch((err: unknown) => {
      this.deps.logger.error({ err }, 'batch could not be persisted; its messages stay unacknowledged');
    });
  }

  /** Makes a batch durable (store, spool or quarantine), then acknowledges its messages. */
  private async persist(batch: Batch): Promise<void> {
    const durable = await this.writeOrSpool(batch);
    if (!durable) {
      this.blocked.push(batch);
      this.deps.metrics.spoolFull.set(1);
      this.deps.logger.error({ spoolBytes: this.deps.spool.bytes, limit: this.deps.spool.maxBytes }, 'ALARM: spool full; acknowledgements paused, the broker holds new messages');
      return;
    }
    await this.deps.seqs.append(batch.seqLines);
    await this.deps.quarantine.flush();
    for (const message of batch.acks) message.ack();
  }

  /** True once the batch's points are in the store or the spool. False: the spool is full. */
  private async writeOrSpool(batch: Batch): Promise<boolean> {
    const { metrics } = this.deps;
    metrics.batchPoints.observe(batch.points.length);
    if (batch.points.length === 0) return true;
    if (this.deps.spool.isEmpty && this.blocked.length === 0) {
      try {
        await this.writeToStore(batch.points);
        return true;
      } catch (err) {
        // Whatever the store threw (down, overloaded, misconfigured credentials), the batch is safe in
        // the spool and retried; points it refuses for good come back in `refused`, never as a throw.
        this.deps.logger.warn({ err: (err as Error).message }, 'store write failed; spooling');
      }
    }
    const record = this.deps.spool.encode(batch.points, this.now());
    if (!this.deps.spool.hasRoomFor(record.length)) return false;
    await this.deps.spool.append(record);
    metrics.spoolBytes.set(this.deps.spool.bytes);
    this.startReplay();
    return true;
  }

  /** Writes points; those the store refuses for good are quarantined alone. Throws when retryable. */
  private async writeToStore(points: StorePoint[]): Promise<void> {
    const { refused } = await this.deps.store.write(points);
    for (const { index, message } of refused) {
      const point = points[index];
      if (point === undefined) continue;
      this.deps.metrics.rejected.inc({ reason: 'POINT_REJECTED_BY_STORE' });
      this.deps.quarantine.add(
        quarantineEntry({ reason: 'POINT_REJECTED_BY_STORE', topic: '', device: point.device, message, payload: Buffer.from(JSON.stringify(point)), at: this.now() }, this.options.quarantinePayloadBytes),
      );
    }
  }

  private startReplay(): void {
    this.replaying ??= this.replay()
      .catch((err: unknown) => this.deps.logger.error({ err }, 'spool replay stopped'))
      .finally(() => {
        this.replaying = undefined;
      });
  }

  /** Drains the spool into the store, oldest first, backing off while the store stays down. */
  private async replay(): Promise<void> {
    const { spool, metrics, logger } = this.deps;
    let delay = this.options.retryMinMs;
    while (!this.closed) {
      const record = await spool.peek();
      metrics.spoolOldestAgeSeconds.set(record ? (this.now() - record.at) / 1000 : 0);
      if (record === undefined) break;
      try {
        await this.writeToStore(record.items);
        await this.deps.quarantine.flush();
        await spool.release(record);
        metrics.spoolBytes.set(spool.bytes);
        delay = this.options.retryMinMs;
        await this.unblock();
      } catch (err) {
        const retryAfter = retryAfterMs(err);
        const wait = retryAfter ?? Math.min(this.options.retryMaxMs, delay) * (0.5 + Math.random() / 2);
        logger.debug({ wait, err: (err as Error).message }, 'store still unavailable');
        await new Promise((resolve) => setTimeout(resolve, wait));
        delay = Math.min(this.options.retryMaxMs, delay * 2);
      }
    }
    if (spool.isEmpty) logger.info('spool drained; writing to the store directly again');
  }

  /** Moves batches that waited for spool room into it, in order, then acknowledges them. */
  private async unblock(): Promise<void> {
    while (this.blocked.length > 0) {
      const batch = this.blocked[0]!;
      const record = this.deps.spool.encode(batch.points, this.now());
      if (!this.deps.spool.hasRoomFor(record.length)) return;
      await this.deps.spool.append(record);
      this.blocked.shift();
      await this.deps.seqs.append(batch.seqLines);
      for (const message of batch.acks) message.ack();
    }
    this.deps.metrics.spoolFull.set(0);
    this.deps.logger.info('spool has room again; acknowledgements resumed');
  }
}

function retryAfterMs(err: unknown): number | undefined {
  const value = err instanceof SensorpipeError ? err.details?.retryAfterMs : undefined;
  return typeof value === 'number' && value > 0 ? Math.min(value, 60_000) : undefined;
}
