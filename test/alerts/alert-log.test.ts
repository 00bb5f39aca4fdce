/** The durable alert log on a real file system: appended, rotated within its bound, read back, a torn line skipped. */
import { appendFile, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AlertLog } from '../../alerts/alert-log.ts';
import type { AlertEvent } from '../../core/alerts.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

const event = (i: number, device = 'dev-1', state: AlertEvent['state'] = 'firing'): AlertEvent => ({
  v: 1,
  id: `event-${i}`,
  device,
  rule: 'hot',
  kind: 'above',
  severity: 'warning',
  state,
  metric: 'temperature',
  value: 30 + i,
  threshold: 30,
  at: 1_800_000_000_000 + i,
  message: `event ${i}`,
});

describe('alert log', () => {
  let dir: TempDir;
  beforeEach(async () => {
    dir = await tempDir('sensorpipe-alert-log-');
  });
  afterEach(async () => {
    await dir.remove();
  });

  it('appends, and a new instance reads everything back in order', async () => {
    const path = join(dir.path, 'alerts.log');
    const log = await AlertLog.open({ path, maxBytes: 1 << 20 });
    for (let i = 0; i < 5; i++) await log.append(event(i, i % 2 === 0 ? 'dev-1' : 'dev-2'));
    await log.close();
    const again = await AlertLog.open({ path, maxBytes: 1 << 20 });
    expect(again.all().map((e) => e.id)).toEqual(['event-0', 'event-1', 'event-2', 'event-3', 'event-4']);
    expect(again.query({ device: 'dev-2', limit: 10 }).map((e) => e.id)).toEqual(['event-3', 'event-1']);
    expect(again.query({ from: 1_800_000_000_002, to: 1_800_000_000_004, limit: 10 }).map((e) => e.id)).toEqual(['event-3', 'event-2']);
    expect(again.query({ limit: 2 }).map((e) => e.id)).toEqual(['event-4', 'event-3']);
    await again.close();
  });

  it('rotates past its size: at most two files, the newest events kept, read back after a restart', async () => {
    const path = join(dir.path, 'alerts.log');
    const lineBytes = JSON.stringify(event(0)).length + 1;
    const log = await AlertLog.open({ path, maxBytes: lineBytes * 3 });
    for (let i = 0; i < 10; i++) await log.append(event(i));
    expect((await stat(path)).size).toBeLessThanOrEqual(lineBytes * 3);
    expect((await stat(`${path}.1`)).size).toBeLessThanOrEqual(lineBytes * 3);
    const kept = log.all().map((e) => e.id);
    expect(kept.at(-1)).toBe('event-9');
    expect(kept.length).toBeLessThanOrEqual(6);
    await log.close();
    const again = await AlertLog.open({ path, maxBytes: lineBytes * 3 });
    expect(again.all().map((e) => e.id)).toEqual(kept);
    await again.close();
  });

  it('a torn or foreign line is skipped and counted, never a crash', async () => {
    const path = join(dir.path, 'alerts.log');
    const log = await AlertLog.open({ path, maxBytes: 1 << 20 });
    await log.append(event(1));
    await log.close();
    await appendFile(path, '{"hello":"world"}\n{"v":1,"id":"torn","dev'); // no newline: a write cut short
    const again = await AlertLog.open({ path, maxBytes: 1 << 20 });
    expect(again.skippedLines).toBe(2);
    await again.append(event(2));
    expect(again.all().map((e) => e.id)).toEqual(['event-1', 'event-2']);
    await again.close();
    expect((await readFile(path, 'utf8')).trim().split('\n').at(-1)).toBe(JSON.stringify(event(2)));
  });
});
