/**
 * The dashboard end to end, in Debian's Chromium: the whole pipeline in this process (our broker,
 * ingest, the embedded store in a temp folder, the display with a viewer token) and ten simulated
 * devices (firmware-sim) sending a reading every 500 ms. The test does what a user does and checks what
 * a user sees: the token form, the devices appearing, a value changing, the value being the stored
 * one, a device's charts drawn, and the dots turning grey when the devices go away.
 *
 * Waits poll the page through locators rather than page.waitForFunction: the display's Content
 * Security Policy (no 'unsafe-eval') refuses the string-evaluated predicates playwright would inject.
 *
 * Screenshots go to test-artifacts/; with SENSORPIPE_UPDATE_SCREENSHOTS=1 the fleet view is also saved
 * as docs/dashboard.png, the README's picture (not on every run, so a test run leaves git clean).
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../core/logger.ts';
import type { DeviceCredentials } from '../../core/registry.ts';
import { buildDashboard } from '../../display/web/build.ts';
import { parseFaults, startFleet, type Fleet } from '../../firmware-sim/index.ts';
import { PROFILE_NAMES } from '../../firmware-sim/signals.ts';
import { launchChromium } from '../../harness/chromium.ts';
import { startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { waitFor } from '../../harness/publisher.ts';

const TOKEN = 'e2e-viewer-token';
const DEVICES = 10;
const ids = Array.from({ length: DEVICES }, (_, i) => `sim-${String(i).padStart(4, '0')}`);
const ARTIFACTS = join(import.meta.dirname, '../../test-artifacts');

let pipeline: TestPipeline;
let fleet: Fleet | undefined;
let browser: Browser;
let page: Page;
/** The URL of every WebSocket the page opened: the token must not be in any of them. */
const socketUrls: string[] = [];
const pageErrors: string[] = [];

beforeAll(async () => {
  // The display serves display/web/dist: build it from the sources under test (atomic, safe to repeat).
  await buildDashboard();
  let credentialsFile = '';
  pipeline = await startTestPipeline({
    devices: 0,
    displayEnv: { SENSORPIPE_VIEWER_TOKEN: TOKEN },
    // Registered before the broker starts, so the devices' first logins succeed.
    prepare: async (registry, dir) => {
      const credentials: DeviceCredentials[] = ids.map((id, i) =>
        registry.add(id, { meta: { site: `site-${i % 3}`, model: 'sim-1', profile: PROFILE_NAMES[i % PROFILE_NAMES.length]! } }),
      );
      credentialsFile = join(dir, 'credentials.jsonl');
      await writeFile(credentialsFile, credentials.map((c) => JSON.stringify(c)).join('\n'), { mode: 0o600 });
    },
  });
  fleet = await startFleet({
    url: pipeline.broker.url,
    devices: DEVICES,
    intervalMs: 500,
    profile: 'mixed',
    seed: 7,
    faults: parseFaults(''),
    stateDir: join(pipeline.dir.path, 'sim'),
    credentialsFile,
    bufferLimit: 1000,
    maxBatch: 100,
    logger: createLogger({ level: 'silent' }),
  });
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
  page.on('pageerror', (error) => pageErrors.push(error.message));
  page.on('websocket', (socket) => socketUrls.push(socket.url()));
  await mkdir(ARTIFACTS, { recursive: true });
}, 60_000);

afterAll(async () => {
  await fleet?.stop(false);
  await browser?.close();
  await pipeline?.close();
});

/** Text of one displayed value, e.g. "21.34". */
const valueText = (device: string, metric: string) => page.locator(`[data-device="${device}"] [data-metric="${metric}"]`).textContent({ timeout: 5000 });
/** Points a chart says it drew (its data-points attribute). */
const chartPoints = async (metric: string) => Number(await page.locator(`[data-chart="${metric}"]`).getAttribute('data-points', { timeout: 5000 }));

describe('dashboard', () => {
  it('asks for the viewer token, then shows every device live', async () => {
    await page.goto(`${pipeline.display.url}/`);
    await page.locator('[data-token-form]').waitFor({ timeout: 10_000 });
    expect(await page.locator('[data-connection]').getAttribute('data-connection')).toBe('token');

    await page.fill('[data-token-input]', TOKEN);
    await page.click('[data-token-form] button[type="submit"]');
    await page.locator('[data-connection="live"]').waitFor({ timeout: 10_000 });
    await waitFor(async () => (await page.locator('[data-device]').count()) === DEVICES, 'every device in the table', 10_000);
    expect(await page.locator('[data-device]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-device')))).toEqual(ids);
    await waitFor(async () => (await page.locator('[data-device] [data-state="online"]').count()) === DEVICES, 'every device online', 10_000);
    expect(await page.locator('[data-count="devices"]').textContent()).toBe(String(DEVICES));
    expect(await page.locator('[data-count="online"]').textContent()).toBe(String(DEVICES));
    // sim-0000 is an env sensor: its four metrics, with units.
    expect(await page.locator('[data-device="sim-0000"] [data-metric]').evaluateAll((cells) => cells.map((c) => c.getAttribute('data-metric')))).toEqual([
      'co2',
      'humidity',
      'pressure',
      'temperature',
    ]);
    expect(await page.locator('[data-device="sim-0000"] [data-reading="temperature"]').textContent()).toMatch(/^temperature-?\d+(\.\d+)?°C$/);
    // The token went as a subprotocol, out of every URL (and so out of proxy logs).
    expect(socketUrls.length).toBeGreaterThan(0);
    expect(socketUrls.filter((url) => url.includes(TOKEN) || url.includes('token='))).toEqual([]);
  });

  it('changes a displayed value within 5 s, to a value that is in the store', async () => {
    const before = await valueText('sim-0000', 'temperature');
    const started = Date.now();
    await waitFor(async () => (await valueText('sim-0000', 'temperature')) !== before, 'the temperature of sim-0000 to change', 5000);
    expect(Date.now() - started).toBeLessThanOrEqual(5000);
    const shown = Number(await valueText('sim-0000', 'temperature'));
    expect(Number.isFinite(shown)).toBe(true);
    // The live feed runs a little ahead of the store's batched writes: the value arrives there shortly.
    await waitFor(async () => {
      const now = Date.now();
      const stored = await pipeline.store.query({ device: 'sim-0000', metrics: ['temperature'], from: now - 120_000, to: now + 60_000, mode: 'raw' });
      return (stored.series[0]?.points ?? []).some((p) => p.value === shown);
    }, `temperature ${shown} of sim-0000 in the store`, 5000);
  });

  it('keeps the token across a reload', async () => {
    await page.reload();
    await page.locator('[data-connection="live"]').waitFor({ timeout: 10_000 });
    expect(await page.locator('[data-token-form]').count()).toBe(0);
    await waitFor(async () => (await page.locator('[data-device] [data-state="online"]').count()) === DEVICES, 'every device online again', 10_000);
    // Ingest reports completeness every 200 ms in the test pipeline: the fresh snapshot has it for all.
    await waitFor(async () => !(await page.locator('[data-device] .completeness').allTextContents()).includes('–'), 'completeness shown', 5000);
    // The body's box: the page down to the last row, without the empty viewport below.
    await page.locator('body').screenshot({ path: join(ARTIFACTS, 'dashboard.png') });
    if (process.env.SENSORPIPE_UPDATE_SCREENSHOTS === '1') await page.locator('body').screenshot({ path: join(import.meta.dirname, '../../docs/dashboard.png') });
  });

  it('filters the table without losing rows', async () => {
    const shown = () => page.locator('[data-device]:not([hidden])').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-device')).join(' '));
    await page.selectOption('[data-filter="profile"]', 'power');
    // Devices 2, 5 and 8 are power meters (profiles cycle env, industrial, power).
    await waitFor(async () => (await shown()) === 'sim-0002 sim-0005 sim-0008', 'only the power meters', 5000);
    expect(await page.locator('.counts').textContent()).toBe(`${DEVICES} devices, ${DEVICES} online · 3 shown`);
    await page.fill('[data-filter="text"]', 'sim-0005');
    await waitFor(async () => (await shown()) === 'sim-0005', 'one power meter', 5000);
    await page.fill('[data-filter="text"]', '');
    await page.selectOption('[data-filter="profile"]', '');
    await waitFor(async () => (await shown()) === ids.join(' '), 'every device again', 5000);
  });

  it('opens a device and draws its history, then appends live readings', async () => {
    await page.click('[data-device="sim-0001"] a');
    await page.waitForURL(/#\/device\/sim-0001$/);
    // sim-0001 is an industrial sensor: one chart per metric.
    // The fleet has run for less than 15 minutes: the view opens on 15 minutes (fitted to the data).
    await page.locator('[data-history="15m"]').waitFor({ timeout: 10_000 });
    await waitFor(async () => (await page.locator('[data-chart]').count()) === 3, 'three charts', 10_000);
    expect(await page.locator('[data-chart]').evaluateAll((charts) => charts.map((c) => c.getAttribute('data-chart')))).toEqual(['current', 'motor_temp', 'vibration_rms']);
    const drawn = await chartPoints('motor_temp');
    expect(drawn).toBeGreaterThan(0);
    // uPlot drew onto its canvas: some pixels are not blank.
    expect(await page.locator('[data-chart="motor_temp"] canvas').evaluate(canvasHasInk)).toBe(true);
    await waitFor(async () => (await chartPoints('motor_temp')) > drawn, 'live points appended to the chart', 5000);
    expect(await page.locator('[data-device-state]').textContent()).toBe('online');

    // Another range: a new subscription, its history drawn again.
    await page.click('button[data-range="1h"]');
    await page.waitForURL(/range=1h$/);
    await page.locator('[data-history="1h"]').waitFor({ timeout: 10_000 });
    expect(await chartPoints('motor_temp')).toBeGreaterThan(0);
    expect(await page.locator('[data-csv]').getAttribute('href')).toMatch(/\/api\/devices\/sim-0001\/readings\?from=-1h&mode=raw&format=csv$/);
    await page.screenshot({ path: join(ARTIFACTS, 'dashboard-device.png'), fullPage: true });
  });

  it('reconnects by itself after the network drops, and live values flow again', async () => {
    const proxy = await startCuttableProxy(pipeline.display.port);
    const viewer = await browser.newPage();
    viewer.on('pageerror', (error) => pageErrors.push(error.message));
    try {
      await viewer.goto(`http://127.0.0.1:${proxy.port}/`);
      await viewer.fill('[data-token-input]', TOKEN);
      await viewer.click('[data-token-form] button[type="submit"]');
      await viewer.locator('[data-connection="live"]').waitFor({ timeout: 10_000 });
      const temperature = viewer.locator('[data-device="sim-0003"] [data-metric="temperature"]');
      await temperature.waitFor({ timeout: 10_000 });

      proxy.cut();
      await viewer.locator('[data-connection="reconnecting"]').waitFor({ timeout: 10_000 });
      expect(await viewer.locator('[data-connection]').textContent()).toMatch(/^reconnecting in \d+ s$/);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const frozen = await temperature.textContent();

      proxy.restore();
      // Backoff after about 1.5 s down: the next attempt comes within 4 s.
      await viewer.locator('[data-connection="live"]').waitFor({ timeout: 10_000 });
      // The page re-reads the API once after a reconnect, which may change the value once; only live
      // frames, which need the subscription sent anew on the new connection, change it again and again.
      const seen = new Set([frozen]);
      await waitFor(async () => seen.add(await temperature.textContent()).size >= 4, 'three new values after the reconnect', 5000);
    } finally {
      await viewer.close();
      await proxy.close();
    }
  });

  it('shows the devices going offline, with the stored latest values still on display', async () => {
    // The device list takes half a second to arrive, as on a loaded machine or a slow link: readings
    // sent between the server's snapshot and the page's subscription must not be lost (they were, once
    // in a few runs, when the page read the snapshot first and subscribed after).
    await page.route('**/api/devices', async (route) => {
      const response = await route.fetch();
      await new Promise((resolve) => setTimeout(resolve, 500));
      // The page may have dropped the request meanwhile (a newer load, a view change): nothing to answer then.
      await route.fulfill({ response }).catch(() => {});
    });
    await page.click('a[href="#/"]');
    await waitFor(async () => (await page.locator('[data-device]').count()) === DEVICES, 'the table back', 10_000);
    await fleet!.stop(true);
    fleet = undefined;
    await waitFor(async () => (await page.locator('[data-device] [data-state="offline"]').count()) === DEVICES, 'every device offline', 10_000);
    expect(await page.locator('[data-count="online"]').textContent()).toBe('0');
    // Nothing new is coming: every number on screen must now be the store's newest value of its metric.
    for (const id of ids) {
      await waitFor(async () => {
        const stored = new Map((await pipeline.store.latest(id)).map((l) => [l.metric, l.value]));
        const shown = await page.locator(`[data-device="${id}"] [data-metric]`).evaluateAll((cells) => cells.map((c) => [c.getAttribute('data-metric') ?? '', Number(c.textContent)] as const));
        return shown.length > 0 && shown.every(([metric, value]) => stored.get(metric) === value);
      }, `${id}'s displayed values equal to the store's latest`, 10_000);
    }
    await page.unrouteAll({ behavior: 'wait' });
    expect(pageErrors).toEqual([]);
  });
});

/** Runs in the page: whether any pixel of the canvas is painted. */
function canvasHasInk(canvas: HTMLCanvasElement): boolean {
  const context = canvas.getContext('2d');
  if (context === null) return false;
  const { data } = context.getImageData(0, 0, canvas.width, canvas.height);
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) return true;
  return false;
}

/**
 * A TCP proxy in front of the display whose link can be cut: `cut()` drops every connection and
 * refuses new ones (a network outage, as the browser sees it), `restore()` lets them through again.
 */
async function startCuttableProxy(targetPort: number): Promise<{ port: number; cut(): void; restore(): void; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let down = false;
  const server: Server = createServer((client) => {
    if (down) return void client.destroy();
    const upstream = connect(targetPort, '127.0.0.1');
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on('close', () => sockets.delete(socket));
      socket.on('error', () => socket.destroy());
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('proxy has no port');
  return {
    port: address.port,
    cut: () => {
      down = true;
      for (const socket of sockets) socket.destroy();
    },
    restore: () => {
      down = false;
    },
    close: () => {
      for (const socket of sockets) socket.destroy();
      return new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
