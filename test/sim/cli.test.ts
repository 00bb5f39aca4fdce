/**
 * `sensorpipe sim` as a user runs it: --help, the flags of issue 4 (--devices, --interval, --profile,
 * --faults name:fraction, --broker URL) against our broker in demo mode, and the JSON summary it prints
 * on SIGINT, compared with what the broker saw.
 */
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { configSpecs, parseConfig } from '../../core/config.ts';
import { decodeTelemetry } from '../../core/decode.ts';
import { loadRegistry, verifyKeyOf } from '../../core/registry.ts';
import { verifyTelemetrySignature } from '../../core/signature.ts';
import { parseTopic } from '../../core/topics.ts';
import type { DeviceSummary, FaultName, FleetSummary } from '../../firmware-sim/index.ts';
import { startTestBroker, type TestBroker } from '../../harness/broker.ts';
import { CLI_PATH, runCli } from '../../harness/cli.ts';
import { waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let dir: TempDir;
let broker: TestBroker | undefined;
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  await broker?.close();
  broker = undefined;
  await dir.remove();
});

/** The summary as `sensorpipe sim` prints it: each device's acknowledged seqs as a range. */
type PrintedSummary = Omit<FleetSummary, 'perDevice'> & { perDevice: (Omit<DeviceSummary, 'ackedReadings'> & { ackedSeqRange: [number, number] | null })[] };

describe('sensorpipe sim', () => {
  it('--help lists the fleet flags with their defaults', async () => {
    const result = await runCli(['sim', '--help']);
    expect(result.code).toBe(0);
    for (const flag of ['--devices', '--interval', '--profile', '--faults', '--broker', '--mqtt-url', '--seed', '--duration', '--buffer', '--credentials']) expect(result.stdout).toContain(flag);
    expect(result.stdout).toContain('SENSORPIPE_SIM_DEVICES (default: 25)');
  });

  it('refuses a fault it does not know, naming the flag', async () => {
    const result = await runCli(['sim', '--data-dir', dir.path, '--faults', 'gremlins:0.5', '--broker', 'mqtt://127.0.0.1:1']);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toContain('--faults');
  });

  it('runs --devices 20 --interval 1s --profile industrial --faults bad-signature:0.05,flap:0.1 --broker URL, and prints a JSON summary on SIGINT that matches what the broker saw', async () => {
    const registryPath = join(dir.path, 'registry.json');
    // At the broker's default registry poll (the harness polls faster), as a user's broker would be.
    broker = await startTestBroker({ registryPath, registryPollMs: parseConfig(configSpecs.broker, { argv: [], env: {} }).config.registryPollMs });
    const seen: { topic: string; payload: Buffer }[] = [];
    broker.broker.aedes.on('publish', (packet, client) => {
      if (client) seen.push({ topic: packet.topic, payload: Buffer.from(packet.payload) });
    });
    // Demo mode: the simulator provisions its devices into the registry, which the broker re-reads.
    const child = spawn(process.execPath, [CLI_PATH, 'sim', '--data-dir', dir.path, '--registry', registryPath, '--log-level', 'warn', '--seed', '5',
      '--devices', '20', '--interval', '1s', '--profile', 'industrial', '--faults', 'bad-signature:0.05,flap:0.1', '--broker', broker.url], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      const online = () => Array.from({ length: 20 }, (_, i) => `sim-${String(i).padStart(4, '0')}`).filter((id) => broker!.broker.deviceState(id)?.state === 'online').length;
      await waitFor(() => online() === 20, 'all 20 devices online', 30_000, 100);
      // Every device's 10th reading is when bad-signature strikes: wait for 11 readings from each.
      const telemetryFrom = (id: string) => seen.filter((m) => parseTopic(m.topic)?.kind === 'telemetry' && parseTopic(m.topic)?.deviceId === id).length;
      await waitFor(() => Array.from({ length: 20 }, (_, i) => telemetryFrom(`sim-${String(i).padStart(4, '0')}`)).every((n) => n >= 11), 'eleven readings per device', 40_000, 200);
    } finally {
      child.kill('SIGINT');
    }
    expect(await exited, stderr).toBe(0);
    const summary = JSON.parse(stdout.trim().split('\n').at(-1)!) as PrintedSummary;

    expect(summary.devices).toBe(20);
    expect(summary.perDevice.map((d) => d.profile)).toEqual(Array(20).fill('industrial'));
    const withFault = (fault: FaultName) => summary.perDevice.filter((d) => d.faults.includes(fault)).map((d) => d.id);
    expect(withFault('bad-signature')).toHaveLength(1); // 5 % of 20
    expect(withFault('flap')).toHaveLength(2); // 10 % of 20
    expect(summary.acked).toBe(summary.sent);
    expect(summary.faults['bad-signature']?.count).toBeGreaterThanOrEqual(1);

    // The summary agrees with what reached the broker, device by device.
    const registry = await loadRegistry(registryPath);
    for (const device of summary.perDevice) {
      const messages = seen.filter((m) => m.topic === `sensors/${device.id}/telemetry`).map((m) => decodeTelemetry(m.payload)).flatMap((d) => (d.ok ? [d.value] : []));
      const good = messages.filter((m) => verifyTelemetrySignature(m, verifyKeyOf(registry.get(device.id)!)));
      const seqs = good.flatMap((m) => m.readings.map((r) => r.seq));
      expect(messages.length - good.length, `${device.id}: forged messages`).toBe(device.faultMessages['bad-signature']?.count ?? 0);
      expect(seqs.length, `${device.id}: good readings`).toBe(device.acked);
      expect(device.ackedSeqRange, device.id).toEqual([Math.min(...seqs), Math.max(...seqs)]);
      // --interval 1s: readings about a second apart (±10 % jitter), by their own timestamps.
      const ts = good.flatMap((m) => m.readings.map((r) => r.ts)).sort((a, b) => a - b);
      const gaps = ts.slice(1).map((t, i) => t - ts[i]!).sort((a, b) => a - b);
      const median = gaps[Math.floor(gaps.length / 2)]!;
      expect(median, `${device.id}: median gap between readings`).toBeGreaterThan(850);
      expect(median, `${device.id}: median gap between readings`).toBeLessThan(1150);
    }
  }, 90_000);
});
