/**
 * What the ops tests share: the provisioned files of ops/ read and parsed once, the expressions they
 * use, and a real Prometheus (Debian's `prometheus`) on a free loopback port with a generated config.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { freePort } from '../../harness/ports.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const OPS = join(ROOT, 'ops');
export const PROMETHEUS_CONFIG = join(OPS, 'prometheus/prometheus.yml');
export const ALERT_RULES = join(OPS, 'prometheus/alerts.yml');
export const DASHBOARDS_DIR = join(OPS, 'grafana/dashboards');
export const DATASOURCES = join(OPS, 'grafana/provisioning/datasources/sensorpipe.yml');
export const DASHBOARD_PROVIDER = join(OPS, 'grafana/provisioning/dashboards/sensorpipe.yml');

const PROMETHEUS = process.env.PROMETHEUS_BIN ?? 'prometheus';
export const PROMTOOL = process.env.PROMTOOL_BIN ?? 'promtool';

export interface Target {
  refId?: string;
  datasource?: { type?: string; uid?: string };
  expr?: string;
  query?: string;
}
export interface Panel {
  id?: number;
  type?: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  gridPos?: { h?: number; w?: number; x?: number; y?: number };
  targets?: Target[];
  panels?: Panel[];
}
export interface Dashboard {
  uid?: string;
  title?: string;
  schemaVersion?: number;
  panels?: Panel[];
  templating?: { list?: { name: string; type: string; datasource?: { type?: string; uid?: string }; query?: string | { query?: string }; regex?: string }[] };
}
export interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
export interface Datasource {
  name: string;
  uid: string;
  type: string;
}

export function readDashboards(): { file: string; dashboard: Dashboard }[] {
  return readdirSync(DASHBOARDS_DIR)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => ({ file, dashboard: JSON.parse(readFileSync(join(DASHBOARDS_DIR, file), 'utf8')) as Dashboard }));
}

export function readAlertRules(): AlertRule[] {
  const file = parse(readFileSync(ALERT_RULES, 'utf8')) as { groups: { rules: AlertRule[] }[] };
  return file.groups.flatMap((group) => group.rules);
}

export function readDatasources(): Datasource[] {
  return (parse(readFileSync(DATASOURCES, 'utf8')) as { datasources: Datasource[] }).datasources;
}

/** Every panel, rows' panels included. */
export function allPanels(dashboard: Dashboard): Panel[] {
  return (dashboard.panels ?? []).flatMap((panel) => [panel, ...(panel.panels ?? [])]);
}

/** The PromQL and InfluxQL queries of every dashboard, by the data source type of each target. */
export function dashboardQueries(): { where: string; type: string; query: string }[] {
  return readDashboards().flatMap(({ file, dashboard }) =>
    allPanels(dashboard).flatMap((panel) =>
      (panel.targets ?? []).map((target) => {
        const type = target.datasource?.type ?? panel.datasource?.type ?? '';
        return { where: `${file}: "${panel.title}" ${target.refId}`, type, query: type === 'prometheus' ? (target.expr ?? '') : (target.query ?? '') };
      }),
    ),
  );
}

/**
 * Grafana's variables in a PromQL query, replaced the way Grafana would for a dashboard showing every
 * device over a short range (scrapes here are 1 s apart, so 15 s windows hold many samples).
 */
export function promQlAsGrafanaSends(expr: string): string {
  return expr.replaceAll('$__rate_interval', '15s').replaceAll('$__interval', '5s').replaceAll('$__range', '5m').replaceAll('$device', '.*');
}

/** Metric names in a PromQL expression: identifiers outside label matchers and strings, minus PromQL words. */
const PROMQL_WORDS = new Set(['sum', 'min', 'max', 'avg', 'count', 'rate', 'irate', 'increase', 'deriv', 'delta', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'and', 'or', 'unless', 'histogram_quantile', 'avg_over_time', 'max_over_time', 'min_over_time', 'count_over_time', 'vector', 'offset', 'bool', 'topk', 'bottomk', 'abs', 'clamp_min', 'clamp_max']);
export function metricNames(expr: string): string[] {
  const outside = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '{}')
    .replace(/\[[^\]]*\]/g, '[]')
    .replace(/\b(by|without|on|ignoring)\s*\([^)]*\)/g, '');
  const names = [...outside.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)].map((m) => m[0]).filter((word) => !PROMQL_WORDS.has(word));
  return [...new Set(names)];
}

export interface PrometheusServer {
  url: string;
  /** Instant query; throws on an error answer. */
  query(expr: string): Promise<{ metric: Record<string, string>; value: [number, string] }[]>;
  metricNamesKnown(): Promise<Set<string>>;
  close(): Promise<void>;
}

/**
 * Starts Prometheus (niced: it is a background helper here) with ops/prometheus/prometheus.yml's jobs
 * pointed at `targets` (job name → host:port), scraping and evaluating every second, with the shipped
 * alert rules. Fails if the shipped config has a job `targets` does not name, or the other way round.
 */
export async function startPrometheus(targets: Record<string, string>): Promise<PrometheusServer> {
  const shipped = parse(readFileSync(PROMETHEUS_CONFIG, 'utf8')) as { scrape_configs: { job_name: string }[] };
  const jobs = shipped.scrape_configs.map((config) => config.job_name).sort();
  if (JSON.stringify(jobs) !== JSON.stringify(Object.keys(targets).sort())) throw new Error(`ops/prometheus/prometheus.yml scrapes ${jobs.join(', ')}; the test has ${Object.keys(targets).join(', ')}`);
  const dir: TempDir = await tempDir('sensorpipe-prometheus-');
  const port = await freePort();
  const config = {
    global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
    rule_files: [ALERT_RULES],
    scrape_configs: Object.entries(targets).map(([job, target]) => ({ job_name: job, static_configs: [{ targets: [target] }] })),
  };
  const configPath = join(dir.path, 'prometheus.yml');
  await writeFile(configPath, JSON.stringify(config)); // JSON is YAML
  const url = `http://127.0.0.1:${port}`;
  let output = '';
  const child: ChildProcess = spawn('nice', ['-n', '19', PROMETHEUS, `--config.file=${configPath}`, `--storage.tsdb.path=${join(dir.path, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
  child.stderr?.on('data', (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const close = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await dir.remove();
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) {
      await close();
      throw new Error(`prometheus exited with code ${child.exitCode}:\n${output}`);
    }
    const ready = await fetch(`${url}/-/ready`).then((r) => r.ok, () => false);
    if (ready) break;
    if (Date.now() > deadline) {
      await close();
      throw new Error(`prometheus was not ready within 30 s:\n${output}`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const api = async <T>(path: string, params: Record<string, string>): Promise<T> => {
    const response = await fetch(`${url}${path}?${new URLSearchParams(params)}`);
    const body = (await response.json()) as { status: string; data: T; error?: string };
    if (body.status !== 'success') throw new Error(`prometheus ${path} ${JSON.stringify(params)}: ${body.error ?? response.status}`);
    return body.data;
  };
  return {
    url,
    query: async (expr) => (await api<{ result: { metric: Record<string, string>; value: [number, string] }[] }>('/api/v1/query', { query: expr })).result,
    metricNamesKnown: async () => new Set(await api<string[]>('/api/v1/label/__name__/values', {})),
    close,
  };
}
