import { useEffect, useState } from 'react';
import { call, client, type UsageBucket } from '../api';
import { errorText } from '../errors';
import { useI18n } from '../i18n';
import { Alert } from '../components/Alert';
import { BarChart } from '../components/BarChart';
import { DataTable } from '../components/DataTable';

/** The key's gateway calls per UTC day over the last 30 days: totals, two charts, and the numbers as a table. */
export function UsageSection({ keyId }: { keyId: string }) {
  const { t, number } = useI18n();
  const [buckets, setBuckets] = useState<UsageBucket[] | null>(null);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<unknown>(null);
  const [tick, setTick] = useState(0);

  useEffect(() => {
    let live = true;
    setLoading(true);
    // The server's default for days: the 30 UTC days up to and including today.
    call(client.GET('/api/v1/provider-keys/{id}/usage', { params: { path: { id: keyId }, query: { granularity: 'day' } } }))
      .then((r) => live && (setBuckets(r.items), setError(null)))
      .catch((e: unknown) => live && setError(e))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
  }, [keyId, tick]);

  const items = buckets ?? [];
  const days = items.map((b) => b.start.slice(0, 10));
  const sum = (f: (b: UsageBucket) => number) => items.reduce((n, b) => n + f(b), 0);
  const totals = { requests: sum((b) => b.requests), errors: sum((b) => b.errors), prompt: sum((b) => b.promptTokens), completion: sum((b) => b.completionTokens) };
  const busiest = (f: (b: UsageBucket) => number) => items.reduce<UsageBucket | null>((best, b) => (f(b) > 0 && (!best || f(b) > f(best)) ? b : best), null);
  const peakRequests = busiest((b) => b.requests);
  const peakTokens = busiest((b) => b.promptTokens + b.completionTokens);
  const peak = (b: UsageBucket | null, n: number) => (b ? t('usage.peak', { day: b.start.slice(0, 10), n: number(n) }) : t('usage.none'));

  return (
    <section aria-labelledby="usage-heading" data-testid="usage" aria-busy={loading}>
      <div className="section-head">
        <div>
          <h2 id="usage-heading">{t('usage.title')}</h2>
          <p className="muted small">{t('usage.note')}</p>
        </div>
        <button type="button" onClick={() => setTick((n) => n + 1)} disabled={loading} data-testid="usage-refresh">
          {t('common.refresh')}
        </button>
      </div>
      {error != null && <Alert kind="error">{errorText(t, error)}</Alert>}
      {buckets && (
        <div className="card">
          <dl className="usage-totals" data-testid="usage-totals">
            <div>
              <dt>{t('usage.requests')}</dt>
              <dd data-testid="total-requests">{number(totals.requests)}</dd>
            </div>
            <div>
              <dt>{t('usage.errors')}</dt>
              <dd data-testid="total-errors">{number(totals.errors)}</dd>
            </div>
            <div>
              <dt>{t('usage.promptTokens')}</dt>
              <dd data-testid="total-prompt">{number(totals.prompt)}</dd>
            </div>
            <div>
              <dt>{t('usage.completionTokens')}</dt>
              <dd data-testid="total-completion">{number(totals.completion)}</dd>
            </div>
          </dl>
          <div className="charts">
            <BarChart
              title={t('usage.requestsChart')}
              unit={t('usage.requestsUnit')}
              days={days}
              series={[
                { id: 'ok', label: t('usage.succeeded'), values: items.map((b) => b.requests - b.errors) },
                { id: 'errors', label: t('usage.errors'), values: items.map((b) => b.errors) },
              ]}
              summary={t('usage.requestsSummary', { total: number(totals.requests), errors: number(totals.errors), peak: peak(peakRequests, peakRequests?.requests ?? 0) })}
              testId="requests-chart"
            />
            <BarChart
              title={t('usage.tokensChart')}
              unit={t('usage.tokensUnit')}
              days={days}
              series={[
                { id: 'prompt', label: t('usage.promptTokens'), values: items.map((b) => b.promptTokens) },
                { id: 'completion', label: t('usage.completionTokens'), values: items.map((b) => b.completionTokens) },
              ]}
              summary={t('usage.tokensSummary', { prompt: number(totals.prompt), completion: number(totals.completion), peak: peak(peakTokens, peakTokens ? peakTokens.promptTokens + peakTokens.completionTokens : 0) })}
              testId="tokens-chart"
            />
          </div>
          <details className="chart-table" data-testid="usage-table-toggle">
            <summary>{t('usage.table')}</summary>
            <DataTable
              rows={[...items].reverse()}
              rowKey={(b) => b.start}
              rowAttrs={(b) => ({ 'data-testid': 'usage-row', 'data-day': b.start.slice(0, 10) })}
              loading={loading}
              label={t('usage.table')}
              testId="usage-table"
              empty={t('usage.none')}
              columns={[
                { id: 'day', header: t('usage.day'), className: 'nowrap', cell: (b) => b.start.slice(0, 10) },
                { id: 'requests', header: t('usage.requests'), className: 'num', cell: (b) => <span data-col="requests">{number(b.requests)}</span> },
                { id: 'errors', header: t('usage.errors'), className: 'num', cell: (b) => <span data-col="errors">{number(b.errors)}</span> },
                { id: 'prompt', header: t('usage.promptTokens'), className: 'num', cell: (b) => <span data-col="prompt">{number(b.promptTokens)}</span> },
                { id: 'completion', header: t('usage.completionTokens'), className: 'num', cell: (b) => <span data-col="completion">{number(b.completionTokens)}</span> },
              ]}
            />
          </details>
        </div>
      )}
    </section>
  );
}
