/**
 * A real Prometheus (Debian's `prometheus`, on a free port) scrapes a real pipeline — our broker, ingest
 * writing to a real influxd, the display, the alerts component (a rule firing, one webhook receiver up and
 * one down, each its own series, without the secrets of their URLs) — while signed devices publish, a message is rejected, a login is refused and the store goes
 * away for a moment. Then every PromQL expression of the provisioned
 * Grafana dashboards (ops/grafana/dashboards) and of the alert rules (ops/prometheus/alerts.yml) is asked
 * of Prometheus' HTTP API and must return data, and every metric name they use must exist; the alert
 * rules must evaluate without error. The fleet dashboard's InfluxQL queries and variables run against
 * the influxd and must return data too. A dashboard that names a metric nobody serves fails here.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { influxQuery, startInfluxd, type InfluxServer } from '../../harness/influxd.ts';
import { startTestPipeline, type TestPipeline } from '../../harness/pipeline.ts';
import { DevicePublisher, waitFor, type TestDevice } from '../../harness/publisher.ts';
import type { RunningAlerts } from '../../alerts/index.ts';
import { webhookLabel } from '../../alerts/webhook-label.ts';
import { freePort } from '../../harness/ports.ts';
import { ALERTS_PASSWORD, startTestAlerts, WebhookReceiver } from '../alerts/helpers.ts';
import { dashboardQueries, metricNames, promQlAsGrafanaSends, readAlertRules, readDashboards, startPrometheus, type PrometheusServer } from './ops-files.ts';

const DATABASE = 'sensorpipe';
let influx: InfluxServer;
let pipeline: TestPipeline;
let devices: TestDevice[];
let publishers: DevicePublisher[] = [];
let prometheus: PrometheusServer;
let known: Set<string>;
let alerts: RunningAlerts;
const receiver = new WebhookReceiver();
let downPort: number;
const URL_SECRET = 'webhook-url-secret-4711';

const alertsMetric = async (name: string): Promise<number> => (await alerts.metrics.registry.getSingleMetric(name)!.get()).values.reduce((sum, v) => sum + v.value, 0);
const ingestMetric = async (name: string): Promise<number> => (await pipeline.ingest.metrics.registry.getSingleMetric(name)!.get()).values[0]?.value ?? 0;

beforeAll(async () => {
  influx = await startInfluxd();
  pipeline = await startTestPipeline({
    devices: 3,
    ingestEnv: {
      SENSORPIPE_INFLUX_URL: influx.url,
      SENSORPIPE_INFLUX_DATABASE: DATABASE,
      SENSORPIPE_COMPLETENESS_INTERVAL: '200ms',
      SENSORPIPE_BATCH_MAX_DELAY: '10ms',
      SENSORPIPE_RETRY_MIN: '50ms',
      SENSORPIPE_RETRY_MAX: '200ms',
    },
    broker: { alertsPassword: ALERTS_PASSWORD },
  });
  const { broker, ingest, display } = pipeline;
  devices = pipeline.devices;

  // The alerts component, with a rule the readings below cross, a receiver that takes the events and one
  // that is down (its deliveries fail and wait: the webhook panels and alerts have data). Their URLs carry
  // a secret (a query token, a password) that must not reach Prometheus.
  await receiver.start();
  downPort = await freePort();
  const rulesPath = join(pipeline.dir.path, 'alert-rules.yaml');
  await writeFile(rulesPath, `rules:\n  - { id: warm, kind: above, metric: temperature, threshold: 21 }\nwebhooks:\n  - { url: "${receiver.url}?token=${URL_SECRET}" }\n  - { url: "http://hooks:${URL_SECRET}@127.0.0.1:${downPort}/down" }\n`);
  alerts = await startTestAlerts({ broker, dataDir: join(pipeline.dir.path, 'alerts-data'), registryPath: pipeline.registryPath, rulesPath });

  prometheus = await startPrometheus({
    'sensorpipe-broker': new URL(broker.metricsUrl).host,
    'sensorpipe-ingest': `127.0.0.1:${ingest.metricsPort}`,
    'sensorpipe-display': new URL(display.url).host,
    'sensorpipe-alerts': `127.0.0.1:${alerts.port}`,
  });

  // Devices publish.
  publishers = await Promise.all(devices.map((device) => DevicePublisher.connect(broker.url, device)));
  for (let round = 0; round < 3; round++) {
    for (const [i, publisher] of publishers.entries()) await publisher.send({ temperature: 20 + i + round, humidity: 40 + round });
  }
  // A message that is not JSON (rejected, counted by reason) and a login with a wrong password (refused).
  await publishers[0]!.sendRaw('not json');
  await expect(mqtt.connectAsync(broker.url, { clientId: devices[1]!.id, username: devices[1]!.id, password: 'wrong', reconnectPeriod: 0 })).rejects.toThrow();
  await waitFor(async () => (await ingestMetric('sensorpipe_ingest_accepted_readings_total')) >= 9, 'nine readings accepted', 20_000);
  await waitFor(async () => (await alertsMetric('sensorpipe_alerts_firing')) > 0 && receiver.events.length > 0 && (await alertsMetric('sensorpipe_alerts_webhook_failures_total')) > 0, 'an alert firing, delivered to one webhook, failing for the other', 20_000);

  // The store goes away: a batch is spooled and the failed write counted; then it comes back and drains.
  await influx.stop();
  await publishers[2]!.send({ temperature: 30, humidity: 50 });
  await waitFor(async () => (await ingestMetric('sensorpipe_ingest_spool_bytes')) > 0, 'a batch spooled', 20_000);
  await influx.start();
  await waitFor(async () => (await ingestMetric('sensorpipe_ingest_spool_bytes')) === 0, 'the spool drained', 30_000);

  await fetch(`${display.url}/api/devices`);
  // Enough scrapes after all that for 15 s rate windows, and rule evaluations.
  await waitFor(async () => Number((await prometheus.query('count_over_time(sensorpipe_ingest_store_up[1m])'))[0]?.value[1] ?? 0) >= 6, 'six scrapes of ingest', 30_000, 250);
  known = await prometheus.metricNamesKnown();
}, 180_000);

afterAll(async () => {
  await prometheus?.close();
  for (const publisher of publishers) await publisher.close();
  await alerts?.close();
  await receiver.stop();
  await pipeline?.close();
  await influx?.close();
}, 60_000);

describe('Prometheus scraping a running pipeline', () => {
  it('scrapes broker, ingest, display and alerts', async () => {
    const up = await prometheus.query('up');
    expect(Object.fromEntries(up.map((s) => [s.metric.job, s.value[1]]))).toEqual({ 'sensorpipe-broker': '1', 'sensorpipe-ingest': '1', 'sensorpipe-display': '1', 'sensorpipe-alerts': '1' });
  });

  const promQueries = dashboardQueries().filter((q) => q.type === 'prometheus');
  it('the dashboards have PromQL queries to check', () => {
    expect(promQueries.length).toBeGreaterThan(20);
  });

  it.each(promQueries)('dashboard $where: every metric it names exists and the query returns data', async ({ query }) => {
    const missing = metricNames(query).filter((name) => !known.has(name));
    expect(missing, `metrics no process serves, in: ${query}`).toEqual([]);
    const result = await prometheus.query(promQlAsGrafanaSends(query));
    expect(result.length, `no data for: ${query}`).toBeGreaterThan(0);
  });

  it.each(readAlertRules().map((rule) => ({ name: rule.alert, rule })))('alert $name: its series exist, its condition evaluates, and each operand returns data', async ({ rule }) => {
    const missing = metricNames(rule.expr).filter((name) => !known.has(name));
    expect(missing, `metrics no process serves, in: ${rule.expr}`).toEqual([]);
    await prometheus.query(rule.expr); // the full condition: no error (it is not firing, so no data)
    // Each side of `and`/`or`/`unless`, without its threshold, must have data: the alert watches real series.
    for (const operand of rule.expr.split(/\s+(?:and|or|unless)\s+/)) {
      const withoutThreshold = operand.replace(/\s*(?:==|!=|>=|<=|>|<)\s*-?[\d.]+\s*$/, '');
      expect((await prometheus.query(withoutThreshold)).length, `no data for: ${withoutThreshold}`).toBeGreaterThan(0);
    }
  });

  it('sees each webhook as its own series, labelled scheme://host:port/…#digest, and no secret of their URLs', async () => {
    const webhooks = (expr: string) => prometheus.query(expr).then((series) => series.map((s) => s.metric.webhook).sort());
    const up = webhookLabel(`${receiver.url}?token=${URL_SECRET}`);
    const down = webhookLabel(`http://hooks:${URL_SECRET}@127.0.0.1:${downPort}/down`);
    expect(up).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:${receiver.port}/…#[0-9a-f]{8}$`));
    const both = [up, down].sort();
    expect(await webhooks('sensorpipe_alerts_webhook_queue_depth')).toEqual(both);
    expect(await webhooks('sensorpipe_alerts_webhook_deliveries_total')).toEqual(both);
    expect(await webhooks('sensorpipe_alerts_webhook_failures_total > 0')).toEqual([down]);
    const everything = await prometheus.query('{job="sensorpipe-alerts"}');
    expect(everything.length).toBeGreaterThan(20);
    expect(JSON.stringify(everything)).not.toContain(URL_SECRET);
  });

  it('loads every alert rule and evaluates it without error', async () => {
    const response = (await (await fetch(`${prometheus.url}/api/v1/rules?type=alert`)).json()) as {
      data: { groups: { rules: { name: string; health: string; lastError?: string; lastEvaluation: string }[] }[] };
    };
    const rules = response.data.groups.flatMap((group) => group.rules);
    expect(rules.map((rule) => rule.name).sort()).toEqual(readAlertRules().map((rule) => rule.alert).sort());
    for (const rule of rules) expect({ name: rule.name, health: rule.health, lastError: rule.lastError ?? '' }).toEqual({ name: rule.name, health: 'ok', lastError: '' });
  });

  it('fires nothing on a healthy pipeline', async () => {
    expect(await prometheus.query('ALERTS{alertstate="firing"}')).toEqual([]);
  });
});

describe('the fleet dashboard against InfluxDB', () => {
  const timeFilter = `time >= ${Date.now() - 3_600_000}ms AND time <= ${Date.now() + 600_000}ms`;
  /** Grafana's InfluxQL variables as Grafana fills them for all three devices and the metric temperature. */
  const asGrafanaSends = (query: string) =>
    query
      .replaceAll('$timeFilter', timeFilter)
      .replaceAll('$__interval', '10s')
      .replaceAll('$device', `(${devices.map((d) => d.id).join('|')})`)
      .replaceAll('$metric', 'temperature');
  type InfluxAnswer = { results: { series?: { tags?: Record<string, string>; values: unknown[][] }[]; error?: string }[] };

  it.each(dashboardQueries().filter((q) => q.type === 'influxdb'))('$where returns data for every device', async ({ query }) => {
    const answer = (await influxQuery(influx.url, asGrafanaSends(query), DATABASE)) as InfluxAnswer;
    expect(answer.results[0]?.error).toBeUndefined();
    const series = answer.results[0]?.series ?? [];
    expect(series.map((s) => s.tags?.device).sort()).toEqual(devices.map((d) => d.id).sort());
    for (const s of series) expect(s.values.length).toBeGreaterThan(0);
  });

  it('its variables list the devices and the metrics (without reading-seq)', async () => {
    const variables = readDashboards().flatMap(({ dashboard }) => dashboard.templating?.list ?? []).filter((v) => v.datasource?.type === 'influxdb');
    const values = async (name: string) => {
      const variable = variables.find((v) => v.name === name)!;
      const query = typeof variable.query === 'string' ? variable.query : variable.query!.query!;
      const answer = (await influxQuery(influx.url, query, DATABASE)) as InfluxAnswer;
      const all = (answer.results[0]?.series ?? []).flatMap((s) => s.values.map((row) => String(row[name === 'device' ? 1 : 0])));
      const regex = variable.regex ? new RegExp(variable.regex.replace(/^\/(.*)\/$/, '$1')) : undefined;
      return all.filter((value) => regex === undefined || regex.test(value)).sort();
    };
    expect(await values('device')).toEqual(devices.map((d) => d.id).sort());
    expect(await values('metric')).toEqual(['humidity', 'temperature']);
  });
});
