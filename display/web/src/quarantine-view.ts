/**
 * Quarantine page (#/quarantine?device=&reason=): the messages ingest rejected, newest first, from
 * GET /api/quarantine, filtered by device and reason, with "Load older" paging by the answer's `next`.
 * Each entry shows its time, device, reason code and text, ingest's message and the start of the
 * payload. Payloads, topics and messages are attacker-controlled: they are only ever set as text
 * (dom.ts's h() appends strings as text nodes), never parsed as HTML.
 */
import type { QuarantineEntryView } from '../../../core/api.ts';
import { REJECT_REASONS, type RejectReason } from '../../../core/errors.ts';
import { AuthRequiredError, fetchQuarantine } from './api.ts';
import { h, setText, textNode } from './dom.ts';
import { quarantineHash } from './route.ts';
import type { Unmount, ViewContext } from './view.ts';

/** Entries per page. */
const PAGE = 100;

export function mountQuarantineView(root: HTMLElement, ctx: ViewContext, filter: { device: string; reason: RejectReason | '' }): Unmount {
  const abort = new AbortController();
  let next: string | null = null;
  let shown = 0;

  const device = h('input', { type: 'search', placeholder: 'Device id', 'data-filter': 'device', 'aria-label': 'Device', value: filter.device });
  const reason = h(
    'select',
    { 'data-filter': 'reason', 'aria-label': 'Reason' },
    h('option', { value: '' }, 'All reasons'),
    ...REJECT_REASONS.map((code) => h('option', { value: code }, code)),
  );
  reason.value = filter.reason;
  const summaryText = textNode('');
  const summary = h('span', { class: 'counts', 'data-quarantine-summary': '' }, summaryText);
  const message = h('p', { class: 'message', 'data-message': '' }, 'Loading…');
  const list = h('ol', { class: 'quarantine', 'data-quarantine': '' });
  const older = h('button', { type: 'button', 'data-load-older': '', hidden: '' }, 'Load older');
  root.append(
    h('p', { class: 'back' }, h('a', { href: '#/' }, '← Fleet')),
    h('h2', {}, 'Quarantine'),
    h('p', { class: 'hint' }, 'Messages ingest rejected, newest first. Payloads are shown as text, cut where ingest cut them.'),
    h('div', { class: 'toolbar' }, device, reason, summary),
    message,
    list,
    older,
  );

  // A new filter is a new page (and URL), so a reload or a shared link shows the same list.
  const applyFilter = () => {
    location.hash = quarantineHash({ device: device.value.trim(), reason: reason.value });
  };
  device.addEventListener('change', applyFilter);
  reason.addEventListener('change', applyFilter);
  older.addEventListener('click', () => void load(next ?? undefined));

  async function load(before?: string): Promise<void> {
    older.disabled = true;
    try {
      const page = await fetchQuarantine({ device: filter.device, reason: filter.reason, limit: PAGE, ...(before === undefined ? {} : { before }) }, abort.signal);
      if (abort.signal.aborted) return;
      for (const entry of page.entries) list.append(entryItem(entry));
      shown += page.entries.length;
      next = page.next;
      older.hidden = next === null;
      setText(summaryText, `${shown} shown${page.evicted > 0 ? ` · ${page.evicted} older entries evicted` : ''}`);
      const text = !page.available
        ? 'No quarantine here: ingest has not written one in the folder this display reads (SENSORPIPE_DISPLAY_QUARANTINE_DIR).'
        : shown === 0
          ? 'No rejected messages match.'
          : '';
      setText(message.firstChild as Text, text);
      message.hidden = text === '';
    } catch (error) {
      if (abort.signal.aborted) return;
      if (error instanceof AuthRequiredError) return ctx.authRequired();
      setText(message.firstChild as Text, `Could not load the quarantine: ${error instanceof Error ? error.message : String(error)}`);
      message.hidden = false;
    } finally {
      older.disabled = false;
    }
  }

  void load();
  return () => abort.abort();
}

function entryItem(entry: QuarantineEntryView): HTMLElement {
  const when = new Date(entry.at);
  const payloadNote = [entry.encoding === 'base64' ? 'base64 (not UTF-8)' : '', entry.truncated ? `truncated: ${entry.bytes} bytes in all` : ''].filter((t) => t !== '').join(' · ');
  return h(
    'li',
    { class: 'q-entry', 'data-quarantine-entry': '', 'data-reason': entry.reason },
    h(
      'div',
      { class: 'q-head' },
      h('time', { datetime: when.toISOString(), title: when.toISOString() }, when.toLocaleString()),
      entry.device === null ? h('span', { class: 'q-device' }, '(no device)') : h('a', { class: 'q-device', 'data-q-device': '', href: `#/device/${encodeURIComponent(entry.device)}` }, entry.device),
      h('code', { class: 'q-reason', 'data-q-reason': '' }, entry.reason),
      h('span', { class: 'q-reason-text', 'data-q-reason-text': '' }, entry.reasonText),
    ),
    h('div', { class: 'q-message', 'data-q-message': '' }, entry.message),
    entry.topic === '' ? null : h('div', { class: 'q-topic' }, 'topic ', h('code', {}, entry.topic)),
    h('pre', { class: 'q-payload', 'data-q-payload': '' }, entry.payload, entry.truncated ? h('span', { class: 'q-truncated', 'data-q-truncated': '' }, ' …') : null),
    payloadNote === '' ? null : h('div', { class: 'q-note' }, payloadNote),
  );
}
