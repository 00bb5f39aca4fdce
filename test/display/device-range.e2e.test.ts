/**
 * The device view's default range fits the device's data, in Debian's Chromium against a real pipeline
 * (our broker, ingest, the embedded store, the display): a device with three minutes of data opens on
 * 15 minutes, one with five hours on 6 hours, one with none on the default hour; a range the user chose
 * (in the URL, or by a button before the fit came back) is kept. What the user sees is checked: the
 * pressed range button and the range whose history the charts drew.
 */
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildDashboard } from '../../display/web/build.ts';
import { fitRange } from '../../display/web/src/ranges.ts';
import { launchChromium } from '../../harness/chromium.ts';
import { startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import type { StorePoint } from '../../store/index.ts';

let pipeline: TestPipeline;
let browser: Browser;
let page: Page;

/** Readings of `device` every 5 s over the last `minutes`, up to now. */
function recent(device: string, minutes: number, now: number, metric = 'temperature'): StorePoint[] {
  const points: StorePoint[] = [];
  for (let ago = minutes * 60_000; ago >= 0; ago -= 5000) points.push({ device, metric, ts: now - ago, value: 20 + (ago % 7) });
  return points;
}

beforeAll(async () => {
  await buildDashboard();
  pipeline = await startTestPipeline({ devices: 3 });
  const now = Date.now();
  // dev-1's second metric began ten minutes ago: the device's data began with its first metric's.
  await pipeline.store.write([...recent('dev-0', 3, now), ...recent('dev-1', 5 * 60, now), ...recent('dev-1', 10, now, 'voltage')]);
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await pipeline?.close();
});

/** The range the device view shows: its pressed button, once the charts have drawn that range's history. */
async function openedRange(hash: string): Promise<{ pressed: string | null; drawn: string | null; url: string }> {
  // A fresh load each time: a hash change on the same page could be read before the old view is gone.
  await page.goto('about:blank');
  await page.goto(`${pipeline.display.url}/${hash}`);
  const charts = page.locator('.charts[data-history]');
  await charts.waitFor({ state: 'attached', timeout: 10_000 });
  return {
    pressed: await page.locator('button[data-range][aria-pressed="true"]').getAttribute('data-range'),
    drawn: await charts.getAttribute('data-history'),
    url: page.url(),
  };
}

describe('the device view opens on a range that fits its data', () => {
  it('a device with three minutes of data opens on 15 minutes', async () => {
    const opened = await openedRange('#/device/dev-0');
    expect(opened.pressed).toBe('15m');
    expect(opened.drawn).toBe('15m');
    // Fitted, not chosen: the URL does not pin it.
    expect(opened.url).toMatch(/#\/device\/dev-0$/);
    expect(await page.locator('[data-csv]').getAttribute('href')).toMatch(/\/api\/devices\/dev-0\/readings\?from=-15m&mode=raw&format=csv$/);
    // A click on the fitted range makes it the user's: the URL keeps it for a reload.
    await page.click('button[data-range="15m"]');
    await page.waitForURL(/#\/device\/dev-0\?range=15m$/);
  });

  it('a device with five hours of data opens on 6 hours, one without data on the default hour', async () => {
    expect(await openedRange('#/device/dev-1')).toMatchObject({ pressed: '6h', drawn: '6h' });
    expect(await openedRange('#/device/dev-2')).toMatchObject({ pressed: '1h', drawn: '1h' });
  });

  it('keeps a range the user chose, in the URL or by a button', async () => {
    expect(await openedRange('#/device/dev-0?range=24h')).toMatchObject({ pressed: '24h', drawn: '24h' });
    // A click: the URL records it, and the fit is not asked for again.
    await page.click('button[data-range="7d"]');
    await page.waitForURL(/range=7d$/);
    await page.locator('.charts[data-history="7d"]').waitFor({ state: 'attached', timeout: 10_000 });
    expect(await page.locator('button[data-range][aria-pressed="true"]').getAttribute('data-range')).toBe('7d');
  });
});

describe('fitRange', () => {
  const now = Date.UTC(2026, 0, 5, 12);
  const MIN = 60_000;
  it.each([
    ['no reading', undefined, '1h'],
    ['a reading just now', now, '15m'],
    ['3 minutes', now - 3 * MIN, '15m'],
    ['exactly 15 minutes', now - 15 * MIN, '15m'],
    ['15 minutes and 1 ms', now - 15 * MIN - 1, '1h'],
    ['5 hours', now - 300 * MIN, '6h'],
    ['23 hours', now - 23 * 60 * MIN, '24h'],
    ['3 days', now - 3 * 1440 * MIN, '7d'],
    ['a month (older than the longest range)', now - 30 * 1440 * MIN, '7d'],
    ['a clock ahead of ours', now + 5000, '15m'],
  ] as const)('%s → %s', (_what, first, range) => expect(fitRange(first, now)).toBe(range));
});
