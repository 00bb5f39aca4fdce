/** svc:alerts and svc:display's part in the broker's topic ACL (pure functions of broker/acl.ts). */
import { describe, expect, it } from 'vitest';
import { mayPublish, maySubscribe } from '../../broker/acl.ts';
import { ownerFromJson } from '../../broker/session-file.ts';

const alerts = { kind: 'service', service: 'alerts' } as const;
const display = { kind: 'service', service: 'display' } as const;

describe('alerts ACL', () => {
  it.each([
    ['pipeline/#', true],
    ['pipeline/readings/+', true],
    ['pipeline/counts/dev-1', true],
    ['sensors/+/status', true],
    ['sensors/+/telemetry', false],
    ['sensors/#', false],
    ['#', false],
    ['$SYS/#', false],
  ])('svc:alerts subscribes to %s: %s', (filter, allowed) => {
    expect(maySubscribe(alerts, filter)).toBe(allowed);
  });

  it.each([
    ['alerts/dev-1', true],
    ['alerts/dev-1/extra', true],
    ['alerts/+', false],
    ['pipeline/readings/dev-1', false],
    ['sensors/dev-1/status', false],
    ['sensors/dev-1/telemetry', false],
  ])('svc:alerts publishes on %s: %s', (topic, allowed) => {
    expect(mayPublish(alerts, topic)).toBe(allowed);
  });

  it('svc:display reads the alert states and publishes nothing', () => {
    expect(maySubscribe(display, 'alerts/+')).toBe(true);
    expect(maySubscribe(display, 'alerts/dev-1')).toBe(true);
    expect(mayPublish(display, 'alerts/dev-1')).toBe(false);
  });

  it("a saved session of svc:alerts is read back as its owner's", () => {
    expect(ownerFromJson({ kind: 'service', service: 'alerts' })).toEqual(alerts);
    expect(ownerFromJson({ kind: 'service', service: 'alertz' })).toBeUndefined();
  });
});
