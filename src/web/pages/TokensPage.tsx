import { useState, type FormEvent } from 'react';
import { api, qs, ROLE_SCOPES, type ApiToken, type IssuedToken, type PageOf } from '../api';
import { errorText } from '../errors';
import { useTitle } from '../hooks';
import { useI18n, type MessageKey } from '../i18n';
import { useMe } from '../session';
import { Alert } from '../components/Alert';
import { StatusBadge } from '../components/Badges';
import { ConfirmDialog, Dialog } from '../components/Dialog';
import { Field } from '../components/Field';
import { Menu } from '../components/Menu';
import { Pager, usePaged } from '../components/Pager';
import { CopyButton } from '../components/Secret';
import type { Notice } from './KeyActions';

type Open = { kind: 'create' } | { kind: 'renew' | 'regenerate' | 'revoke'; tk: ApiToken } | { kind: 'issued'; issued: IssuedToken } | null;
const RENEW_DAYS = 90;

/** Everyone manages their own API tokens; a new secret is shown once, then only its prefix. */
export function TokensPage() {
  const { t, dateTime, date, number } = useI18n();
  const me = useMe();
  useTitle(t('tokens.title'));
  const [open, setOpen] = useState<Open>(null);
  const [notice, setNotice] = useState<Notice>(null);
  const [showRevoked, setShowRevoked] = useState(false);
  // Admins could list everyone's; this page is about one's own.
  const pager = usePaged<ApiToken>((cursor, limit) => api<PageOf<ApiToken>>('GET', `/api-tokens${qs({ userId: me.role === 'admin' ? me.id : undefined, limit, cursor })}`), 'tokens');
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
      <div className="table-wrap">
        <table className="table" data-testid="tokens-table">
          <thead>
            <tr>
              <th>{t('tokens.name')}</th>
              <th>{t('tokens.col.prefix')}</th>
              <th>{t('tokens.scopes')}</th>
              <th>{t('common.status')}</th>
              <th>{t('tokens.col.expires')}</th>
              <th>{t('tokens.col.lastUsed')}</th>
              <th className="num">{t('tokens.col.uses')}</th>
              <th>
                <span className="sr-only">{t('common.actions')}</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {items.map((tk) => (
              <tr key={tk.id} data-testid="token-row">
                <td>
                  <strong>{tk.name}</strong>
                </td>
                <td>
                  <code data-testid="token-prefix">{tk.prefix}…</code>
                </td>
                <td>
                  <ul className="scope-list">
                    {tk.scopes.map((s) => (
                      <li key={s}>
                        <code>{s}</code>
                      </li>
                    ))}
                  </ul>
                </td>
                <td>
                  <StatusBadge status={stateOf(tk)} />
                </td>
                <td className="nowrap">{date(tk.expiresAt)}</td>
                <td className="nowrap">
                  {tk.lastUsedAt ? dateTime(tk.lastUsedAt) : <span className="muted">{t('common.never')}</span>}
                  {tk.lastUsedIp && <div className="muted small">{tk.lastUsedIp}</div>}
                </td>
                <td className="num">{number(tk.usageCount)}</td>
                <td className="actions-cell">
                  {!tk.revokedAt && (
                    <Menu label={<span aria-label={t('common.more')}>⋯</span>} className="row-menu">
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
                  )}
                </td>
              </tr>
            ))}
            {!pager.loading && items.length === 0 && (
              <tr>
                <td colSpan={8} className="empty">
                  {t('common.empty')}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
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
            const tk = await api<ApiToken>('POST', `/api-tokens/${open.tk.id}/renew`, { body: { expiresInDays: RENEW_DAYS } });
            setNotice({ kind: 'success', text: t('tokens.renewed', { name: tk.name, date: date(tk.expiresAt) }) });
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
            const issued = await api<IssuedToken>('POST', `/api-tokens/${open.tk.id}/regenerate`);
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
            await api('DELETE', `/api-tokens/${open.tk.id}`);
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
  const [scopes, setScopes] = useState<string[]>(allowed.filter((s) => s.endsWith(':read')));
  const [days, setDays] = useState('90');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const toggle = (s: string) => setScopes((cur) => (cur.includes(s) ? cur.filter((x) => x !== s) : [...cur, s]));
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    const n = Number(days);
    if (!name.trim()) return setError(t('keyForm.required', { field: t('tokens.name') }));
    if (scopes.length === 0) return setError(t('tokens.scopesRule'));
    if (!Number.isInteger(n) || n < 1 || n > 365) return setError(t('tokens.daysRule'));
    setBusy(true);
    try {
      onIssued(await api<IssuedToken>('POST', '/api-tokens', { body: { name: name.trim(), scopes, expiresInDays: n } }));
    } catch (err) {
      setError(errorText(t, err));
      setBusy(false);
    }
  };
  return (
    <Dialog title={t('tokens.create')} onClose={onClose} testId="create-token-dialog">
      <form onSubmit={submit} noValidate>
        <Field label={t('tokens.name')} htmlFor="token-name">
          <input id="token-name" value={name} onChange={(e) => setName(e.target.value)} maxLength={128} placeholder={t('tokens.namePlaceholder')} autoFocus />
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
        <CopyButton text={() => issued.token} testId="copy-token" />
        <button type="button" className="primary" onClick={onClose}>
          {t('common.close')}
        </button>
      </div>
    </Dialog>
  );
}
