import { formatRate } from './format.js';
import { kbpsOf } from '../accounting/sample.js';

/** One bucket of bytes transferred (from `usageSeries`). */
export interface ChartPoint {
  start: number;
  upBytes: bigint;
  downBytes: bigint;
}

export interface ChartOptions {
  title: string;
  points: ChartPoint[];
  bucketMs: number;
  /** Caps in kbps (0 = unlimited: no line). */
  capUpKbps: number;
  capDownKbps: number;
  width?: number;
  height?: number;
  /** How bucket starts are labelled on the x axis. */
  label: (start: number) => string;
}

const escape = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const fixed = (n: number) => (Math.round(n * 10) / 10).toString();

/** A "nice" upper bound for the axis: 1, 2, 2.5 or 5 × 10^n at or above `value`. */
export function niceCeiling(value: number): number {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 2.5, 5, 10]) if (step * power >= value * (1 - 1e-12)) return step * power;
  return 10 * power;
}

/**
 * A server-rendered SVG line chart of average rates per bucket (bytes × 8 / bucket length, in
 * kbit/s), up and down, with each cap drawn as a dashed line in the same unit. No script, no
 * external resources: it renders where JavaScript is off, and every text is escaped.
 */
export function renderChart(options: ChartOptions): string {
  const width = options.width ?? 720;
  const height = options.height ?? 220;
  const pad = { left: 86, right: 24, top: 14, bottom: 28 };
  const plotW = width - pad.left - pad.right;
  const plotH = height - pad.top - pad.bottom;
  const kbps = (bytes: bigint) => kbpsOf(bytes, options.bucketMs);
  const ups = options.points.map((p) => kbps(p.upBytes));
  const downs = options.points.map((p) => kbps(p.downBytes));
  const top = niceCeiling(Math.max(1, ...ups, ...downs, options.capUpKbps, options.capDownKbps) * 1.05);
  const n = Math.max(1, options.points.length - 1);
  const x = (i: number) => pad.left + (plotW * i) / n;
  const y = (value: number) => pad.top + plotH - (plotH * value) / top;
  const line = (values: number[]) => values.map((v, i) => `${fixed(x(i))},${fixed(y(v))}`).join(' ');
  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}" width="100%" role="img" aria-label="${escape(options.title)}" class="bw-chart">`,
    `<title>${escape(options.title)}</title>`,
  );
  for (const fraction of [0, 0.25, 0.5, 0.75, 1]) {
    const value = top * fraction;
    parts.push(
      `<line x1="${pad.left}" x2="${width - pad.right}" y1="${fixed(y(value))}" y2="${fixed(y(value))}" class="grid"/>`,
      `<text x="${pad.left - 6}" y="${fixed(y(value) + 4)}" text-anchor="end" class="axis">${escape(formatRate(value))}</text>`,
    );
  }
  if (options.points.length > 0) {
    const ticks = Math.min(6, options.points.length);
    for (let t = 0; t < ticks; t++) {
      const i = Math.round((t * (options.points.length - 1)) / Math.max(1, ticks - 1));
      const anchor = t === 0 ? 'start' : t === ticks - 1 ? 'end' : 'middle';
      parts.push(`<text x="${fixed(x(i))}" y="${height - 8}" text-anchor="${anchor}" class="axis">${escape(options.label(options.points[i]!.start))}</text>`);
    }
    parts.push(`<polyline points="${line(downs)}" class="down"><title>download</title></polyline>`);
    parts.push(`<polyline points="${line(ups)}" class="up"><title>upload</title></polyline>`);
  }
  for (const [cap, kind] of [[options.capDownKbps, 'down'], [options.capUpKbps, 'up']] as const) {
    if (cap <= 0) continue;
    parts.push(
      `<line x1="${pad.left}" x2="${width - pad.right}" y1="${fixed(y(cap))}" y2="${fixed(y(cap))}" class="cap ${kind}"><title>${kind} cap ${escape(formatRate(cap))}</title></line>`,
    );
  }
  parts.push('</svg>');
  return parts.join('');
}
