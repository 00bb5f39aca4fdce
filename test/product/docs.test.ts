/**
 * The newcomer's documents stay true to the code: every metric a process serves is named in the README,
 * every SENSORPIPE_* variable the docs (and docker-compose.yml) mention is a real option, and every
 * relative link points at a file that exists.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { createAlertsMetrics } from '../../alerts/metrics.ts';
import { createBrokerMetrics } from '../../broker/metrics.ts';
import { configSpecs } from '../../core/config.ts';
import { createDisplayMetrics } from '../../display/metrics.ts';
import { createIngestMetrics } from '../../ingest/metrics.ts';
import { createStoreMetrics } from '../../store/metrics.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const DOCS = ['README.md', 'docs/BROKER.md', 'docs/SECURITY.md', 'docs/SCALING.md', 'docs/ERRORS.md', 'docs/OPERATIONS.md', 'store/SCHEMA.md'];
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

describe('README and docs', () => {
  it('the README names every metric the broker, ingest and display serve', async () => {
    const storeMetrics = new Registry();
    createStoreMetrics(storeMetrics);
    const registries = [
      createBrokerMetrics({ connections: () => 0, devicesOnline: () => 0, bannedAddresses: () => 0 }).registry,
      createIngestMetrics().registry,
      createDisplayMetrics().registry,
      createAlertsMetrics().registry,
      storeMetrics,
    ];
    const names = (await Promise.all(registries.map((r) => r.getMetricsAsJSON()))).flat().map((m) => m.name);
    expect(names.length).toBeGreaterThan(30);
    const readme = read('README.md');
    // prom-client's process metrics (process_*, nodejs_*) are named once, as a family, in the README.
    expect(readme).toContain('`process_*`');
    expect(names.filter((name) => !/^(process|nodejs)_/.test(name) && !readme.includes(`\`${name}\``))).toEqual([]);
  });

  it('mentions only SENSORPIPE_* variables that exist in a config schema', () => {
    const known = new Set(Object.values(configSpecs).flatMap((specs) => Object.values(specs).map((spec) => spec.env)));
    for (const path of [...DOCS, 'docker-compose.yml', 'Dockerfile']) {
      const mentioned = [...read(path).matchAll(/SENSORPIPE_[A-Z0-9_]+/g)].map((m) => m[0]);
      expect(mentioned.filter((name) => !known.has(name)), path).toEqual([]);
    }
  });

  it('links only to files that exist', () => {
    for (const path of DOCS) {
      const links = [...read(path).matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)].map((m) => m[1]!).filter((target) => !/^[a-z]+:/.test(target));
      const missing = links.filter((target) => !existsSync(join(ROOT, dirname(path), target)));
      expect(missing, path).toEqual([]);
    }
  });
});
