/**
 * docker-compose.yml cannot be run here (no Docker engine on this machine), so this checks what can be
 * checked without one: the file parses, every service runs a sensorpipe command we have, and every
 * SENSORPIPE_* variable it sets is an option of that command's config schema, with a valid value; the
 * alerts service is wired as the broker, Prometheus and its rules file expect.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { parseRulesText } from '../alerts/rules-file.ts';
import { configSpecs, parseConfig, type ProcessKind } from '../core/config.ts';

interface Service {
  image?: string;
  build?: string;
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  volumes?: string[];
  depends_on?: Record<string, { condition: string }>;
}

const ROOT = fileURLToPath(new URL('..', import.meta.url));

const compose = parse(readFileSync(new URL('../docker-compose.yml', import.meta.url), 'utf8'), { merge: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };

describe('docker-compose.yml', () => {
  it('runs InfluxDB 2.x and every sensorpipe component, each with a health check', () => {
    expect(compose.services.influxdb?.image).toMatch(/^influxdb:2/);
    const commands = Object.values(compose.services).flatMap((s) => s.command ?? []);
    expect(commands.sort()).toEqual(['alerts', 'broker', 'display', 'ingest', 'sim']);
    for (const [name, service] of Object.entries(compose.services)) {
      if (name !== 'sim') expect(service.healthcheck?.test.length, name).toBeGreaterThan(0);
    }
  });

  it.each(Object.entries(compose.services).filter(([, s]) => s.command !== undefined))('%s sets only variables its config knows, with valid values', (_name, service) => {
    const kind = service.command![0] as ProcessKind;
    const specs = configSpecs[kind];
    expect(specs, `no config schema for ${kind}`).toBeDefined();
    const known = new Set(Object.values(specs).map((spec) => spec.env));
    const env = Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, String(v)]));
    for (const variable of Object.keys(env)) expect(known, `${kind}: ${variable}`).toContain(variable);
    expect(() => parseConfig(specs, { env, argv: [] })).not.toThrow();
  });

  it('keeps data in named volumes (files of ops/ only are mounted from the repository, read-only)', () => {
    for (const service of Object.values(compose.services)) {
      for (const volume of service.volumes ?? []) {
        if (volume.startsWith('./')) expect(volume, 'a bind mount').toMatch(/^\.\/ops\/[^:]+:[^:]+:ro$/);
        else expect(Object.keys(compose.volumes)).toContain(volume.split(':')[0]);
      }
    }
  });

  describe('the alerts service', () => {
    const alerts = compose.services.alerts!;
    const env = alerts.environment ?? {};
    const { config } = parseConfig(configSpecs.alerts, { env: Object.fromEntries(Object.entries(env).map(([k, v]) => [k, String(v)])), argv: [] });

    it('logs in to the broker as svc:alerts with the password the broker has for it, once the broker is healthy', () => {
      expect(config.alertsPassword).toBeTruthy();
      expect(compose.services.broker?.environment?.SENSORPIPE_ALERTS_PASSWORD).toBe(config.alertsPassword);
      expect(config.mqttUrl).toBe('mqtt://broker:1883');
      expect(alerts.depends_on?.broker?.condition).toBe('service_healthy');
    });

    it('reads a rules file mounted from ops/ that is valid', () => {
      const mount = (alerts.volumes ?? []).map((v) => v.split(':')).find(([, target]) => config.alertRules!.startsWith(`${target}/`));
      expect(mount, `no mount holds ${config.alertRules}`).toBeDefined();
      const [source, target, mode] = mount!;
      expect(mode).toBe('ro');
      const file = join(ROOT, source!, config.alertRules!.slice(target!.length + 1));
      const rules = parseRulesText(readFileSync(file, 'utf8'), file);
      expect(rules.rules.length).toBeGreaterThan(0);
    });

    it('keeps its data folder (alert log, webhook outboxes) in a volume of its own', () => {
      const data = (alerts.volumes ?? []).map((v) => v.split(':')).find(([, target]) => target === config.dataDir);
      expect(data?.[0]).toBe('alerts-data');
      expect(Object.keys(compose.volumes)).toContain('alerts-data');
      for (const [name, service] of Object.entries(compose.services)) {
        if (name !== 'alerts') expect(service.volumes ?? [], name).not.toContainEqual(expect.stringMatching(/^alerts-data:/));
      }
    });

    it('is health-checked on /livez of its port, and listens where Prometheus can scrape it', () => {
      expect(alerts.healthcheck?.test.join(' ')).toContain(`http://127.0.0.1:${config.alertsPort}/livez`);
      expect(config.alertsHost).toBe('0.0.0.0');
      const prometheus = parse(readFileSync(join(ROOT, 'ops/prometheus/prometheus.yml'), 'utf8')) as { scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[] };
      const job = prometheus.scrape_configs.find((c) => c.job_name === 'sensorpipe-alerts');
      expect(job?.static_configs.flatMap((c) => c.targets)).toEqual([`alerts:${config.alertsPort}`]);
    });
  });
});
