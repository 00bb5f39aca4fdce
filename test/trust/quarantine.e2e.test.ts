/**
 * Trust on the dashboard, in Debian's Chromium against the whole pipeline in this process (our broker,
 * ingest, the embedded store, the display; devices are real MQTT.js clients): the fleet row shows a
 * device's accepted / duplicate / rejected counts with the reasons in its hint; the device page shows
 * the breakdown and links to the quarantine, filtered by the device; the quarantine page shows each
 * rejected message's reason, its text and its payload excerpt — a hostile payload (<script>, <img
 * onerror>) as text, never as markup; filtering by reason works; "Load older" pages on.
 */
import type { Browser, Page } from 'playwright-core';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../core/errors.ts';
import { signTelemetry } from '../../core/signature.ts';
import { topics } from '../../core/topics.ts';
import { buildDashboard } from '../../display/web/build.ts';
import { launchChromium } from '../../harness/chromium.ts';
import { startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { signedPayload, waitFor } from '../../harness/publisher.ts';

const HOSTILE = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2">';
/** dev-1 sends this many broken messages: more than one page of the quarantine view (100). */
const FLOOD = 101;

let pipeline: TestPipeline;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  await buildDashboard();
  pipeline = await startTestPipeline({ devices: 2 });
  const [dev0, dev1] = pipeline.devices as [(typeof pipeline.devices)[0], (typeof pipeline.devices)[0]];
  const now = Date.now();
  const c0 = await mqtt.connectAsync(pipeline.broker.url, { clientId: dev0.id, username: dev0.id, password: dev0.credentials.mqttPassword, protocolVersion: 4 });
  await c0.publishAsync(topics.telemetry(dev0.id), signedPayload(dev0, [{ seq: 1, ts: now - 2000, values: { temperature: 20.5 } }, { seq: 2, ts: now - 1000, values: { temperature: 20.6 } }]), { qos: 1 });
  await c0.publishAsync(topics.telemetry(dev0.id), HOSTILE, { qos: 1 });
  await c0.publishAsync(topics.telemetry(dev0.id), JSON.stringify(signTelemetry({ v: 1, device: dev0.id, readings: [{ seq: 3, ts: now, values: { temperature: 1 } }] }, dev1.key)), { qos: 1 });
  await c0.endAsync();
  const c1 = await mqtt.connectAsync(pipeline.broker.url, { clientId: dev1.id, username: dev1.id, password: dev1.credentials.mqttPassword, protocolVersion: 4 });
  for (let i = 0; i < FLOOD; i++) await c1.publishAsync(topics.telemetry(dev1.id), `not json ${i}`, { qos: 1 });
  await c1.endAsync();
  await waitFor(() => {
    const counts = (id: string) => pipeline.display.fleet.get(id)?.counts;
    return counts(dev0.id)?.accepted === 2 && Object.keys(counts(dev0.id)?.rejected ?? {}).length === 2 && counts(dev1.id)?.rejected.PAYLOAD_INVALID === FLOOD;
  }, 'the counts at the display', 15_000);
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
}, 90_000);

afterAll(async () => {
  await browser?.close();
  await pipeline?.close();
});

describe('message counts and the quarantine in the dashboard', () => {
  it('shows accepted / duplicates / rejected in the fleet row, the reasons in its hint', async () => {
    await page.goto(`${pipeline.display.url}/`);
    const cell = page.locator('[data-device="dev-0"] [data-counts]');
    await waitFor(async () => (await cell.textContent()) === '2 / 0 / 2', 'the counts in the fleet row', 10_000);
    const hint = (await cell.getAttribute('title')) ?? '';
    expect(hint).toContain('PAYLOAD_INVALID: 1');
    expect(hint).toContain('READING_BAD_SIGNATURE: 1');
    expect(await page.locator('[data-device="dev-1"] [data-counts]').textContent()).toBe(`0 / 0 / ${FLOOD}`);
  });

  it('shows the breakdown and the trust level on the device page, linking to its quarantined messages', async () => {
    await page.goto(`${pipeline.display.url}/#/device/dev-0`);
    const box = page.locator('[data-device-counts]');
    await box.locator('[data-count-accepted]').waitFor({ timeout: 10_000 });
    expect(await box.locator('[data-count-accepted]').textContent()).toBe('2');
    expect(await box.locator('[data-count-rejected]').textContent()).toBe('2');
    expect(await box.locator('[data-rejected-reason="READING_BAD_SIGNATURE"]').textContent()).toBe('READING_BAD_SIGNATURE: 1');
    expect(await page.locator('[data-device-trust]').textContent()).toBe('signed (hmac-sha256)');
    await box.locator('a[data-count-rejected]').click();
    await page.waitForURL(/#\/quarantine\?device=dev-0$/);
    await page.locator('[data-quarantine-entry]').nth(1).waitFor({ timeout: 10_000 });
    expect(await page.locator('[data-filter="device"]').inputValue()).toBe('dev-0');
    expect(await page.locator('[data-quarantine-entry]').count()).toBe(2);
  });

  it('shows a rejected message\'s reason, its text and its payload excerpt as text, never as markup', async () => {
    const entry = page.locator('[data-quarantine-entry][data-reason="PAYLOAD_INVALID"]');
    expect(await entry.locator('[data-q-reason]').textContent()).toBe('PAYLOAD_INVALID');
    expect(await entry.locator('[data-q-reason-text]').textContent()).toBe(ERROR_CODES.PAYLOAD_INVALID.text);
    expect(await entry.locator('[data-q-device]').textContent()).toBe('dev-0');
    expect(await entry.locator('[data-q-payload]').textContent()).toBe(HOSTILE);
    // Nothing of it became an element, and nothing of it ran.
    expect(await page.locator('[data-quarantine] script, [data-quarantine] img').count()).toBe(0);
    expect(await page.evaluate(() => (window as { __pwned?: unknown }).__pwned)).toBeUndefined();
  });

  it('filters by reason', async () => {
    await page.locator('[data-filter="reason"]').selectOption('READING_BAD_SIGNATURE');
    await page.waitForURL(/#\/quarantine\?device=dev-0&reason=READING_BAD_SIGNATURE$/);
    await waitFor(async () => (await page.locator('[data-quarantine-entry]').count()) === 1, 'one entry', 10_000);
    expect(await page.locator('[data-quarantine-entry]').getAttribute('data-reason')).toBe('READING_BAD_SIGNATURE');
    expect(await page.locator('[data-q-message]').textContent()).toContain('signature does not verify');
  });

  it('loads older entries by `before`', async () => {
    await page.goto(`${pipeline.display.url}/#/quarantine?device=dev-1`);
    await page.locator('[data-load-older]:not([hidden])').waitFor({ timeout: 10_000 });
    expect(await page.locator('[data-quarantine-entry]').count()).toBe(100);
    // Newest first: the last message sent is on top.
    expect(await page.locator('[data-q-payload]').first().textContent()).toBe(`not json ${FLOOD - 1}`);
    await page.locator('[data-load-older]').click();
    await waitFor(async () => (await page.locator('[data-quarantine-entry]').count()) === FLOOD, `${FLOOD} entries`, 10_000);
    expect(await page.locator('[data-q-payload]').last().textContent()).toBe('not json 0');
    expect(await page.locator('[data-load-older]').isHidden()).toBe(true);
  });
});
