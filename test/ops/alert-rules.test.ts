/**
 * When the shipped alert rules fire, by `promtool test rules` (Debian's Prometheus) on made-up series:
 * each fires once its condition has held for its `for:`, not before, and not on the look-alike that
 * should not page (a spool that is not growing, backpressure that comes and goes, a quiet but working
 * ingest). The running pipeline never fires them (test/ops/prometheus.test.ts), so their logic is tested
 * here. promtool compares annotations word for word; they are prose for people, so the rules are tested
 * from a copy without them (ALERT_RULES itself is checked by `promtool check rules`).
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse, stringify } from 'yaml';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { ALERT_RULES, PROMTOOL, readAlertRules } from './ops-files.ts';

const run = promisify(execFile);
const INGEST = { job: 'sensorpipe-ingest', instance: 'ingest:9101' };
const BROKER = { job: 'sensorpipe-broker', instance: 'broker:9102' };
const ALERTS = { job: 'sensorpipe-alerts', instance: 'alerts:9103' };
const ALERTS_2 = { ...ALERTS, instance: 'alerts-2:9103' };
/** Webhook labels as alerts/webhook-label.ts writes them. */
const DOWN = 'https://hooks.example.com:443/…#5e0c1a2b';
const BUSY = 'http://10.0.0.7:8080/…#9f3d7c44';
const series = (name: string, labels: Record<string, string>) => `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}}`;
/** n samples, one a minute, alternating 0 and 1. */
const flapping = (n: number) => Array.from({ length: n }, (_, i) => i % 2).join(' ');

interface Case {
  name: string;
  /** series → values, one a minute, in promtool's expanding notation. */
  input: Record<string, string>;
  /** alert → [minute, labels of the firing alert (or alerts), or undefined for "not firing"][] */
  expect: Record<string, [number, Record<string, string> | Record<string, string>[] | undefined][]>;
}

const cases: Case[] = [
  {
    name: 'a target that stops answering',
    input: { [series('up', INGEST)]: '1 0x10', [series('up', { job: 'someone-else', instance: 'x:1' })]: '0x10' },
    expect: { SensorpipeTargetDown: [[2, undefined], [4, { ...INGEST, severity: 'critical' }]] },
  },
  {
    name: 'the store down for good, and for a moment',
    input: { [series('sensorpipe_ingest_store_up', INGEST)]: '1 0x10', [series('sensorpipe_ingest_store_up', { ...INGEST, instance: 'ingest-2:9101' })]: '1 0 1x10' },
    expect: { SensorpipeStoreDown: [[2, undefined], [4, { ...INGEST, severity: 'critical' }]] },
  },
  {
    name: 'a spool that grows, and one that holds still',
    input: { [series('sensorpipe_ingest_spool_bytes', INGEST)]: '0+1000x40', [series('sensorpipe_ingest_spool_bytes', { ...INGEST, instance: 'ingest-2:9101' })]: '5000x40' },
    expect: { SensorpipeSpoolGrowing: [[8, undefined], [25, { ...INGEST, severity: 'warning' }]] },
  },
  {
    name: 'a spool whose oldest batch gets old',
    input: { [series('sensorpipe_ingest_spool_oldest_age_seconds', INGEST)]: '0+60x60' },
    expect: { SensorpipeSpoolNotDraining: [[30, undefined], [40, { ...INGEST, severity: 'warning' }]] },
  },
  {
    name: 'a full spool',
    input: { [series('sensorpipe_ingest_spool_full', INGEST)]: '0 0 1x10' },
    expect: { SensorpipeSpoolFull: [[2, undefined], [4, { ...INGEST, severity: 'critical' }]] },
  },
  {
    name: 'an ingest that stops acknowledging, and one that is busy and working',
    input: {
      [series('sensorpipe_ingest_unacknowledged_messages', INGEST)]: '20x30',
      [series('sensorpipe_ingest_acknowledged_messages_total', INGEST)]: '100+50x5 350x25',
      [series('sensorpipe_ingest_unacknowledged_messages', { ...INGEST, instance: 'ingest-2:9101' })]: '20x30',
      [series('sensorpipe_ingest_acknowledged_messages_total', { ...INGEST, instance: 'ingest-2:9101' })]: '0+50x30',
    },
    expect: { SensorpipeIngestNotAcknowledging: [[8, undefined], [20, { ...INGEST, severity: 'critical' }]] },
  },
  {
    name: 'an ingest without its broker',
    input: { [series('sensorpipe_ingest_broker_connected', INGEST)]: '1 0x10' },
    expect: { SensorpipeIngestDisconnected: [[2, undefined], [4, { ...INGEST, severity: 'critical' }]] },
  },
  {
    name: 'backpressure held, and backpressure that comes and goes',
    // Held from minute 11: over 80 % of the 10-minute window from minute 19, firing 5 minutes later.
    input: { [series('sensorpipe_broker_backpressure', BROKER)]: '0x10 1x40', [series('sensorpipe_broker_backpressure', { ...BROKER, instance: 'broker-2:9102' })]: flapping(51) },
    expect: { SensorpipeBrokerBackpressure: [[21, undefined], [30, { ...BROKER, severity: 'warning' }]] },
  },
  {
    name: 'a webhook that takes nothing, beside one whose backlog is being delivered',
    // One alerts process, three webhooks. DOWN: events wait from minute 2 and it never delivered one (its
    // counter stands at 0 from the start: alerts/metrics.ts addWebhook), firing 5 minutes later, for it
    // alone. BUSY has as many waiting but keeps delivering (a burst being worked off); another instance's
    // webhook of the same URL delivered before and then stopped, and fires too, as its own alert.
    input: {
      [series('sensorpipe_alerts_webhook_queue_depth', { ...ALERTS, webhook: DOWN })]: '0 0 3x20',
      [series('sensorpipe_alerts_webhook_deliveries_total', { ...ALERTS, webhook: DOWN })]: '0x22',
      [series('sensorpipe_alerts_webhook_queue_depth', { ...ALERTS, webhook: BUSY })]: '0 0 3x20',
      [series('sensorpipe_alerts_webhook_deliveries_total', { ...ALERTS, webhook: BUSY })]: '10+5x22',
      [series('sensorpipe_alerts_webhook_queue_depth', { ...ALERTS_2, webhook: DOWN })]: '0 0 3x20',
      [series('sensorpipe_alerts_webhook_deliveries_total', { ...ALERTS_2, webhook: DOWN })]: '10x22',
    },
    expect: {
      SensorpipeWebhookDeliveriesFailing: [
        [5, undefined],
        [9, [{ ...ALERTS, webhook: DOWN, severity: 'critical' }, { ...ALERTS_2, webhook: DOWN, severity: 'critical' }]],
      ],
    },
  },
  {
    name: "a webhook's backlog that keeps growing while another's drains (the total stands still), and one that stands still",
    input: {
      [series('sensorpipe_alerts_webhook_queue_depth', { ...ALERTS, webhook: DOWN })]: '0+2x40',
      [series('sensorpipe_alerts_webhook_queue_depth', { ...ALERTS, webhook: BUSY })]: '80-2x40',
      [series('sensorpipe_alerts_webhook_queue_depth', { ...ALERTS_2, webhook: DOWN })]: '40x40',
    },
    expect: { SensorpipeWebhookBacklogGrowing: [[12, undefined], [20, { ...ALERTS, webhook: DOWN, severity: 'warning' }]] },
  },
];

let dir: TempDir;
beforeAll(async () => {
  dir = await tempDir('sensorpipe-promtool-');
  const rules = parse(readFileSync(ALERT_RULES, 'utf8')) as { groups: { rules: Record<string, unknown>[] }[] };
  for (const group of rules.groups) for (const rule of group.rules) delete rule.annotations;
  await writeFile(join(dir.path, 'alerts.yml'), stringify(rules));
});
afterAll(async () => {
  await dir?.remove();
});

describe('alert rules under promtool test rules', () => {
  it('has a case for every alert', () => {
    expect(cases.flatMap((c) => Object.keys(c.expect)).sort()).toEqual(readAlertRules().map((rule) => rule.alert).sort());
  });

  it.each(cases)('$name', async (testCase) => {
    const tests = {
      rule_files: ['alerts.yml'],
      evaluation_interval: '1m',
      tests: [
        {
          interval: '1m',
          input_series: Object.entries(testCase.input).map(([name, values]) => ({ series: name, values })),
          alert_rule_test: Object.entries(testCase.expect).flatMap(([alertname, checks]) =>
            checks.map(([minute, labels]) => ({ eval_time: `${minute}m`, alertname, exp_alerts: (labels === undefined ? [] : [labels].flat()).map((l) => ({ exp_labels: l })) })),
          ),
        },
      ],
    };
    const file = join(dir.path, 'test.yml');
    await writeFile(file, stringify(tests));
    const result = await run('nice', ['-n', '19', PROMTOOL, 'test', 'rules', file]).then(
      ({ stdout }) => ({ ok: true, output: stdout }),
      (err: { stdout?: string; stderr?: string }) => ({ ok: false, output: `${err.stdout ?? ''}${err.stderr ?? ''}` }),
    );
    expect(result.output).toContain('SUCCESS');
    expect(result.ok).toBe(true);
  });
});
