/**
 * One webhook's durable outbox and its delivery loop. Every event for the webhook is appended to its
 * outbox file (JSON lines, fsynced) and then POSTed in order, one at a time. Once the receiver answered
 * 2xx, the event's id is written to a cursor file beside it (`….done`): what follows that id in the
 * outbox is still to deliver. The outbox is compacted (rewritten with only what is left) when it is
 * all delivered or its delivered head grows long, so a long backlog costs one append and one small
 * cursor write per event, never a rewrite of the whole queue per delivery.
 *
 * A failed attempt (refused, timed out, not 2xx) is retried after an exponential backoff with jitter,
 * so a receiver that is down gets everything later, once it is back, and in order; the files outlive a
 * restart. Each webhook has its own loop, so a slow or dead receiver
 * holds up no other receiver and never the evaluation. Beyond `maxQueued` events the oldest is dropped
 * and counted (a receiver gone for good must not fill the disk).
 *
 * The body is the AlertEvent; its `id` lets a receiver drop a redelivery (after a timeout whose answer
 * was lost). With a secret, `x-sensorpipe-signature: sha256=<hex HMAC-SHA256 of the body>`.
 */
import { createHash, createHmac } from 'node:crypto';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { AlertEvent } from '../core/alerts.ts';
import { parseEventLines, readTextIfExists } from './event-lines.ts';
import type { Webhook } from '../core/alert-rules.ts';
import type { Logger } from '../core/logger.ts';

export interface OutboxOptions {
  dir: string;
  webhook: Webhook;
  retryMinMs: number;
  retryMaxMs: number;
  maxQueued: number;
  logger: Logger;
  onDelivered?(event: AlertEvent): void;
  onFailed?(reason: string): void;
  onDropped?(): void;
}

/** Delivered events kept at the head of an outbox file before it is compacted. */
const COMPACT_AFTER = 1000;

/** Replaces a file whole: temporary file, fsync, rename (a crash leaves the old one or the new one). */
async function writeAtomic(path: string, text: string): Promise<void> {
  const temp = `${path}.tmp`;
  const handle = await open(temp, 'w', 0o600);
  try {
    await handle.write(text);
    await handle.datasync();
  } finally {
    await handle.close();
  }
  await rename(temp, path);
}

/** The outbox file of a webhook: named by a hash of its URL, so the same URL finds its queue after a restart or a reload. */
export function outboxFileOf(dir: string, url: string): string {
  return join(dir, `webhook-${createHash('sha256').update(url).digest('hex').slice(0, 16)}.jsonl`);
}

export class WebhookOutbox {
  readonly path: string;
  readonly cursorPath: string;
  private queue: AlertEvent[] = [];
  /** Events in the outbox file, delivered or not. */
  private fileEvents = 0;
  private webhook: Webhook;
  private writing: Promise<void> = Promise.resolve();
  private wake: (() => void) | undefined;
  private cancelWait: (() => void) | undefined;
  private timer: NodeJS.Timeout | undefined;
  private abort = new AbortController();
  private closed = false;
  private loop: Promise<void> = Promise.resolve();
  private attempt = 0;

  private constructor(private readonly options: OutboxOptions) {
    this.webhook = options.webhook;
    this.path = outboxFileOf(options.dir, options.webhook.url);
    this.cursorPath = `${this.path}.done`;
  }

  static async open(options: OutboxOptions): Promise<WebhookOutbox> {
    const outbox = new WebhookOutbox(options);
    const text = await readTextIfExists(outbox.path);
    // A torn last line (a crash mid-write) is skipped: that event was never acknowledged to anyone but the log.
    const { events } = parseEventLines(text);
    // Not found (a compaction came after it, or no cursor yet): everything in the file is still to deliver.
    const cursor = (await readTextIfExists(outbox.cursorPath)).trim();
    const after = cursor === '' ? -1 : events.findIndex((e) => e.id === cursor);
    outbox.queue = events.slice(after + 1);
    outbox.fileEvents = events.length;
    // A torn last line is dropped from the file too, so the next append starts a line of its own.
    if (text !== '' && !text.endsWith('\n')) await outbox.compact();
    outbox.loop = outbox.run();
    return outbox;
  }

  get depth(): number {
    return this.queue.length;
  }

  get url(): string {
    return this.webhook.url;
  }

  /** A reload may change the secret, filters or timeout of the same URL. */
  update(webhook: Webhook): void {
    this.webhook = webhook;
  }

  /** Whether this webhook wants the event (its severity and rule filters). */
  wants(event: AlertEvent): boolean {
    const { severities, rules } = this.webhook;
    return (severities === undefined || severities.includes(event.severity)) && (rules === undefined || rules.includes(event.rule));
  }

  /** Adds the event to the outbox file (fsynced) and wakes the loop. */
  enqueue(event: AlertEvent): Promise<void> {
    const done = this.writing.then(async () => {
      const handle = await open(this.path, 'a', 0o600);
      try {
        await handle.write(`${JSON.stringify(event)}\n`);
        await handle.datasync();
      } finally {
        await handle.close();
      }
      this.queue.push(event);
      this.fileEvents++;
      if (this.queue.length > this.options.maxQueued) {
        // The oldest are given up: counted as dropped, and the cursor moves past them.
        const dropped = this.queue.splice(0, this.queue.length - this.options.maxQueued);
        dropped.forEach(() => this.options.onDropped?.());
        await writeAtomic(this.cursorPath, dropped.at(-1)!.id);
        // A receiver gone for good must not grow the file without bound either.
        if (this.fileEvents - this.queue.length >= COMPACT_AFTER) await this.compact();
      }
      this.wake?.();
    });
    this.writing = done.catch(() => undefined);
    return done;
  }

  /** After a delivery: the cursor moves past the event; the file is compacted now and then. */
  private async delivered(event: AlertEvent): Promise<void> {
    if (this.queue[0] === event) this.queue.shift();
    await writeAtomic(this.cursorPath, event.id);
    const deliveredInFile = this.fileEvents - this.queue.length;
    if (this.queue.length === 0 || deliveredInFile >= COMPACT_AFTER) await this.compact();
  }

  /** The file rewritten with what is left to deliver (temporary file, fsync, rename). */
  private async compact(): Promise<void> {
    await writeAtomic(this.path, this.queue.map((e) => `${JSON.stringify(e)}\n`).join(''));
    this.fileEvents = this.queue.length;
  }

  private async run(): Promise<void> {
    while (!this.closed) {
      const event = this.queue[0];
      if (event === undefined) {
        await new Promise<void>((resolve) => (this.wake = resolve));
        this.wake = undefined;
        continue;
      }
      const failure = await this.deliver(event);
      if (this.closed) return;
      if (failure === undefined) {
        this.attempt = 0;
        // Removed only now: a crash before this line delivers it again (the receiver dedups by id).
        const removal = this.writing.then(() => this.delivered(event));
        this.writing = removal.catch(() => undefined);
        await removal.catch((err: unknown) => this.options.logger.error({ err: (err as Error).message, outbox: this.path }, 'webhook outbox cursor write failed'));
        this.options.onDelivered?.(event);
        continue;
      }
      this.options.onFailed?.(failure);
      this.attempt++;
      const backoff = Math.min(this.options.retryMaxMs, this.options.retryMinMs * 2 ** Math.min(this.attempt - 1, 30));
      // Full jitter in the upper half: receivers coming back are not hit by every sender at once.
      const wait = backoff / 2 + Math.random() * (backoff / 2);
      this.options.logger.warn({ webhook: redactUrl(this.webhook.url), reason: failure, attempt: this.attempt, retryInMs: Math.round(wait), queued: this.queue.length }, 'webhook delivery failed; will retry');
      await new Promise<void>((resolve) => {
        this.timer = setTimeout(resolve, wait);
        this.cancelWait = resolve; // close() ends the wait early; a new event does not
      });
      this.cancelWait = undefined;
    }
  }

  /** One attempt; undefined when delivered, else why not. */
  private async deliver(event: AlertEvent): Promise<string | undefined> {
    const body = JSON.stringify(event);
    const headers: Record<string, string> = { 'content-type': 'application/json', 'x-sensorpipe-event-id': event.id };
    if (this.webhook.secret !== undefined) headers['x-sensorpipe-signature'] = `sha256=${createHmac('sha256', this.webhook.secret).update(body).digest('hex')}`;
    try {
      const response = await fetch(this.webhook.url, {
        method: 'POST',
        headers,
        body,
        redirect: 'manual',
        signal: AbortSignal.any([AbortSignal.timeout(this.webhook.timeout), this.abort.signal]),
      });
      await response.body?.cancel().catch(() => undefined);
      return response.status >= 200 && response.status < 300 ? undefined : `HTTP ${response.status}`;
    } catch (err) {
      const e = err as Error & { cause?: { code?: string } };
      return e.name === 'TimeoutError' ? 'timeout' : (e.cause?.code ?? e.name);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.abort.abort();
    clearTimeout(this.timer);
    this.wake?.();
    this.cancelWait?.();
    await this.loop;
    await this.writing;
  }
}

/** A URL for logs: no user info or query (either may hold a token). */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    return `${u.protocol}//${u.host}${u.pathname}`;
  } catch {
    return '(invalid url)';
  }
}
