/**
 * Alerts on the dashboard, in Debian's Chromium: the whole pipeline in this process (our broker, ingest,
 * the embedded store, the display), a device's history written to the store, and alert states published
 * retained on alerts/{device} by an MQTT client logged in as svc:admin (as the alerts component would).
 * Checks what a user sees: the banner of firing alerts with value against threshold and a link to the
 * device; the badge on the device's row; the fleet's alert history, with a hostile message shown as
 * text; on the device page the threshold line and the firing spans actually painted on the chart's
 * canvas, and the device's recent alerts; everything gone once the state is cleared; and the banner
 * emptied when the viewer token is forgotten (the API refuses the page from then on), back once the token
 * is entered again.
 *
 * Waits poll the page through locators (the display's Content Security Policy refuses the string
 * predicates of page.waitForFunction); the page reads /api/alerts every 5 s, so waits allow for that.
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { topics } from '../../core/topics.ts';
import { buildDashboard } from '../../display/web/build.ts';
import { launchChromium } from '../../harness/chromium.ts';
import { startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { waitFor } from '../../harness/publisher.ts';
import { event, rule, stateMessage } from './alerts-helpers.ts';

const HOSTILE = '<img src=x onerror="document.body.dataset.pwned=1"><b>bold</b>';
const TOKEN = 'alerts-e2e-viewer-token';
const POLL_WAIT_MS = 15_000;
const ARTIFACTS = join(import.meta.dirname, '../../test-artifacts');

let pipeline: TestPipeline;
let admin: MqttClient;
let browser: Browser;
let page: Page;
const pageErrors: string[] = [];
const now = Date.now();
const MIN = 60_000;

/** dev-1's retained alert state: rule hot firing for 5 minutes, and its recent events (one with a hostile message). */
function firingState() {
  return stateMessage('dev-1', [rule({ rule: 'hot', state: 'firing', severity: 'critical', threshold: 30, clear: 29, since: now - 5 * MIN, value: 31.5 })], [
    event({ device: 'dev-1', at: now - 5 * MIN, state: 'firing', severity: 'critical', value: 31.5 }),
    event({ device: 'dev-1', at: now - 10 * MIN, state: 'resolved', severity: 'critical', value: 28, message: HOSTILE }),
    event({ device: 'dev-1', at: now - 20 * MIN, state: 'firing', severity: 'critical', value: 30.5 }),
  ], now);
}

beforeAll(async () => {
  await buildDashboard();
  pipeline = await startTestPipeline({ devices: 3, displayEnv: { SENSORPIPE_VIEWER_TOKEN: TOKEN } });
  // dev-1's temperature over the last hour, a slow ramp from 20 to 28: the threshold (30) lies above
  // every reading, and the line crosses a column of the chart once (a span's tint shows around it).
  await pipeline.store.write(Array.from({ length: 360 }, (_, i) => ({ device: 'dev-1', metric: 'temperature', ts: now - 3_600_000 + i * 10_000, value: 20 + (8 * i) / 360 })));
  const { username, password } = pipeline.broker.services.admin;
  admin = await mqtt.connectAsync(pipeline.broker.url, { username, password, clientId: 'test-alerts-e2e-admin', protocolVersion: 4 });
  await admin.publishAsync(topics.alerts('dev-1'), JSON.stringify(firingState()), { qos: 1, retain: true });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  page.on('pageerror', (error) => pageErrors.push(error.message));
  await mkdir(ARTIFACTS, { recursive: true });
}, 60_000);

afterAll(async () => {
  await admin?.endAsync();
  await browser?.close();
  await pipeline?.close();
});

/** Pixels of the canvas row `y` painted in the colour (r, g, b), opaque. */
function rowPixels(canvas: HTMLCanvasElement, [y, r, g, b]: [number, number, number, number]): number {
  const data = canvas.getContext('2d')!.getImageData(0, y, canvas.width, 1).data;
  let count = 0;
  for (let i = 0; i < data.length; i += 4) if (Math.abs(data[i]! - r) < 8 && Math.abs(data[i + 1]! - g) < 8 && Math.abs(data[i + 2]! - b) < 8 && data[i + 3]! > 240) count++;
  return count;
}

/** Pixels of the canvas column `x` with the faint red tint of a critical firing span (and nothing opaque over it). */
function columnTint(canvas: HTMLCanvasElement, x: number): number {
  const data = canvas.getContext('2d')!.getImageData(x, 0, 1, canvas.height).data;
  let count = 0;
  for (let i = 0; i < data.length; i += 4) if (data[i]! > 150 && data[i + 1]! < 90 && data[i + 3]! > 15 && data[i + 3]! < 80) count++;
  return count;
}

/** The token form, filled in as a user does. */
async function enterToken(): Promise<void> {
  await page.locator('[data-token-form]').waitFor({ timeout: 10_000 });
  await page.fill('[data-token-input]', TOKEN);
  await page.click('[data-token-form] button[type="submit"]');
  await page.locator('[data-connection="live"]').waitFor({ timeout: 10_000 });
}

describe('alerts on the dashboard', () => {
  it('the fleet page shows the firing alert in the banner, a badge on the row, and the history as text', async () => {
    await page.goto(`${pipeline.display.url}/`);
    await enterToken();
    const item = page.locator('[data-alert-banner] [data-alert-device="dev-1"]');
    await item.waitFor({ timeout: POLL_WAIT_MS });
    expect(await page.locator('[data-alert-banner]').isVisible()).toBe(true);
    expect(await item.getAttribute('data-severity')).toBe('critical');
    const text = await item.textContent();
    expect(text).toContain('dev-1');
    expect(text).toContain('hot');
    expect(text).toContain('temperature 31.5 > 30');
    expect(text).toMatch(/since .*\(5 min ago\)/);
    expect(await item.locator('a').getAttribute('href')).toBe('#/device/dev-1');

    await page.locator('[data-device="dev-1"][data-alert="critical"]').waitFor({ timeout: POLL_WAIT_MS });
    expect(await page.locator('[data-device="dev-1"] [data-alert-badge]').textContent()).toBe('critical');
    expect(await page.locator('[data-device="dev-0"] [data-alert-badge]:not([hidden])').count()).toBe(0);
    expect(await page.locator('[data-device="dev-0"]').getAttribute('data-alert')).toBeNull();

    const history = page.locator('[data-alert-history] [data-alert-event]');
    await waitFor(async () => (await history.count()) === 3, 'three events in the alert history', POLL_WAIT_MS);
    expect(await history.evaluateAll((items) => items.map((i) => i.getAttribute('data-state')))).toEqual(['firing', 'resolved', 'firing']);
    // The message is shown as the text it is: no element made of it, no script run.
    expect(await history.nth(1).textContent()).toContain(HOSTILE);
    expect(await history.nth(1).textContent()).toContain('temperature 28 (threshold 30)');
    expect(await page.locator('[data-alert-history] img, [data-alert-history] b').count()).toBe(0);
    expect(await page.locator('body').getAttribute('data-pwned')).toBeNull();
    await page.locator('body').screenshot({ path: join(ARTIFACTS, 'alerts-fleet.png') });
  });

  it('the device page draws the threshold line and the firing spans, and lists the recent alerts', async () => {
    await page.locator('[data-alert-banner] [data-alert-device="dev-1"] a').click();
    await page.locator('[data-history]').waitFor({ timeout: 10_000 });
    const chart = page.locator('[data-chart="temperature"]');
    await page.locator('[data-chart="temperature"][data-thresholds="30"]').waitFor({ timeout: POLL_WAIT_MS });
    // Two spans: 20 to 10 min ago, and 5 min ago until now.
    await waitFor(async () => (await chart.getAttribute('data-firing-spans')) === '2', 'two firing spans drawn', POLL_WAIT_MS);

    // What is on the canvas: the threshold's row is painted in the critical colour (#dc2626) over most
    // of the plot's width, and the middle of the first span has the span's tint where a column far to
    // the left (50 minutes ago: no alert then) has none.
    const canvas = chart.locator('canvas');
    const y = Number(await chart.getAttribute('data-threshold-y'));
    const width = await canvas.evaluate((c: HTMLCanvasElement) => c.width);
    const lineRow = Math.max(await canvas.evaluate(rowPixels, [y, 220, 38, 38] as [number, number, number, number]), await canvas.evaluate(rowPixels, [y - 1, 220, 38, 38] as [number, number, number, number]));
    expect(lineRow).toBeGreaterThan(width * 0.3);
    const spanX = Number(await chart.getAttribute('data-span-x'));
    expect(await canvas.evaluate(columnTint, spanX)).toBeGreaterThan(50);
    expect(await canvas.evaluate(columnTint, Math.round(width * 0.15))).toBe(0);

    const recent = page.locator('[data-device-recent-alerts] [data-alert-event]');
    await waitFor(async () => (await recent.count()) === 3, 'three recent alerts', POLL_WAIT_MS);
    expect(await recent.first().textContent()).toContain('temperature 31.5 > 30');
    expect(await page.locator('[data-device-active-alerts] [data-rule="hot"]').getAttribute('data-state')).toBe('firing');
    await page.locator('body').screenshot({ path: join(ARTIFACTS, 'alerts-device.png') });
  });

  it('once the state is cleared, the banner and the line go', async () => {
    await admin.publishAsync(topics.alerts('dev-1'), Buffer.alloc(0), { qos: 1, retain: true });
    await page.locator('[data-alert-banner][hidden]').waitFor({ state: 'attached', timeout: POLL_WAIT_MS });
    await page.locator('[data-chart="temperature"][data-thresholds=""]').waitFor({ timeout: POLL_WAIT_MS });
    expect(await page.locator('[data-chart="temperature"]').getAttribute('data-firing-spans')).toBe('0');
    await page.goto(`${pipeline.display.url}/#/`);
    await page.locator('[data-device="dev-1"]').waitFor({ timeout: 10_000 });
    await waitFor(async () => (await page.locator('[data-device="dev-1"]').getAttribute('data-alert')) === null, 'the badge gone', POLL_WAIT_MS);
  });

  it('forgetting the token empties the banner (the API now refuses the page); entering it again brings the alert back', async () => {
    await admin.publishAsync(topics.alerts('dev-1'), JSON.stringify(firingState()), { qos: 1, retain: true });
    const item = page.locator('[data-alert-banner] [data-alert-device="dev-1"]');
    await item.waitFor({ timeout: POLL_WAIT_MS });

    await page.getByRole('button', { name: 'forget token' }).click();
    await page.locator('[data-token-form]').waitFor({ timeout: 10_000 });
    // The next poll of /api/alerts is refused (401): what the forgotten token could read is no longer shown.
    await page.locator('[data-alert-banner][hidden]').waitFor({ state: 'attached', timeout: POLL_WAIT_MS });
    expect(await item.count()).toBe(0);
    // Still firing on the display's side: only the page, without a token, may not see it.
    const firing = (await (await fetch(`${pipeline.display.url}/api/alerts`, { headers: { authorization: `Bearer ${TOKEN}` } })).json()) as { firing: number };
    expect(firing.firing).toBe(1);

    await enterToken();
    await item.waitFor({ timeout: POLL_WAIT_MS });
    expect(await page.locator('[data-alert-banner]').isVisible()).toBe(true);
    expect(pageErrors).toEqual([]);
  });
});
