/** The test harness itself: a real influxd starts on free ports, takes a point and gives it back. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { influxQuery, startInfluxd, type InfluxServer } from '../harness/influxd.ts';

describe('influxd harness', () => {
  let influx: InfluxServer;
  beforeAll(async () => {
    influx = await startInfluxd();
  });
  afterAll(async () => {
    await influx?.close();
  });

  it('writes a point and reads it back', async () => {
    const db = `harness_${Date.now()}`;
    await influxQuery(influx.url, `CREATE DATABASE "${db}"`);
    const write = await fetch(`${influx.url}/write?db=${db}&precision=ms`, {
      method: 'POST',
      body: 'harness,device=dev-1 temperature=21.5 1767225600000',
    });
    expect(write.status).toBe(204);
    const answer = (await influxQuery(influx.url, 'SELECT temperature FROM harness', db)) as {
      results: { series?: { values: [number, number][] }[] }[];
    };
    expect(answer.results[0]?.series?.[0]?.values).toEqual([[1767225600000, 21.5]]);
  });

  it('stops and starts again with its data', async (ctx) => {
    if (!influx.managed) ctx.skip('INFLUX_URL is set: an external server is not ours to restart');
    const db = `restart_${Date.now()}`;
    await influxQuery(influx.url, `CREATE DATABASE "${db}"`);
    await fetch(`${influx.url}/write?db=${db}&precision=ms`, { method: 'POST', body: 'm v=1 1767225600000' });
    await influx.stop();
    await expect(fetch(`${influx.url}/ping`)).rejects.toThrow();
    await influx.start();
    const answer = (await influxQuery(influx.url, 'SELECT v FROM m', db)) as { results: { series?: { values: unknown[] }[] }[] };
    expect(answer.results[0]?.series?.[0]?.values).toHaveLength(1);
  });
});

describe('chromium harness', () => {
  it('launches Debian Chromium through playwright-core and renders a page', async () => {
    const { launchChromium } = await import('../harness/chromium.ts');
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      await page.setContent('<h1 id="t">sensorpipe</h1><script>document.getElementById("t").textContent += " ok"</script>');
      expect(await page.textContent('#t')).toBe('sensorpipe ok');
    } finally {
      await browser.close();
    }
  });
});

describe('bare aedes harness', () => {
  it('carries a message between two real MQTT.js clients', async () => {
    const { startBareAedes } = await import('../harness/aedes.ts');
    const mqtt = await import('mqtt');
    const broker = await startBareAedes();
    const sub = await mqtt.connectAsync(broker.url);
    const pub = await mqtt.connectAsync(broker.url);
    try {
      await sub.subscribeAsync('t/1', { qos: 1 });
      const received = new Promise<string>((resolve) => sub.on('message', (_topic, payload) => resolve(payload.toString())));
      await pub.publishAsync('t/1', 'hello', { qos: 1 });
      expect(await received).toBe('hello');
    } finally {
      await Promise.all([sub.endAsync(), pub.endAsync()]);
      await broker.close();
    }
  });
});
