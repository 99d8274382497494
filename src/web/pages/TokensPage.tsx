import { useState, type FormEvent } from 'react';
import { call, client, query, ROLE_SCOPES, type ApiToken, type IssuedToken, type Scope } from '../api';
import { errorText } from '../errors';
import { useTitle } from '../hooks';
import { useI18n, type MessageKey } from '../i18n';
import { useMe } from '../session';
import { Alert } from '../components/Alert';
import { StatusBadge } from '../components/Badges';
import { ConfirmDialog, Dialog } from '../components/Dialog';
import { Field } from '../components/Field';
import { Menu } from '../components/Menu';
import { DataTable } from '../components/DataTable';
import { Pager, usePaged } from '../components/Pager';
import { CopyButton } from '../components/Secret';
import type { Notice } from './KeyActions';

type Open = { kind: 'create' } | { kind: 'renew' | 'regenerate' | 'revoke'; tk: ApiToken } | { kind: 'issued'; issued: IssuedToken } | null;
const RENEW_DAYS = 90;

/** Everyone manages their own API tokens; a new secret is shown once, then only its prefix. */
export function TokensPage() {
  const { t, dateTime, number } = useI18n();
  const me = useMe();
  useTitle(t('tokens.title'));
  const [open, setOpen] = useState<Open>(null);
  const [notice, setNotice] = useState<Notice>(null);
  const [showRevoked, setShowRevoked] = useState(false);
  // Admins could list everyone's; this page is about one's own.
  const pager = usePaged<ApiToken>((cursor, limit) => call(client.GET('/api/v1/api-tokens', { params: { query: query('/api/v1/api-tokens', { userId: me.role === 'admin' ? me.id : undefined, limit, cursor }) } })), 'tokens');
  const close = () => setOpen(null);
  const items = showRevoked ? pager.items : pager.items.filter((tk) => !tk.revokedAt);
  const stateOf = (tk: ApiToken) => (tk.revokedAt ? 'revoked' : new Date(tk.expiresAt).getTime() <= Date.now() ? 'expired' : 'active');

  return (
    <div className="page">
      <div className="page-head">
        <h1>{t('tokens.title')}</h1>
        <button type="button" className="primary" onClick={() => setOpen({ kind: 'create' })} data-testid="create-token">
          + {t('tokens.create')}
        </button>
      </div>
      <p className="muted">{t('tokens.intro')}</p>
      <label className="checkbox">
        <input type="checkbox" checked={showRevoked} onChange={(e) => setShowRevoked(e.target.checked)} /> {t('tokens.showRevoked')}
      </label>
      {notice && (
        <Alert kind={notice.kind} onDismiss={() => setNotice(null)} testId="page-notice">
          {notice.text}
        </Alert>
      )}
      {pager.error != null && <Alert kind="error">{errorText(t, pager.error)}</Alert>}
      <DataTable
        rows={items}
        rowKey={(tk) => tk.id}
        rowAttrs={() => ({ 'data-testid': 'token-row' })}
        loading={pager.loading}
        label={t('tokens.title')}
        testId="tokens-table"
        empty={t('tokens.empty')}
        columns={[
          { id: 'name', header: t('tokens.name'), cell: (tk) => <strong className="name">{tk.name}</strong> },
          { id: 'prefix', header: t('tokens.col.prefix'), cell: (tk) => <code data-testid="token-prefix">{tk.prefix}…</code> },
          {
            id: 'scopes',
            header: t('tokens.scopes'),
            cell: (tk) => (
              <ul className="scope-list">
                {tk.scopes.map((s) => (
                  <li key={s}>
                    <code>{s}</code>
                  </li>
                ))}
              </ul>
            ),
          },
          { id: 'status', header: t('common.status'), cell: (tk) => <StatusBadge status={stateOf(tk)} /> },
          { id: 'expires', header: t('tokens.col.expires'), className: 'nowrap', cell: (tk) => dateTime(tk.expiresAt) },
          { id: 'used', header: t('tokens.col.lastUsed'), className: 'nowrap', cell: (tk) => (tk.lastUsedAt ? dateTime(tk.lastUsedAt) : <span className="muted">{t('common.never')}</span>) },
          { id: 'uses', header: t('tokens.col.uses'), className: 'num', cell: (tk) => number(tk.usageCount) },
        ]}
        actions={(tk) =>
          !tk.revokedAt && (
            <Menu label={<span aria-hidden="true">⋯</span>} ariaLabel={t('common.moreFor', { name: tk.name })} className="row-menu">
              <button type="button" role="menuitem" onClick={() => setOpen({ kind: 'renew', tk })}>
                {t('tokens.renew')}
              </button>
              <button type="button" role="menuitem" onClick={() => setOpen({ kind: 'regenerate', tk })}>
                {t('tokens.regenerate')}
              </button>
              <button type="button" role="menuitem" className="danger-text" onClick={() => setOpen({ kind: 'revoke', tk })}>
                {t('tokens.revoke')}
              </button>
            </Menu>
          )
        }
      />
      <Pager pager={pager} />

      {open?.kind === 'create' && (
        <CreateTokenDialog
          onClose={close}
          onIssued={(issued) => {
            pager.reload();
            setOpen({ kind: 'issued', issued });
          }}
        />
      )}
      {open?.kind === 'issued' && <IssuedDialog issued={open.issued} onClose={close} />}
      {open?.kind === 'renew' && (
        <ConfirmDialog
          title={t('tokens.renew')}
          message={t('tokens.renewConfirm', { name: open.tk.name, days: RENEW_DAYS })}
          confirmLabel={t('tokens.renew')}
          onClose={close}
          onConfirm={async () => {
            const tk = await call(client.POST('/api/v1/api-tokens/{id}/renew', { params: { path: { id: open.tk.id } }, body: { expiresInDays: RENEW_DAYS } }));
            setNotice({ kind: 'success', text: t('tokens.renewed', { name: tk.name, date: dateTime(tk.expiresAt) }) });
            pager.reload();
          }}
        />
      )}
      {open?.kind === 'regenerate' && (
        <ConfirmDialog
          title={t('tokens.regenerate')}
          message={t('tokens.regenerateConfirm', { name: open.tk.name })}
          confirmLabel={t('tokens.regenerate')}
          danger
          keepOpen
          onClose={close}
          onConfirm={async () => {
            const issued = await call(client.POST('/api/v1/api-tokens/{id}/regenerate', { params: { path: { id: open.tk.id } } }));
            pager.reload();
            setOpen({ kind: 'issued', issued });
          }}
        />
      )}
      {open?.kind === 'revoke' && (
        <ConfirmDialog
          title={t('tokens.revoke')}
          message={t('tokens.revokeConfirm', { name: open.tk.name })}
          confirmLabel={t('tokens.revoke')}
          danger
          onClose={close}
          onConfirm={async () => {
            await call(client.DELETE('/api/v1/api-tokens/{id}', { params: { path: { id: open.tk.id } } }));
            setNotice({ kind: 'success', text: t('tokens.revoked', { name: open.tk.name }) });
            pager.reload();
          }}
        />
      )}
    </div>
  );
}

function CreateTokenDialog({ onClose, onIssued }: { onClose(): void; onIssued(i: IssuedToken): void }) {
  const { t } = useI18n();
  const me = useMe();
  const allowed = ROLE_SCOPES[me.role];
  const [name, setName] = useState('');
  // Metrics are for a scraper's own token: not ticked by default.
  const [scopes, setScopes] = useState<Scope[]>(allowed.filter((s) => s.endsWith(':read') && s !== 'metrics:read'));
  const [days, setDays] = useState('90');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const toggle = (s: Scope) => setScopes((cur) => (cur.includes(s) ? cur.filter((x) => x !== s) : [...cur, s]));
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    const n = Number(days);
    if (!name.trim()) return setError(t('keyForm.required', { field: t('tokens.name') }));
    if (scopes.length === 0) return setError(t('tokens.scopesRule'));
    if (!Number.isInteger(n) || n < 1 || n > 365) return setError(t('tokens.daysRule'));
    setBusy(true);
    try {
      onIssued(await call(client.POST('/api/v1/api-tokens', { body: { name: name.trim(), scopes, expiresInDays: n } })));
    } catch (err) {
      setError(errorText(t, err));
      setBusy(false);
    }
  };
  return (
    <Dialog title={t('tokens.create')} onClose={onClose} testId="create-token-dialog">
      <form onSubmit={submit} noValidate>
        <Field label={t('tokens.name')} htmlFor="token-name">
          <input id="token-name" value={name} onChange={(e) => setName(e.target.value)} maxLength={128} placeholder={t('tokens.namePlaceholder')} data-autofocus />
        </Field>
        <fieldset className="field">
          <legend>{t('tokens.scopes')}</legend>
          <div className="scope-grid">
            {allowed.map((s) => (
              <label key={s} className="checkbox">
                <input type="checkbox" checked={scopes.includes(s)} onChange={() => toggle(s)} value={s} />
                <span>
                  <code>{s}</code> <span className="muted small">{t(`scope.${s}` as MessageKey)}</span>
                </span>
              </label>
            ))}
          </div>
        </fieldset>
        <Field label={t('tokens.expiresInDays')} htmlFor="token-days" help={t('tokens.daysRule')}>
          <input id="token-days" type="number" min={1} max={365} value={days} onChange={(e) => setDays(e.target.value)} />
        </Field>
        {error && <Alert kind="error">{error}</Alert>}
        <div className="dialog-actions">
          <button type="button" onClick={onClose}>
            {t('common.cancel')}
          </button>
          <button type="submit" className="primary" disabled={busy}>
            {t('common.create')}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

/** The token's secret, this once. Closing the dialog drops it from memory for good. */
function IssuedDialog({ issued, onClose }: { issued: IssuedToken; onClose(): void }) {
  const { t } = useI18n();
  return (
    <Dialog title={t('tokens.newTitle')} onClose={onClose} testId="issued-token-dialog">
      <Alert kind="warning">{t('tokens.newNote', { prefix: `${issued.prefix}…` })}</Alert>
      <div className="secret-box">
        <code className="secret-text" data-testid="issued-token">
          {issued.token}
        </code>
      </div>
      <div className="dialog-actions">
        <button type="button" onClick={onClose}>
          {t('common.close')}
        </button>
        <CopyButton text={() => issued.token} testId="copy-token" className="primary" first />
      </div>
    </Dialog>
  );
}
