import { useEffect, useMemo, useState, type FormEvent } from 'react';
import { api, apiUrl, AUDIT_ACTIONS, AUDIT_OUTCOMES, listAll, qs, type AuditEvent, type PageOf, type ProviderKey, type VerifyResult } from '../api';
import { useDirectory } from '../directory';
import { errorText } from '../errors';
import { useTitle } from '../hooks';
import { useI18n, type MessageKey } from '../i18n';
import { Alert } from '../components/Alert';
import { Field, isoToLocal, localToIso } from '../components/Field';
import { Pager, usePaged } from '../components/Pager';
import { AuditTable } from './AuditTable';

interface Filters {
  action: string;
  outcome: string;
  actorId: string;
  keyId: string;
  projectId: string;
  from: string;
  to: string;
}
const NAMES: Array<keyof Filters> = ['action', 'outcome', 'actorId', 'keyId', 'projectId', 'from', 'to'];
const EMPTY: Filters = { action: '', outcome: '', actorId: '', keyId: '', projectId: '', from: '', to: '' };

function fromUrl(): Filters {
  const q = new URLSearchParams(window.location.search);
  const f = { ...EMPTY };
  for (const n of NAMES) f[n] = q.get(n) ?? '';
  return f;
}

const clean = (f: Filters) => Object.fromEntries(NAMES.filter((n) => f[n]).map((n) => [n, f[n]]));

export function AuditPage() {
  const { t } = useI18n();
  const { users, projects } = useDirectory();
  useTitle(t('audit.title'));
  const [applied, setApplied] = useState<Filters>(fromUrl);
  const [draft, setDraft] = useState<Filters>(applied);
  const [formError, setFormError] = useState<string | null>(null);
  const [keys, setKeys] = useState<ProviderKey[]>([]);

  useEffect(() => {
    window.history.replaceState(null, '', `/audit${qs(clean(applied))}`);
  }, [applied]);

  useEffect(() => {
    Promise.all([listAll<ProviderKey>('/provider-keys', 10), listAll<ProviderKey>('/provider-keys?status=deleted', 5)])
      .then(([live, deleted]) => setKeys([...live, ...deleted].sort((a, b) => a.name.localeCompare(b.name))))
      .catch(() => undefined);
  }, []);
  const keyNames = useMemo(() => new Map(keys.map((k) => [k.id, k.name])), [keys]);

  const pager = usePaged<AuditEvent>((cursor, limit) => api<PageOf<AuditEvent>>('GET', `/audit-events${qs({ ...clean(applied), limit, cursor })}`), JSON.stringify(applied));

  const set = (name: keyof Filters) => (e: { target: { value: string } }) => setDraft((f) => ({ ...f, [name]: e.target.value }));
  const setTime = (name: 'from' | 'to') => (e: { target: { value: string } }) => setDraft((f) => ({ ...f, [name]: localToIso(e.target.value) ?? '' }));
  const apply = (e: FormEvent) => {
    e.preventDefault();
    setFormError(null);
    if (draft.from && draft.to && new Date(draft.from) >= new Date(draft.to)) return setFormError(t('audit.invalidRange'));
    setApplied({ ...draft, keyId: draft.keyId.trim() });
  };
  const reset = () => {
    setDraft(EMPTY);
    setApplied(EMPTY);
    setFormError(null);
  };

  const exportHref = (format: 'csv' | 'ndjson') => apiUrl(`/audit-events/export${qs({ ...clean(applied), format })}`);

  return (
    <div className="page">
      <div className="page-head">
        <h1>{t('audit.title')}</h1>
        <div className="head-actions">
          <a className="button" href={exportHref('csv')} download data-testid="export-csv">
            ⬇ {t('audit.exportCsv')}
          </a>
          <a className="button" href={exportHref('ndjson')} download data-testid="export-ndjson">
            ⬇ {t('audit.exportNdjson')}
          </a>
        </div>
      </div>
      <p className="muted small">{t('audit.exportNote')}</p>

      <form className="filters audit-filters" onSubmit={apply} role="search" data-testid="audit-filters">
        <label>
          <span>{t('audit.action')}</span>
          <select value={draft.action} onChange={set('action')} data-testid="audit-action">
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
          <select value={draft.outcome} onChange={set('outcome')} data-testid="audit-outcome">
            <option value="">{t('common.all')}</option>
            {AUDIT_OUTCOMES.map((o) => (
              <option key={o} value={o}>
                {t(`outcome.${o}` as MessageKey)}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>{t('audit.user')}</span>
          <select value={draft.actorId} onChange={set('actorId')} data-testid="audit-user">
            <option value="">{t('common.all')}</option>
            {users.map((u) => (
              <option key={u.id} value={u.id}>
                {u.username}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>{t('audit.key')}</span>
          <select value={draft.keyId} onChange={set('keyId')} data-testid="audit-key">
            <option value="">{t('common.all')}</option>
            {draft.keyId && !keyNames.has(draft.keyId) && <option value={draft.keyId}>{draft.keyId}</option>}
            {keys.map((k) => (
              <option key={k.id} value={k.id}>
                {k.status === 'deleted' ? `${k.name} (${t('status.deleted')})` : k.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>{t('audit.project')}</span>
          <select value={draft.projectId} onChange={set('projectId')} data-testid="audit-project">
            <option value="">{t('common.all')}</option>
            {projects.map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>{t('audit.from')}</span>
          <input type="datetime-local" value={isoToLocal(draft.from)} onChange={setTime('from')} data-testid="audit-from" />
        </label>
        <label>
          <span>{t('audit.to')}</span>
          <input type="datetime-local" value={isoToLocal(draft.to)} onChange={setTime('to')} data-testid="audit-to" />
        </label>
        <div className="filter-buttons">
          <button type="submit" className="primary" data-testid="audit-apply">
            {t('common.apply')}
          </button>
          <button type="button" onClick={reset}>
            {t('common.reset')}
          </button>
        </div>
      </form>
      {formError && <Alert kind="error">{formError}</Alert>}

      <VerifyPanel />

      {pager.error != null && <Alert kind="error">{errorText(t, pager.error)}</Alert>}
      <AuditTable events={pager.items} showKey loading={pager.loading} keyNames={keyNames} emptyText={NAMES.some((n) => applied[n]) ? t('common.noMatch') : t('common.empty')} />
      <Pager pager={pager} />
    </div>
  );
}

function VerifyPanel() {
  const { t, number } = useI18n();
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
      setResult(await api<VerifyResult>('GET', `/audit-events/verify${qs(expected)}`));
    } catch (err) {
      setError(errorText(t, err));
    } finally {
      setBusy(false);
    }
  };

  return (
    <section className="card verify">
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
          <p className="verify-title">{result.ok ? `✓ ${t('audit.verifyOk', { checked: number(result.checked) })}` : `✗ ${t('audit.verifyBad')}`}</p>
          {!result.ok && result.firstBadId && <p>{t('audit.verifyFirstBad', { id: result.firstBadId })}</p>}
          {!result.ok && result.reason && <p>{t('audit.verifyReason', { reason: result.reason })}</p>}
          <dl className="kv small">
            <dt>{t('audit.head')}</dt>
            <dd data-testid="verify-head">
              {t('audit.headSeq', { seq: result.head.seq })} · <code className="wrap">{result.head.hash}</code>
            </dd>
          </dl>
          {result.unsealed > 0 && <p className="muted small">{t('audit.unsealed', { n: number(result.unsealed) })}</p>}
          <p className="muted small">{t('audit.headHint')}</p>
        </div>
      )}
    </section>
  );
}
