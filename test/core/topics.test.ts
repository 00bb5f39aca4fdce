/** Topic builders and the parser: round trips, and everything that is not one of ours is refused. */
import { describe, expect, it } from 'vitest';
import { hasWildcard, parseTopic, topics } from '../../core/topics.ts';

describe('topics', () => {
  it('build and parse back', () => {
    expect(topics.telemetry('dev-1')).toBe('sensors/dev-1/telemetry');
    expect(topics.status('dev-1')).toBe('sensors/dev-1/status');
    expect(topics.verified('dev-1')).toBe('pipeline/readings/dev-1');
    expect(parseTopic(topics.telemetry('dev-1'))).toEqual({ kind: 'telemetry', deviceId: 'dev-1' });
    expect(parseTopic(topics.status('a'))).toEqual({ kind: 'status', deviceId: 'a' });
    expect(parseTopic(topics.verified('z-9'))).toEqual({ kind: 'verified', deviceId: 'z-9' });
    expect(parseTopic(topics.completeness('z-9'))).toEqual({ kind: 'completeness', deviceId: 'z-9' });
    expect(topics.shared('ingest', topics.allTelemetry)).toBe('$share/ingest/sensors/+/telemetry');
  });

  it.each([
    'sensors/dev-1/telemetry/extra',
    'sensors/dev-1',
    '/sensors/dev-1/telemetry',
    'sensors//telemetry',
    'sensors/+/telemetry',
    'sensors/#',
    'sensors/DEV/telemetry',
    'sensors/dev 1/telemetry',
    'sensors/dev-1/config',
    'pipeline/other/dev-1',
    '$SYS/broker/uptime',
    `sensors/${'a'.repeat(49)}/telemetry`,
    '',
  ])('refuses %j', (topic) => {
    expect(parseTopic(topic)).toBeUndefined();
  });

  it('finds wildcards', () => {
    expect(hasWildcard('sensors/+/telemetry')).toBe(true);
    expect(hasWildcard('sensors/#')).toBe(true);
    expect(hasWildcard('sensors/dev-1/telemetry')).toBe(false);
  });
});
