/**
 * Metric units are defined once (core/units.ts): every metric the simulator sends has a unit there, and
 * the simulator and the dashboard read the same unit for it.
 */
import { describe, expect, it } from 'vitest';
import { METRIC_UNITS, unitOf } from '../../core/units.ts';
import { unitOf as dashboardUnitOf } from '../../display/web/src/format.ts';
import { PROFILE_NAMES, PROFILES, unitsOf } from '../../firmware-sim/signals.ts';

const simulated = PROFILE_NAMES.flatMap((profile) => Object.keys(PROFILES[profile]).map((metric) => [profile, metric] as const));

describe('metric units', () => {
  it.each(simulated)('%s: %s has one unit, the same in the simulator and on the dashboard', (profile, metric) => {
    expect(Object.hasOwn(METRIC_UNITS, metric), 'listed in core/units.ts').toBe(true);
    const unit = unitOf(metric);
    expect(unit).not.toBe('');
    expect(unitsOf(profile)[metric], 'the simulator').toBe(unit);
    expect(dashboardUnitOf(metric), 'the dashboard').toBe(unit);
  });

  it('lists no metric that nothing sends', () => {
    expect(Object.keys(METRIC_UNITS).sort()).toEqual([...new Set(simulated.map(([, metric]) => metric))].sort());
  });

  it.each([
    ['temperature', '°C'],
    ['co2', 'ppm'],
    ['vibration_rms', 'mm/s'],
    ['rpm', ''],
    ['', ''],
    ['constructor', ''],
    ['__proto__', ''],
    ['toString', ''],
  ])('unitOf(%j) = %j', (metric, unit) => {
    expect(unitOf(metric)).toBe(unit);
    expect(dashboardUnitOf(metric)).toBe(unit);
  });
});
