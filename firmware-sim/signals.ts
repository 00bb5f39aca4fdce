/**
 * Sensor profiles and their signals, modelled on real smart sensors: a baseline, a daily cycle, noise,
 * slow drift and occasional events. Deterministic: a seeded PRNG per device, so the same seed gives the
 * same readings.
 */
import { unitOf, type MetricWithUnit } from '../core/units.ts';

/** mulberry32: small, fast, good enough for simulated noise; deterministic across platforms. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** How a metric's values move. Its unit is core/units.ts's, shared with the dashboard. */
export interface MetricModel {
  baseline: number;
  dailyAmplitude: number;
  noise: number;
  /** Units per day. */
  drift: number;
  /** Probability per reading of an event (a short excursion), and its size. */
  eventChance: number;
  eventSize: number;
  min?: number;
  max?: number;
  decimals: number;
}

/** Each profile's metrics. Only metrics of core/units.ts fit here: one without a unit does not compile. */
export const PROFILES = {
  env: {
    temperature: { baseline: 21, dailyAmplitude: 3, noise: 0.15, drift: 0.02, eventChance: 0.002, eventSize: 4, decimals: 2 },
    humidity: { baseline: 45, dailyAmplitude: 8, noise: 0.8, drift: 0, eventChance: 0.002, eventSize: 15, min: 0, max: 100, decimals: 1 },
    pressure: { baseline: 1013.25, dailyAmplitude: 1.5, noise: 0.1, drift: -0.1, eventChance: 0.001, eventSize: -6, decimals: 2 },
    co2: { baseline: 480, dailyAmplitude: 120, noise: 8, drift: 0, eventChance: 0.003, eventSize: 400, min: 380, decimals: 0 },
  },
  industrial: {
    vibration_rms: { baseline: 2.2, dailyAmplitude: 0.4, noise: 0.08, drift: 0.01, eventChance: 0.004, eventSize: 6, min: 0, decimals: 3 },
    motor_temp: { baseline: 62, dailyAmplitude: 5, noise: 0.3, drift: 0.05, eventChance: 0.002, eventSize: 12, decimals: 1 },
    current: { baseline: 14, dailyAmplitude: 3, noise: 0.4, drift: 0, eventChance: 0.003, eventSize: 9, min: 0, decimals: 2 },
  },
  power: {
    voltage: { baseline: 230, dailyAmplitude: 2.5, noise: 0.6, drift: 0, eventChance: 0.002, eventSize: -25, decimals: 1 },
    battery: { baseline: 92, dailyAmplitude: 4, noise: 0.2, drift: -1.5, eventChance: 0, eventSize: 0, min: 0, max: 100, decimals: 1 },
  },
} as const satisfies Record<string, Partial<Record<MetricWithUnit, MetricModel>>>;

export type ProfileName = keyof typeof PROFILES;
export const PROFILE_NAMES = Object.keys(PROFILES) as ProfileName[];

const DAY_MS = 86_400_000;

/** One device's signal generator: call `next(ts)` once per reading, in order. */
export class SignalGenerator {
  private readonly random: () => number;
  private readonly phase: number;
  /** Drift is measured from the first reading, so a long-running device wanders slowly from its baseline. */
  private origin: number | undefined;
  private readonly offsets: Record<string, number> = {};

  constructor(
    readonly profile: ProfileName,
    seed: number,
  ) {
    this.random = prng(seed);
    this.phase = this.random() * 2 * Math.PI;
    for (const name of Object.keys(PROFILES[profile])) this.offsets[name] = (this.random() - 0.5) * 0.02; // each unit a little different, ±1 %
  }

  next(ts: number): Record<string, number> {
    const values: Record<string, number> = {};
    this.origin ??= ts;
    const models = PROFILES[this.profile] as Record<string, MetricModel>;
    for (const [name, m] of Object.entries(models)) {
      const days = (ts - this.origin) / DAY_MS;
      const daily = m.dailyAmplitude * Math.sin((2 * Math.PI * (ts % DAY_MS)) / DAY_MS + this.phase);
      const noise = m.noise * gaussian(this.random);
      const event = this.random() < m.eventChance ? m.eventSize * (0.5 + this.random()) : 0;
      let value = m.baseline * (1 + this.offsets[name]!) + daily + m.drift * days + noise + event;
      if (m.min !== undefined) value = Math.max(m.min, value);
      if (m.max !== undefined) value = Math.min(m.max, value);
      values[name] = Number(value.toFixed(m.decimals));
    }
    return values;
  }
}

/** Box–Muller. */
function gaussian(random: () => number): number {
  const u = 1 - random();
  const v = random();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** The unit of each metric of a profile, from core/units.ts: the one the dashboard shows. */
export function unitsOf(profile: ProfileName): Record<string, string> {
  return Object.fromEntries(Object.keys(PROFILES[profile]).map((name) => [name, unitOf(name)]));
}
