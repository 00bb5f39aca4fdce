/**
 * Device view (#/device/<id>): the device's metadata and online state, range buttons, and one chart per
 * metric, history first and then live readings appended, the time axis sliding with the clock.
 *
 * One /live subscription with history per range. Changing the range unsubscribes and subscribes anew
 * under a fresh id, so a history frame of the old range arriving late is recognised and ignored.
 */
import type { DeviceSummary } from '../../../core/api.ts';
import type { LiveServerFrame } from '../../../core/live.ts';
import { AuthRequiredError, downloadCsv, fetchDevices, readingsCsvUrl } from './api.ts';
import { MetricChart } from './chart.ts';
import { frameBatcher, h, setAttr, setText, textNode } from './dom.ts';
import { formatAgo, formatPercent } from './format.ts';
import { RANGES, type RangeName } from './ranges.ts';
import { getToken } from './token.ts';
import type { Unmount, ViewContext } from './view.ts';

let subscriptionCounter = 0;

export function mountDeviceView(root: HTMLElement, ctx: ViewContext, deviceId: string, initialRange: RangeName): Unmount {
  let range = initialRange;
  let subscriptionId = '';
  /** Live readings are applied only once the history of the current subscription is in. */
  let historyIn = false;
  let state: 'online' | 'offline' | 'unknown' = 'unknown';
  let lastSeen: number | null = null;
  let unmounted = false;
  const charts = new Map<string, MetricChart>();
  const abort = new AbortController();

  const dot = h('span', { class: 'dot', 'data-state': 'unknown' });
  const stateText = textNode('…');
  const site = textNode('–');
  const model = textNode('–');
  const profile = textNode('–');
  const seen = textNode('–');
  const completeness = textNode('–');
  const trust = textNode('–');
  const trustField = h('span', { 'data-device-trust': '', 'data-trust': 'unknown' }, trust);
  const message = h('p', { class: 'message' }, 'Loading history…');
  const csv = h('a', { class: 'button', 'data-csv': '' }, 'Download CSV');
  const rangeButtons = (Object.keys(RANGES) as RangeName[]).map((name) => {
    const button = h('button', { type: 'button', 'data-range': name, 'aria-pressed': String(name === range) }, name);
    button.addEventListener('click', () => selectRange(name));
    return button;
  });
  const chartGrid = h('div', { class: 'charts' });
  const resizeObserver = new ResizeObserver(() => {
    for (const chart of charts.values()) chart.fitWidth();
  });
  root.append(
    h('p', { class: 'back' }, h('a', { href: '#/' }, '← Fleet')),
    h('div', { class: 'device-head' },
      h('h2', {}, dot, ' ', deviceId),
      h('dl', { class: 'meta' },
        field('State', h('span', { 'data-device-state': '' }, stateText)), field('Site', site), field('Model', model),
        field('Profile', profile), field('Last seen', seen), field('Complete', completeness), field('Readings', trustField))),
    h('div', { class: 'toolbar' }, h('div', { class: 'ranges', role: 'group', 'aria-label': 'Time range' }, ...rangeButtons), csv),
    message,
    chartGrid,
  );

  const batcher = frameBatcher(() => {
    const now = Date.now() + ctx.live.clockOffset;
    for (const chart of charts.values()) {
      chart.setWindow(now - RANGES[range], now);
      chart.render();
    }
    setAttr(dot, 'data-state', state);
    setText(stateText, state);
    setText(seen, formatAgo(lastSeen, now));
  });

  function chartOf(metric: string): MetricChart {
    let chart = charts.get(metric);
    if (chart !== undefined) return chart;
    chart = new MetricChart(metric);
    charts.set(metric, chart);
    const next = [...charts.keys()].sort().find((m) => m > metric);
    chartGrid.insertBefore(chart.element, next === undefined ? null : (charts.get(next)?.element ?? null));
    // Observing fires once at once, which sizes the new chart to its box.
    resizeObserver.observe(chart.element);
    return chart;
  }

  function subscribe(): void {
    if (subscriptionId !== '') ctx.live.unsubscribe(subscriptionId);
    subscriptionCounter += 1;
    subscriptionId = `dev-${subscriptionCounter}`;
    historyIn = false;
    // data-history names the range whose history is drawn (tests wait for it); none while it loads.
    chartGrid.removeAttribute('data-history');
    setText(message.firstChild as Text, 'Loading history…');
    message.hidden = false;
    // About one point per pixel of the widest chart the page can show: more would not be seen.
    const maxPoints = Math.min(10_000, Math.max(200, Math.floor(chartGrid.clientWidth || 1000)));
    ctx.live.subscribe({ type: 'subscribe', id: subscriptionId, devices: [deviceId], history: { from: `-${range}`, maxPoints } });
    const csvUrl = readingsCsvUrl(deviceId, `-${range}`);
    csv.setAttribute('href', csvUrl);
    csv.setAttribute('download', `${deviceId}-${range}.csv`);
  }

  function selectRange(name: RangeName): void {
    if (name === range) return;
    range = name;
    for (const button of rangeButtons) button.setAttribute('aria-pressed', String(button.dataset.range === name));
    // The range lives in the URL so a reload keeps it; replaceState does not fire hashchange (no re-mount).
    history.replaceState(null, '', `#/device/${encodeURIComponent(deviceId)}?range=${name}`);
    subscribe();
  }

  function onFrame(frame: LiveServerFrame): void {
    if (frame.type === 'history' && frame.id === subscriptionId && frame.device === deviceId) {
      historyIn = true;
      chartGrid.setAttribute('data-history', range);
      const metrics = new Set(frame.series.map((s) => s.metric));
      for (const [metric, chart] of charts) if (!metrics.has(metric)) chart.setHistory([], undefined);
      for (const series of frame.series) chartOf(series.metric).setHistory(series.points, frame.mode === 'aggregate' ? frame.every : undefined);
      const points = frame.series.reduce((sum, s) => sum + s.points.length, 0);
      setText(message.firstChild as Text, points === 0 ? `No readings in the last ${range}; live readings will appear here.` : '');
      message.hidden = points > 0;
    } else if (frame.type === 'readings' && historyIn) {
      for (const [id, , ts, values] of frame.items) {
        if (id !== deviceId) continue;
        for (const [metric, value] of Object.entries(values)) chartOf(metric).append(ts, value);
        if (lastSeen === null || ts > lastSeen) lastSeen = ts;
        message.hidden = true;
      }
    } else if (frame.type === 'status' && frame.device === deviceId) {
      state = frame.state;
    } else if (frame.type === 'error' && frame.id === subscriptionId) {
      setText(message.firstChild as Text, `The server refused the chart: ${frame.message} (${frame.code})`);
      message.hidden = false;
    } else return;
    batcher.schedule();
  }

  async function loadMeta(): Promise<void> {
    try {
      const response = await fetchDevices({ q: deviceId }, abort.signal);
      if (unmounted) return;
      const summary = response.devices.find((d) => d.id === deviceId);
      if (summary === undefined) setText(stateText, 'unknown device');
      else showMeta(summary);
    } catch (error) {
      if (unmounted) return;
      if (error instanceof AuthRequiredError) ctx.authRequired();
      else setText(stateText, `unavailable (${error instanceof Error ? error.message : String(error)})`);
    }
  }

  function showMeta(summary: DeviceSummary): void {
    setText(site, summary.meta.site ?? '–');
    setText(model, summary.meta.model ?? '–');
    setText(profile, summary.meta.profile ?? '–');
    setText(completeness, formatPercent(summary.completeness?.ratio));
    const unsigned = summary.trust === 'broker';
    setAttr(trustField, 'data-trust', unsigned ? 'broker' : 'signed');
    setAttr(trustField, 'title', unsigned ? 'broker-authenticated: only the MQTT login vouches for these readings' : 'every message verified with the device key');
    setText(trust, unsigned ? `unsigned (broker-authenticated${summary.payload === undefined ? '' : `, ${summary.payload}`})` : 'signed');
    state = summary.registered === 'revoked' ? 'offline' : summary.state;
    if (summary.lastSeen !== null && (lastSeen === null || summary.lastSeen > lastSeen)) lastSeen = summary.lastSeen;
    batcher.schedule();
  }

  csv.addEventListener('click', (event) => {
    // A link cannot send the Authorization header: with a token the file is fetched and saved from a blob.
    if (getToken() === null) return;
    event.preventDefault();
    downloadCsv(csv.href, `${deviceId}-${range}.csv`).catch((error: unknown) => {
      if (error instanceof AuthRequiredError) ctx.authRequired();
      else setText(message.firstChild as Text, `CSV download failed: ${error instanceof Error ? error.message : String(error)}`);
    });
  });

  const stopFrames = ctx.live.onFrame(onFrame);
  // Held-back readings and the new history come again with the re-sent subscription; until then, wait.
  const stopReconnected = ctx.live.onReconnected(() => {
    historyIn = false;
    void loadMeta();
  });
  // The time axis slides even when the device is silent.
  const slideTimer = setInterval(() => batcher.schedule(), 1000);
  void loadMeta();
  subscribe();

  return () => {
    unmounted = true;
    abort.abort();
    ctx.live.unsubscribe(subscriptionId);
    stopFrames();
    stopReconnected();
    resizeObserver.disconnect();
    clearInterval(slideTimer);
    batcher.cancel();
    for (const chart of charts.values()) chart.destroy();
  };
}

function field(label: string, value: Node): HTMLElement {
  return h('div', {}, h('dt', {}, label), h('dd', {}, value));
}
