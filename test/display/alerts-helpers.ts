/** Alert state messages (core/alerts.ts) for the display's alert tests: a rule's state, an event, a whole message. */
import type { AlertEvent, AlertRuleState, AlertStateMessage } from '../../core/alerts.ts';

export const ALERT_T0 = 1_760_000_000_000;
const T = ALERT_T0;

export function rule(over: Partial<AlertRuleState> = {}): AlertRuleState {
  return { rule: 'hot', kind: 'above', severity: 'warning', metric: 'temperature', threshold: 30, clear: 29, state: 'ok', since: T, value: 25, ...over };
}

export function event(over: Partial<AlertEvent> & Pick<AlertEvent, 'at' | 'state'>): AlertEvent {
  const { at, state } = over;
  return { v: 1, id: `${over.device ?? 'dev-0'}-${over.rule ?? 'hot'}-${at}-${state}`, device: 'dev-0', rule: 'hot', kind: 'above', severity: 'warning', metric: 'temperature', value: 31, threshold: 30, message: 'temperature 31 above 30', ...over };
}

export function stateMessage(device: string, rules: AlertRuleState[], recent: AlertEvent[] = [], at = T): AlertStateMessage {
  return { v: 1, device, at, rules, recent };
}

