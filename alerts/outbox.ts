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
 * The outbox also remembers the last event it ever took from the alert log (`catchUp`): the last line
 * of its file or, once a compaction took that line away, a marker file beside it (`….taken`, written
 * before the compacted file replaces the old one). A crash between the log's append and the outbox's
 * loses nothing: at the next start every logged event after that one which the webhook wants is
 * enqueued. A new outbox starts at the log's end (a webhook added later gets no history).
 *
 * The body is the AlertEvent; its `id` lets a receiver drop a redelivery (after a timeout whose answer
 * was lost). With a secret, `x-sensorpipe-signature: sha256=<hex HMAC-SHA256 of the body>`. User info
 * in the URL (https://user:password@…) goes as HTTP Basic authentication (splitCredentials).
 */
import { createHash, createHmac } from 'node:crypto';
import { open, readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { AlertEventSchema, type AlertEvent } from '../core/alerts.ts';
import { parseEventLines, readTextIfExists } from './event-lines.ts';
import { webhookLabel } from './webhook-label.ts';
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

/** A file's text, or undefined when it does not exist (unlike '' for an empty one). */
async function readIfExists(path: string): Promise<string | undefined> {
  return readFile(path, 'utf8').catch((err: NodeJS.ErrnoException) => (err.code === 'ENOENT' ? undefined : Promise.reject(err)));
}

/**
 * The marker file's text: an event id; empty, for "before the log's first event"; anything else (damage)
 * is undefined, as if there were no marker.
 */
function takenMarkerOf(text: string | undefined): string | null | undefined {
  const id = text?.trim();
  if (id === '') return null;
  return id !== undefined && AlertEventSchema.shape.id.safeParse(id).success ? id : undefined;
}

export class WebhookOutbox {
  readonly path: string;
  readonly cursorPath: string;
  readonly takenPath: string;
  /**
   * The id of the last log event this outbox took; null: none, and the log was empty when the outbox
   * began (every logged event is after it); undefined: a new outbox, to be anchored by `catchUp`.
   */
  private takenId: string | null | undefined;
  /** What the `….taken` marker file holds (undefined: no file). */
  private takenOnDisk: string | null | undefined;
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
    this.takenPath = `${this.path}.taken`;
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
    outbox.takenOnDisk = takenMarkerOf(await readIfExists(outbox.takenPath));
    // Newest first: a line appended after the last compaction; the marker that compaction left; a cursor
    // (an outbox from before markers existed: its file was compacted only once all was delivered, so the
    // last delivered was the last taken). None of them: a new outbox.
    outbox.takenId = events.at(-1)?.id ?? (outbox.takenOnDisk !== undefined ? outbox.takenOnDisk : cursor !== '' ? cursor : undefined);
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
      this.takenId = event.id;
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

  /**
   * Enqueues every event of the alert log (oldest first) after the last one this outbox took, that the
   * webhook wants: those a crash caught between the log's append and this outbox's. A new outbox takes
   * nothing and remembers the log's end instead. When the last taken event is no longer in the log (rotated
   * away), every event the log keeps came after it. Returns how many were enqueued.
   */
  catchUp(log: readonly AlertEvent[]): Promise<number> {
    const done = this.writing.then(async () => {
      if (this.takenId !== undefined) return;
      this.takenId = log.at(-1)?.id ?? null;
      await this.writeTaken();
    });
    this.writing = done.catch(() => undefined);
    return done.then(async () => {
      const taken = this.takenId;
      // `done` anchored a new outbox at the log's end: nothing follows it. Otherwise not found (-1) is the start.
      const start = taken === null ? 0 : log.findIndex((e) => e.id === taken) + 1;
      const missed = log.slice(start).filter((event) => this.wants(event));
      for (const event of missed) await this.enqueue(event);
      return missed.length;
    });
  }

  private async writeTaken(): Promise<void> {
    if (this.takenId === undefined || this.takenId === this.takenOnDisk) return;
    await writeAtomic(this.takenPath, this.takenId ?? '');
    this.takenOnDisk = this.takenId;
  }

  /** The file rewritten with what is left to deliver (temporary file, fsync, rename). */
  private async compact(): Promise<void> {
    // The marker first: the rewrite may take away the line that says what was taken last.
    await this.writeTaken();
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
      this.options.logger.warn({ webhook: webhookLabel(this.webhook.url), reason: failure, attempt: this.attempt, retryInMs: Math.round(wait), queued: this.queue.length }, 'webhook delivery failed; will retry');
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
    const { url, authorization } = splitCredentials(this.webhook.url);
    const headers: Record<string, string> = { 'content-type': 'application/json', 'x-sensorpipe-event-id': event.id };
    if (authorization !== undefined) headers.authorization = authorization;
    if (this.webhook.secret !== undefined) headers['x-sensorpipe-signature'] = `sha256=${createHmac('sha256', this.webhook.secret).update(body).digest('hex')}`;
    try {
      const response = await fetch(url, {
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

/**
 * A URL with user info (https://user:password@host/...) sends it as HTTP Basic authentication, as curl
 * does (RFC 7617): fetch() refuses such a URL outright, so without this the webhook could never be
 * delivered to. The user info is percent-decoded, as RFC 3986 writes it.
 */
export function splitCredentials(raw: string): { url: string; authorization?: string } {
  // Not a URL (the rules file's schema lets none in): left as it is, for fetch() to fail on and count.
  if (!URL.canParse(raw)) return { url: raw };
  const u = new URL(raw);
  if (u.username === '' && u.password === '') return { url: raw };
  const credentials = `${decodeLeniently(u.username)}:${decodeLeniently(u.password)}`;
  u.username = '';
  u.password = '';
  return { url: u.href, authorization: `Basic ${Buffer.from(credentials).toString('base64')}` };
}

/** Percent-decoded; as written when it is not valid percent-encoding (the rules file is outside input). */
function decodeLeniently(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

