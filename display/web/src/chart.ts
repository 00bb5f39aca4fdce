/**
 * One uPlot chart for one metric: the value as a line, and for aggregated history the window's min and
 * max as faint lines with a band between them, so a spike inside a window stays visible.
 * The element carries data-chart (the metric) and data-points (points drawn), for tests.
 *
 * A history the server had to cut (core/live.ts `truncated`) is never drawn as if it were whole: a note
 * on the chart says where it was cut, and the element carries data-truncated (that time, ms).
 *
 * Alerts (alerts-model.ts) are drawn over it: each above/below rule's threshold as a dashed horizontal
 * line in its severity's colour (the value scale stretches to include it), and the spans its rules were
 * firing shaded behind the data. After each draw the element says what it drew, for tests:
 * data-thresholds (the values), data-threshold-y (their rows in canvas pixels), data-firing-spans (how
 * many spans are visible) and data-span-x (the canvas column in the middle of the first one).
 */
import uPlot from 'uplot';
import { h, setAttr } from './dom.ts';
import { formatValue, unitOf } from './format.ts';
import type { FiringSpan, ThresholdLine } from './alerts-model.ts';
import { SeriesData, type HistoryPoint } from './series.ts';

const HEIGHT = 180;
const LINE = '#2563eb';
const FAINT = 'rgba(37, 99, 235, 0.35)';
const BAND = 'rgba(37, 99, 235, 0.12)';
/** Alert colours by severity: a line's, and a firing span's (faint, behind the data). */
export const SEVERITY_COLOURS = { info: '#6b7280', warning: '#d97706', critical: '#dc2626' } as const;
const SPAN_FILL = { info: 'rgba(107, 114, 128, 0.12)', warning: 'rgba(217, 119, 6, 0.14)', critical: 'rgba(220, 38, 38, 0.14)' } as const;

export class MetricChart {
  readonly element: HTMLElement;
  private readonly target: HTMLElement;
  private readonly note: HTMLElement;
  private readonly data = new SeriesData();
  private plot: uPlot;
  private withBand = false;
  private window: [number, number] = [0, 1];
  private lines: readonly ThresholdLine[] = [];
  private spans: readonly FiringSpan[] = [];

  constructor(readonly metric: string) {
    const unit = unitOf(metric);
    this.target = h('div', { class: 'plot' });
    this.note = h('p', { class: 'chart-note', role: 'note', hidden: '' });
    this.element = h(
      'section',
      { class: 'chart', 'data-chart': metric, 'data-points': '0' },
      h('h3', {}, metric, unit === '' ? null : h('span', { class: 'unit' }, ` (${unit})`)),
      this.note,
      this.target,
    );
    this.plot = this.createPlot();
  }

  get points(): number {
    return this.data.length;
  }

  setHistory(points: readonly HistoryPoint[], every: number | undefined): void {
    this.data.replace(points, every);
    // Raw history has no min/max: a chart without those series then, rather than two empty legend entries.
    if (this.data.hasBand !== this.withBand) {
      this.withBand = this.data.hasBand;
      this.plot.destroy();
      this.plot = this.createPlot();
    }
  }

  /**
   * Where the history was cut (the first time left out), or undefined when it is whole. The note stays
   * until the next history: what lies between the cut and the first live reading is missing.
   */
  setCut(at: number | undefined): void {
    this.note.hidden = at === undefined;
    if (at === undefined) {
      this.note.textContent = '';
      this.element.removeAttribute('data-truncated');
      return;
    }
    this.note.textContent = `History cut at ${new Date(at).toLocaleTimeString()}: more points than one answer carries. Readings after that may be missing until live ones arrive (the CSV export has them all).`;
    this.element.setAttribute('data-truncated', String(at));
  }

  append(ts: number, value: number): void {
    this.data.append(ts, value);
  }

  /** The alert overlay: threshold lines and firing spans, drawn from the next render on. */
  setAlerts(lines: readonly ThresholdLine[], spans: readonly FiringSpan[]): void {
    this.lines = lines;
    this.spans = spans;
  }

  /** The visible range (ms); points that slid out on the left are dropped. */
  setWindow(from: number, to: number): void {
    this.window = [from, to];
    this.data.trimBefore(from);
  }

  /** Draws the current data; called once per animation frame at most. */
  render(): void {
    const [from, to] = this.window;
    const [xs, values, mins, maxs] = this.data.columns();
    const columns = this.withBand ? [xs, values, mins, maxs] : [xs, values];
    this.plot.batch(() => {
      this.plot.setData(columns as uPlot.AlignedData, true);
      this.plot.setScale('x', { min: from, max: to });
    });
    setAttr(this.element, 'data-points', String(this.data.length));
  }

  /** Follows the width of the chart's box (the view observes it). */
  fitWidth(): void {
    const width = Math.max(240, Math.floor(this.target.clientWidth));
    if (width !== this.plot.width) this.plot.setSize({ width, height: HEIGHT });
  }

  destroy(): void {
    this.plot.destroy();
    this.element.remove();
  }

  private createPlot(): uPlot {
    const unit = unitOf(this.metric);
    const show = (_u: uPlot, value: number | null) => (value === null ? '–' : `${formatValue(value)}${unit === '' ? '' : ` ${unit}`}`);
    const series: uPlot.Series[] = [{}, { label: this.metric, stroke: LINE, width: 1.5, value: show }];
    if (this.withBand) series.push({ label: 'min', stroke: FAINT, width: 1, value: show }, { label: 'max', stroke: FAINT, width: 1, value: show });
    const options: uPlot.Options = {
      width: Math.max(240, Math.floor(this.target.clientWidth) || 600),
      height: HEIGHT,
      // Timestamps stay in ms as they come from the server.
      ms: 1,
      // The value scale is uPlot's own (its default padding) stretched to include the threshold lines.
      scales: { x: { time: true }, y: { range: (_u, min, max) => this.valueRange(min, max) } },
      series,
      bands: this.withBand ? [{ series: [3, 2], fill: BAND }] : [],
      axes: [{}, { size: 56, values: (_u, ticks) => ticks.map(formatValue) }],
      // Room on the right for the last time label.
      padding: [8, 20, 0, 0],
      cursor: { drag: { x: false, y: false } },
      hooks: { drawClear: [(u) => this.drawSpans(u)], draw: [(u) => this.drawLines(u)] },
    };
    const plot = new uPlot(options, this.withBand ? [[], [], [], []] : [[], []], this.target);
    return plot;
  }

  private valueRange(min: number | null, max: number | null): uPlot.Range.MinMax {
    let lo = min;
    let hi = max;
    for (const line of this.lines) {
      lo = lo === null ? line.value : Math.min(lo, line.value);
      hi = hi === null ? line.value : Math.max(hi, line.value);
    }
    return lo === null || hi === null ? [null, null] : uPlot.rangeNum(lo, hi, 0.1, true);
  }

  /** Firing spans, shaded behind the data (drawClear runs before the series are drawn). */
  private drawSpans(u: uPlot): void {
    const { ctx, bbox } = u;
    const [, windowEnd] = this.window;
    let visible = 0;
    let firstX: number | null = null;
    ctx.save();
    for (const span of this.spans) {
      const from = Math.max(bbox.left, span.from === Number.NEGATIVE_INFINITY ? bbox.left : u.valToPos(span.from, 'x', true));
      const to = Math.min(bbox.left + bbox.width, u.valToPos(span.to ?? windowEnd, 'x', true));
      if (!(to > from)) continue;
      ctx.fillStyle = SPAN_FILL[span.severity];
      ctx.fillRect(from, bbox.top, to - from, bbox.height);
      visible += 1;
      firstX ??= Math.round((from + to) / 2);
    }
    ctx.restore();
    setAttr(this.element, 'data-firing-spans', String(visible));
    setAttr(this.element, 'data-span-x', firstX === null ? '' : String(firstX));
  }

  /** Threshold lines, over the data. */
  private drawLines(u: uPlot): void {
    const { ctx, bbox } = u;
    const values: string[] = [];
    const rows: string[] = [];
    ctx.save();
    ctx.lineWidth = Math.max(1, Math.round(2 * devicePixelRatio));
    ctx.setLineDash([8 * devicePixelRatio, 5 * devicePixelRatio]);
    for (const line of this.lines) {
      // Whole pixel rows: a line on a row boundary would be blurred into two paler ones.
      const y = Math.round(u.valToPos(line.value, 'y', true));
      if (!Number.isFinite(y) || y < bbox.top || y > bbox.top + bbox.height) continue;
      ctx.strokeStyle = SEVERITY_COLOURS[line.severity];
      ctx.beginPath();
      ctx.moveTo(bbox.left, y);
      ctx.lineTo(bbox.left + bbox.width, y);
      ctx.stroke();
      values.push(String(line.value));
      rows.push(String(y));
    }
    ctx.restore();
    setAttr(this.element, 'data-thresholds', values.join(' '));
    setAttr(this.element, 'data-threshold-y', rows.join(' '));
  }
}
