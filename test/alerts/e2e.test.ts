/**
 * The alerts component end to end: a real broker, ingest and store (harness/pipeline.ts), real devices
 * publishing signed readings over MQTT, the alerts component as svc:alerts, real HTTP webhook receivers.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAlerts, type RunningAlerts } from '../../alerts/index.ts';
import type { AlertEvent } from '../../core/alerts.ts';
import { configSpecs, parseConfig } from '../../core/config.ts';
import { createLogger } from '../../core/logger.ts';
import { updateRegistry } from '../../core/registry.ts';
import { topics } from '../../core/topics.ts';
import { startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { freePort } from '../../harness/ports.ts';
import { DevicePublisher, waitFor } from '../../harness/publisher.ts';
import { ALERTS_PASSWORD, AlertStateWatcher, signatureOf, startTestAlerts, WebhookReceiver } from './helpers.ts';

const SECRET = 'a-secret-of-more-than-16-chars';

describe('alerts end to end', () => {
  let pipeline: TestPipeline;
  let alerts: RunningAlerts;
  let watcher: AlertStateWatcher;
  let rulesPath: string;
  let alertsData: string;
  const fast = new WebhookReceiver();
  const slow = new WebhookReceiver();
  let late: WebhookReceiver; // down at first
  const publishers: DevicePublisher[] = [];
  const device = (i: number) => publishers[i]!;

  const rules = (extra = '') => `
rules:
  - { id: hot, kind: above, metric: temperature, threshold: 30, clear: 28, severity: critical, selector: { device: dev-0 } }
  - { id: quiet, kind: silent, after: 1s, selector: { device: dev-2 } }
${extra}
webhooks:
  - { url: "${fast.url}", secret: ${SECRET}, rules: [hot] }
  - { url: "${slow.url}", timeout: 60s, rules: [hot] }
  - { url: "${late.url}", rules: [hot] }
`;
  const history = async (query: string): Promise<AlertEvent[]> => ((await (await fetch(`${alerts.url}/api/alerts/history?${query}`)).json()) as { events: AlertEvent[] }).events;
  const metric = async (name: string): Promise<number> => {
    const text = await (await fetch(`${alerts.url}/metrics`)).text();
    return text.split('\n').filter((l) => l.startsWith(name)).reduce((sum, l) => sum + Number(l.split(' ').at(-1)), 0);
  };

  beforeAll(async () => {
    pipeline = await startTestPipeline({ devices: 3, broker: { alertsPassword: ALERTS_PASSWORD } });
    await fast.start();
    await slow.start();
    late = new WebhookReceiver(await freePort());
    rulesPath = join(pipeline.dir.path, 'rules.yaml');
    alertsData = join(pipeline.dir.path, 'alerts-data');
    await writeFile(rulesPath, rules());
    watcher = await AlertStateWatcher.connect(pipeline.broker);
    alerts = await startTestAlerts({ broker: pipeline.broker, dataDir: alertsData, registryPath: pipeline.registryPath, rulesPath });
    for (const d of pipeline.devices.slice(0, 2)) publishers.push(await DevicePublisher.connect(pipeline.broker.url, d));
  }, 60_000);

  afterAll(async () => {
    slow.release();
    for (const p of publishers) await p.close();
    await watcher?.close();
    await alerts?.close();
    await Promise.all([fast.stop(), slow.stop(), late?.stop()]);
    await pipeline?.close();
  });

  it('a backlog of old readings does not fire; a reading crossing the threshold does: log, retained state, webhooks', async () => {
    slow.hold();
    // A batch from two minutes ago (a device catching up): stale, skipped.
    const old = Date.now() - 120_000;
    await device(0).send({ temperature: 99 }, old);
    await device(0).send({ temperature: 98 }, old + 1000);
    await waitFor(async () => (await metric('sensorpipe_alerts_readings_skipped_total{reason="stale"}')) >= 2, 'stale readings counted', 10_000);
    expect(await history('rule=hot')).toEqual([]);

    await device(0).send({ temperature: 25 });
    await device(0).send({ temperature: 35.5 });
    await waitFor(() => fast.events.length >= 1, 'the webhook', 10_000);
    const [firing] = await history('device=dev-0&rule=hot');
    expect(firing).toMatchObject({ device: 'dev-0', rule: 'hot', state: 'firing', value: 35.5, threshold: 30, severity: 'critical', metric: 'temperature' });
    expect(fast.events[0]).toEqual(firing);
    expect(fast.signatures[0]).toBe(signatureOf(SECRET, firing!));
    await waitFor(() => watcher.latest.get('dev-0')?.rules.some((r) => r.rule === 'hot' && r.state === 'firing') === true, 'retained alerts/dev-0', 10_000);
    const state = watcher.latest.get('dev-0')!;
    expect(state.rules.find((r) => r.rule === 'hot')).toMatchObject({ threshold: 30, clear: 28, value: 35.5 });
    expect(state.recent[0]).toEqual(firing);
    // A reading older than one already evaluated (out of order) does not resolve it.
    await device(0).send({ temperature: 20 }, Date.now() - 5_000);
    await waitFor(async () => (await metric('sensorpipe_alerts_readings_skipped_total{reason="out_of_order"}')) >= 1, 'the out-of-order reading counted', 10_000);
    await alerts.settled();
    expect((await history('device=dev-0&rule=hot')).map((e) => e.state)).toEqual(['firing']);
    // The firing list of the API.
    const now = (await (await fetch(`${alerts.url}/api/alerts`)).json()) as { firing: { device: string; rule: string }[] };
    expect(now.firing).toContainEqual(expect.objectContaining({ device: 'dev-0', rule: 'hot', state: 'firing' }));
  });

  it('hysteresis: hovering just under the threshold does not resolve; under the clear value does; a slow receiver holds up no other', async () => {
    await device(0).send({ temperature: 29.5 });
    await device(0).send({ temperature: 30.5 });
    await device(0).send({ temperature: 29 });
    await device(0).send({ temperature: 27.5 });
    await waitFor(() => fast.events.length >= 2, 'the resolved event at the fast receiver', 10_000);
    expect(fast.events.map((e) => e.state)).toEqual(['firing', 'resolved']);
    expect(fast.events[1]).toMatchObject({ value: 27.5, state: 'resolved' });
    // The slow receiver has had the first request all this time and answered nothing yet.
    expect(slow.arrivals).toBe(1);
    expect(slow.events).toEqual([]);
    slow.release();
    await waitFor(() => slow.events.length >= 2, 'the slow receiver, once it answers', 10_000);
    expect(slow.events.map((e) => e.id)).toEqual(fast.events.map((e) => e.id));
  });

  it('a receiver that was down gets every event later, once each and in order', async () => {
    await waitFor(async () => (await metric('sensorpipe_alerts_webhook_failures_total')) >= 2, 'failed attempts to the receiver that is down', 10_000);
    await late.start();
    await waitFor(() => late.events.length >= 2, 'the late receiver', 10_000);
    await new Promise((resolve) => setTimeout(resolve, 1000)); // several retry periods: nothing comes twice
    expect(late.events.map((e) => e.id)).toEqual(fast.events.map((e) => e.id));
    expect(new Set(late.events.map((e) => e.id)).size).toBe(late.events.length);
  });

  it('a silent device alerts (no reading for `after`), from the clock alone', async () => {
    await waitFor(async () => (await history('device=dev-2&rule=quiet')).length >= 1, 'dev-2 silent', 10_000);
    const [event] = await history('device=dev-2&rule=quiet');
    expect(event).toMatchObject({ kind: 'silent', state: 'firing', threshold: 1 });
    expect(event!.value).toBeGreaterThan(1);
    // Not for the devices that talk.
    expect(await history('device=dev-0&rule=quiet')).toEqual([]);
  });

  it('rules are reloaded without a restart; an invalid file keeps the rules in force', async () => {
    await writeFile(rulesPath, rules('  - { id: cold, kind: below, metric: temperature, threshold: 10, selector: { device: dev-1 } }'));
    await waitFor(() => watcher.latest.get('dev-1')?.rules.some((r) => r.rule === 'cold') === true, 'the new rule in force', 15_000);
    await device(1).send({ temperature: 5 });
    await waitFor(async () => (await history('device=dev-1&rule=cold')).length === 1, 'cold fires', 10_000);

    const errorsBefore = await metric('sensorpipe_alerts_rule_errors_total{code="ALERT_RULES_INVALID"}');
    await writeFile(rulesPath, 'rules:\n  - { id: cold, kind: below, metric: temperature, threshold: "ten" }\n');
    await waitFor(async () => (await metric('sensorpipe_alerts_rule_errors_total{code="ALERT_RULES_INVALID"}')) > errorsBefore, 'the refusal counted', 15_000);
    // The old rules are still in force: cold resolves and fires again, hot still fires.
    await device(1).send({ temperature: 15 });
    await device(1).send({ temperature: 4 });
    await device(0).send({ temperature: 40 });
    await waitFor(async () => (await history('device=dev-1&rule=cold')).length === 3, 'cold resolved and fired again', 10_000);
    await waitFor(async () => (await history('device=dev-0&rule=hot&limit=1'))[0]?.state === 'firing', 'hot fires again', 10_000);
    await writeFile(rulesPath, rules('  - { id: cold, kind: below, metric: temperature, threshold: 10, selector: { device: dev-1 } }'));
  });

  it('a device added to the registry gets the rules of its metadata; a bad clause is counted, never a crash', async () => {
    const before = await metric('sensorpipe_alerts_rule_errors_total{code="ALERT_META_INVALID"}');
    await updateRegistry(pipeline.registryPath, (registry) => registry.add('dev-meta', { meta: { alerts: 'silent 1s; temperature >> 3' } }));
    await waitFor(async () => (await history('device=dev-meta&rule=meta-silent')).length >= 1, 'the metadata rule fires', 15_000);
    expect(await metric('sensorpipe_alerts_rule_errors_total{code="ALERT_META_INVALID"}')).toBeGreaterThan(before);
  });

  it('hostile MQTT input is counted and dropped; svc:alerts publishes only under alerts/', async () => {
    const admin = await mqtt.connectAsync(pipeline.broker.url, { username: pipeline.broker.services.admin.username, password: pipeline.broker.services.admin.password, reconnectPeriod: 0 });
    const before = await metric('sensorpipe_alerts_feed_invalid_total');
    await admin.publishAsync(topics.verified('dev-0'), '{"v":1,"device":"dev-0","readings":[{"seq":1,"ts":1,"values":{"temperature":1e400}}]', { qos: 1 });
    await admin.publishAsync(topics.verified('dev-0'), JSON.stringify({ v: 1, device: 'dev-1', readings: [{ seq: 1, ts: Date.now(), values: { temperature: 99 } }], meta: {}, verifiedAt: Date.now() }), { qos: 1 });
    await admin.publishAsync(topics.counts('dev-0'), '\u0000\u00ff', { qos: 1 });
    await waitFor(async () => (await metric('sensorpipe_alerts_feed_invalid_total')) >= before + 3, 'the bad messages counted', 10_000);
    await admin.endAsync();

    // The component's own account: may publish its state, nothing of the pipeline's.
    const verifiedWatch = await mqtt.connectAsync(pipeline.broker.url, { username: pipeline.broker.services.admin.username, password: pipeline.broker.services.admin.password, reconnectPeriod: 0 });
    const seen: string[] = [];
    verifiedWatch.on('message', (topic) => seen.push(topic));
    await verifiedWatch.subscribeAsync([topics.verified('dev-9'), topics.alerts('dev-9')], { qos: 1 });
    const svc = await mqtt.connectAsync(pipeline.broker.url, { username: 'svc:alerts', password: ALERTS_PASSWORD, reconnectPeriod: 0, clientId: 'alerts-acl-probe' });
    await svc.publishAsync(topics.alerts('dev-9'), '{}', { qos: 1 });
    await waitFor(() => seen.includes(topics.alerts('dev-9')), 'the allowed publish', 5_000);
    svc.publish(topics.verified('dev-9'), '{}', { qos: 0 });
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(seen).toEqual([topics.alerts('dev-9')]);
    svc.end(true);
    await verifiedWatch.endAsync();

    // The display's account may read the alert states (the dashboard does).
    const display = await mqtt.connectAsync(pipeline.broker.url, { username: pipeline.broker.services.display.username, password: pipeline.broker.services.display.password, reconnectPeriod: 0 });
    const granted = await display.subscribeAsync(topics.allAlerts, { qos: 1 });
    expect(granted.map((g) => g.qos)).toEqual([1]);
    await display.endAsync();
  });

  it('an invalid rules file at start is refused at once (ALERT_RULES_INVALID), naming the problem', async () => {
    const bad = join(pipeline.dir.path, 'bad-rules.yaml');
    await writeFile(bad, 'rules: [{ id: x, kind: silent }]');
    await expect(startTestAlerts({ broker: pipeline.broker, dataDir: join(pipeline.dir.path, 'other'), registryPath: pipeline.registryPath, rulesPath: bad })).rejects.toMatchObject({ code: 'ALERT_RULES_INVALID', message: expect.stringContaining('rules.0.after') });
  });

  it('closes promptly while the broker is unreachable, with state publishes still queued', async () => {
    const { config } = parseConfig(configSpecs.alerts, {
      env: { SENSORPIPE_DATA_DIR: join(pipeline.dir.path, 'unreachable'), SENSORPIPE_MQTT_URL: `mqtt://127.0.0.1:${await freePort()}`, SENSORPIPE_ALERTS_PASSWORD: 'x', SENSORPIPE_ALERTS_PORT: '0', SENSORPIPE_ALERT_RULES: rulesPath },
    });
    const lonely = await startAlerts({ config, registryPath: pipeline.registryPath, logger: createLogger({ level: 'silent' }) });
    await new Promise((resolve) => setTimeout(resolve, 1500)); // dev-2 goes silent: an event logged, its state queued
    expect((await lonely.log.query({ device: 'dev-2', limit: 10 })).length).toBeGreaterThan(0);
    const closed = await Promise.race([lonely.close().then(() => 'closed'), new Promise((resolve) => setTimeout(() => resolve('stuck'), 5_000))]);
    expect(closed).toBe('closed');
  });

  it('the history API validates its query', async () => {
    const cases: [string, number, string][] = [
      ['limit=0', 400, 'QUERY_INVALID'],
      ['limit=abc', 400, 'QUERY_INVALID'],
      ['device=NOT_A_DEVICE', 400, 'QUERY_INVALID'],
      ['colour=red', 400, 'QUERY_INVALID'],
      ['rule=a&rule=b', 400, 'QUERY_INVALID'],
      ['from=yesterday', 400, 'QUERY_RANGE_INVALID'],
      ['from=-1h&to=-2h', 400, 'QUERY_RANGE_INVALID'],
    ];
    for (const [query, status, code] of cases) {
      const response = await fetch(`${alerts.url}/api/alerts/history?${query}`);
      expect([query, response.status, ((await response.json()) as { code: string }).code]).toEqual([query, status, code]);
    }
    const post = await fetch(`${alerts.url}/api/alerts`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
    expect(((await post.json()) as { code: string }).code).toBe('METHOD_NOT_ALLOWED');
    expect((await fetch(`${alerts.url}/nowhere`)).status).toBe(404);
    const limited = await history('rule=hot&limit=1&from=-1h');
    expect(limited).toHaveLength(1);
  });

  it('a restart keeps firing alerts firing (no second event) and delivers what was left undelivered', async () => {
    // hot is firing (40, above); a receiver that is down now will have to get the next event after the restart.
    await late.stop();
    late.events.length = 0;
    const firingBefore = (await history('device=dev-0&rule=hot')).filter((e) => e.state === 'firing').length;
    await device(0).send({ temperature: 20 }); // resolves
    await waitFor(async () => (await history('device=dev-0&rule=hot&limit=1'))[0]?.state === 'resolved', 'resolved', 10_000);
    await device(0).send({ temperature: 41 }); // fires again
    await waitFor(async () => (await history('device=dev-0&rule=hot&limit=1'))[0]?.state === 'firing', 'fired again', 10_000);
    const lastFiring = (await history('device=dev-0&rule=hot&limit=1'))[0]!;
    await alerts.settled();
    await alerts.close();

    alerts = await startTestAlerts({ broker: pipeline.broker, dataDir: alertsData, registryPath: pipeline.registryPath, rulesPath });
    const firing = ((await (await fetch(`${alerts.url}/api/alerts`)).json()) as { firing: { device: string; rule: string; since: number }[] }).firing;
    expect(firing).toContainEqual(expect.objectContaining({ device: 'dev-0', rule: 'hot', since: lastFiring.at }));
    await device(0).send({ temperature: 42 }); // still above: no second firing event
    await waitFor(() => watcher.latest.get('dev-0')?.rules.find((r) => r.rule === 'hot')?.value === 42, 'the reading evaluated', 10_000);
    expect((await history('device=dev-0&rule=hot')).filter((e) => e.state === 'firing')).toHaveLength(firingBefore + 1);

    await late.start();
    await waitFor(() => late.events.some((e) => e.id === lastFiring.id), 'the undelivered events after the restart', 10_000);
    const resolvedAndFired = late.events.map((e) => e.state);
    expect(resolvedAndFired).toEqual(['resolved', 'firing']);
  });
});
