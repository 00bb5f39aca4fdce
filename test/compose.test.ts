/**
 * docker-compose.yml cannot be run here (no Docker engine on this machine), so this checks what can be
 * checked without one: the file parses, every service runs a sensorpipe command we have, and every
 * SENSORPIPE_* variable it sets is an option of that command's config schema, with a valid value.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { configSpecs, parseConfig, type ProcessKind } from '../core/config.ts';

interface Service {
  image?: string;
  build?: string;
  command?: string[];
  environment?: Record<string, string>;
  healthcheck?: { test: string[] };
  volumes?: string[];
}

const compose = parse(readFileSync(new URL('../docker-compose.yml', import.meta.url), 'utf8'), { merge: true }) as { services: Record<string, Service>; volumes: Record<string, unknown> };

describe('docker-compose.yml', () => {
  it('runs InfluxDB 2.x and every sensorpipe component, each with a health check', () => {
    expect(compose.services.influxdb?.image).toMatch(/^influxdb:2/);
    const commands = Object.values(compose.services).flatMap((s) => s.command ?? []);
    expect(commands.sort()).toEqual(['broker', 'display', 'ingest', 'sim']);
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

  it('keeps data in named volumes', () => {
    for (const service of Object.values(compose.services)) {
      for (const volume of service.volumes ?? []) expect(Object.keys(compose.volumes)).toContain(volume.split(':')[0]);
    }
  });
});
