/**
 * Device view (#/device/<id>): the device's metadata and online state, range buttons, and one chart per
 * metric, history first and then live readings appended, the time axis sliding with the clock.
 *
 * One /live subscription with history per range. Changing the range unsubscribes and subscribes anew
 * under a fresh id, so a history frame of the old range arriving late is recognised and ignored.
 * Without a range in the URL the view first asks when the device's first reading was and opens on the
 * smallest range that holds it (ranges.ts fitRange); a range the user chose (URL or button) is kept.
 */
import type { DeviceSummary } from '../../../core/api.ts';
import type { LiveServerFrame } from '../../../core/live.ts';
import { mountDeviceAlerts } from './alerts-device.ts';
import { AuthRequiredError, downloadCsv, fetchDevices, fetchFirstReading, readingsCsvUrl } from './api.ts';
import { MetricChart } from './chart.ts';
import { frameBatcher, h, setAttr, setText, textNode } from './dom.ts';
import { rejectedTotal, rejectionsByReason } from './counts-format.ts';
import { formatAgo, formatPercent } from './format.ts';
import { DEFAULT_RANGE, fitRange, LONGEST_RANGE, RANGES, type RangeName } from './ranges.ts';
import { quarantineHash } from './route.ts';
import { getToken } from './token.ts';
import type { Unmount, ViewContext } from './view.ts';

let subscriptionCounter = 0;

export function mountDeviceView(root: HTMLElement, ctx: ViewContext, deviceId: string, chosenRange: RangeName | undefined): Unmount {
  let range = chosenRange ?? DEFAULT_RANGE;
  /** The user chose the range (in the URL, or by a button): it is not fitted to the data. */
  let rangeChosen = chosenRange !== undefined;
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
  // What became of its messages (ingest's counts), with links to the rejected ones in the quarantine.
  const countsBox = h('div', { class: 'counts-detail', 'data-device-counts': '' });
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
        field('Profile', profile), field('Last seen', seen), field('Complete', completeness), field('Readings', trustField)),
      countsBox),
    h('div', { class: 'toolbar' }, h('div', { class: 'ranges', role: 'group', 'aria-label': 'Time range' }, ...rangeButtons), csv),
    message,
    chartGrid,
  );
  // Threshold lines and firing spans on the charts, and the device's recent alerts (alerts-device.ts).
  const alerts = mountDeviceAlerts(root, ctx, deviceId, () => charts.values(), () => batcher.schedule());

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
    alerts.decorate(chart);
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
    csv.setAttribute('download', `${deviceId}-raw-${range}.csv`);
  }

  function showRange(name: RangeName): void {
    range = name;
    for (const button of rangeButtons) button.setAttribute('aria-pressed', String(button.dataset.range === name));
  }

  /** Opens on the smallest range that holds the device's data, unless the user chooses one meanwhile. */
  async function fitRangeToData(): Promise<void> {
    let fitted = DEFAULT_RANGE;
    try {
      fitted = fitRange(await fetchFirstReading(deviceId, `-${LONGEST_RANGE}`, abort.signal), Date.now() + ctx.live.clockOffset);
    } catch (error) {
      // The chart still opens, on the default range; a refused token is asked for as anywhere.
      if (!unmounted && error instanceof AuthRequiredError) ctx.authRequired();
    }
    if (unmounted || rangeChosen) return;
    showRange(fitted);
    subscribe();
  }

  function selectRange(name: RangeName): void {
    rangeChosen = true;
    // The range lives in the URL so a reload keeps it (a click on the fitted range pins it too);
    // replaceState does not fire hashchange (no re-mount).
    history.replaceState(null, '', `#/device/${encodeURIComponent(deviceId)}?range=${name}`);
    // Before the fit came back there is no subscription yet, whatever the range shown.
    if (name === range && subscriptionId !== '') return;
    showRange(name);
    subscribe();
  }

  function onFrame(frame: LiveServerFrame): void {
    if (frame.type === 'history' && frame.id === subscriptionId && frame.device === deviceId) {
      historyIn = true;
      chartGrid.setAttribute('data-history', range);
      const metrics = new Set(frame.series.map((s) => s.metric));
      for (const [metric, chart] of charts) if (!metrics.has(metric)) chart.setHistory([], undefined);
      for (const series of frame.series) chartOf(series.metric).setHistory(series.points, frame.mode === 'aggregate' ? frame.every : undefined);
      // A cut history (core/live.ts `truncated`) cuts every series at one time: each chart says so.
      const cutAt = frame.truncated === true ? (frame.nextFrom ?? frame.to) : undefined;
      for (const chart of charts.values()) chart.setCut(cutAt);
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
    setText(trust, unsigned ? `unsigned (broker-authenticated${summary.payload === undefined ? '' : `, ${summary.payload}`})` : `signed${summary.alg === undefined ? '' : ` (${summary.alg})`}`);
    showCounts(summary);
    state = summary.registered === 'revoked' ? 'offline' : summary.state;
    if (summary.lastSeen !== null && (lastSeen === null || summary.lastSeen > lastSeen)) lastSeen = summary.lastSeen;
    batcher.schedule();
  }

  function showCounts(summary: DeviceSummary): void {
    const counts = summary.counts;
    if (counts === null) {
      countsBox.replaceChildren('Messages: ingest has not reported counts for this device yet.');
      return;
    }
    const rejected = rejectedTotal(counts);
    countsBox.replaceChildren(
      h('span', {}, 'Since ', new Date(counts.since).toLocaleString(), ': ',
        h('strong', { 'data-count-accepted': '' }, String(counts.accepted)), ' readings accepted, ',
        h('strong', { 'data-count-duplicates': '' }, String(counts.duplicates)), ' duplicates, ',
        rejected === 0
          ? h('strong', { 'data-count-rejected': '' }, '0')
          : h('a', { href: quarantineHash({ device: deviceId }), 'data-count-rejected': '' }, String(rejected)),
        ' messages rejected'),
      ...(rejected === 0
        ? []
        : [h('ul', {}, ...rejectionsByReason(counts).map(([reason, n]) =>
            h('li', { 'data-rejected-reason': reason }, h('a', { href: quarantineHash({ device: deviceId, reason }) }, reason), `: ${n}`)))]),
    );
  }

  csv.addEventListener('click', (event) => {
    // A link cannot send the Authorization header: with a token the file is fetched and saved from a blob.
    if (getToken() === null) return;
    event.preventDefault();
    downloadCsv(csv.href, `${deviceId}-raw-${range}.csv`).catch((error: unknown) => {
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
  if (rangeChosen) subscribe();
  else void fitRangeToData();

  return () => {
    unmounted = true;
    abort.abort();
    ctx.live.unsubscribe(subscriptionId);
    stopFrames();
    stopReconnected();
    alerts.unmount();
    resizeObserver.disconnect();
    clearInterval(slideTimer);
    batcher.cancel();
    for (const chart of charts.values()) chart.destroy();
  };
}

function field(label: string, value: Node): HTMLElement {
  return h('div', {}, h('dt', {}, label), h('dd', {}, value));
}
