import { useState, type FormEvent } from 'react';
import { call, client, PROBE_PROVIDERS, query, type HealthEvent, type KeyHealth, type ProviderKey } from '../api';
import { useDirectory } from '../directory';
import { errorText, type ErrorOverrides } from '../errors';
import { useI18n, type MessageKey } from '../i18n';
import { useMe } from '../session';
import { Alert } from '../components/Alert';
import { HealthBadge } from '../components/Badges';
import { DataTable } from '../components/DataTable';
import { ConfirmDialog, Dialog } from '../components/Dialog';
import { Field } from '../components/Field';
import { Pager, usePaged } from '../components/Pager';

/** A check is refused for the same reasons as a reveal, and when the key has no check at all; these say so in the check's terms. */
const CHECK_ERRORS: ErrorOverrides = { key_disabled: 'health.keyDisabled', key_expired: 'health.keyExpired', conflict: 'health.noCheck' };

type Result = { kind: 'done'; health: KeyHealth } | { kind: 'error'; text: string } | null;

/**
 * A key's health (docs/health.md): the current state with when and why, "Check now" for its owner and admins, the
 * opt-in probe of Ark and custom keys (admins), and the history of results. `onChanged`: the key row changed.
 */
export function HealthSection({ k, onChanged }: { k: ProviderKey; onChanged(): void }) {
  const { t, dateTime } = useI18n();
  const me = useMe();
  const { userName } = useDirectory();
  const [busy, setBusy] = useState(false);
  const [result, setResult] = useState<Result>(null);
  const [probe, setProbe] = useState<'set' | 'clear' | null>(null);
  const history = usePaged<HealthEvent>((cursor, limit) => call(client.GET('/api/v1/provider-keys/{id}/health', { params: { path: { id: k.id }, query: query('/api/v1/provider-keys/{id}/health', { limit, cursor }) } })), k.id, 25);
  const canCheck = k.status !== 'deleted' && (me.role === 'admin' || (me.role === 'member' && k.ownerId === me.id));
  const probeKey = PROBE_PROVIDERS.includes(k.provider);
  const h = k.health;

  const check = async () => {
    setBusy(true);
    setResult(null);
    try {
      const health = await call(client.POST('/api/v1/provider-keys/{id}/check', { params: { path: { id: k.id } } }));
      setResult({ kind: 'done', health });
      onChanged();
      history.reload();
    } catch (err) {
      setResult({ kind: 'error', text: errorText(t, err, CHECK_ERRORS) });
    } finally {
      setBusy(false);
    }
  };
  const saveProbe = async (model: string | null) => {
    await call(client.PATCH('/api/v1/provider-keys/{id}', { params: { path: { id: k.id } }, body: { healthProbe: model === null ? null : { model } } }));
    setResult(null);
    onChanged();
  };

  return (
    <section aria-labelledby="health-heading" data-testid="key-health">
      <div className="section-head">
        <div>
          <h2 id="health-heading">{t('health.title')}</h2>
          <p className="muted small">{t('health.intro')}</p>
        </div>
        {canCheck && (
          <button type="button" className="primary" onClick={check} disabled={busy} data-testid="check-now">
            {busy ? t('health.checking') : t('health.checkNow')}
          </button>
        )}
      </div>
      {result?.kind === 'done' && (
        <Alert kind={result.health.status === 'valid' ? 'success' : 'warning'} onDismiss={() => setResult(null)} testId="check-result">
          {t('health.checked', { status: t(`health.status.${result.health.status}` as MessageKey) })}
          {result.health.detail && <span className="wrap"> {result.health.detail}</span>}
        </Alert>
      )}
      {result?.kind === 'error' && (
        <Alert kind="error" onDismiss={() => setResult(null)} testId="check-error">
          {result.text}
        </Alert>
      )}
      <div className="card">
        <dl className="kv" data-testid="health-current">
          <dt>{t('health.current')}</dt>
          <dd>
            <HealthBadge status={h.status} />
          </dd>
          <dt>{t('health.checkedAt')}</dt>
          <dd data-testid="health-checked-at">{h.checkedAt ? dateTime(h.checkedAt) : <span className="muted">{t('health.neverChecked')}</span>}</dd>
          <dt>{t('health.detail')}</dt>
          <dd className="wrap" data-testid="health-detail">
            {h.detail ?? <span className="muted">{t('common.none')}</span>}
          </dd>
          {probeKey && (
            <>
              <dt>{t('health.probe')}</dt>
              <dd data-testid="health-probe">
                {k.healthProbe ? (
                  <>
                    <code className="wrap">{k.healthProbe.model}</code>
                    <div className="muted small">{t('health.probeSpends')}</div>
                  </>
                ) : (
                  <span className="muted">{t('health.probeNone')}</span>
                )}
                {me.role === 'admin' && k.status !== 'deleted' && (
                  <div className="row-actions probe-actions">
                    <button type="button" onClick={() => setProbe('set')} data-testid="probe-set">
                      {k.healthProbe ? t('health.probeChange') : t('health.probeSet')}
                    </button>
                    {k.healthProbe && (
                      <button type="button" onClick={() => setProbe('clear')} data-testid="probe-clear">
                        {t('health.probeClear')}
                      </button>
                    )}
                  </div>
                )}
              </dd>
            </>
          )}
        </dl>
      </div>

      <h3 id="health-history-heading">{t('health.history')}</h3>
      {history.error != null && <Alert kind="error">{errorText(t, history.error)}</Alert>}
      <DataTable
        rows={history.items}
        rowKey={(ev) => ev.id}
        rowAttrs={(ev) => ({ 'data-testid': 'health-row', 'data-health': ev.status })}
        loading={history.loading}
        label={t('health.history')}
        testId="health-table"
        empty={t('health.historyEmpty')}
        columns={[
          { id: 'at', header: t('health.col.at'), className: 'nowrap', cell: (ev) => dateTime(ev.at) },
          {
            id: 'status',
            header: t('health.col.status'),
            cell: (ev) => (
              <>
                <HealthBadge status={ev.status} />
                {ev.previousStatus && ev.previousStatus !== ev.status && <div className="muted small">{t('health.was', { status: t(`health.status.${ev.previousStatus}` as MessageKey) })}</div>}
              </>
            ),
          },
          { id: 'source', header: t('health.col.source'), cell: (ev) => t(`health.source.${ev.source}` as MessageKey) },
          { id: 'http', header: t('health.col.http'), className: 'num', cell: (ev) => ev.httpStatus ?? <span className="muted">{t('common.none')}</span> },
          { id: 'detail', header: t('health.detail'), cell: (ev) => (ev.detail ? <span className="wrap">{ev.detail}</span> : <span className="muted">{t('common.none')}</span>) },
          { id: 'by', header: t('health.col.by'), cell: (ev) => (ev.actorId ? userName(ev.actorId) : <span className="muted">{t('health.byVault')}</span>) },
        ]}
      />
      <Pager pager={history} />

      {probe === 'set' && <ProbeDialog k={k} onClose={() => setProbe(null)} onSave={saveProbe} />}
      {probe === 'clear' && (
        <ConfirmDialog
          title={t('health.probeClear')}
          message={t('health.probeClearConfirm', { name: k.name })}
          confirmLabel={t('health.probeClear')}
          danger
          onClose={() => setProbe(null)}
          onConfirm={() => saveProbe(null)}
        />
      )}
    </section>
  );
}

/** The probe's model: what it spends is said before it is saved (one completion token per check). */
function ProbeDialog({ k, onClose, onSave }: { k: ProviderKey; onClose(): void; onSave(model: string): Promise<void> }) {
  const { t } = useI18n();
  const [model, setModel] = useState(k.healthProbe?.model ?? '');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    const m = model.trim();
    if (!m) return setError(t('keyForm.required', { field: t('health.probeModel') }));
    if (!/^[\x21-\x7e]{1,128}$/.test(m)) return setError(t('health.probeModelRule'));
    setBusy(true);
    setError(null);
    try {
      await onSave(m);
      onClose();
    } catch (err) {
      setError(errorText(t, err));
      setBusy(false);
    }
  };
  return (
    <Dialog title={t('health.probeTitle', { name: k.name })} onClose={onClose} testId="probe-dialog">
      <form onSubmit={submit} noValidate>
        <Alert kind="info">{t('health.probeExplain')}</Alert>
        <Field label={t('health.probeModel')} htmlFor="probe-model" help={t('health.probeModelHelp')}>
          <input id="probe-model" value={model} onChange={(e) => setModel(e.target.value)} maxLength={128} autoComplete="off" spellCheck={false} placeholder={t('health.probeModelPlaceholder')} />
        </Field>
        <pre className="code-block small" data-testid="probe-preview">{`POST …/chat/completions\n${JSON.stringify({ model: model.trim() || '…', max_tokens: 1, messages: [{ role: 'user', content: 'ping' }] })}`}</pre>
        {error && <Alert kind="error">{error}</Alert>}
        <div className="dialog-actions">
          <button type="button" onClick={onClose}>
            {t('common.cancel')}
          </button>
          <button type="submit" className="primary" disabled={busy} data-testid="probe-save">
            {t('common.save')}
          </button>
        </div>
      </form>
    </Dialog>
  );
}
