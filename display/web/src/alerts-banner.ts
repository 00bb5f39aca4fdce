/**
 * The banner at the top of every page: the fleet's firing alerts, most recent first, each with its
 * device (a link to the device's page), rule, severity, value against threshold, and since when.
 * Hidden while nothing fires. Everything from the alert messages is set as text, never as HTML.
 */
import type { ActiveAlert, AlertsResponse } from '../../../core/api.ts';
import type { AlertsFeed } from './alerts-feed.ts';
import { describeValue } from './alerts-model.ts';
import { h, setText, textNode } from './dom.ts';
import { formatAgo } from './format.ts';

export function alertBanner(feed: AlertsFeed): HTMLElement {
  const title = textNode('');
  const more = textNode('');
  const list = h('ul', { class: 'alert-list' });
  const banner = h('section', { class: 'alert-banner', 'data-alert-banner': '', 'aria-label': 'Firing alerts', hidden: '' }, h('strong', {}, title), list, h('p', { class: 'more' }, more));

  function render(alerts: AlertsResponse): void {
    const firing = alerts.active.filter((alert) => alert.state === 'firing');
    banner.hidden = firing.length === 0;
    setText(title, alerts.firing === 1 ? '1 alert firing' : `${alerts.firing} alerts firing`);
    // The API lists at most its limit; the count says how many there are in all.
    setText(more, alerts.firing > firing.length ? `and ${alerts.firing - firing.length} more` : '');
    const now = Date.now();
    list.replaceChildren(...firing.map((alert) => bannerItem(alert, now)));
  }

  feed.onUpdate(render);
  return banner;
}

function bannerItem(alert: ActiveAlert, now: number): HTMLElement {
  return h(
    'li',
    // data-alert-device, not data-device: that one marks the fleet table's rows.
    { 'data-alert': '', 'data-alert-device': alert.device, 'data-rule': alert.rule, 'data-severity': alert.severity },
    h('span', { class: 'severity', 'data-severity': alert.severity }, alert.severity),
    ' ',
    h('a', { href: `#/device/${encodeURIComponent(alert.device)}` }, alert.device),
    ' ',
    h('span', { class: 'rule' }, alert.rule),
    ': ',
    h('span', { class: 'value', 'data-alert-value': '' }, describeValue(alert)),
    ' ',
    h('span', { class: 'since', title: new Date(alert.since).toISOString() }, `since ${new Date(alert.since).toLocaleTimeString()} (${formatAgo(alert.since, now)})`),
  );
}
