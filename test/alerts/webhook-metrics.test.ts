/**
 * The webhook metrics, per webhook: each series carries a `webhook` label naming its receiver as
 * scheme://host:port/…#digest, never a secret of its URL (path, user name, password, query token, fragment). On a
 * real pipeline (broker, ingest, embedded store, a signed device) the alerts component delivers an event
 * to a receiver that is up and fails to reach one that is down; /metrics then has each webhook's own
 * counts, and a webhook taken out of the rules file takes its series with it. Also: a URL's user info
 * goes to the receiver as HTTP Basic authentication (fetch() alone refuses such a URL).
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningAlerts } from '../../alerts/index.ts';
import { webhookLabel } from '../../alerts/webhook-label.ts';
import { splitCredentials } from '../../alerts/outbox.ts';
import { startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { freePort } from '../../harness/ports.ts';
import { DevicePublisher, waitFor } from '../../harness/publisher.ts';
import { ALERTS_PASSWORD, startTestAlerts, WebhookReceiver } from './helpers.ts';

describe('webhookLabel', () => {
  const digest = (url: string): string => createHash('sha256').update(url).digest('hex').slice(0, 8);
  it.each([
    ['http://127.0.0.1:9000/hook', 'http://127.0.0.1:9000/…#'],
    ['https://hooks.example.com/a/b', 'https://hooks.example.com:443/…#'],
    ['http://Hooks.Example.COM/x', 'http://hooks.example.com:80/…#'],
    ['http://example.com:80/x', 'http://example.com:80/…#'],
    ['http://example.com', 'http://example.com:80/…#'],
    ['https://user:pass@example.com:8443/p?token=t#frag', 'https://example.com:8443/…#'],
    ['https://:only-a-password@example.com/p', 'https://example.com:443/…#'],
    ['http://[::1]:8080/hook?x=1', 'http://[::1]:8080/…#'],
    // The secret of Slack's and Discord's webhooks is in the path.
    ['https://hooks.slack.com/services/T0SECRET/B0SECRET/XXXXSECRETXXXX', 'https://hooks.slack.com:443/…#'],
    ['https://discord.com/api/webhooks/123456/SECRET-TOKEN', 'https://discord.com:443/…#'],
  ])('%s → %s<digest>', (url, prefix) => {
    expect(webhookLabel(url)).toBe(`${prefix}${digest(url)}`);
    expect(webhookLabel(url)).not.toMatch(/SECRET|pass|token|frag|hook\b|\/p\b|\/x\b/);
  });
  it('tells two receivers on one host apart, and names one URL the same way each time', () => {
    expect(webhookLabel('https://h.example/a')).not.toBe(webhookLabel('https://h.example/b'));
    expect(webhookLabel('https://h.example/a')).toBe(webhookLabel('https://h.example/a'));
  });
  it('shows nothing of what is not a URL', () => {
    expect(webhookLabel('not a url')).toBe('(invalid url)');
  });
});

describe('splitCredentials', () => {
  it.each([
    ['http://127.0.0.1:9000/hook?x=1', { url: 'http://127.0.0.1:9000/hook?x=1' }],
    ['https://user:pa%3Ass@example.com/p?x=1', { url: 'https://example.com/p?x=1', authorization: `Basic ${Buffer.from('user:pa:ss').toString('base64')}` }],
    ['https://user@example.com/', { url: 'https://example.com/', authorization: `Basic ${Buffer.from('user:').toString('base64')}` }],
    // Not valid percent-encoding: taken as written, never a crash.
    ['https://us%zzer:x@example.com/', { url: 'https://example.com/', authorization: `Basic ${Buffer.from('us%zzer:x').toString('base64')}` }],
    ['not a url', { url: 'not a url' }],
  ])('%s', (raw, expected) => {
    expect(splitCredentials(raw)).toEqual(expected);
  });
});

/** One sample of the Prometheus text: its metric name, labels and value. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function parseSamples(text: string): Sample[] {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => {
      const match = /^([a-zA-Z_:][\w:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
      if (match === null) throw new Error(`not a sample line: ${line}`);
      const labels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1]!, m[2]!]));
      return { name: match[1]!, labels, value: Number(match[3]) };
    });
}

describe('webhook metrics on a running pipeline', () => {
  const SECRET = 'url-secret-4711';
  const USER = 'hook-user';
  const up = new WebhookReceiver();
  let pipeline: TestPipeline;
  let alerts: RunningAlerts;
  let publisher: DevicePublisher;
  let rulesPath: string;
  let upUrl: string;
  let downUrl: string;
  let upLabel: string;
  let downLabel: string;

  const rules = (...urls: string[]) => `rules:\n  - { id: hot, kind: above, metric: temperature, threshold: 30 }\nwebhooks:\n${urls.map((url) => `  - { url: "${url}" }\n`).join('')}`;
  const metricsText = async () => (await fetch(`${alerts.url}/metrics`)).text();
  const webhookSamples = async () => parseSamples(await metricsText()).filter((s) => s.name.startsWith('sensorpipe_alerts_webhook_'));
  const value = (samples: Sample[], name: string, webhook: string) => samples.filter((s) => s.name === name && s.labels.webhook === webhook).reduce((sum, s) => sum + s.value, 0);

  beforeAll(async () => {
    pipeline = await startTestPipeline({ devices: 1, broker: { alertsPassword: ALERTS_PASSWORD } });
    await up.start();
    const downPort = await freePort();
    // Both URLs carry every kind of secret a URL can: user info, a query token, a fragment.
    upUrl = `http://${USER}:${SECRET}@127.0.0.1:${up.port}/hook?token=${SECRET}#${SECRET}`;
    downUrl = `http://${USER}:${SECRET}@127.0.0.1:${downPort}/down?token=${SECRET}`;
    upLabel = `http://127.0.0.1:${up.port}/…#${createHash('sha256').update(upUrl).digest('hex').slice(0, 8)}`;
    downLabel = `http://127.0.0.1:${downPort}/…#${createHash('sha256').update(downUrl).digest('hex').slice(0, 8)}`;
    rulesPath = join(pipeline.dir.path, 'rules.yaml');
    await writeFile(rulesPath, rules(upUrl, downUrl));
    alerts = await startTestAlerts({ broker: pipeline.broker, dataDir: join(pipeline.dir.path, 'alerts-data'), registryPath: pipeline.registryPath, rulesPath });
    publisher = await DevicePublisher.connect(pipeline.broker.url, pipeline.devices[0]!);
  }, 60_000);

  afterAll(async () => {
    await publisher?.close();
    await alerts?.close();
    await up.stop();
    await pipeline?.close();
  });

  it('has every webhook of the rules file at 0 before anything happened (the alert rules compare with it)', async () => {
    const samples = await webhookSamples();
    for (const label of [upLabel, downLabel]) {
      for (const name of ['sensorpipe_alerts_webhook_deliveries_total', 'sensorpipe_alerts_webhook_dropped_total', 'sensorpipe_alerts_webhook_queue_depth']) {
        expect(samples.filter((s) => s.name === name && s.labels.webhook === label), `${name} ${label}`).toEqual([{ name, labels: { webhook: label }, value: 0 }]);
      }
    }
  });

  it('counts an event delivered to one webhook and failing for the other under each its own label, with no secret in /metrics', async () => {
    await publisher.send({ temperature: 35 });
    await waitFor(() => up.events.length === 1, 'the event at the receiver that is up', 10_000);
    await waitFor(async () => value(await webhookSamples(), 'sensorpipe_alerts_webhook_failures_total', downLabel) >= 2, 'failed attempts to the receiver that is down', 10_000);
    // The user info went as Basic authentication, not in the URL.
    expect(up.authorizations).toEqual([`Basic ${Buffer.from(`${USER}:${SECRET}`).toString('base64')}`]);

    const samples = await webhookSamples();
    expect(value(samples, 'sensorpipe_alerts_webhook_deliveries_total', upLabel)).toBe(1);
    expect(value(samples, 'sensorpipe_alerts_webhook_deliveries_total', downLabel)).toBe(0);
    expect(value(samples, 'sensorpipe_alerts_webhook_queue_depth', upLabel)).toBe(0);
    expect(value(samples, 'sensorpipe_alerts_webhook_queue_depth', downLabel)).toBe(1);
    expect(value(samples, 'sensorpipe_alerts_webhook_failures_total', upLabel)).toBe(0);
    expect(samples.filter((s) => s.name === 'sensorpipe_alerts_webhook_failures_total').map((s) => s.labels)).toEqual([{ webhook: downLabel, reason: 'ECONNREFUSED' }]);
    // Every webhook series is labelled, and only by the two receivers' scheme://host:port/…#digest.
    expect(new Set(samples.map((s) => s.labels.webhook))).toEqual(new Set([upLabel, downLabel]));
    const text = await metricsText();
    for (const secret of [SECRET, USER, '?token=', 'token=']) expect(text, secret).not.toContain(secret);
  });

  it('drops the series of a webhook taken out of the rules file, and keeps the others', async () => {
    await writeFile(rulesPath, rules(upUrl));
    await alerts.reloadRules();
    const samples = await webhookSamples();
    expect(samples.filter((s) => s.labels.webhook === downLabel)).toEqual([]);
    expect(value(samples, 'sensorpipe_alerts_webhook_deliveries_total', upLabel)).toBe(1);
    expect(new Set(samples.map((s) => s.labels.webhook))).toEqual(new Set([upLabel]));
  });
});
