/**
 * Hash routes: `#/` the fleet, `#/device/<id>?range=6h` one device, `#/quarantine?device=<id>&reason=<CODE>`
 * the rejected messages. Hash routing needs no server support.
 */
import { REJECT_REASONS, type RejectReason } from '../../../core/errors.ts';
import { isRangeName, type RangeName } from './ranges.ts';

/** A device route's `range` is there only when the URL names one: otherwise the view fits it to the data. */
export type Route = { view: 'fleet' } | { view: 'device'; id: string; range?: RangeName } | { view: 'quarantine'; device: string; reason: RejectReason | '' };

/** Same pattern as core's device id, checked before an id from the URL reaches the API. */
const DEVICE_ID = /^[a-z0-9][a-z0-9-]{0,47}$/;

export function parseRoute(hash: string): Route {
  const quarantine = /^#\/quarantine(?:\?(.*))?$/.exec(hash);
  if (quarantine !== null) {
    const params = new URLSearchParams(quarantine[1] ?? '');
    const device = params.get('device') ?? '';
    const reason = params.get('reason') ?? '';
    return { view: 'quarantine', device: DEVICE_ID.test(device) ? device : '', reason: (REJECT_REASONS as readonly string[]).includes(reason) ? (reason as RejectReason) : '' };
  }
  const match = /^#\/device\/([^?]+)(?:\?(.*))?$/.exec(hash);
  if (match === null) return { view: 'fleet' };
  const id = decodeURIComponentSafe(match[1] ?? '');
  const range = new URLSearchParams(match[2] ?? '').get('range');
  if (!DEVICE_ID.test(id)) return { view: 'fleet' };
  return isRangeName(range) ? { view: 'device', id, range } : { view: 'device', id };
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return '';
  }
}

/** The hash of the quarantine page, filtered by device and reason when given. */
export function quarantineHash(filter: { device?: string; reason?: string } = {}): string {
  const params = new URLSearchParams();
  if (filter.device) params.set('device', filter.device);
  if (filter.reason) params.set('reason', filter.reason);
  const query = params.toString();
  return query === '' ? '#/quarantine' : `#/quarantine?${query}`;
}
