/** A list of alert events (a device's recent ones, or the fleet's history), newest first, as text only. */
import type { AlertEvent } from '../../../core/alerts.ts';
import { describeValue } from './alerts-model.ts';
import { h } from './dom.ts';

export function alertEventItems(events: readonly AlertEvent[], withDevice: boolean): HTMLElement[] {
  return events.map((event) =>
    h(
      'li',
      { 'data-alert-event': event.id, 'data-event-device': withDevice ? event.device : undefined, 'data-rule': event.rule, 'data-state': event.state, 'data-severity': event.severity },
      h('time', { datetime: new Date(event.at).toISOString() }, new Date(event.at).toLocaleString()),
      ' ',
      h('span', { class: 'state', 'data-state': event.state }, event.state),
      ' ',
      h('span', { class: 'severity', 'data-severity': event.severity }, event.severity),
      ' ',
      withDevice ? h('a', { href: `#/device/${encodeURIComponent(event.device)}` }, event.device) : null,
      withDevice ? ' ' : null,
      h('span', { class: 'rule' }, event.rule),
      ': ',
      h('span', { class: 'value' }, describeValue(event)),
      event.message === '' ? null : h('span', { class: 'message-text' }, ` — ${event.message}`),
    ),
  );
}
