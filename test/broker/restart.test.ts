/**
 * A graceful restart of the broker keeps ingest's persistent session: what was queued for it, and
 * telemetry a device sends after the restart but before ingest is back, reach ingest once it
 * reconnects (found by the soak: the restarted broker acknowledged such telemetry and delivered it to
 * nobody). Retained status survives too. With the session log (the default) it is what the next start
 * replays; without it (SENSORPIPE_BROKER_WAL=off), the session file, consumed at start.
 * A broker killed with SIGKILL: test/broker/crash.test.ts.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sessionFilePath } from '../../broker/session-file.ts';
import { logDirOf } from '../../broker/session-log.ts';
import { topics } from '../../core/topics.ts';
import { startTestBroker } from '../../harness/broker.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';
import { connect, deviceOptions, inbox, makeFleet, type Fleet } from './helpers.ts';

let fleet: Fleet;
let data: TempDir;
beforeAll(async () => {
  fleet = await makeFleet(['dev-a']);
  data = await tempDir('sensorpipe-broker-data-');
});
afterAll(async () => {
  await fleet?.dir.remove();
  await data?.remove();
});

describe.each([
  { brokerWal: true, kept: 'the session log' },
  { brokerWal: false, kept: 'the session file' },
])('broker restart, sessions kept in $kept', ({ brokerWal }) => {
  it('keeps a persistent session and its queue, and queues for it before it is back', async () => {
    const options = { registryPath: fleet.registryPath, dataDir: join(data.path, `broker-data-${String(brokerWal)}`), ingestPassword: 'ingest-secret', brokerWal };
    const first = await startTestBroker(options);
    const ingestOptions = { ...first.services.ingest, clientId: 'ingest-keeper', clean: false };
    const ingest = await connect(first.url, ingestOptions);
    await ingest.subscribeAsync(topics.allTelemetry, { qos: 1 });
    await ingest.endAsync();
    const device = await connect(first.url, deviceOptions(fleet, 'dev-a'));
    const queued = Array.from({ length: 5 }, (_, i) => `queued before the restart ${i}`);
    for (const payload of queued) await device.publishAsync(topics.telemetry('dev-a'), payload, { qos: 1 });
    await device.endAsync();
    await first.close();
    expect(existsSync(sessionFilePath(options.dataDir))).toBe(!brokerWal);
    expect(existsSync(logDirOf(options.dataDir))).toBe(brokerWal);

    const second = await startTestBroker(options);
    try {
      expect(existsSync(sessionFilePath(options.dataDir))).toBe(false);
      // The device's retained status came through the restart (offline, as the first broker left it).
      const watcher = await connect(second.url, { ...second.services.display, clientId: 'status-watcher' });
      const statuses = inbox(watcher);
      await watcher.subscribeAsync(topics.allStatus, { qos: 1 });
      const status = await statuses.waitFor((m) => m.topic === topics.status('dev-a'), 'retained status');
      expect(status.retain).toBe(true);
      expect(JSON.parse(status.payload.toString())).toMatchObject({ device: 'dev-a', state: 'offline' });
      await watcher.endAsync();

      const again = await connect(second.url, deviceOptions(fleet, 'dev-a'));
      await again.publishAsync(topics.telemetry('dev-a'), 'sent before ingest is back', { qos: 1 });
      await again.endAsync();

      const back = mqtt.connect(second.url, { ...ingestOptions, reconnectPeriod: 0, manualConnect: true });
      const box = inbox(back);
      const connack = new Promise<boolean>((resolve) => back.once('connect', (packet) => resolve(packet.sessionPresent)));
      back.connect();
      expect(await connack).toBe(true);
      await box.waitFor((m) => m.payload.toString() === 'sent before ingest is back', 'the message sent before ingest reconnected');
      // Every queued message (each keeps its identity in the queue), in order, then the new one.
      expect(box.messages.filter((m) => m.topic === topics.telemetry('dev-a')).map((m) => m.payload.toString())).toEqual([...queued, 'sent before ingest is back']);
      await back.endAsync();
    } finally {
      await second.close();
    }
  });
});
