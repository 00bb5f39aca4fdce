/**
 * Options for a simulated fleet in a test: its state and the device registry in a test's folder, a
 * silent logger, buffers large enough that nothing is dropped. Provision with them before starting a
 * broker that reads the registry, then start the fleet with the broker's url:
 *
 *   const options = testFleetOptions(dir.path, { devices: 2, faults: 'flap@sim-0000' });
 *   await provisionFleet(options);  …  const fleet = await startFleet({ ...options, url: broker.url });
 */
import { join } from 'node:path';
import { createLogger } from '../core/logger.ts';
import { parseFaults, type FleetOptions } from '../firmware-sim/index.ts';

export function testFleetOptions(dir: string, options: { devices: number; faults?: string; intervalMs?: number; seed?: number; url?: string }): FleetOptions & { registryPath: string } {
  return {
    url: options.url ?? '',
    devices: options.devices,
    intervalMs: options.intervalMs ?? 50,
    profile: 'mixed',
    seed: options.seed ?? 7,
    faults: parseFaults(options.faults ?? ''),
    stateDir: join(dir, 'sim'),
    registryPath: join(dir, 'registry.json'),
    bufferLimit: 10_000,
    maxBatch: 100,
    logger: createLogger({ level: 'silent' }),
  };
}
