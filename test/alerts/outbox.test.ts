/** A webhook outbox on real files and a real HTTP receiver: durable across reopening, in order, bounded. */
import { appendFile, readFile } from 'node:fs/promises';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { WebhookOutbox } from '../../alerts/outbox.ts';
import type { AlertEvent } from '../../core/alerts.ts';
import { createLogger } from '../../core/logger.ts';
import { freePort } from '../../harness/ports.ts';
import { waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { WebhookReceiver } from './helpers.ts';

const event = (i: number): AlertEvent => ({ v: 1, id: `e-${i}`, device: 'dev-1', rule: 'hot', kind: 'above', severity: 'warning', state: i % 2 === 0 ? 'firing' : 'resolved', metric: 't', value: i, threshold: 30, at: 1_800_000_000_000 + i, message: `event ${i}` });

describe('webhook outbox', () => {
  let dir: TempDir;
  let receiver: WebhookReceiver;
  const opened: WebhookOutbox[] = [];
  const openOutbox = async (maxQueued = 100, dropped?: () => void) => {
    const outbox = await WebhookOutbox.open({
      dir: dir.path,
      webhook: { url: receiver.url, timeout: 2000 },
      retryMinMs: 20,
      retryMaxMs: 100,
      maxQueued,
      logger: createLogger({ level: 'silent' }),
      ...(dropped === undefined ? {} : { onDropped: dropped }),
    });
    opened.push(outbox);
    return outbox;
  };

  beforeEach(async () => {
    dir = await tempDir('sensorpipe-outbox-');
    receiver = new WebhookReceiver(await freePort()); // down until started
  });
  afterEach(async () => {
    for (const o of opened.splice(0)) await o.close();
    await receiver.stop();
    await dir.remove();
  });

  it('keeps undelivered events across reopening, delivers them in order once the receiver is up, and not again', async () => {
    const first = await openOutbox();
    for (let i = 0; i < 5; i++) await first.enqueue(event(i));
    await first.close();
    const second = await openOutbox();
    expect(second.depth).toBe(5);
    await receiver.start();
    await waitFor(() => receiver.events.length === 5 && second.depth === 0, 'all five delivered', 10_000);
    expect(receiver.events.map((e) => e.id)).toEqual(['e-0', 'e-1', 'e-2', 'e-3', 'e-4']);
    await second.close();
    expect(await readFile(second.path, 'utf8')).toBe(''); // compacted once all was delivered
    const third = await openOutbox();
    expect(third.depth).toBe(0);
    await third.enqueue(event(5));
    await waitFor(() => receiver.events.length === 6, 'the next one', 10_000);
    expect(receiver.events.map((e) => e.id).slice(4)).toEqual(['e-4', 'e-5']);
  });

  it('a cursor in the middle: only what follows it is delivered after a restart', async () => {
    await receiver.start();
    receiver.refuseIds.add('e-1');
    const outbox = await openOutbox();
    await outbox.enqueue(event(0));
    await outbox.enqueue(event(1));
    await waitFor(() => receiver.events.length === 1 && receiver.arrivals >= 3, 'e-0 delivered, e-1 refused (and retried)', 10_000);
    await outbox.close();
    receiver.refuseIds.clear();
    const again = await openOutbox();
    expect(again.depth).toBe(1);
    await waitFor(() => receiver.events.length === 2, 'e-1 after the restart', 10_000);
    expect(receiver.events.map((e) => e.id)).toEqual(['e-0', 'e-1']);
  });

  it('is bounded: beyond maxQueued the oldest are dropped and counted', async () => {
    let dropped = 0;
    const outbox = await openOutbox(3, () => dropped++);
    for (let i = 0; i < 5; i++) await outbox.enqueue(event(i));
    expect(outbox.depth).toBe(3);
    expect(dropped).toBe(2);
    await outbox.close();
    const again = await openOutbox(3);
    expect(again.depth).toBe(3);
    await receiver.start();
    await waitFor(() => receiver.events.length === 3, 'the newest three', 10_000);
    expect(receiver.events.map((e) => e.id)).toEqual(['e-2', 'e-3', 'e-4']);
  });

  it('a torn last line is dropped, and the next event is a line of its own', async () => {
    const outbox = await openOutbox();
    await outbox.enqueue(event(0));
    await outbox.close();
    await appendFile(outbox.path, '{"v":1,"id":"torn"');
    const again = await openOutbox();
    expect(again.depth).toBe(1);
    await again.enqueue(event(1));
    await receiver.start();
    await waitFor(() => receiver.events.length === 2, 'both', 10_000);
    expect(receiver.events.map((e) => e.id)).toEqual(['e-0', 'e-1']);
  });
});
