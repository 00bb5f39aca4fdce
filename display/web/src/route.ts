/** Hash routes: `#/` the fleet, `#/device/<id>?range=6h` one device. Hash routing needs no server support. */
import { DEFAULT_RANGE, isRangeName, type RangeName } from './ranges.ts';

export type Route = { view: 'fleet' } | { view: 'device'; id: string; range: RangeName };

/** Same pattern as core's device id, checked before an id from the URL reaches the API. */
const DEVICE_ID = /^[a-z0-9][a-z0-9-]{0,47}$/;

export function parseRoute(hash: string): Route {
  const match = /^#\/device\/([^?]+)(?:\?(.*))?$/.exec(hash);
  if (match === null) return { view: 'fleet' };
  const id = decodeURIComponentSafe(match[1] ?? '');
  const range = new URLSearchParams(match[2] ?? '').get('range');
  if (!DEVICE_ID.test(id)) return { view: 'fleet' };
  return { view: 'device', id, range: isRangeName(range) ? range : DEFAULT_RANGE };
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return '';
  }
}
