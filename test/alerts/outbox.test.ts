/** A webhook outbox on real files and a real HTTP receiver: durable across reopening, in order, bounded. */
import { appendFile, readFile, writeFile } from 'node:fs/promises';
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
  const openOutbox = async (maxQueued = 100, dropped?: () => void, filters: { severities?: AlertEvent['severity'][]; rules?: string[] } = {}) => {
    const outbox = await WebhookOutbox.open({
      dir: dir.path,
      webhook: { url: receiver.url, timeout: 2000, ...filters },
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

  describe('catching up with the alert log', () => {
    const log = (n: number) => Array.from({ length: n }, (_, i) => event(i));

    it('a new outbox takes no history: it starts at the log\'s end, and remembers it', async () => {
      await receiver.start();
      const outbox = await openOutbox();
      expect(await outbox.catchUp(log(3))).toBe(0);
      await outbox.close();
      // e-3 reached the log, then a crash before the outbox took it: only e-3 is owed.
      const again = await openOutbox();
      expect(await again.catchUp(log(4))).toBe(1);
      await waitFor(() => receiver.events.length === 1, 'e-3', 10_000);
      expect(receiver.events.map((e) => e.id)).toEqual(['e-3']);
    });

    it('after a compaction emptied the outbox, the marker still says what it took: only later events are owed, once', async () => {
      await receiver.start();
      const outbox = await openOutbox();
      await outbox.catchUp([]);
      for (const e of log(3)) await outbox.enqueue(e);
      await waitFor(() => receiver.events.length === 3 && outbox.depth === 0, 'three delivered', 10_000);
      await outbox.close();
      expect(await readFile(outbox.path, 'utf8')).toBe(''); // compacted: the file no longer says e-2 was taken
      expect(await readFile(outbox.takenPath, 'utf8')).toBe('e-2');
      // The torn state of a crash between the two appends: e-3 and e-4 in the log, not in the outbox.
      const again = await openOutbox();
      expect(await again.catchUp(log(5))).toBe(2);
      await waitFor(() => receiver.events.length === 5, 'e-3 and e-4', 10_000);
      await again.close();
      const third = await openOutbox();
      expect(await third.catchUp(log(5))).toBe(0);
      expect(receiver.events.map((e) => e.id)).toEqual(['e-0', 'e-1', 'e-2', 'e-3', 'e-4']);
    });

    it('undelivered events in the file: what follows the last of them is owed, not what is queued already', async () => {
      const outbox = await openOutbox(); // receiver down
      await outbox.catchUp([]);
      await outbox.enqueue(event(0));
      await outbox.enqueue(event(1));
      await outbox.close();
      const again = await openOutbox();
      expect(await again.catchUp(log(3))).toBe(1);
      expect(again.depth).toBe(3);
      await receiver.start();
      await waitFor(() => receiver.events.length === 3, 'all three', 10_000);
      expect(receiver.events.map((e) => e.id)).toEqual(['e-0', 'e-1', 'e-2']);
    });

    it('only events the webhook wants are owed', async () => {
      const outbox = await openOutbox(100, undefined, { rules: ['hot'] });
      await outbox.catchUp([event(0)]);
      await outbox.close();
      const other = { ...event(1), rule: 'cold' };
      const again = await openOutbox(100, undefined, { rules: ['hot'] });
      expect(await again.catchUp([event(0), other, event(2)])).toBe(1);
      await receiver.start();
      await waitFor(() => receiver.events.length === 1, 'e-2', 10_000);
      await again.close();
      expect(receiver.events.map((e) => e.id)).toEqual(['e-2']);
    });

    it('when the log rotated past the last event taken, every event it keeps is owed', async () => {
      const outbox = await openOutbox();
      await outbox.catchUp(log(2));
      await outbox.close();
      const again = await openOutbox();
      expect(await again.catchUp([event(5), event(6)])).toBe(2);
      expect(again.depth).toBe(2);
    });

    it('a damaged marker reads as none: the outbox starts again at the log\'s end', async () => {
      const outbox = await openOutbox();
      await outbox.catchUp(log(2));
      await outbox.close();
      await writeFile(outbox.takenPath, 'x'.repeat(200)); // longer than any event id
      const again = await openOutbox();
      expect(await again.catchUp(log(4))).toBe(0);
      expect(await readFile(again.takenPath, 'utf8')).toBe('e-3');
    });
  });
});
