/**
 * Live registry changes and the `sensorpipe broker` process: `sensorpipe devices revoke X` (the real
 * CLI) disconnects a connected X and keeps it out; a rotation disconnects the old credentials; the
 * broker command lists its options, serves, and exits 0 on SIGTERM.
 */
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { configSpecs, parseConfig } from '../../core/config.ts';
import { topics } from '../../core/topics.ts';
import { CLI_PATH, runCli } from '../../harness/cli.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { closedByBroker, connect, deviceOptions, inbox, makeFleet, refusedWith, type Fleet } from './helpers.ts';
import { connectPacket, rawConnect, within } from './raw.ts';

/** "Disconnected within seconds" (docs/SECURITY.md), with the default poll: held to 5 s once the file is saved. */
const REVOCATION_BOUND_MS = 5_000;

let fleet: Fleet;
let broker: TestBroker;

beforeAll(async () => {
  fleet = await makeFleet(['bad-actor', 'rotated', 'bystander']);
  // The default poll, as configured out of the box: revocation must take effect within the bound with it.
  const { registryPollMs } = parseConfig(configSpecs.broker, { argv: [], env: {} }).config;
  broker = await startTestBroker({ registryPath: fleet.registryPath, registryPollMs });
});

afterAll(async () => {
  await broker?.close();
  await fleet?.dir.remove();
});

describe('revocation and rotation while connected', () => {
  it('disconnects a device revoked with `sensorpipe devices revoke`, publishes it offline, and refuses it afterwards', async () => {
    const display = await connect(broker.url, { ...broker.services.display, clientId: 'display-revoke' });
    const box = inbox(display);
    await display.subscribeAsync(topics.status('bad-actor'), { qos: 1 });
    const bystander = await connect(broker.url, deviceOptions(fleet, 'bystander'));
    const device = await connect(broker.url, deviceOptions(fleet, 'bad-actor'));
    const result = await runCli(['devices', 'revoke', 'bad-actor', '--registry', fleet.registryPath]);
    expect(result.code).toBe(0);
    // Counted from the command's exit (the file is saved by then), not from the spawn of node.
    await closedByBroker(device, REVOCATION_BOUND_MS);
    device.end(true);
    const offline = await box.waitFor((m) => m.payload.includes('"offline"'), 'offline status', REVOCATION_BOUND_MS);
    expect(JSON.parse(offline.payload.toString())).toMatchObject({ state: 'offline', reason: 'revoked' });
    expect(await refusedWith(broker.url, deviceOptions(fleet, 'bad-actor'))).toBe(5);
    await bystander.publishAsync(topics.telemetry('bystander'), 'unaffected', { qos: 1 });
    expect(bystander.connected).toBe(true);
    await bystander.endAsync();
    await display.endAsync();
  });

  it('disconnects a device whose credentials were rotated; the new password works, the old one does not', async () => {
    const device = await connect(broker.url, deviceOptions(fleet, 'rotated'));
    const result = await runCli(['devices', 'rotate', 'rotated', '--registry', fleet.registryPath, '--json']);
    expect(result.code).toBe(0);
    const fresh = JSON.parse(result.stdout) as { mqttPassword: string };
    await closedByBroker(device, REVOCATION_BOUND_MS);
    device.end(true);
    expect(await refusedWith(broker.url, deviceOptions(fleet, 'rotated'))).toBe(4);
    const again = await connect(broker.url, deviceOptions(fleet, 'rotated', { password: fresh.mqttPassword }));
    await again.endAsync();
  });
});

describe('sensorpipe broker', () => {
  it('--help lists every option', async () => {
    const result = await runCli(['broker', '--help']);
    expect(result.code).toBe(0);
    for (const flag of ['--mqtt-port', '--mqtt-ws-port', '--tls-cert', '--mqtt-max-packet', '--device-publish-rate', '--mqtt-login-ban', '--redis-url', '--broker-metrics-port', '--admin-password']) {
      expect(result.stdout).toContain(flag);
    }
  });

  it('serves device logins and exits 0 on SIGTERM', async () => {
    const child = spawn(process.execPath, [CLI_PATH, 'broker', '--registry', fleet.registryPath, '--mqtt-host', '127.0.0.1', '--mqtt-port', '0', '--mqtt-ws-port', '0', '--broker-metrics-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const port = await within((async () => {
        for (;;) {
          const match = /"mqtt":"mqtt:\/\/127\.0\.0\.1:(\d+)"/.exec(stderr);
          if (match) return Number(match[1]);
          await new Promise((r) => setTimeout(r, 50));
        }
      })(), 'the broker to log its urls', 30_000);
      const raw = await rawConnect(port);
      raw.socket.write(connectPacket({ clientId: 'bystander', username: 'bystander', password: fleet.creds.get('bystander')!.mqttPassword }));
      expect([...(await raw.bytes(4))]).toEqual([0x20, 0x02, 0x00, 0x00]);
      child.kill('SIGTERM');
      expect(await within(exited, 'exit after SIGTERM')).toBe(0);
      await within(raw.closed, 'client closed at shutdown');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
