/**
 * The fleet view's alerts: a badge with the worst firing severity on each device's row (and the row
 * marked with data-alert, for its colour), and the alert history, the fleet's recent events merged,
 * below the table. Fed by the page's AlertsFeed; rows added to the table later are marked as they come.
 */
import type { AlertSeverity } from '../../../core/alerts.ts';
import type { AlertsResponse } from '../../../core/api.ts';
import type { AlertsFeed } from './alerts-feed.ts';
import { alertEventItems } from './alerts-list.ts';
import { worstByDevice } from './alerts-model.ts';
import { h, setAttr, setText } from './dom.ts';
import type { Unmount } from './view.ts';

/** Events the history section shows. */
const HISTORY_ITEMS = 50;

/** `rows`: the table's row group, whose children carry data-device and an `.id` cell. */
export function mountFleetAlerts(root: HTMLElement, rows: HTMLElement, feed: AlertsFeed): Unmount {
  let worst = new Map<string, AlertSeverity>();
  const list = h('ol', { class: 'alert-events' });
  const empty = h('p', { class: 'message' }, 'No alerts yet.');
  root.append(h('section', { class: 'alert-history', 'data-alert-history': '' }, h('h3', {}, 'Alert history'), empty, list));

  function markRow(row: HTMLElement): void {
    const id = row.dataset.device;
    if (id === undefined) return;
    const severity = worst.get(id);
    let badge = row.querySelector<HTMLElement>('[data-alert-badge]');
    if (severity === undefined) {
      row.removeAttribute('data-alert');
      if (badge !== null) badge.hidden = true;
      return;
    }
    setAttr(row, 'data-alert', severity);
    if (badge === null) {
      badge = h('span', { class: 'alert-badge', 'data-alert-badge': '' });
      badge.append(document.createTextNode(''));
      (row.querySelector('.id') ?? row).append(badge);
    }
    badge.hidden = false;
    setAttr(badge, 'data-severity', severity);
    setAttr(badge, 'title', `${severity} alert firing`);
    setText(badge.firstChild as Text, severity);
  }

  function render(alerts: AlertsResponse): void {
    worst = worstByDevice(alerts.active);
    for (const row of rows.children) markRow(row as HTMLElement);
    const events = alerts.recent.slice(0, HISTORY_ITEMS);
    empty.hidden = events.length > 0;
    list.replaceChildren(...alertEventItems(events, true));
  }

  // The table adds rows as devices appear: each new row gets its badge at once, not at the next poll.
  const observer = new MutationObserver((records) => {
    for (const record of records) for (const node of record.addedNodes) if (node instanceof HTMLElement) markRow(node);
  });
  observer.observe(rows, { childList: true });
  const stop = feed.onUpdate(render);
  return () => {
    stop();
    observer.disconnect();
  };
}
