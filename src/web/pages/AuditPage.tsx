import { useEffect, useMemo, useRef, useState } from 'react';
import { apiUrl, AUDIT_ACTIONS, AUDIT_OUTCOMES, call, client, listAll, qs, query, type AuditEvent, type ProviderKey, type VerifyResult } from '../api';
import { useDirectory } from '../directory';
import { errorText } from '../errors';
import { useTitle } from '../hooks';
import { useI18n, type MessageKey } from '../i18n';
import { Alert } from '../components/Alert';
import { Field, isoToLocal, localToIso } from '../components/Field';
import { Pager, usePaged } from '../components/Pager';
import { CopyButton } from '../components/Secret';
import { AuditTable } from './AuditTable';

interface Filters {
  action: string;
  outcome: string;
  actorRole: string;
  byOwner: string;
  actorId: string;
  keyId: string;
  projectId: string;
  from: string;
  to: string;
}
const NAMES: Array<keyof Filters> = ['action', 'outcome', 'actorRole', 'byOwner', 'actorId', 'keyId', 'projectId', 'from', 'to'];
const EMPTY: Filters = { action: '', outcome: '', actorRole: '', byOwner: '', actorId: '', keyId: '', projectId: '', from: '', to: '' };
const REFUSED = 'denied,rate_limited';

/** The questions an auditor asks most, one click each; the time range is kept. */
const PRESETS: Array<{ id: string; label: MessageKey; filters: Partial<Filters> }> = [
  { id: 'all', label: 'audit.preset.all', filters: {} },
  { id: 'reveals', label: 'audit.preset.reveals', filters: { action: 'provider_key.reveal' } },
  { id: 'admin-others', label: 'audit.preset.adminOthers', filters: { action: 'provider_key.reveal', actorRole: 'admin', byOwner: 'false' } },
  { id: 'refused', label: 'audit.preset.refused', filters: { outcome: REFUSED } },
];

function fromUrl(): Filters {
  const q = new URLSearchParams(window.location.search);
  const f = { ...EMPTY };
  for (const n of NAMES) f[n] = q.get(n) ?? '';
  return f;
}

const clean = (f: Filters) => Object.fromEntries(NAMES.filter((n) => f[n]).map((n) => [n, f[n]]));
const sameAs = (f: Filters, preset: Partial<Filters>) => NAMES.filter((n) => n !== 'from' && n !== 'to').every((n) => f[n] === (preset[n] ?? ''));

export function AuditPage() {
  const { t, zone } = useI18n();
  const { users, projects } = useDirectory();
  useTitle(t('audit.title'));
  const [filters, setFilters] = useState<Filters>(fromUrl);
  const [keys, setKeys] = useState<ProviderKey[]>([]);
  const rangeBad = !!filters.from && !!filters.to && new Date(filters.from) >= new Date(filters.to);
  // Filters apply as they change (as on Keys); a time range that ends before it starts is not applied.
  const lastGood = useRef(filters);
  if (!rangeBad) lastGood.current = filters;
  const applied = lastGood.current;

  useEffect(() => {
    window.history.replaceState(null, '', `/audit${qs(clean(applied))}`);
  }, [applied]);

  useEffect(() => {
    const keysPage = (status: 'deleted' | undefined) => (cursor: string | undefined) => call(client.GET('/api/v1/provider-keys', { params: { query: query('/api/v1/provider-keys', { status, limit: 200, cursor }) } }));
    Promise.all([listAll(keysPage(undefined), 10), listAll(keysPage('deleted'), 5)])
      .then(([live, deleted]) => setKeys([...live, ...deleted].sort((a, b) => a.name.localeCompare(b.name))))
      .catch(() => undefined);
  }, []);
  const keyNames = useMemo(() => new Map(keys.map((k) => [k.id, k.name])), [keys]);

  const pager = usePaged<AuditEvent>((cursor, limit) => call(client.GET('/api/v1/audit-events', { params: { query: query('/api/v1/audit-events', { ...clean(applied), limit, cursor }) } })), JSON.stringify(applied));

  const set = (name: keyof Filters) => (e: { target: { value: string } }) => setFilters((f) => ({ ...f, [name]: e.target.value }));
  const setTime = (name: 'from' | 'to') => (e: { target: { value: string } }) => setFilters((f) => ({ ...f, [name]: localToIso(e.target.value) ?? '' }));
  const preset = (p: Partial<Filters>) => setFilters((f) => ({ ...EMPTY, ...p, from: f.from, to: f.to }));
  const exportHref = (format: 'csv' | 'ndjson') => apiUrl(`/audit-events/export${qs({ ...clean(applied), format })}`);

  return (
    <div className="page">
      <div className="page-head">
        <h1>{t('audit.title')}</h1>
        <div className="head-actions">
          <a className="button" href={exportHref('csv')} download data-testid="export-csv">
            <span aria-hidden="true">⬇</span> {t('audit.exportCsv')}
          </a>
          <a className="button" href={exportHref('ndjson')} download data-testid="export-ndjson">
            <span aria-hidden="true">⬇</span> {t('audit.exportNdjson')}
          </a>
        </div>
      </div>
      <p className="muted small">{t('audit.exportNote')}</p>

      <div className="presets" role="group" aria-label={t('audit.presets')} data-testid="audit-presets">
        {PRESETS.map((p) => (
          <button key={p.id} type="button" className="chip" aria-pressed={sameAs(filters, p.filters)} onClick={() => preset(p.filters)} data-testid={`preset-${p.id}`}>
            {t(p.label)}
          </button>
        ))}
      </div>

      <div className="filters audit-filters" role="search" aria-label={t('audit.filters')} data-testid="audit-filters">
        <label>
          <span>{t('audit.action')}</span>
          <select value={filters.action} onChange={set('action')} data-testid="audit-action">
            <option value="">{t('common.all')}</option>
            {AUDIT_ACTIONS.map((a) => (
              <option key={a} value={a}>
                {t(`action.${a}` as MessageKey)}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>{t('audit.outcome')}</span>
          <select value={filters.outcome} onChange={set('outcome')} data-testid="audit-outcome">
            <option value="">{t('common.all')}</option>
            {AUDIT_OUTCOMES.map((o) => (
              <option key={o} value={o}>
                {t(`outcome.${o}` as MessageKey)}
              </option>
            ))}
            <option value={REFUSED}>{t('audit.outcomeRefused')}</option>
          </select>
        </label>
        <label>
          <span>{t('audit.user')}</span>
          <select value={filters.actorId} onChange={set('actorId')} data-testid="audit-user">
            <option value="">{t('common.all')}</option>
            {users.map((u) => (
              <option key={u.id} value={u.id}>
                {u.username}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>{t('audit.actorRole')}</span>
          <select value={filters.actorRole} onChange={set('actorRole')} data-testid="audit-role">
            <option value="">{t('common.all')}</option>
            {(['admin', 'member', 'auditor'] as const).map((r) => (
              <option key={r} value={r}>
                {t(`role.${r}` as MessageKey)}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>{t('audit.byOwner')}</span>
          <select value={filters.byOwner} onChange={set('byOwner')} data-testid="audit-by-owner">
            <option value="">{t('audit.byOwner.any')}</option>
            <option value="true">{t('audit.byOwner.true')}</option>
            <option value="false">{t('audit.byOwner.false')}</option>
          </select>
        </label>
        <label>
          <span>{t('audit.key')}</span>
          <select value={filters.keyId} onChange={set('keyId')} data-testid="audit-key">
            <option value="">{t('common.all')}</option>
            {filters.keyId && !keyNames.has(filters.keyId) && <option value={filters.keyId}>{filters.keyId}</option>}
            {keys.map((k) => (
              <option key={k.id} value={k.id}>
                {k.status === 'deleted' ? `${k.name} (${t('status.deleted')})` : k.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>{t('audit.project')}</span>
          <select value={filters.projectId} onChange={set('projectId')} data-testid="audit-project">
            <option value="">{t('common.all')}</option>
            {projects.map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>
            {t('audit.from')} ({zone(filters.from || null)})
          </span>
          <input type="datetime-local" value={isoToLocal(filters.from)} onChange={setTime('from')} data-testid="audit-from" />
        </label>
        <label>
          <span>
            {t('audit.to')} ({zone(filters.to || null)})
          </span>
          <input type="datetime-local" value={isoToLocal(filters.to)} onChange={setTime('to')} data-testid="audit-to" />
        </label>
        <div className="filter-buttons">
          <button type="button" onClick={() => setFilters(EMPTY)} data-testid="audit-reset">
            {t('common.reset')}
          </button>
        </div>
      </div>
      {rangeBad && <Alert kind="error">{t('audit.invalidRange')}</Alert>}

      <VerifyPanel />

      {pager.error != null && <Alert kind="error">{errorText(t, pager.error)}</Alert>}
      <AuditTable events={pager.items} showKey loading={pager.loading} keyNames={keyNames} emptyText={NAMES.some((n) => applied[n]) ? t('common.noMatch') : t('audit.empty')} />
      <Pager pager={pager} />
    </div>
  );
}

function VerifyPanel() {
  const { t, tn, number } = useI18n();
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<VerifyResult | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [seq, setSeq] = useState('');
  const [hash, setHash] = useState('');

  const verify = async () => {
    setBusy(true);
    setError(null);
    setResult(null);
    try {
      const expected = seq.trim() && hash.trim() ? { headSeq: seq.trim(), headHash: hash.trim().toLowerCase() } : {};
      setResult(await call(client.GET('/api/v1/audit-events/verify', { params: { query: query('/api/v1/audit-events/verify', expected) } })));
    } catch (err) {
      setError(errorText(t, err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="card verify" aria-label={t('audit.verify')}>
      <div className="verify-row">
        <button type="button" className="primary" onClick={verify} disabled={busy} data-testid="verify-button">
          {busy ? t('audit.verifying') : `✓ ${t('audit.verify')}`}
        </button>
        <details className="expected-head">
          <summary>{t('audit.expectedHead')}</summary>
          <div className="grid-2">
            <Field label={t('audit.expectedSeq')} htmlFor="expected-seq">
              <input id="expected-seq" inputMode="numeric" value={seq} onChange={(e) => setSeq(e.target.value)} />
            </Field>
            <Field label={t('audit.expectedHash')} htmlFor="expected-hash">
              <input id="expected-hash" value={hash} onChange={(e) => setHash(e.target.value)} spellCheck={false} className="mono" />
            </Field>
          </div>
        </details>
      </div>
      {error && <Alert kind="error">{error}</Alert>}
      {result && (
        <div className={`verify-result ${result.ok ? 'ok' : 'bad'}`} role="status" data-testid="verify-result" data-ok={String(result.ok)}>
          <p className="verify-title">{result.ok ? `✓ ${tn('audit.verifyOk', result.checked)}` : `✗ ${t('audit.verifyBad')}`}</p>
          {!result.ok && result.firstBadId && <p>{t('audit.verifyFirstBad', { id: result.firstBadId })}</p>}
          {!result.ok && result.reason && <p>{t('audit.verifyReason', { reason: result.reason })}</p>}
          <dl className="kv small">
            <dt>{t('audit.head')}</dt>
            <dd data-testid="verify-head">
              {t('audit.headSeq', { seq: result.head.seq })} · <code className="wrap">{result.head.hash}</code>{' '}
              <CopyButton text={() => JSON.stringify({ seq: result.head.seq, hash: result.head.hash })} label={t('audit.copyHead')} testId="copy-head" className="small" />
            </dd>
          </dl>
          {result.unsealed > 0 && <p className="muted small">{tn('audit.unsealed', result.unsealed, { count: number(result.unsealed) })}</p>}
          <p className="muted small">{t('audit.headHint')}</p>
        </div>
      )}
    </section>
  );
}
