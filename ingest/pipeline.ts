/**
 * The ingest pipeline: every message is verified, accepted readings are batched and written to the
 * store, and each message is acknowledged only once what it carried is durable — in the store, in the
 * disk spool, or (when rejected) in the quarantine.
 *
 *   handle() ─ verify ─┬─ accepted ─ live feed ─ batch ─┬─ store ok ──────────────┐
 *                      │                                ├─ store down ─ spool ─────┤─ seq log fsync ─ ack
 *                      │                                └─ point refused ─ quarantine┘
 *                      ├─ duplicate ─────────────────────────────────────────────────── ack
 *                      ├─ outside the window ─ store lookup ─┬─ stored as sent: duplicate ── ack
 *                      │                                      └─ not: replay ─ quarantine ─── ack
 *                      └─ rejected ─ quarantine (fsync) ──────────────────────────────── ack
 *
 * Each registered device's outcomes are counted (./device-counts.ts) when its messages are acknowledged:
 * readings accepted and duplicates with their batch, rejections once their quarantine entries are durable.
 *
 * Batches are written one at a time, in order. While the spool holds anything, new batches go to the
 * spool too (the store is down, or catching up), and a replayer drains it oldest first with capped
 * exponential backoff and jitter. When the spool is full, batches wait in memory unacknowledged: the
 * unacknowledged limit then stops reading from the broker, which holds the rest.
 *
 * Nothing here gives up on a message while ingest runs: a batch whose spool or seq-log write fails, and
 * a quarantine write that fails, are retried with the same backoff, their messages unacknowledged
 * meanwhile (the seq memory already counts them as accepted, so dropping one would make its redelivery
 * a duplicate and lose it). Only once ingest is stopping (`signal` aborted, or `close`) do they give up,
 * leaving those messages to the broker's redelivery.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { SensorpipeError, type RejectReason } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import type { Registry } from '../core/registry.ts';
import type { DeviceMeta, Reading } from '../core/schemas.ts';
import type { StorePoint, TimeSeriesStore } from '../store/port.ts';
import type { IncomingMessage } from './mqtt-link.ts';
import type { IngestMetrics } from './metrics.ts';
import { quarantineEntry, type Quarantine } from './quarantine.ts';
import type { SeqBatch, SeqStore } from './seq-store.ts';
import type { DeviceCounts } from './device-counts.ts';
import type { Spool } from './spool.ts';
import { BrokerReadingMemory } from './broker-readings.ts';
import { verifyTelemetryMessage } from './verify.ts';

/**
 * The part of the store port the pipeline uses: it writes, and asks whether a message seen outside the
 * redelivery window is stored already (rarely; see `lookUpOutsideWindow`).
 */
export type PointWriter = Pick<TimeSeriesStore, 'write' | 'query'>;

/** Lookups waiting at most; a message outside the window beyond that is left unverified. */
const MAX_WAITING_LOOKUPS = 1000;

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
  /** `trust` is 'broker' for a broker-authenticated device's readings, absent for signed ones. */
  publishVerified(device: string, readings: Reading[], meta: DeviceMeta, trust?: 'broker'): void;
  metrics: IngestMetrics;
  /** Per registered device: readings accepted, duplicates, rejections by reason (counted once acknowledged). */
  counts?: DeviceCounts;
  logger: Logger;
  now?: () => number;
  /** Aborted when ingest stops: retries give up, leaving their messages unacknowledged. */
  signal?: AbortSignal;
}

/** What the pipeline keeps of a message until it is durable: its acknowledgement. */
type Acknowledgeable = Pick<IncomingMessage, 'ack'>;

interface Batch {
  points: StorePoint[];
  /** Messages to acknowledge once the batch is durable (the messages themselves: no closure each). */
  acks: Acknowledgeable[];
  /** seq-log lines of the batch's messages, written once its points are durable. */
  seq: SeqBatch;
  /** Its points are in the store or the spool (a retry after a later step failed skips this one). */
  stored: boolean;
  /**
   * Readings accepted and duplicates per device, counted (./device-counts.ts) once the batch is
   * acknowledged: one map entry per device of the batch, an addition per message, nothing per reading.
   */
  accepted: Map<string, number>;
  duplicates: Map<string, number>;
}

function addTo(tally: Map<string, number>, device: string, n: number): void {
  if (n > 0) tally.set(device, (tally.get(device) ?? 0) + n);
}

export class IngestPipeline {
  private current: Batch;
  private timer: NodeJS.Timeout | undefined;
  private writing: Promise<void> = Promise.resolve();
  /** Batches that found the spool full; written (or spooled) once there is room again. */
  private blocked: Batch[] = [];
  private rejectAcks: Acknowledgeable[] = [];
  /** The registered devices and reasons of the rejections in rejectAcks, counted once they are acknowledged. */
  private rejectCounted: { device: string; reason: RejectReason }[] = [];
  private rejectFlushQueued = false;
  /** Quarantine flushes for rejected messages, one after another. */
  private rejecting: Promise<void> = Promise.resolve();
  /** Store lookups of messages outside the redelivery window, one after another. */
  private lookups: Promise<void> = Promise.resolve();
  private lookupsWaiting = 0;
  private replaying: Promise<void> | undefined;
  private closing = false;
  private closed = false;
  private readonly now: () => number;
  /** Dedup of broker-authenticated devices' readings, by their ts (PROTOCOL.md §7.4). */
  private readonly brokerReadings = new BrokerReadingMemory();

  constructor(
    private readonly deps: PipelineDeps,
    private readonly options: PipelineOptions,
  ) {
    this.now = deps.now ?? Date.now;
    this.current = this.newBatch();
    if (!deps.spool.isEmpty) this.startReplay();
  }

  handle(message: IncomingMessage): void {
    const { metrics } = this.deps;
    metrics.received.inc();
    const verdict = verifyTelemetryMessage(message.topic, message.payload, {
      registry: this.deps.registry(),
      seqs: this.deps.seqs.tracker,
      brokerReadings: this.brokerReadings,
      now: this.now(),
      bounds: this.options.bounds,
    });
    switch (verdict.kind) {
      case 'duplicate':
        // The original may still sit in a batch that is not durable yet (a redelivery after a
        // reconnect): acknowledge with the current batch, which persists after every earlier one.
        metrics.duplicates.inc();
        addTo(this.current.duplicates, verdict.device, verdict.readings);
        this.current.acks.push(message);
        this.timer ??= setTimeout(() => this.flushBatch(), this.options.batchMaxDelayMs);
        return;
      case 'rejected':
        this.reject(verdict.reason, message.topic, verdict.device, verdict.message, message.payload, message);
        return;
      case 'outside-window':
        this.lookUpOutsideWindow(message, verdict.device, verdict.readings, verdict.range);
        return;
      case 'ignored':
        // Understood and not a measurement (PROTOCOL.md §7.3): acknowledged in order with the batch.
        metrics.ignored.inc();
        this.current.acks.push(message);
        this.timer ??= setTimeout(() => this.flushBatch(), this.options.batchMaxDelayMs);
        return;
      case 'accepted-broker': {
        // Unsigned: every point carries trust 'broker', and nothing here can make it signed.
        const { device, reading, meta } = verdict;
        this.brokerReadings.accept(device, reading.ts, verdict.digest);
        metrics.acceptedMessages.inc();
        metrics.acceptedReadings.inc();
        this.deps.publishVerified(device, [reading], meta, 'broker');
        addTo(this.current.accepted, device, 1);
        const points = this.current.points;
        for (const metric of Object.keys(reading.values)) points.push({ device, metric, ts: reading.ts, value: reading.values[metric]!, meta, trust: 'broker' });
        this.current.acks.push(message);
        if (points.length >= this.options.batchMaxPoints) this.flushBatch();
        else this.timer ??= setTimeout(() => this.flushBatch(), this.options.batchMaxDelayMs);
        return;
      }
      case 'accepted': {
        this.deps.seqs.accept(this.current.seq, verdict.device, verdict.fresh, verdict.range, verdict.digest);
        metrics.acceptedMessages.inc();
        metrics.acceptedReadings.inc(verdict.readings.length);
        this.deps.publishVerified(verdict.device, verdict.readings, verdict.meta);
        addTo(this.current.accepted, verdict.device, verdict.readings.length);
        addTo(this.current.duplicates, verdict.device, verdict.repeated);
        const points = this.current.points;
        for (const reading of verdict.readings) {
          const values = reading.values;
          // The seq goes with every point of the reading: the store keeps it (store/SCHEMA.md), so that a
          // reading stored twice, at two times, can be seen.
          for (const metric of Object.keys(values)) points.push({ device: verdict.device, metric, ts: reading.ts, value: values[metric]!, seq: reading.seq, meta: verdict.meta });
        }
        this.current.acks.push(message);
        if (this.current.points.length >= this.options.batchMaxPoints) this.flushBatch();
        else this.timer ??= setTimeout(() => this.flushBatch(), this.options.batchMaxDelayMs);
      }
    }
  }

  /** Writes what is batched and waits for every write and lookup (not the spool replay) to finish. */
  async drain(): Promise<void> {
    this.flushBatch();
    await this.writing;
    await this.lookups;
    await this.writing;
    await this.rejecting;
  }

  async close(): Promise<void> {
    this.closing = true;
    await this.drain();
    this.closed = true;
    await this.replaying;
  }

  private get stopping(): boolean {
    return this.closing || this.deps.signal?.aborted === true;
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
    // Only registered devices are counted: made-up ids must not create state (or topics) per id.
    if (this.deps.counts !== undefined && device !== undefined && this.deps.registry().get(device) !== undefined) this.rejectCounted.push({ device, reason });
    if (this.rejectFlushQueued) return;
    // One flush for the rejections of this turn (they come in floods), after the flushes before it.
    this.rejectFlushQueued = true;
    this.rejecting = this.rejecting.then(() => this.flushRejected());
  }

  /** Acknowledges rejected messages once their quarantine entries are durable. Never rejects. */
  private async flushRejected(): Promise<void> {
    const acks = this.rejectAcks;
    const counted = this.rejectCounted;
    this.rejectAcks = [];
    this.rejectCounted = [];
    this.rejectFlushQueued = false;
    try {
      await this.deps.quarantine.flush(); // retries until durable; rejects only once ingest is stopping
    } catch (err) {
      this.deps.logger.error({ err: (err as Error).message, messages: acks.length }, 'rejected messages not quarantined before the stop; they stay unacknowledged');
      return;
    }
    for (const pending of acks) pending.ack();
    for (const { device, reason } of counted) this.deps.counts?.rejected(device, reason);
  }

  /**
   * A message whose seqs were all accepted before, by a message the seq memory no longer remembers
   * (seq-tracker.ts: it remembers every message the broker can still redeliver). It is a duplicate when
   * its readings are in the store exactly as it carries them (writing it again would change nothing),
   * and a replay otherwise. That takes a store query, but only on this rare path, one at a time.
   *
   * When the store cannot answer (down, or the spool still holds readings it has not got), the message
   * is acknowledged without being written or quarantined and counted as `unverified`: its seqs were
   * accepted, so nothing of it would be written either way, and holding it would hold every later
   * acknowledgement (they leave in order) for as long as the store is down.
   */
  private lookUpOutsideWindow(message: IncomingMessage, device: string, readings: Reading[], range: [number, number]): void {
    if (this.lookupsWaiting >= MAX_WAITING_LOOKUPS) {
      this.resolveOutsideWindow(message, device, range, readings.length, undefined);
      return;
    }
    this.lookupsWaiting++;
    this.lookups = this.lookups.then(async () => {
      try {
        this.resolveOutsideWindow(message, device, range, readings.length, await this.storedAsSent(device, readings));
      } catch (err) {
        this.deps.logger.error({ err, device }, 'store lookup failed');
      } finally {
        this.lookupsWaiting--;
      }
    });
  }

  private resolveOutsideWindow(message: IncomingMessage, device: string, range: [number, number], readings: number, stored: boolean | undefined): void {
    const { metrics } = this.deps;
    if (stored === false) {
      metrics.outsideWindow.inc({ outcome: 'replay' });
      this.reject('READING_REPLAYED', message.topic, device, `seq ${range[0]}..${range[1]} was accepted before; the store holds other readings for them`, message.payload, message);
      return;
    }
    metrics.outsideWindow.inc({ outcome: stored === true ? 'duplicate' : 'unverified' });
    if (stored === true) {
      metrics.duplicates.inc();
      this.deps.counts?.duplicates(device, readings);
    } else this.deps.logger.debug({ device, seqs: range }, 'seqs accepted before, outside the redelivery window; the store could not be asked: acknowledged, not written');
    // Its readings are durable already (in the store), or were accepted long ago.
    message.ack();
  }

  /**
   * True when every reading is stored with these values at its timestamp, false when one is not,
   * undefined when the store cannot tell now.
   */
  private async storedAsSent(device: string, readings: Reading[]): Promise<boolean | undefined> {
    // The message it repeats was accepted before the window's messages: make sure every batch accepted
    // so far is written, then ask only a store that holds all of them (an empty spool).
    this.flushBatch();
    await this.writing;
    if (!this.deps.spool.isEmpty || this.blocked.length > 0) return undefined;
    let from = Infinity;
    let to = -Infinity;
    const names = new Set<string>();
    for (const reading of readings) {
      from = Math.min(from, reading.ts);
      to = Math.max(to, reading.ts);
      for (const metric of Object.keys(reading.values)) names.add(metric);
    }
    let result;
    try {
      result = await this.deps.store.query({ device, metrics: [...names], from, to: to + 1, mode: 'raw', maxPoints: 10_000 });
    } catch (err) {
      this.deps.logger.debug({ err: (err as Error).message, device }, 'store lookup failed');
      return undefined;
    }
    if (result.truncated) return undefined;
    const stored = new Map<string, Map<number, number>>();
    for (const series of result.series) stored.set(series.metric, new Map(series.points.map((p) => [p.ts, p.value])));
    for (const reading of readings) {
      for (const metric of Object.keys(reading.values)) {
        if (stored.get(metric)?.get(reading.ts) !== reading.values[metric]) return false;
      }
    }
    return true;
  }

  private newBatch(): Batch {
    return { points: [], acks: [], seq: this.deps.seqs.openBatch(), stored: false, accepted: new Map(), duplicates: new Map() };
  }

  private flushBatch(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.current.points.length === 0 && this.current.acks.length === 0) return;
    const batch = this.current;
    this.current = this.newBatch();
    this.writing = this.writing.then(() => this.persistWithRetry(batch));
  }

  /** Persists a batch, retrying with backoff until it is done or ingest stops. Never rejects. */
  private async persistWithRetry(batch: Batch): Promise<void> {
    let delay = this.options.retryMinMs;
    for (;;) {
      try {
        await this.persist(batch);
        return;
      } catch (err) {
        if (this.stopping) {
          this.deps.logger.error({ err: (err as Error).message, messages: batch.acks.length }, 'batch not persisted before the stop; its messages stay unacknowledged');
          return;
        }
        const wait = Math.round(Math.min(this.options.retryMaxMs, delay) * (0.5 + Math.random() / 2));
        this.deps.logger.error({ err: (err as Error).message, retryInMs: wait }, 'batch could not be persisted; retrying, its messages stay unacknowledged');
        await sleep(wait, undefined, this.deps.signal ? { signal: this.deps.signal } : {}).catch(() => {});
        delay = Math.min(this.options.retryMaxMs, delay * 2);
      }
    }
  }

  /** Makes a batch durable (store, spool or quarantine), then acknowledges its messages. */
  private async persist(batch: Batch): Promise<void> {
    if (!batch.stored) {
      const durable = await this.writeOrSpool(batch);
      if (!durable) {
        this.blocked.push(batch);
        this.deps.metrics.spoolFull.set(1);
        this.deps.logger.error({ spoolBytes: this.deps.spool.bytes, limit: this.deps.spool.maxBytes }, 'ALARM: spool full; acknowledgements paused, the broker holds new messages');
        return;
      }
      batch.stored = true;
    }
    await this.deps.seqs.append(batch.seq);
    await this.deps.quarantine.flush();
    for (const message of batch.acks) message.ack();
    const counts = this.deps.counts;
    if (counts !== undefined) {
      for (const [device, n] of batch.accepted) counts.accepted(device, n);
      for (const [device, n] of batch.duplicates) counts.duplicates(device, n);
    }
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
      // Counted now: its entry is flushed before the batch's (or spool record's) acknowledgement.
      this.deps.counts?.rejected(point.device, 'POINT_REJECTED_BY_STORE');
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
    if (this.blocked.length === 0) return;
    while (this.blocked.length > 0) {
      const batch = this.blocked[0]!;
      const record = this.deps.spool.encode(batch.points, this.now());
      if (!this.deps.spool.hasRoomFor(record.length)) return;
      await this.deps.spool.append(record);
      this.blocked.shift();
      batch.stored = true;
      // Written through the retrying path, behind the batches before it, and acknowledged there.
      this.writing = this.writing.then(() => this.persistWithRetry(batch));
    }
    this.deps.metrics.spoolFull.set(0);
    this.deps.logger.info('spool has room again; acknowledgements resumed');
  }
}

function retryAfterMs(err: unknown): number | undefined {
  const value = err instanceof SensorpipeError ? err.details?.retryAfterMs : undefined;
  return typeof value === 'number' && value > 0 ? Math.min(value, 60_000) : undefined;
}
