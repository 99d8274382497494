/** The arithmetic of the usage charts (no DOM, no React): unit-tested in tests/unit/web-chart.test.ts. */

/** A y axis from 0 to `top` in `ticks` equal whole steps of 1, 2 or 5 × 10ⁿ, with `top` ≥ `max` (counts are whole). */
export function niceScale(max: number, ticks = 4): { top: number; step: number } {
  if (!(max > 0)) return { top: ticks, step: 1 };
  const raw = max / ticks;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = Math.max(1, ([1, 2, 5, 10].find((m) => m * magnitude >= raw) ?? 10) * magnitude);
  return { top: Math.ceil(max / step) * step, step };
}

/** Which of `n` bars get a date under them when `slots` labels fit: evenly spaced, always the last one (today). */
export function labelledBars(n: number, slots: number): Set<number> {
  const every = Math.max(1, Math.ceil(n / Math.max(1, slots)));
  const out = new Set<number>();
  for (let i = n - 1; i >= 0; i -= every) out.add(i);
  return out;
}

/** Per bar, the sum over the series (the stack's height). */
export const stackTotals = (series: Array<{ values: number[] }>, n: number) => Array.from({ length: n }, (_, i) => series.reduce((sum, s) => sum + (s.values[i] ?? 0), 0));
