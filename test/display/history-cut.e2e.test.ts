/**
 * A device view whose history the server had to cut says so, in Debian's Chromium against a real
 * pipeline (our broker, ingest, the embedded store, the display): a device with more points in the last
 * seconds than a /live history frame carries (core/live.ts LIVE_HISTORY_RAW_CAP) shows a note on each
 * chart naming where it was cut; a device whose history is whole shows none. A 7-day range of a 10 Hz
 * device, whose raw JSON answer from the API would be cut, is drawn aggregated and whole (the chart reads
 * its history from /live, never from that answer), with no note.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LIVE_HISTORY_RAW_CAP } from '../../core/live.ts';
import { buildDashboard } from '../../display/web/build.ts';
import { launchChromium } from '../../harness/chromium.ts';
import { startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import type { StorePoint } from '../../store/index.ts';

let pipeline: TestPipeline;
let browser: Browser;
let page: Page;
/** dev-0's first temperature point: the history is cut LIVE_HISTORY_RAW_CAP ms after it. */
let base = 0;

/** `count` points of `device`'s `metric`, `stepMs` apart from `from`. */
const points = (device: string, metric: string, from: number, count: number, stepMs: number): StorePoint[] =>
  Array.from({ length: count }, (_, i) => ({ device, metric, ts: from + i * stepMs, value: 20 + (i % 50) / 10 }));

beforeAll(async () => {
  await buildDashboard();
  pipeline = await startTestPipeline({ devices: 3 });
  const now = Date.now();
  base = now - 20_000;
  await pipeline.store.write([
    // dev-0: 2,000 points more than the cap, 1 ms apart, ending seconds ago; humidity sparse.
    ...points('dev-0', 'temperature', base, LIVE_HISTORY_RAW_CAP + 2000, 1),
    ...points('dev-0', 'humidity', base, 150, 100),
    // dev-1: a reading every 5 s for ten minutes.
    ...points('dev-1', 'temperature', now - 600_000, 120, 5000),
    // dev-2: 10 Hz for the last five minutes, and a reading every ten minutes over the week before.
    ...points('dev-2', 'temperature', now - 300_000, 3000, 100),
    ...points('dev-2', 'temperature', now - 7 * 86_400_000 + 60_000, 1000, 600_000),
  ]);
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await pipeline?.close();
});

/**
 * Opens a device view on a range and waits until its charts drew that range's history: data-history is
 * set when the frame arrives, data-points at the next animation frame's draw (every device here has data).
 */
async function open(device: string, range: string): Promise<void> {
  await page.goto('about:blank');
  await page.goto(`${pipeline.display.url}/#/device/${device}?range=${range}`);
  await page.locator(`.charts[data-history="${range}"] [data-chart="temperature"]:not([data-points="0"])`).waitFor({ state: 'attached', timeout: 10_000 });
}

describe('a cut history is shown as cut', () => {
  it('a device with more points in the last seconds than a frame carries: each chart notes where it was cut', async () => {
    await open('dev-0', '15m');
    for (const metric of ['temperature', 'humidity']) {
      const chart = page.locator(`[data-chart="${metric}"]`);
      expect(await chart.getAttribute('data-truncated')).toBe(String(base + LIVE_HISTORY_RAW_CAP));
      const note = chart.locator('.chart-note');
      expect(await note.isVisible()).toBe(true);
      expect(await note.textContent()).toMatch(/^History cut at .+: more points than one answer carries/);
    }
    expect(Number(await page.locator('[data-chart="temperature"]').getAttribute('data-points'))).toBeGreaterThan(0);
  });

  it('a whole history has no note', async () => {
    await open('dev-1', '15m');
    const chart = page.locator('[data-chart="temperature"]');
    expect(Number(await chart.getAttribute('data-points'))).toBeGreaterThan(100);
    expect(await chart.getAttribute('data-truncated')).toBeNull();
    expect(await chart.locator('.chart-note').isVisible()).toBe(false);
  });

  it('a 7-day range of a 10 Hz device: the API\'s raw JSON answer would be cut, the chart is aggregated and whole', async () => {
    const answer = (await (await fetch(`${pipeline.display.url}/api/devices/dev-2/readings?from=-7d&mode=raw`)).json()) as { truncated: boolean };
    expect(answer.truncated).toBe(true);
    await open('dev-2', '7d');
    const chart = page.locator('[data-chart="temperature"]');
    expect(Number(await chart.getAttribute('data-points'))).toBeGreaterThan(900);
    expect(await chart.getAttribute('data-truncated')).toBeNull();
    expect(await chart.locator('.chart-note').isVisible()).toBe(false);
  });
});
