/**
 * The display's fleet-wide bound on history loads: an API readings request (JSON or CSV) and each
 * device's history for a /live subscription take one of `maxConcurrent` slots while they read the store.
 * The per-client bounds (one /live client's loads run one after another, at most four queued) keep one
 * viewer from starting many loads; this keeps many viewers together from doing so.
 *
 * Over the cap a load waits, first come first served, but briefly and boundedly: at most `maxWaiting`
 * wait, each at most `maxWaitMs`. Bursts are normal (a wall of dashboards reloading, a viewer clicking
 * through ranges) and a query takes milliseconds to a second, so a short wait turns a burst into
 * slightly slower answers instead of errors; a waiting load holds only a closure and a timer (an HTTP
 * request also its socket, which the connection caps bound). Past either bound the load is refused with
 * SERVER_BUSY at once: HTTP answers 503 with Retry-After, /live an error frame, and the refusal is
 * counted. Nothing here runs per frame or per reading: only per history load.
 *
 * A long load is a series of short ones: a raw CSV export (display/csv.ts) takes a slot per page and
 * gives it back while its rows go out, so a download as long as its reader takes holds no slot between
 * pages, and queues for the next one behind every load that asked before it (first come, first served:
 * a burst of JSON requests waits at most for one page read per slot). Its later pages are `patient`:
 * they wait as long as it takes, outside the waiting bound, since refusing one would cut a file half
 * sent; they are bounded by the downloads running, which hold a socket each.
 */
import { SensorpipeError } from '../core/errors.ts';
import type { DisplayMetrics } from './metrics.ts';

/** Waiting loads, as a multiple of the slots. */
export const HISTORY_WAITING_PER_SLOT = 4;
/** Longest wait for a slot. */
export const HISTORY_MAX_WAIT_MS = 2000;
/** Retry-After (seconds) of a refused HTTP load. */
export const HISTORY_RETRY_AFTER_S = 1;

export type HistoryVia = 'http' | 'live';

export interface HistoryGateOptions {
  maxConcurrent: number;
  maxWaiting?: number;
  maxWaitMs?: number;
  metrics: DisplayMetrics;
}

interface Waiter {
  admit(): void;
  refuse(err: Error): void;
  timer: NodeJS.Timeout | undefined;
  /** Outside the waiting bound (see the header). */
  patient: boolean;
}

export interface RunOptions {
  /** A later part of a load already admitted: waits for a slot without time limit, never refused as busy. */
  patient?: boolean;
}

export class HistoryGate {
  private running = 0;
  private readonly waiting: Waiter[] = [];
  private readonly maxWaiting: number;
  private readonly maxWaitMs: number;

  constructor(private readonly options: HistoryGateOptions) {
    this.maxWaiting = options.maxWaiting ?? options.maxConcurrent * HISTORY_WAITING_PER_SLOT;
    this.maxWaitMs = options.maxWaitMs ?? HISTORY_MAX_WAIT_MS;
  }

  /** Loads running now. */
  get active(): number {
    return this.running;
  }

  /** Loads waiting for a slot now (patient ones included). */
  get queued(): number {
    return this.waiting.length;
  }

  /** Waiting loads that count against the bound (not the patient ones). */
  private impatientWaiting(): number {
    let count = 0;
    for (const waiter of this.waiting) if (!waiter.patient) count++;
    return count;
  }

  /**
   * Runs `load` in a slot, waiting for one if need be; rejects with SERVER_BUSY (and runs nothing) when
   * none frees up in time or too many wait already. `signal` aborts a wait whose requester has gone.
   */
  async run<T>(via: HistoryVia, load: () => Promise<T>, signal?: AbortSignal, options: RunOptions = {}): Promise<T> {
    await this.acquire(via, signal, options.patient === true);
    try {
      return await load();
    } finally {
      this.release();
    }
  }

  private acquire(via: HistoryVia, signal: AbortSignal | undefined, patient: boolean): Promise<void> | void {
    if (this.running < this.options.maxConcurrent && this.waiting.length === 0) {
      this.running++;
      this.options.metrics.historyLoads.set(this.running);
      return;
    }
    if (signal?.aborted === true) throw new SensorpipeError('SERVER_BUSY', 'the request went away before it got a history slot');
    if (!patient && this.impatientWaiting() >= this.maxWaiting) throw this.refuse(via, 'queue_full', `${this.options.maxConcurrent} history loads are running and ${this.maxWaiting} waiting`);
    return new Promise<void>((resolve, reject) => {
      const leave = () => {
        const at = this.waiting.indexOf(waiter);
        if (at !== -1) this.waiting.splice(at, 1);
        this.options.metrics.historyWaiting.set(this.waiting.length);
        clearTimeout(waiter.timer);
        signal?.removeEventListener('abort', onAbort);
      };
      const onAbort = () => {
        leave();
        reject(new SensorpipeError('SERVER_BUSY', 'the request went away while it waited for a history slot'));
      };
      const waiter: Waiter = {
        admit: () => {
          leave();
          resolve();
        },
        refuse: (err) => {
          leave();
          reject(err);
        },
        timer: patient ? undefined : setTimeout(() => waiter.refuse(this.refuse(via, 'timeout', `no history slot free within ${this.maxWaitMs} ms (${this.options.maxConcurrent} loads at once)`)), this.maxWaitMs),
        patient,
      };
      this.waiting.push(waiter);
      this.options.metrics.historyWaiting.set(this.waiting.length);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private release(): void {
    const next = this.waiting[0];
    if (next !== undefined) {
      next.admit(); // the slot passes straight to the first waiter: `running` stays as it is
      return;
    }
    this.running--;
    this.options.metrics.historyLoads.set(this.running);
  }

  private refuse(via: HistoryVia, reason: 'queue_full' | 'timeout', detail: string): SensorpipeError {
    this.options.metrics.historyRefused.inc({ via, reason });
    return new SensorpipeError('SERVER_BUSY', `the display is busy: ${detail}; retry shortly`);
  }

  /** Refuses every waiting load (the display is shutting down). */
  close(): void {
    for (const waiter of [...this.waiting]) waiter.refuse(new SensorpipeError('SERVER_BUSY', 'the display is shutting down'));
  }
}
