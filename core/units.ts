/**
 * The unit of each metric, by metric name: one table for the simulator, which sends these metrics, and
 * the dashboard, which shows them with their units. Plain data and no imports, so the dashboard's
 * browser bundle can include it. A metric not listed here is shown without a unit.
 */
export const METRIC_UNITS = {
  temperature: '°C',
  humidity: '%',
  pressure: 'hPa',
  co2: 'ppm',
  vibration_rms: 'mm/s',
  motor_temp: '°C',
  current: 'A',
  voltage: 'V',
  battery: '%',
} as const satisfies Record<string, string>;

export type MetricWithUnit = keyof typeof METRIC_UNITS;

/** The unit of `metric`, or '' when it has none (own keys only: "constructor" is not a metric with a unit). */
export function unitOf(metric: string): string {
  return Object.hasOwn(METRIC_UNITS, metric) ? METRIC_UNITS[metric as MetricWithUnit] : '';
}
