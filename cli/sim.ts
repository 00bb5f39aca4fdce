/**
 * `sensorpipe sim`: a simulated fleet as its own process. Shows a live status line on a terminal and
 * prints a JSON summary at the end (after --duration, or on SIGINT/SIGTERM). The summary gives each
 * device's acknowledged seq range, not every reading, so the fleet does not keep a record per reading
 * in memory however long it runs; the seqs of deliberately bad messages are kept (one in ten readings of
 * a faulty device) and printed.
 */
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { configSpecs, helpText, parseConfig, registryPathOf } from '../core/config.ts';
import { parseFaults, startFleet } from '../firmware-sim/index.ts';
import type { Command } from './command.ts';
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
      redisUrl: config.redisUrl,
      credentialsFile: config.simCredentials,
      bufferLimit: config.simBuffer,
      maxBatch: config.simBatch,
      recordAckedReadings: false,
      // One line per reading, written as its PUBACK arrives: the record lives on disk, not in memory. With
      // the values the device signed (JSON, no spaces), so that the store can be checked value by value.
      onAcknowledged: ackedLog && ((device, readings) => void ackedLog.write(readings.map((r) => `${device} ${r.seq} ${r.ts} ${JSON.stringify(r.values)}\n`).join(''))),
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
    process.stdout.write(`${JSON.stringify({ ...totals, perDevice: perDevice.map(({ ackedReadings: _notRecorded, ...d }) => d) })}\n`);
    return 0;
  },
};

