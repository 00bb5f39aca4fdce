/**
 * Fleet overview (#/): every device with its online dot, last seen, latest values and completeness,
 * a search box and filters. Subscribes to /live, and reads GET /api/devices once the server confirmed
 * the subscription (`subscribed`, on every connection): whatever changed before the subscription took
 * effect is in that snapshot, whatever changed after comes live, and newer wins whichever arrives
 * first (fleet-model.ts). Reading the snapshot first and subscribing after would lose what happened in
 * between — a device's last reading, or its going offline — until the next refresh. Frames that come
 * before the first snapshot wait for it (the newest value and status of each), so that no row shows
 * up without its state and metadata.
 *
 * Built to stay smooth with 1,000 devices: each row is built once and kept; a frame only updates the
 * model and marks rows dirty, and one flush per animation frame writes the cells whose text changed;
 * filtering toggles `hidden` on the kept rows instead of rebuilding the table. Rows are grid boxes
 * with ARIA table roles rather than <tr>: CSS containment (content-visibility) does not apply to table
 * rows, and without it every changed cell made the browser lay out all 1,000 rows again.
 */
import type { DeviceSummary } from '../../../core/api.ts';
import type { LiveServerFrame } from '../../../core/live.ts';
import { mountFleetAlerts } from './alerts-fleet.ts';
import { AuthRequiredError, fetchDevices } from './api.ts';
import { frameBatcher, h, setAttr, setText, textNode } from './dom.ts';
import { applyStatus, applySummary, applyValue, emptyDevice, matchesFilter, NO_FILTER, type FleetDevice, type FleetFilter } from './fleet-model.ts';
import { formatCountsCell } from './counts-format.ts';
import { formatAgo, formatPercent, formatValue, unitOf } from './format.ts';
import type { Unmount, ViewContext } from './view.ts';

const SUBSCRIPTION_ID = 'fleet';
/** A device the table has not seen appears in a frame: its metadata follows with one refresh, this long after. */
const UNKNOWN_DEVICE_REFRESH_MS = 2000;
/**
 * Completeness (and metadata) have no live frame: the table re-reads GET /api/devices this often while
 * the page is visible. Values and status come live; the refresh only merges what is newer.
 */
const SNAPSHOT_REFRESH_MS = 30_000;

class FleetRow {
  readonly tr: HTMLElement;
  private readonly dot: HTMLElement;
  private readonly site = textNode();
  private readonly model = textNode();
  private readonly seen = textNode();
  private readonly completeness = textNode();
  /** accepted / duplicates / rejected, the reasons in its title (counts-format.ts). */
  private readonly counts = textNode();
  private readonly countsCell: HTMLElement;
  private readonly values: HTMLElement;
  private readonly valueTexts = new Map<string, Text>();

  constructor(readonly device: FleetDevice) {
    const id = device.id;
    this.dot = h('span', { class: 'dot', 'data-state': device.state, title: device.state });
    this.values = h('div', { class: 'values', role: 'cell' });
    this.countsCell = h('div', { class: 'msg-counts', role: 'cell', 'data-counts': '' }, this.counts);
    this.tr = h(
      'div',
      { class: 'row', role: 'row', 'data-device': id },
      h('div', { class: 'state', role: 'cell' }, this.dot),
      h(
        'div',
        { class: 'id', role: 'cell' },
        h('a', { href: `#/device/${encodeURIComponent(id)}` }, id),
        // Shown only for a broker-authenticated device (style.css): its readings carry no signature.
        h('span', { class: 'trust', 'data-trust-badge': '', title: 'broker-authenticated: unsigned readings, authenticated by the MQTT login only' }, 'unsigned'),
      ),
      h('div', { class: 'site', role: 'cell' }, this.site),
      h('div', { class: 'model', role: 'cell' }, this.model),
      h('div', { class: 'seen', role: 'cell' }, this.seen),
      this.values,
      h('div', { class: 'completeness', role: 'cell' }, this.completeness),
      this.countsCell,
    );
  }

  /** Writes what changed in the model since the last call. */
  render(): void {
    const d = this.device;
    setAttr(this.dot, 'data-state', d.state);
    setAttr(this.dot, 'title', d.registered === 'revoked' ? 'revoked' : d.state);
    setAttr(this.tr, 'data-registered', d.registered);
    setAttr(this.tr, 'data-trust', d.trust);
    setText(this.site, d.site);
    setText(this.model, [d.model, d.profile].filter((t) => t !== '').join(' · '));
    setText(this.completeness, formatPercent(d.completeness));
    const counts = formatCountsCell(d.counts);
    setText(this.counts, counts.text);
    setAttr(this.countsCell, 'title', counts.hint);
    for (const [metric, latest] of d.latest) setText(this.valueText(metric), formatValue(latest.value));
  }

  renderSeen(now: number): void {
    setText(this.seen, formatAgo(this.device.lastSeen, now));
  }

  /** The value cell of a metric, made the first time the metric shows up; kept in metric-name order. */
  private valueText(metric: string): Text {
    let text = this.valueTexts.get(metric);
    if (text !== undefined) return text;
    text = textNode();
    this.valueTexts.set(metric, text);
    const own = this.device.units;
    const unit = Object.hasOwn(own, metric) ? own[metric]! : unitOf(metric);
    const chip = h(
      'span',
      { class: 'reading', 'data-reading': metric },
      h('span', { class: 'metric' }, metric),
      h('span', { class: 'value', 'data-metric': metric }, text),
      unit === '' ? null : h('span', { class: 'unit' }, unit),
    );
    const next = [...this.values.children].find((el) => (el.getAttribute('data-reading') ?? '') > metric);
    this.values.insertBefore(chip, next ?? null);
    return text;
  }
}

export function mountFleetView(root: HTMLElement, ctx: ViewContext): Unmount {
  const rows = new Map<string, FleetRow>();
  const dirty = new Set<FleetRow>();
  let filter: FleetFilter = { ...NO_FILTER };
  let filterDirty = false;
  let seenDue = true;
  let refreshTimer: ReturnType<typeof setTimeout> | null = null;
  let unmounted = false;
  /** Loads started, the newest one applied (an older snapshot that arrives late is dropped), and those under way. */
  let loadsStarted = 0;
  let loadApplied = 0;
  let loading = 0;
  /**
   * Until the first snapshot is in, live values and statuses wait here, the newest of each: a row built
   * from a frame alone would show its device offline, without site or model, until the snapshot came.
   */
  let early: { values: Map<string, { id: string; metric: string; ts: number; value: number }>; statuses: Map<string, { state: 'online' | 'offline'; since: number | null }> } | null = {
    values: new Map(),
    statuses: new Map(),
  };
  const abort = new AbortController();

  const search = h('input', { type: 'search', placeholder: 'Search id, site, model', 'data-filter': 'text', 'aria-label': 'Search devices' });
  const statusSelect = select('status', 'All states', [['online', 'Online'], ['offline', 'Offline'], ['revoked', 'Revoked']]);
  const siteSelect = select('site', 'All sites', []);
  const profileSelect = select('profile', 'All profiles', []);
  const total = textNode('0');
  const online = textNode('0');
  const shown = textNode('');
  const tbody = h('div', { role: 'rowgroup' });
  const message = h('p', { class: 'message', 'data-message': '' }, 'Loading devices…');
  const table = h(
    'div',
    { class: 'fleet', role: 'table', 'aria-label': 'Devices' },
    h('div', { role: 'rowgroup' }, h('div', { class: 'row head', role: 'row' }, ...['', 'Device', 'Site', 'Model · profile', 'Last seen', 'Latest values', 'Complete', 'Accepted / dup. / rejected'].map((t) => h('div', { role: 'columnheader' }, t)))),
    tbody,
  );
  root.append(
    h('div', { class: 'toolbar' }, search, statusSelect, siteSelect, profileSelect,
      h('span', { class: 'counts' }, h('span', { 'data-count': 'devices' }, total), ' devices, ', h('span', { 'data-count': 'online' }, online), ' online', shown)),
    message,
    table,
  );
  // Alert badges on the rows and the fleet's alert history below the table (alerts-fleet.ts).
  const stopAlerts = mountFleetAlerts(root, tbody, ctx.alerts);

  const batcher = frameBatcher(flush);

  function flush(): void {
    const now = Date.now();
    for (const row of dirty) {
      row.render();
      if (!filterDirty) row.tr.hidden = !matchesFilter(row.device, filter);
    }
    dirty.clear();
    if (filterDirty) for (const row of rows.values()) row.tr.hidden = !matchesFilter(row.device, filter);
    if (seenDue) for (const row of rows.values()) if (!row.tr.hidden) row.renderSeen(now);
    filterDirty = false;
    seenDue = false;
    renderCounts();
  }

  function renderCounts(): void {
    let up = 0;
    let visible = 0;
    for (const row of rows.values()) {
      if (row.device.state === 'online') up += 1;
      if (!row.tr.hidden) visible += 1;
    }
    setText(total, String(rows.size));
    setText(online, String(up));
    setText(shown, visible === rows.size ? '' : ` · ${visible} shown`);
    setText(message.firstChild as Text, rows.size === 0 ? 'No devices yet.' : visible === 0 ? 'No device matches the filters.' : '');
    message.hidden = rows.size > 0 && visible > 0;
  }

  function rowOf(id: string): FleetRow {
    let row = rows.get(id);
    if (row !== undefined) return row;
    row = new FleetRow(emptyDevice(id));
    rows.set(id, row);
    insertSorted(row.tr);
    row.renderSeen(Date.now());
    return row;
  }

  function applySnapshot(devices: readonly DeviceSummary[]): void {
    // Built in one fragment and appended once: a single layout however many devices there are.
    const fragment = document.createDocumentFragment();
    for (const summary of [...devices].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
      let row = rows.get(summary.id);
      if (row === undefined) {
        row = new FleetRow(emptyDevice(summary.id));
        rows.set(summary.id, row);
        fragment.append(row.tr);
      }
      applySummary(row.device, summary);
      dirty.add(row);
    }
    if (tbody.childElementCount === 0) tbody.append(fragment);
    else for (const row of [...fragment.children] as HTMLElement[]) insertSorted(row);
    refreshOptions();
    seenDue = true;
    batcher.schedule();
  }

  /** Rows stay in id order: a new device goes before the first row with a greater id. */
  function insertSorted(tr: HTMLElement): void {
    const id = tr.dataset.device ?? '';
    const next = ([...tbody.children] as HTMLElement[]).find((r) => (r.dataset.device ?? '') > id);
    tbody.insertBefore(tr, next ?? null);
  }

  function refreshOptions(): void {
    const sites = new Set<string>();
    const profiles = new Set<string>();
    for (const { device } of rows.values()) {
      if (device.site !== '') sites.add(device.site);
      if (device.profile !== '') profiles.add(device.profile);
    }
    setOptions(siteSelect, sites);
    setOptions(profileSelect, profiles);
  }

  async function load(): Promise<void> {
    const seq = ++loadsStarted;
    loading += 1;
    let devices: readonly DeviceSummary[] | undefined;
    let failure: unknown;
    try {
      devices = (await fetchDevices({}, abort.signal)).devices;
    } catch (error) {
      failure = error;
    } finally {
      loading -= 1;
    }
    if (unmounted) return;
    if (failure instanceof AuthRequiredError) return ctx.authRequired();
    if (devices === undefined) {
      setText(message.firstChild as Text, `Could not load devices: ${failure instanceof Error ? failure.message : String(failure)}`);
      message.hidden = false;
    } else if (seq > loadApplied) {
      loadApplied = seq;
      applySnapshot(devices);
    }
    releaseEarly(); // a snapshot is in, or none can be had: live frames go straight to the table
  }

  /** Shows what waited for the first snapshot (newer wins, as always). */
  function releaseEarly(): void {
    if (early === null) return;
    const { values, statuses } = early;
    early = null;
    for (const v of values.values()) showValue(v.id, v.metric, v.ts, v.value);
    for (const [id, status] of statuses) showStatus(id, status.state, status.since);
    batcher.schedule();
  }

  function scheduleRefresh(): void {
    // A load under way (the one after subscribing, say) brings the device's metadata already.
    if (loading > 0) return;
    refreshTimer ??= setTimeout(() => {
      refreshTimer = null;
      void load();
    }, UNKNOWN_DEVICE_REFRESH_MS);
  }

  function onFrame(frame: LiveServerFrame): void {
    if ((frame.type === 'subscribed' || frame.type === 'error') && frame.id === SUBSCRIPTION_ID) {
      // The subscription is in effect (or was refused: then the snapshot is all there is).
      void load();
      return;
    }
    if (frame.type === 'readings') {
      for (const [id, , ts, values] of frame.items) for (const metric in values) showValue(id, metric, ts, values[metric]!);
    } else if (frame.type === 'status') showStatus(frame.device, frame.state, frame.since);
    else return;
    batcher.schedule();
  }

  function showValue(id: string, metric: string, ts: number, value: number): void {
    if (early !== null) {
      const key = `${id}\u0000${metric}`;
      const kept = early.values.get(key);
      if (kept === undefined || kept.ts <= ts) early.values.set(key, { id, metric, ts, value });
      return;
    }
    const row = tableRow(id);
    applyValue(row.device, metric, ts, value);
    dirty.add(row);
  }

  function showStatus(id: string, state: 'online' | 'offline', since: number | null): void {
    if (early !== null) {
      early.statuses.set(id, { state, since });
      return;
    }
    const row = tableRow(id);
    applyStatus(row.device, state, since);
    dirty.add(row);
  }

  /** The row of a device; one the table has not seen is added, and its metadata asked for. */
  function tableRow(id: string): FleetRow {
    if (!rows.has(id)) scheduleRefresh();
    return rowOf(id);
  }

  function onFilterInput(): void {
    filter = {
      text: search.value.trim(),
      status: statusSelect.value as FleetFilter['status'],
      site: siteSelect.value,
      profile: profileSelect.value,
    };
    filterDirty = true;
    seenDue = true;
    batcher.schedule();
  }

  for (const control of [search, statusSelect, siteSelect, profileSelect]) control.addEventListener('input', onFilterInput);
  const stopFrames = ctx.live.onFrame(onFrame);
  const snapshotTimer = setInterval(() => {
    if (document.visibilityState === 'visible') void load();
  }, SNAPSHOT_REFRESH_MS);
  const seenTimer = setInterval(() => {
    seenDue = true;
    batcher.schedule();
  }, 1000);
  // Subscribed first; the snapshot follows its confirmation, on this connection and after every
  // reconnect (live.ts sends the subscription again), so nothing sent while it was down is missed.
  ctx.live.subscribe({ type: 'subscribe', id: SUBSCRIPTION_ID, devices: '*', latest: true });
  // Until /live is up, the table need not wait for it: show the snapshot now too.
  if (ctx.live.state.kind !== 'live') void load();

  return () => {
    unmounted = true;
    abort.abort();
    ctx.live.unsubscribe(SUBSCRIPTION_ID);
    stopFrames();
    stopAlerts();
    clearInterval(seenTimer);
    clearInterval(snapshotTimer);
    if (refreshTimer !== null) clearTimeout(refreshTimer);
    batcher.cancel();
  };
}

function select(name: string, allLabel: string, options: [string, string][]): HTMLSelectElement {
  return h(
    'select',
    { 'data-filter': name, 'aria-label': allLabel },
    h('option', { value: '' }, allLabel),
    ...options.map(([value, label]) => h('option', { value }, label)),
  );
}

/** Replaces a filter's options with `values` (sorted), keeping the "all" entry and the current choice. */
function setOptions(control: HTMLSelectElement, values: Set<string>): void {
  const current = [...control.options].slice(1).map((o) => o.value);
  const wanted = [...values].sort();
  if (current.length === wanted.length && current.every((v, i) => v === wanted[i])) return;
  const chosen = control.value;
  const all = control.options[0];
  control.replaceChildren(...(all === undefined ? [] : [all]), ...wanted.map((value) => h('option', { value }, value)));
  control.value = wanted.includes(chosen) ? chosen : '';
}
