import { useEffect, useState, type FormEvent } from 'react';
import { apiUrl, call, client, FINDINGS, qs, query, type Finding, type HygieneItem, type HygieneReport } from '../api';
import { errorText } from '../errors';
import { useTitle } from '../hooks';
import { useI18n, type MessageKey } from '../i18n';
import { Link } from '../router';
import { Alert } from '../components/Alert';
import { HealthBadge, StatusBadge } from '../components/Badges';
import { DataTable } from '../components/DataTable';
import { Field } from '../components/Field';

const DEFAULT_DAYS = 90;
const MAX_DAYS = 3650;

const daysFromUrl = (): number => {
  const n = Number(new URLSearchParams(window.location.search).get('days'));
  return Number.isInteger(n) && n >= 1 && n <= MAX_DAYS ? n : DEFAULT_DAYS;
};

/**
 * What to clean up (docs/health.md#hygiene-report): admins and auditors. One section per finding with its count, each
 * row linking to its key; N days is the horizon of "unused", "old" and "expiring" and is kept in the URL; CSV export.
 */
export function HygienePage() {
  const { t, tn, dateTime, date, number } = useI18n();
  useTitle(t('hygiene.title'));
  const [days, setDays] = useState(daysFromUrl);
  const [input, setInput] = useState(String(days));
  const [inputError, setInputError] = useState<string | null>(null);
  const [report, setReport] = useState<HygieneReport | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [loading, setLoading] = useState(true);
  const [tick, setTick] = useState(0);

  useEffect(() => {
    window.history.replaceState(null, '', `/hygiene${days === DEFAULT_DAYS ? '' : qs({ days })}`);
    let live = true;
    setLoading(true);
    call(client.GET('/api/v1/reports/hygiene', { params: { query: query('/api/v1/reports/hygiene', { days }) } }))
      // JSON was asked for (no format=csv): a text answer would be the server's mistake.
      .then((r) => live && (setReport(typeof r === 'string' ? null : r), setError(null)))
      .catch((e: unknown) => live && setError(e))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
  }, [days, tick]);

  const apply = (e: FormEvent) => {
    e.preventDefault();
    const n = Number(input);
    if (!Number.isInteger(n) || n < 1 || n > MAX_DAYS) return setInputError(t('hygiene.daysRule', { max: MAX_DAYS }));
    setInputError(null);
    if (n === days) setTick((x) => x + 1);
    else setDays(n);
  };

  const byFinding = new Map<Finding, HygieneItem[]>(FINDINGS.map((f) => [f, []]));
  for (const item of report?.items ?? []) byFinding.get(item.finding)?.push(item);
  const shown = report?.days ?? days;

  /** Why the row is listed, in the reader's language, from the row's fields (the server's `detail` is English). */
  const why = (i: HygieneItem) => {
    switch (i.finding) {
      case 'unused':
        return i.lastUsedAt ? t('hygiene.why.unused', { date: date(i.lastUsedAt) }) : t('hygiene.why.neverUsed');
      case 'old':
        return t('hygiene.why.old', { date: date(i.secretSetAt ?? i.createdAt) });
      case 'expiring':
        return t('hygiene.why.expiring', { date: dateTime(i.expiresAt) });
      case 'expired':
        return t('hygiene.why.expired', { date: dateTime(i.expiresAt) });
      case 'owner_disabled':
        return i.ownerUsername ? t('hygiene.why.ownerDisabled', { name: i.ownerUsername }) : t('hygiene.why.ownerGone');
      case 'project_missing':
        return t('hygiene.why.projectMissing');
      case 'project_empty':
        return t('hygiene.why.projectEmpty');
      case 'most_revealed':
        return tn('hygiene.why.reveals', i.revealsLast30Days ?? 0);
      case 'unhealthy': {
        // The provider's own words after "status: ".
        const said = i.health && i.detail.startsWith(`${i.health}: `) ? i.detail.slice(i.health.length + 2) : null;
        return (
          <>
            {i.health && <HealthBadge status={i.health} />}
            {said && <div className="muted small wrap">{said}</div>}
          </>
        );
      }
    }
  };

  return (
    <div className="page">
      <div className="page-head">
        <h1>{t('hygiene.title')}</h1>
        <div className="head-actions">
          <a className="button" href={apiUrl(`/reports/hygiene${qs({ days: shown, format: 'csv' })}`)} download data-testid="hygiene-csv">
            <span aria-hidden="true">⬇</span> {t('hygiene.exportCsv')}
          </a>
        </div>
      </div>
      <p className="muted">{t('hygiene.intro')}</p>
      <form className="inline-form" onSubmit={apply} noValidate>
        <Field label={t('hygiene.days')} htmlFor="hygiene-days" help={t('hygiene.daysHelp')} error={inputError}>
          <input id="hygiene-days" type="number" min={1} max={MAX_DAYS} value={input} onChange={(e) => setInput(e.target.value)} data-testid="hygiene-days" />
        </Field>
        <button type="submit" className="primary" data-testid="hygiene-apply">
          {t('common.apply')}
        </button>
      </form>
      {error != null && <Alert kind="error">{errorText(t, error)}</Alert>}
      {report && report.truncated.length > 0 && (
        <Alert kind="warning" testId="hygiene-truncated">
          {t('hygiene.truncated', { findings: report.truncated.map((f) => t(`hygiene.finding.${f}` as MessageKey)).join(', ') })}
        </Alert>
      )}
      {report && (
        <p className="muted small" data-testid="hygiene-generated">
          {tn('hygiene.generated', report.days, { at: dateTime(report.generatedAt) })}
        </p>
      )}
      {report && report.items.length === 0 && !loading && (
        <p className="empty" data-testid="hygiene-clean">
          {t('hygiene.clean')}
        </p>
      )}
      <nav aria-label={t('hygiene.summary')}>
        <ul className="finding-summary" data-testid="hygiene-summary">
          {FINDINGS.map((f) => (
            <li key={f}>
              <a href={`#finding-${f}`} data-testid={`summary-${f}`}>
                <span>{t(`hygiene.finding.${f}` as MessageKey)}</span> <span className="count">{report ? number(byFinding.get(f)!.length) : '…'}</span>
              </a>
            </li>
          ))}
        </ul>
      </nav>

      {FINDINGS.map((f) => {
        const rows = byFinding.get(f)!;
        return (
          <section key={f} id={`finding-${f}`} aria-labelledby={`finding-${f}-heading`} data-testid={`finding-${f}`} data-count={rows.length}>
            <div className="section-head">
              <div>
                <h2 id={`finding-${f}-heading`}>
                  {t(`hygiene.finding.${f}` as MessageKey)} <span className="muted">({report ? number(rows.length) : '…'})</span>
                </h2>
                <p className="muted small">{t(`hygiene.explain.${f}` as MessageKey, { days: number(shown) })}</p>
              </div>
            </div>
            <DataTable
              rows={rows}
              rowKey={(i) => `${i.keyId ?? i.projectId}`}
              rowAttrs={(i) => ({ 'data-testid': 'hygiene-row', 'data-key-id': i.keyId ?? undefined })}
              loading={loading}
              label={t(`hygiene.finding.${f}` as MessageKey)}
              testId={`hygiene-table-${f}`}
              empty={t('hygiene.none')}
              columns={
                f === 'project_empty'
                  ? [
                      { id: 'project', header: t('keys.col.project'), cell: (i) => <strong className="name">{i.projectName ?? i.projectId}</strong> },
                      { id: 'why', header: t('hygiene.col.why'), cell: why },
                      { id: 'created', header: t('common.created'), className: 'nowrap', cell: (i) => date(i.createdAt) },
                    ]
                  : [
                      {
                        id: 'key',
                        header: t('keys.col.name'),
                        cell: (i) => (
                          <Link to={`/keys/${i.keyId}`} className="key-name">
                            {i.keyName}
                          </Link>
                        ),
                      },
                      { id: 'why', header: t('hygiene.col.why'), cell: why },
                      { id: 'provider', header: t('keys.col.provider'), cell: (i) => (i.provider ? t(`provider.${i.provider}` as MessageKey) : '') },
                      { id: 'owner', header: t('keys.col.owner'), cell: (i) => i.ownerUsername ?? <span className="muted">{t('hygiene.ownerGoneShort')}</span> },
                      { id: 'project', header: t('keys.col.project'), cell: (i) => i.projectName ?? <span className="muted">{t('hygiene.projectGoneShort')}</span> },
                      { id: 'status', header: t('keys.col.status'), cell: (i) => i.keyStatus && <StatusBadge status={i.keyStatus} expiresAt={i.expiresAt} /> },
                    ]
              }
            />
          </section>
        );
      })}
    </div>
  );
}
