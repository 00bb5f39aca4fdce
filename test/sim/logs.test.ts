/**
 * The simulator's JSON logs: a line names its component once (the one the caller's logger carries, or
 * `sim`), and a line about a device names that device; no key appears twice in a line (pino writes a
 * key bound twice twice). Devices pointed at a broker that is not there log their connection errors.
 */
import { Writable } from 'node:stream';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createLogger, type Logger } from '../../core/logger.ts';
import { startFleet } from '../../firmware-sim/index.ts';
import { testFleetOptions } from '../../harness/fleet.ts';
import { freePort } from '../../harness/ports.ts';
import { waitFor } from '../../harness/publisher.ts';
import { tempDir, type TempDir } from '../../harness/tmp.ts';

let dir: TempDir;
beforeEach(async () => {
  dir = await tempDir();
});
afterEach(async () => {
  await dir.remove();
});

/** A debug logger writing into `lines`, one raw JSON line each. */
function capture(lines: string[]): Logger {
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      lines.push(...chunk.toString().split('\n').filter((line) => line !== ''));
      done();
    },
  });
  return createLogger({ level: 'debug', destination });
}

/** How many times a top-level key is written in a raw JSON line (JSON.parse would keep only the last). */
const times = (line: string, key: string) => line.split(`"${key}":`).length - 1;

describe('simulator logs', () => {
  it.each([
    ['a root logger (a bench, a test)', (logger: Logger) => logger, 'sim'],
    ['a logger already naming its component (sensorpipe sim)', (logger: Logger) => logger.child({ component: 'sim' }), 'sim'],
    ['a logger naming another component (sensorpipe start)', (logger: Logger) => logger.child({ component: 'start' }), 'start'],
  ])('with %s: one component per line, and the device on each line about a device', async (_name, callerLogger, component) => {
    const lines: string[] = [];
    const url = `mqtt://127.0.0.1:${await freePort()}`; // nobody listens: every device logs its connection error
    const fleet = await startFleet({ ...testFleetOptions(dir.path, { devices: 2, url }), registrySettleMs: 0, logger: callerLogger(capture(lines)) });
    try {
      const about = (device: string) => lines.filter((line) => (JSON.parse(line) as { device?: string }).device === device);
      await waitFor(() => about('sim-0000').length > 0 && about('sim-0001').length > 0, 'a connection error logged by each device', 10_000);
    } finally {
      await fleet.stop(false);
    }
    const parsed = lines.map((line) => JSON.parse(line) as { component?: string; device?: string; msg: string });
    expect(parsed.find((l) => l.msg === 'fleet started')).toMatchObject({ component });
    expect(parsed.find((l) => l.msg === 'fleet started')).not.toHaveProperty('device');
    expect(parsed.filter((l) => l.msg === 'mqtt error').map((l) => l.device)).toEqual(expect.arrayContaining(['sim-0000', 'sim-0001']));
    for (const line of lines) {
      expect(times(line, 'component'), line).toBe(1);
      expect(times(line, 'device'), line).toBeLessThanOrEqual(1);
      expect(JSON.parse(line), line).toMatchObject({ component });
    }
  });
});
