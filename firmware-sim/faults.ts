/**
 * Fault injection: what can go wrong with real devices, on purpose. Each fault names the bad thing a
 * device does and (FAULTS.md) what the pipeline must do about it.
 *
 * Flag syntax: `--faults bad-signature:0.01,flap:0.05,replay@dev-3` — `name:fraction` gives the fault to
 * that fraction of the fleet (chosen from the seed), `name@device` to one device.
 */
import { SensorpipeError } from '../core/errors.ts';
import { prng } from './signals.ts';

export const FAULTS = [
  'stuck', // a metric stops changing: stored (it is real data)
  'spike', // one value jumps tenfold now and then: stored
  'dropout', // readings skipped (seq still counts up): stored, gaps visible as missing readings
  'flap', // the network drops now and then: readings buffered and sent as a batch later, nothing lost
  'non-json', // garbage instead of JSON: PAYLOAD_INVALID
  'bad-signature', // a signature that does not verify: READING_BAD_SIGNATURE
  'replay', // an old, accepted message sent again: READING_REPLAYED
  'foreign-topic', // publishes on another device's topic: refused by the broker's ACL, never stored
  'burst', // far more messages than its rate allows: the excess dropped by the broker's rate limit
  'clock-ahead', // timestamps an hour in the future: READING_TS_OUT_OF_RANGE
  'clock-behind', // timestamps 30 days old: READING_TS_OUT_OF_RANGE
] as const;
export type FaultName = (typeof FAULTS)[number];

/** Faults that make a message the pipeline must refuse (and quarantine, when it reaches ingest). */
export const EXPECTED_REASON: Partial<Record<FaultName, string>> = {
  'non-json': 'PAYLOAD_INVALID',
  'bad-signature': 'READING_BAD_SIGNATURE',
  replay: 'READING_REPLAYED',
  'clock-ahead': 'READING_TS_OUT_OF_RANGE',
  'clock-behind': 'READING_TS_OUT_OF_RANGE',
};

export interface FaultSpec {
  fractions: Partial<Record<FaultName, number>>;
  devices: Partial<Record<FaultName, string[]>>;
}

export function parseFaults(text: string | undefined): FaultSpec {
  const spec: FaultSpec = { fractions: {}, devices: {} };
  if (text === undefined || text.trim() === '') return spec;
  for (const part of text.split(',')) {
    const match = /^([a-z-]+)(?::([0-9.]+)|@([a-z0-9][a-z0-9-]*))$/.exec(part.trim());
    const name = match?.[1] as FaultName | undefined;
    if (!match || name === undefined || !(FAULTS as readonly string[]).includes(name)) {
      throw new SensorpipeError('CONFIG_INVALID', `--faults: "${part}" is not name:fraction or name@device with a fault from ${FAULTS.join(', ')}`);
    }
    if (match[2] !== undefined) {
      const fraction = Number(match[2]);
      if (!(fraction >= 0 && fraction <= 1)) throw new SensorpipeError('CONFIG_INVALID', `--faults: fraction of ${name} must be between 0 and 1`);
      spec.fractions[name] = fraction;
    } else {
      (spec.devices[name] ??= []).push(match[3]!);
    }
  }
  return spec;
}

/** Which faults each device has: reproducible from the seed. */
export function assignFaults(deviceIds: string[], spec: FaultSpec, seed: number): Map<string, FaultName[]> {
  const random = prng(seed ^ 0x5eed);
  const assigned = new Map<string, FaultName[]>(deviceIds.map((id) => [id, []]));
  for (const [name, fraction] of Object.entries(spec.fractions) as [FaultName, number][]) {
    const count = Math.round(deviceIds.length * fraction);
    const shuffled = [...deviceIds].sort(() => random() - 0.5);
    for (const id of shuffled.slice(0, count)) assigned.get(id)!.push(name);
  }
  for (const [name, ids] of Object.entries(spec.devices) as [FaultName, string[]][]) {
    for (const id of ids) assigned.get(id)?.push(name);
  }
  return assigned;
}
