/**
 * `sensorpipe sim`: a simulated fleet as its own process. Shows a live status line on a terminal and
 * prints a JSON summary at the end (after --duration, or on SIGINT/SIGTERM).
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { configSpecs, helpText, parseConfig, registryPathOf } from '../core/config.ts';
import { parseFaults, startFleet } from '../firmware-sim/index.ts';
import type { Command } from './main.ts';
import { processLogger } from './run.ts';

export const simCommand: Command = {
  summary: 'run a simulated fleet of signing sensors (demo data and test load)',
  async run(argv) {
    const { config, help } = parseConfig(configSpecs.sim, { argv });
    if (help) {
      process.stdout.write(`${helpText('Usage: sensorpipe sim [--devices N] [--interval 1s] [--profile mixed] [--faults bad-signature:0.01,flap:0.05] [options]', configSpecs.sim)}\n`);
      return 0;
    }
    const logger = processLogger(config.logLevel, 'sim');
    const ackedLog: WriteStream | undefined = config.simAckedLog === undefined ? undefined : createWriteStream(config.simAckedLog, { flags: 'a' });
    const fleet = await startFleet({
      url: config.mqttUrl,
      devices: config.devices,
      intervalMs: config.interval,
      profile: config.profile,
      seed: config.seed,
      faults: parseFaults(config.faults),
      stateDir: join(config.dataDir, 'sim'),
      registryPath: config.simCredentials ? undefined : registryPathOf(config),
      credentialsFile: config.simCredentials,
      bufferLimit: config.simBuffer,
      maxBatch: config.simBatch,
      // One line per reading, written as its PUBACK arrives: the record lives on disk, not in memory.
      onAcknowledged: ackedLog && ((device, readings) => void ackedLog.write(readings.map((r) => `${device} ${r.seq} ${r.ts}\n`).join(''))),
      logger,
    });

    let lastSent = 0;
    const status = process.stderr.isTTY
      ? setInterval(() => {
          const s = fleet.summary();
          const faults = Object.entries(s.faults).map(([name, f]) => `${name} ${f.count}`).join(' ');
          process.stderr.write(`\r\x1b[Kconnected ${s.connected}/${s.devices}  sent/s ${s.sent - lastSent}  acked ${s.acked}  buffered ${s.buffered}${faults ? `  faults: ${faults}` : ''}`);
          lastSent = s.sent;
        }, 1000)
      : undefined;

    await new Promise<void>((resolve) => {
      if (config.simDuration !== undefined) setTimeout(resolve, config.simDuration);
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    clearInterval(status);
    if (status) process.stderr.write('\n');
    // Let in-flight messages get their PUBACKs, then report.
    const summary = await fleet.stop(true);
    if (ackedLog) await new Promise<void>((resolve) => ackedLog.end(resolve));
    const { perDevice, ...totals } = summary;
    process.stdout.write(`${JSON.stringify({ ...totals, perDevice: perDevice.map(({ ackedReadings, ...d }) => ({ ...d, ackedSeqRange: seqRange(ackedReadings) })) })}\n`);
    return 0;
  },
};

/**
 * Lowest and highest acknowledged seq. A loop, not Math.min(...seqs): spreading more than ~120,000
 * arguments overflows the stack, and a device at one reading a second has that many after 33 hours.
 */
function seqRange(acked: [seq: number, ts: number][]): [number, number] | null {
  if (acked.length === 0) return null;
  let low = Infinity;
  let high = -Infinity;
  for (const [seq] of acked) {
    if (seq < low) low = seq;
    if (seq > high) high = seq;
  }
  return [low, high];
}
