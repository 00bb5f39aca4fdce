/**
 * firmware-sim — a fleet of simulated smart sensors, the demo's data source and our test instrument.
 *
 * Talks to: any MQTT 3.1.1 broker (each device with its own connection and credentials), the device
 * registry (demo mode provisions its devices there), and its own state folder (device secrets, seqs).
 *
 *   const fleet = await startFleet({ ... });   …   const summary = await fleet.stop();
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../core/logger.ts';
import type { DeviceCredentials } from '../core/registry.ts';
import { openRegistryStore } from '../core/registry-store.ts';
import { SimDevice, type DeviceSummary, type SimDeviceOptions } from './device.ts';
import { assignFaults, type FaultName, type FaultSpec } from './faults.ts';
import { SeqBook } from './seq-book.ts';
import { PROFILE_NAMES, unitsOf, type ProfileName } from './signals.ts';

export { parseFaults, FAULTS, EXPECTED_REASON, type FaultName } from './faults.ts';
export type { DeviceSummary } from './device.ts';

export interface FleetOptions {
  url: string;
  devices: number;
  intervalMs: number;
  profile: ProfileName | 'mixed';
  seed: number;
  faults: FaultSpec;
  /** Folder for the fleet's state: device secrets (0600) and seqs. */
  stateDir: string;
  /** Demo mode: devices sim-0000… are added to this registry if missing. */
  registryPath?: string;
  /** With SENSORPIPE_REDIS_URL the registry is in Redis (core/registry-store.ts), and demo mode provisions there. */
  redisUrl?: string | undefined;
  /** Or: existing devices' credentials, one `sensorpipe devices add --json` line each. */
  credentialsFile?: string;
  bufferLimit: number;
  maxBatch: number;
  /** Per-reading records in the summary (default true; see SimDeviceOptions): off for runs of unbounded length. */
  recordAckedReadings?: boolean;
  recordFaultSeqs?: boolean;
  idPrefix?: string;
  /**
   * After adding devices to the registry, wait this long before they connect (default 2.5 s), so that a
   * broker following the registry file (every 1 s by default) knows them: refused as unknown, ten of
   * them would get the fleet's address banned by the broker's failed-login limit.
   */
  registrySettleMs?: number;
  /** Called with the good readings of each message the broker acknowledged (`sensorpipe sim --acked-log`). */
  onAcknowledged?: SimDeviceOptions['onAcknowledged'];
  logger: Logger;
}

export interface FleetSummary {
  devices: number;
  connected: number;
  sent: number;
  acked: number;
  buffered: number;
  droppedFromBuffer: number;
  skipped: number;
  faults: Partial<Record<FaultName, { count: number; acked: number }>>;
  perDevice: DeviceSummary[];
}

export interface Fleet {
  devices: SimDevice[];
  summary(): FleetSummary;
  stop(graceful?: boolean): Promise<FleetSummary>;
}

/**
 * Credentials of the fleet's devices: from the user's file, or provisioned into the registry and kept in
 * the state folder. Exported so that a process can provision before it starts a broker that reads the
 * registry once at start-up.
 */
export async function provisionFleet(options: ProvisionOptions): Promise<DeviceCredentials[]> {
  return (await provision(options)).credentials;
}

type ProvisionOptions = Pick<FleetOptions, 'credentialsFile' | 'devices' | 'registryPath' | 'redisUrl' | 'stateDir' | 'idPrefix' | 'profile'>;

/** The fleet's credentials, and how many devices had to be added to (or rotated in) the registry. */
async function provision(options: ProvisionOptions): Promise<{ credentials: DeviceCredentials[]; added: number }> {
  await mkdir(options.stateDir, { recursive: true, mode: 0o700 });
  if (options.credentialsFile) {
    const text = await readFile(options.credentialsFile, 'utf8');
    return { credentials: text.split('\n').filter((l) => l.trim() !== '').slice(0, options.devices).map((l) => JSON.parse(l) as DeviceCredentials), added: 0 };
  }
  if (!options.registryPath) throw new Error('the fleet needs a registry to provision into, or a credentials file');
  const file = join(options.stateDir, 'devices.json');
  const saved = JSON.parse(await readFile(file, 'utf8').catch(() => '[]')) as DeviceCredentials[];
  const byId = new Map(saved.map((c) => [c.deviceId, c]));
  const prefix = options.idPrefix ?? 'sim';
  const wanted = Array.from({ length: options.devices }, (_, i) => `${prefix}-${String(i).padStart(4, '0')}`);
  const missing = wanted.filter((id) => !byId.has(id));
  if (missing.length > 0) {
    const profiles = (i: number): ProfileName => (options.profile === 'mixed' ? PROFILE_NAMES[i % PROFILE_NAMES.length]! : options.profile);
    const store = openRegistryStore({ registryPath: options.registryPath, redisUrl: options.redisUrl });
    const issued = await store
      .update((registry) =>
        missing.map((id) => {
          const index = wanted.indexOf(id);
          // A device the registry knows but whose secrets we lost gets new ones.
          return registry.get(id) ? registry.rotate(id) : registry.add(id, { meta: { site: `site-${index % 5}`, model: 'sim-1', profile: profiles(index) } });
        }),
      )
      .finally(() => store.close());
    for (const c of issued) byId.set(c.deviceId, c);
    await writeFile(file, JSON.stringify([...byId.values()]), { mode: 0o600 });
  }
  return { credentials: wanted.map((id) => byId.get(id)!), added: missing.length };
}

/** The seed of the fleet's `index`-th device's signals: each device its own, all from the fleet's seed. */
export function deviceSeed(fleetSeed: number, index: number): number {
  return fleetSeed * 100_003 + index;
}

/**
 * The simulator's logger: a child naming the component, unless the caller's logger names one already
 * (`sensorpipe sim` passes one with `component: 'sim'`): the caller's name is kept.
 */
function simLogger(logger: Logger): Logger {
  return Object.hasOwn(logger.bindings(), 'component') ? logger : logger.child({ component: 'sim' });
}

export async function startFleet(options: FleetOptions): Promise<Fleet> {
  const logger = simLogger(options.logger);
  const { credentials, added } = await provision(options);
  const settleMs = options.registrySettleMs ?? 2_500;
  if (added > 0 && settleMs > 0) {
    logger.info({ added, waitMs: settleMs }, 'devices added to the registry: giving the broker time to read it');
    await new Promise((resolve) => setTimeout(resolve, settleMs));
  }
  const seqs = await SeqBook.open(join(options.stateDir, 'seqs.json'));
  const ids = credentials.map((c) => c.deviceId);
  const faults = assignFaults(ids, options.faults, options.seed);
  const devices = credentials.map((c, i) => {
    const profile = options.profile === 'mixed' ? PROFILE_NAMES[i % PROFILE_NAMES.length]! : options.profile;
    return new SimDevice({
      credentials: c,
      profile,
      seed: deviceSeed(options.seed, i),
      intervalMs: options.intervalMs,
      faults: faults.get(c.deviceId) ?? [],
      url: options.url,
      seqs,
      bufferLimit: options.bufferLimit,
      maxBatch: options.maxBatch,
      recordAckedReadings: options.recordAckedReadings,
      recordFaultSeqs: options.recordFaultSeqs,
      neighbour: ids[(i + 1) % ids.length]!,
      onAcknowledged: options.onAcknowledged,
      logger,
    });
  });
  for (const device of devices) device.start();
  logger.info({ devices: devices.length, units: Object.fromEntries(PROFILE_NAMES.map((p) => [p, unitsOf(p)])) }, 'fleet started');

  const summary = (): FleetSummary => {
    const perDevice = devices.map((d) => d.report());
    const total = (pick: (d: DeviceSummary) => number) => perDevice.reduce((n, d) => n + pick(d), 0);
    const faultTotals: FleetSummary['faults'] = {};
    for (const d of perDevice) {
      for (const [name, f] of Object.entries(d.faultMessages) as [FaultName, { count: number; acked: number }][]) {
        const t = (faultTotals[name] ??= { count: 0, acked: 0 });
        t.count += f.count;
        t.acked += f.acked;
      }
    }
    return {
      devices: devices.length,
      connected: devices.filter((d) => d.connected).length,
      sent: total((d) => d.sent),
      acked: total((d) => d.acked),
      buffered: total((d) => d.buffered),
      droppedFromBuffer: total((d) => d.droppedFromBuffer),
      skipped: total((d) => d.skipped),
      faults: faultTotals,
      perDevice,
    };
  };

  return {
    devices,
    summary,
    stop: async (graceful = true) => {
      await Promise.all(devices.map((d) => d.stop(graceful)));
      await seqs.close();
      return summary();
    },
  };
}
