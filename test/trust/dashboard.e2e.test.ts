/**
 * The dashboard marks a broker-authenticated device's readings, in Debian's Chromium: the whole pipeline
 * in this process, a Tasmota-mapped device publishing a SENSOR message (MQTT.js, logged in as the
 * device) and a signed device. The fleet table shows the Tasmota plug's value with an "unsigned" badge
 * that the signed device does not have; the device page says how its readings are authenticated.
 */
import type { Browser, Page } from 'playwright-core';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { BrokerDeviceCredentials } from '../../core/registry.ts';
import { topics } from '../../core/topics.ts';
import { buildDashboard } from '../../display/web/build.ts';
import { launchChromium } from '../../harness/chromium.ts';
import { startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { signedPayload, waitFor } from '../../harness/publisher.ts';

let pipeline: TestPipeline;
let browser: Browser;
let page: Page;
let plug: BrokerDeviceCredentials;
let gwPassword: string;

beforeAll(async () => {
  await buildDashboard();
  pipeline = await startTestPipeline({
    devices: 1,
    prepare: (registry) => {
      plug = registry.add('plug-tas', { trust: 'broker-authenticated', payload: { format: 'tasmota' }, meta: { site: 'kitchen' } });
      gwPassword = registry.add('gw-ptr', { trust: 'broker-authenticated', payload: { format: 'pointers', metrics: { power: { pointer: '/p', unit: 'kW' } } } }).mqttPassword;
    },
  });
  const now = Date.now();
  const device = await mqtt.connectAsync(pipeline.broker.url, { clientId: 'plug-tas', username: 'plug-tas', password: plug.mqttPassword, protocolVersion: 4 });
  await device.publishAsync(topics.tasmotaSensor('plug-tas'), JSON.stringify({ Time: `${new Date(now - 1000).toISOString().slice(0, 19)}+00:00`, ENERGY: { Power: 12.5 } }), { qos: 1 });
  await device.endAsync();
  const signed = pipeline.devices[0]!;
  const client = await mqtt.connectAsync(pipeline.broker.url, { clientId: signed.id, username: signed.id, password: signed.credentials.mqttPassword, protocolVersion: 4 });
  await client.publishAsync(topics.telemetry(signed.id), signedPayload(signed, [{ seq: 1, ts: now - 1000, values: { temperature: 20.5 } }]), { qos: 1 });
  await client.endAsync();
  const gw = await mqtt.connectAsync(pipeline.broker.url, { clientId: 'gw-ptr', username: 'gw-ptr', password: gwPassword, protocolVersion: 4 });
  await gw.publishAsync(topics.telemetry('gw-ptr'), JSON.stringify({ p: 3.5 }), { qos: 1 });
  await gw.endAsync();
  await waitFor(async () => (await pipeline.store.latest('plug-tas')).length === 1 && (await pipeline.store.latest(signed.id)).length === 1 && (await pipeline.store.latest('gw-ptr')).length === 1, 'the readings stored');
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
}, 60_000);

afterAll(async () => {
  await browser?.close();
  await pipeline?.close();
});

describe('the dashboard shows which readings are unsigned', () => {
  it('marks the broker-authenticated device in the fleet table, and only it', async () => {
    await page.goto(`${pipeline.display.url}/`);
    const row = page.locator('[data-device="plug-tas"]');
    await row.locator('[data-metric="energy_power"]').waitFor({ timeout: 10_000 });
    expect(await row.locator('[data-metric="energy_power"]').textContent()).toBe('12.5');
    expect(await row.getAttribute('data-trust')).toBe('broker');
    expect(await row.locator('[data-trust-badge]').isVisible()).toBe(true);
    expect(await row.locator('[data-trust-badge]').textContent()).toBe('unsigned');
    const signedRow = page.locator(`[data-device="${pipeline.devices[0]!.id}"]`);
    await signedRow.locator('[data-metric="temperature"]').waitFor({ timeout: 10_000 });
    expect(await signedRow.getAttribute('data-trust')).toBe('signed');
    expect(await signedRow.locator('[data-trust-badge]').isVisible()).toBe(false);
    // A pointers mapping's unit is shown with its metric.
    await page.locator('[data-device="gw-ptr"] [data-metric="power"]').waitFor({ timeout: 10_000 });
    expect(await page.locator('[data-device="gw-ptr"] [data-reading="power"]').textContent()).toBe('power3.5kW');
  });

  it('updates the unsigned device live, in the same frames as signed ones', async () => {
    const device = await mqtt.connectAsync(pipeline.broker.url, { clientId: 'plug-tas', username: 'plug-tas', password: plug.mqttPassword, protocolVersion: 4 });
    await device.publishAsync(topics.tasmotaSensor('plug-tas'), JSON.stringify({ Time: `${new Date().toISOString().slice(0, 19)}+00:00`, ENERGY: { Power: 77.25 } }), { qos: 1 });
    await device.endAsync();
    const value = page.locator('[data-device="plug-tas"] [data-metric="energy_power"]');
    await waitFor(async () => (await value.textContent()) === '77.25', 'the live value of the Tasmota plug', 10_000);
  });

  it('says so on the device page', async () => {
    await page.goto(`${pipeline.display.url}/#/device/plug-tas`);
    const trust = page.locator('[data-device-trust]');
    await waitFor(async () => (await trust.getAttribute('data-trust')) === 'broker', 'the trust on the device page', 10_000);
    expect(await trust.textContent()).toBe('unsigned (broker-authenticated, tasmota)');
    await page.goto(`${pipeline.display.url}/#/device/${pipeline.devices[0]!.id}`);
    await waitFor(async () => (await page.locator('[data-device-trust]').getAttribute('data-trust')) === 'signed', 'signed on the signed device page', 10_000);
  });
});
