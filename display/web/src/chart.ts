/**
 * One uPlot chart for one metric: the value as a line, and for aggregated history the window's min and
 * max as faint lines with a band between them, so a spike inside a window stays visible.
 * The element carries data-chart (the metric) and data-points (points drawn), for tests.
 */
import uPlot from 'uplot';
import { h, setAttr } from './dom.ts';
import { formatValue, unitOf } from './format.ts';
import { SeriesData, type HistoryPoint } from './series.ts';

const HEIGHT = 180;
const LINE = '#2563eb';
const FAINT = 'rgba(37, 99, 235, 0.35)';
const BAND = 'rgba(37, 99, 235, 0.12)';

export class MetricChart {
  readonly element: HTMLElement;
  private readonly target: HTMLElement;
  private readonly data = new SeriesData();
  private plot: uPlot;
  private withBand = false;
  private window: [number, number] = [0, 1];

  constructor(readonly metric: string) {
    const unit = unitOf(metric);
    this.target = h('div', { class: 'plot' });
    this.element = h(
      'section',
      { class: 'chart', 'data-chart': metric, 'data-points': '0' },
      h('h3', {}, metric, unit === '' ? null : h('span', { class: 'unit' }, ` (${unit})`)),
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

  append(ts: number, value: number): void {
    this.data.append(ts, value);
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
      scales: { x: { time: true } },
      series,
      bands: this.withBand ? [{ series: [3, 2], fill: BAND }] : [],
      axes: [{}, { size: 56, values: (_u, ticks) => ticks.map(formatValue) }],
      // Room on the right for the last time label.
      padding: [8, 20, 0, 0],
      cursor: { drag: { x: false, y: false } },
    };
    const plot = new uPlot(options, this.withBand ? [[], [], [], []] : [[], []], this.target);
    return plot;
  }
}
