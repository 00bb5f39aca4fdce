/**
 * A device page's alerts: GET /api/alerts?device=… every ALERTS_POLL_MS (with the device's rules), the
 * rules that fire or wait now, the device's recent events, and what its charts draw of them (threshold
 * lines, firing spans: chart.ts). Everything from the messages is set as text.
 */
import type { AlertRuleState } from '../../../core/alerts.ts';
import type { AlertsResponse } from '../../../core/api.ts';
import { ApiError, AuthRequiredError, fetchAlerts } from './api.ts';
import { ALERTS_POLL_MS } from './alerts-feed.ts';
import { alertEventItems } from './alerts-list.ts';
import { describeValue, firingSpans, thresholdLines } from './alerts-model.ts';
import type { MetricChart } from './chart.ts';
import { h } from './dom.ts';
import type { ViewContext } from './view.ts';

/** The device's events the page shows: all the alert state message carries. */
const RECENT_ITEMS = 20;

export interface DeviceAlerts {
  /** Gives a chart the device's threshold lines and firing spans on its metric (a new chart, or after each poll). */
  decorate(chart: MetricChart): void;
  unmount(): void;
}

/**
 * `charts`: the page's charts now; `changed`: called after new alerts were given to them (the page
 * redraws on its next frame).
 */
export function mountDeviceAlerts(root: HTMLElement, ctx: ViewContext, deviceId: string, charts: () => Iterable<MetricChart>, changed: () => void): DeviceAlerts {
  let current: AlertsResponse | null = null;
  let unmounted = false;
  const abort = new AbortController();
  const active = h('ul', { class: 'alert-list', 'data-device-active-alerts': '' });
  const list = h('ol', { class: 'alert-events', 'data-device-recent-alerts': '' });
  const empty = h('p', { class: 'message' }, 'No alerts for this device.');
  root.append(h('section', { class: 'alert-history', 'data-device-alerts': '' }, h('h3', {}, 'Recent alerts'), active, empty, list));

  function decorate(chart: MetricChart): void {
    const rules = current?.rules ?? [];
    chart.setAlerts(thresholdLines(rules, chart.metric), firingSpans(current?.recent ?? [], rules, chart.metric));
  }

  function render(alerts: AlertsResponse): void {
    current = alerts;
    active.replaceChildren(...alerts.active.map((rule) => activeItem(rule)));
    empty.hidden = alerts.recent.length > 0 || alerts.active.length > 0;
    list.replaceChildren(...alertEventItems(alerts.recent.slice(0, RECENT_ITEMS), false));
    for (const chart of charts()) decorate(chart);
    changed();
  }

  let loading = false;
  async function load(): Promise<void> {
    if (loading || document.visibilityState !== 'visible') return;
    loading = true;
    try {
      const alerts = await fetchAlerts({ device: deviceId, limit: RECENT_ITEMS }, abort.signal);
      if (!unmounted) render(alerts);
    } catch (error) {
      if (unmounted) return;
      if (error instanceof AuthRequiredError) ctx.authRequired();
      // An unknown device (404) has no alerts: the page says so elsewhere. Other failures: next poll.
      else if (!(error instanceof ApiError && error.status === 404)) console.warn('device alerts not loaded', error);
    } finally {
      loading = false;
    }
  }

  const timer = setInterval(() => void load(), ALERTS_POLL_MS);
  void load();
  return {
    decorate,
    unmount: () => {
      unmounted = true;
      abort.abort();
      clearInterval(timer);
    },
  };
}

function activeItem(rule: AlertRuleState): HTMLElement {
  return h(
    'li',
    { 'data-alert': '', 'data-rule': rule.rule, 'data-state': rule.state, 'data-severity': rule.severity },
    h('span', { class: 'severity', 'data-severity': rule.severity }, rule.severity),
    ' ',
    h('span', { class: 'state', 'data-state': rule.state }, rule.state),
    ' ',
    h('span', { class: 'rule' }, rule.rule),
    ': ',
    h('span', { class: 'value' }, describeValue(rule)),
    ' ',
    h('span', { class: 'since' }, `since ${new Date(rule.since).toLocaleString()}`),
  );
}
