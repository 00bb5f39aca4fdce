/**
 * The files of ops/ as Prometheus and Grafana will read them.
 *
 * Prometheus: Debian's `promtool check config` and `check rules` on the shipped files, and every alert
 * has a `for:`, a severity and a runbook link to a section of docs/OPERATIONS.md that exists.
 *
 * Grafana is NOT run here: it is not packaged in Debian's repositories and this machine reaches no other
 * download source (docs: /work/shared/ENVIRONMENT.md), and docker-compose.yml cannot be started (no Docker
 * engine). So the dashboards' JSON is checked against what Grafana 11 expects of a provisioned dashboard:
 * a schema version it knows (39 = Grafana 11.0, up to 41 = 11.6), a uid, panels with unique ids, a grid
 * position inside the 24-column grid and not overlapping, a known panel type, targets, and every data
 * source (panel, target, variable) one of the provisioned ones by uid and type. Whether the queries
 * return data is test/ops/prometheus.test.ts's job.
 */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { tempDir } from '../../harness/tmp.ts';
import { ALERT_RULES, allPanels, DASHBOARD_PROVIDER, PROMETHEUS_CONFIG, PROMTOOL, readAlertRules, readDashboards, readDatasources, ROOT } from './ops-files.ts';

const run = promisify(execFile);

describe('Prometheus files (promtool)', () => {
  it('`promtool check config` accepts ops/prometheus/prometheus.yml (and the rule file it names)', async () => {
    const { stdout } = await run('nice', ['-n', '19', PROMTOOL, 'check', 'config', PROMETHEUS_CONFIG]);
    expect(stdout).toContain('is valid prometheus config file syntax');
    expect(stdout).toContain('SUCCESS: 1 rule files found');
  });

  it('`promtool check rules` accepts ops/prometheus/alerts.yml', async () => {
    const { stdout } = await run('nice', ['-n', '19', PROMTOOL, 'check', 'rules', ALERT_RULES]);
    expect(stdout).toContain(`SUCCESS: ${readAlertRules().length} rules found`);
  });

  it('`promtool check rules` refuses a broken rule (the check can fail)', async () => {
    const broken = readFileSync(ALERT_RULES, 'utf8').replace('expr: sensorpipe_ingest_spool_full == 1', 'expr: sensorpipe_ingest_spool_full ==');
    expect(broken).not.toBe(readFileSync(ALERT_RULES, 'utf8'));
    const dir = await tempDir();
    try {
      await writeFile(join(dir.path, 'alerts.yml'), broken);
      await expect(run(PROMTOOL, ['check', 'rules', join(dir.path, 'alerts.yml')])).rejects.toThrow();
    } finally {
      await dir.remove();
    }
  });

  const operations = readFileSync(join(ROOT, 'docs/OPERATIONS.md'), 'utf8');
  /** GitHub's heading anchors: lowercase, spaces to dashes, punctuation dropped. */
  const anchors = new Set([...operations.matchAll(/^#+\s+(.+)$/gm)].map((m) => m[1]!.trim().toLowerCase().replace(/[^\w\s-]/g, '').replace(/\s/g, '-')));

  it.each(readAlertRules().map((rule) => ({ name: rule.alert, rule })))('alert $name waits (for:), has a severity and a runbook section in docs/OPERATIONS.md', ({ rule }) => {
    expect(rule.for).toMatch(/^\d+[smh]$/);
    expect(['warning', 'critical']).toContain(rule.labels?.severity);
    expect(rule.annotations?.summary).toBeTruthy();
    expect(rule.annotations?.description).toBeTruthy();
    const runbook = rule.annotations?.runbook_url ?? '';
    expect(runbook).toMatch(/^docs\/OPERATIONS\.md#/);
    expect(anchors, `no heading for ${runbook}`).toContain(runbook.split('#')[1]);
  });
});

describe('Grafana provisioning (validated without a Grafana server)', () => {
  const datasources = readDatasources();
  const byUid = new Map(datasources.map((ds) => [ds.uid, ds]));
  const PANEL_TYPES = new Set(['timeseries', 'stat', 'table', 'state-timeline', 'gauge', 'bargauge', 'text', 'row', 'barchart', 'heatmap', 'logs']);

  it('provisions a Prometheus and an InfluxDB data source with fixed, unique uids', () => {
    const file = parse(readFileSync(join(ROOT, 'ops/grafana/provisioning/datasources/sensorpipe.yml'), 'utf8')) as { apiVersion: number };
    expect(file.apiVersion).toBe(1);
    expect(datasources.map((ds) => ds.type).sort()).toEqual(['influxdb', 'prometheus']);
    expect(byUid.size).toBe(datasources.length);
    for (const ds of datasources) expect(ds.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
  });

  it('loads the dashboards from where docker-compose.yml puts them', () => {
    const provider = parse(readFileSync(DASHBOARD_PROVIDER, 'utf8')) as { apiVersion: number; providers: { type: string; options: { path: string } }[] };
    expect(provider.apiVersion).toBe(1);
    const path = provider.providers[0]!.options.path;
    const compose = parse(readFileSync(join(ROOT, 'docker-compose.yml'), 'utf8'), { merge: true }) as {
      services: Record<string, { configs?: { source: string; target: string }[] }>;
      configs: Record<string, { file: string }>;
    };
    const grafana = compose.services.grafana?.configs ?? [];
    const dashboards = readDashboards().map((d) => d.file);
    for (const file of dashboards) {
      const mount = grafana.find((c) => c.target === `${path}/${file}`);
      expect(mount, `${file} is not mounted at ${path}`).toBeDefined();
      expect(compose.configs[mount!.source]?.file).toBe(`./ops/grafana/dashboards/${file}`);
    }
    const prometheus = compose.services.prometheus?.configs ?? [];
    expect(prometheus.map((c) => compose.configs[c.source]?.file).sort()).toEqual(['./ops/prometheus/alerts.yml', './ops/prometheus/prometheus.yml']);
  });

  it('has the two dashboards, with unique uids', () => {
    const dashboards = readDashboards();
    expect(dashboards.map((d) => d.file)).toEqual(['fleet.json', 'pipeline-health.json']);
    const uids = dashboards.map((d) => d.dashboard.uid);
    expect(new Set(uids).size).toBe(uids.length);
  });

  it.each(readDashboards())('$file is a dashboard Grafana 11 loads as we mean it', ({ dashboard }) => {
    expect(dashboard.schemaVersion).toBeGreaterThanOrEqual(39);
    expect(dashboard.schemaVersion).toBeLessThanOrEqual(41);
    expect(dashboard.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
    expect(dashboard.title).toBeTruthy();
    const panels = allPanels(dashboard);
    expect(panels.length).toBeGreaterThan(0);
    const ids = panels.map((p) => p.id);
    expect(ids.every((id) => Number.isInteger(id) && id! > 0)).toBe(true);
    expect(new Set(ids).size).toBe(ids.length);
    const placed: { x: number; y: number; w: number; h: number; title: string }[] = [];
    for (const panel of panels) {
      const where = `panel ${panel.id} "${panel.title}"`;
      expect(PANEL_TYPES, where).toContain(panel.type);
      const { x, y, w, h } = panel.gridPos ?? {};
      for (const n of [x, y, w, h]) expect(Number.isInteger(n), `${where}: gridPos`).toBe(true);
      expect(w! >= 1 && h! >= 1 && x! >= 0 && y! >= 0 && x! + w! <= 24, `${where}: gridPos ${JSON.stringify(panel.gridPos)}`).toBe(true);
      for (const other of placed) {
        const overlaps = x! < other.x + other.w && other.x < x! + w! && y! < other.y + other.h && other.y < y! + h!;
        expect(overlaps, `${where} overlaps "${other.title}"`).toBe(false);
      }
      placed.push({ x: x!, y: y!, w: w!, h: h!, title: panel.title ?? '' });
      if (panel.type === 'row' || panel.type === 'text') continue;
      expect(panel.title, where).toBeTruthy();
      const source = byUid.get(panel.datasource?.uid ?? '');
      expect(source, `${where}: data source ${JSON.stringify(panel.datasource)} is not provisioned`).toBeDefined();
      expect(panel.datasource?.type, where).toBe(source!.type);
      expect(panel.targets?.length, `${where}: no targets`).toBeGreaterThan(0);
      const refIds = panel.targets!.map((t) => t.refId);
      expect(new Set(refIds).size, `${where}: refIds ${refIds.join(',')}`).toBe(refIds.length);
      for (const target of panel.targets!) {
        const ds = byUid.get(target.datasource?.uid ?? panel.datasource?.uid ?? '');
        expect(ds, `${where}: target ${target.refId}: data source not provisioned`).toBeDefined();
        if (ds!.type === 'prometheus') expect(target.expr, `${where} ${target.refId}`).toBeTruthy();
        if (ds!.type === 'influxdb') {
          expect(target.query, `${where} ${target.refId}`).toBeTruthy();
          expect((target as { rawQuery?: boolean }).rawQuery, `${where} ${target.refId}: a raw InfluxQL query`).toBe(true);
        }
      }
    }
    for (const variable of dashboard.templating?.list ?? []) {
      if (variable.type !== 'query') continue;
      const source = byUid.get(variable.datasource?.uid ?? '');
      expect(source, `variable ${variable.name}: data source not provisioned`).toBeDefined();
      expect(variable.datasource?.type).toBe(source!.type);
    }
    // Every $variable a query uses is one of the dashboard's own or one of Grafana's built-ins.
    const own = new Set((dashboard.templating?.list ?? []).map((v) => v.name));
    const builtIn = new Set(['__rate_interval', '__interval', '__range', 'timeFilter', 'tag_device']);
    for (const panel of panels) {
      const text = JSON.stringify([panel.title, panel.targets ?? []]);
      for (const [, name] of text.matchAll(/\$(\w+)/g)) expect(own.has(name!) || builtIn.has(name!), `panel "${panel.title}": $${name}`).toBe(true);
    }
  });
});
