/**
 * The alerts component's /readyz while it starts and reconnects: ready only once the broker's SUBACK
 * granted every filter of its feed (before that, readings go past it unseen) and the rules file is wholly
 * in force. A real aedes broker (harness/aedes.ts) whose authorizeSubscribe hook holds the SUBACK,
 * refuses a filter (return code 0x80), or drops the connection; a rules file naming a webhook whose
 * outbox file cannot be opened (a folder stands at its path).
 */
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Client } from 'aedes';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startAlerts, type RunningAlerts } from '../../alerts/index.ts';
import { outboxFileOf } from '../../alerts/outbox.ts';
import { createLogger } from '../../core/logger.ts';
import { topics } from '../../core/topics.ts';
import { startBareAedes, type BareBroker } from '../../harness/aedes.ts';
import { freePort } from '../../harness/ports.ts';
import { waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { alertsTestConfig } from './helpers.ts';

interface Readiness {
  status: number;
  body: { ok: boolean; notReady: string[]; mqtt: boolean; subscription: string; rules: boolean };
}

describe('alerts /readyz', () => {
  let dir: TempDir;
  let broker: BareBroker | undefined;
  let alerts: RunningAlerts | undefined;
  const rulesPath = () => join(dir.path, 'alert-rules.yaml');

  /** Not startTestAlerts: that one waits for the subscription, which is what these tests watch. */
  const start = async (mqttUrl: string) => {
    alerts = await startAlerts({
      config: alertsTestConfig({ mqttUrl, dataDir: join(dir.path, 'data'), rulesPath: rulesPath() }),
      registryPath: join(dir.path, 'registry.json'),
      logger: createLogger({ level: 'silent' }),
    });
    return alerts;
  };
  const readyz = async (): Promise<Readiness> => {
    const response = await fetch(`${alerts!.url}/readyz`);
    return { status: response.status, body: (await response.json()) as Readiness['body'] };
  };

  beforeEach(async () => {
    dir = await tempDir('sensorpipe-alerts-ready-');
  });
  afterEach(async () => {
    await alerts?.close();
    alerts = undefined;
    await broker?.close();
    broker = undefined;
    await dir.remove();
  });

  it('says not ready while the broker holds its SUBACK, ready once every filter is granted, and the same after a reconnection', async () => {
    let release: () => void = () => undefined;
    let held = new Promise<void>((resolve) => (release = resolve));
    const clients: Client[] = [];
    broker = await startBareAedes(0, {
      authorizeSubscribe: (client, subscription, callback) => {
        clients.push(client);
        void held.then(() => callback(null, subscription));
      },
    });
    await start(broker.url);
    await waitFor(async () => (await readyz()).body.mqtt, 'connected to the broker', 10_000);
    // Connected, the SUBSCRIBE sent, no SUBACK yet: not ready.
    expect(await readyz()).toEqual({ status: 503, body: { ok: false, notReady: ['subscription'], mqtt: true, subscription: 'pending', rules: true } });
    expect(clients.length).toBeGreaterThan(0);

    release();
    await waitFor(async () => (await readyz()).status === 200, 'ready once the SUBACK came', 10_000);
    expect((await readyz()).body).toEqual({ ok: true, notReady: [], mqtt: true, subscription: 'granted', rules: true });

    // The broker drops the connection. The session is clean, so the next connection subscribes anew, and
    // is not ready before its own SUBACK, though it is connected at once.
    held = new Promise<void>((resolve) => (release = resolve));
    clients.at(-1)!.close();
    await waitFor(async () => {
      const { body } = await readyz();
      return body.mqtt && body.subscription === 'pending';
    }, 'connected again, its SUBACK held', 10_000);
    expect((await readyz()).status).toBe(503);
    release();
    await waitFor(async () => (await readyz()).status === 200, 'ready again', 10_000);
  });

  it('says not ready while the broker refuses one of the filters', async () => {
    broker = await startBareAedes(0, { authorizeSubscribe: (_client, subscription, callback) => callback(null, subscription.topic === topics.allCounts ? null : subscription) });
    await start(broker.url);
    await waitFor(async () => {
      const { body } = await readyz();
      return body.mqtt && body.subscription !== 'pending';
    }, 'the SUBACK', 10_000);
    expect(await readyz()).toEqual({ status: 503, body: { ok: false, notReady: ['subscription'], mqtt: true, subscription: 'refused', rules: true } });
  });

  it('says not ready while the rules file is not wholly in force (an outbox that cannot be opened), and ready once it is', async () => {
    broker = await startBareAedes();
    const url = `http://127.0.0.1:${await freePort()}/hook`;
    const outboxPath = outboxFileOf(join(dir.path, 'data', 'alerts'), url);
    await mkdir(outboxPath, { recursive: true }); // reading it fails with EISDIR
    await writeFile(rulesPath(), `rules:\n  - { id: hot, kind: above, metric: temperature, threshold: 30 }\nwebhooks:\n  - { url: "${url}" }\n`);
    await start(broker.url);
    await alerts!.feed.ready;
    expect(await readyz()).toEqual({ status: 503, body: { ok: false, notReady: ['rules'], mqtt: true, subscription: 'granted', rules: false } });

    await rm(outboxPath, { recursive: true });
    await writeFile(rulesPath(), `# written again, the folder gone\nrules:\n  - { id: hot, kind: above, metric: temperature, threshold: 30 }\nwebhooks:\n  - { url: "${url}" }\n`);
    await alerts!.reloadRules();
    expect(await readyz()).toEqual({ status: 200, body: { ok: true, notReady: [], mqtt: true, subscription: 'granted', rules: true } });

    // A later file whose new webhook cannot be opened: not ready again, though the earlier one was in force.
    const second = `http://127.0.0.1:${await freePort()}/second`;
    await mkdir(outboxFileOf(join(dir.path, 'data', 'alerts'), second), { recursive: true });
    await writeFile(rulesPath(), `rules:\n  - { id: hot, kind: above, metric: temperature, threshold: 30 }\nwebhooks:\n  - { url: "${url}" }\n  - { url: "${second}" }\n`);
    await alerts!.reloadRules();
    expect(await readyz()).toEqual({ status: 503, body: { ok: false, notReady: ['rules'], mqtt: true, subscription: 'granted', rules: false } });
  });
});
