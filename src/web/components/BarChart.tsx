import { useEffect, useId, useMemo, useRef, useState, type RefObject } from 'react';
import { labelledBars, niceScale, stackTotals } from '../chart';
import { useI18n } from '../i18n';

export interface Series {
  /** Also its colour: the class `series-<id>` (light and dark in styles.css). */
  id: string;
  label: string;
  values: number[];
}

const HEIGHT = 190;
const TOP = 22;
const BOTTOM = 24;
const RIGHT = 8;
const CHAR = 6.6;

/** The width the chart has on screen, followed as it changes (a phone turned, a window resized). */
function useWidth(): [RefObject<HTMLDivElement | null>, number] {
  const ref = useRef<HTMLDivElement>(null);
  const [width, setWidth] = useState(0);
  useEffect(() => {
    const el = ref.current;
    if (!el) return;
    const measure = () => setWidth(Math.floor(el.getBoundingClientRect().width));
    measure();
    const observer = new ResizeObserver(measure);
    observer.observe(el);
    return () => observer.disconnect();
  }, []);
  return [ref, width];
}

/**
 * Stacked bars per day, in plain SVG drawn at the size it is shown (so its text stays readable on a phone): a y axis
 * with whole-number ticks and its unit, dates under the bars, the day's numbers as a tooltip. For screen readers it is
 * one image named by `summary`; the caller offers the numbers as a table too.
 */
export function BarChart({ title, unit, days, series, summary, testId }: { title: string; unit: string; days: string[]; series: Series[]; summary: string; testId: string }) {
  const { lang, number, t } = useI18n();
  const [ref, width] = useWidth();
  const titleId = useId();
  const compact = useMemo(() => new Intl.NumberFormat(lang === 'zh' ? 'zh-CN' : 'en-GB', { notation: 'compact', maximumFractionDigits: 1 }), [lang]);
  const totals = stackTotals(series, days.length);
  const { top, step } = niceScale(Math.max(0, ...totals));
  const ticks = Array.from({ length: Math.round(top / step) + 1 }, (_, i) => i * step);
  const left = 10 + CHAR * Math.max(...ticks.map((v) => compact.format(v).length));
  const plotW = Math.max(0, width - left - RIGHT);
  const plotH = HEIGHT - TOP - BOTTOM;
  const slot = days.length ? plotW / days.length : 0;
  const barW = Math.max(1, Math.min(28, slot * 0.72));
  const y = (v: number) => TOP + plotH - (v / top) * plotH;
  const dated = labelledBars(days.length, Math.floor(plotW / 46));

  return (
    <figure className="chart" data-testid={testId}>
      <figcaption>
        <h3 id={titleId} className="chart-title">
          {title}
        </h3>
        <ul className="chart-legend" aria-hidden="true">
          {series.map((s) => (
            <li key={s.id}>
              <span className={`swatch series-${s.id}`} />
              {s.label}
            </li>
          ))}
        </ul>
      </figcaption>
      <div ref={ref} className="chart-canvas">
        {width > 0 && (
          <svg width={width} height={HEIGHT} viewBox={`0 0 ${width} ${HEIGHT}`} role="img" aria-label={t('usage.chartLabel', { title, summary })}>
            <text className="chart-unit" x={0} y={12}>
              {unit}
            </text>
            {ticks.map((v) => (
              <g key={v} className="chart-grid">
                <line x1={left} x2={width - RIGHT} y1={y(v)} y2={y(v)} />
                <text x={left - 6} y={y(v)} dy="0.32em" textAnchor="end">
                  {compact.format(v)}
                </text>
              </g>
            ))}
            {days.map((day, i) => {
              const x = left + i * slot + (slot - barW) / 2;
              let base = 0;
              return (
                <g key={day} className="chart-day">
                  <title>{`${day}: ${series.map((s) => `${s.label} ${number(s.values[i] ?? 0)}`).join(', ')}`}</title>
                  <rect className="chart-hit" x={left + i * slot} y={TOP} width={slot} height={plotH} />
                  {series.map((s) => {
                    const v = s.values[i] ?? 0;
                    if (v <= 0) return null;
                    const y0 = y(base);
                    base += v;
                    return <rect key={s.id} className={`series-${s.id}`} x={x} y={y(base)} width={barW} height={Math.max(1, y0 - y(base))} />;
                  })}
                  {dated.has(i) && (
                    <text className="chart-date" x={x + barW / 2} y={HEIGHT - 6} textAnchor="middle">
                      {day.slice(5)}
                    </text>
                  )}
                </g>
              );
            })}
            <line className="chart-axis" x1={left} x2={width - RIGHT} y1={y(0)} y2={y(0)} />
          </svg>
        )}
      </div>
    </figure>
  );
}
