import { useCallback, useEffect, useState, type FormEvent } from 'react';
import { call, client, listAll, query, type IssuedVirtualKey, type ProviderKey, type VirtualKey } from '../api';
import { useDirectory } from '../directory';
import { errorText, type ErrorOverrides } from '../errors';
import { useI18n } from '../i18n';
import { useMe } from '../session';
import { upstreamOf, type Provider } from '../providers';
import { Alert } from '../components/Alert';
import { StatusBadge } from '../components/Badges';
import { DataTable } from '../components/DataTable';
import { ConfirmDialog, Dialog } from '../components/Dialog';
import { Field } from '../components/Field';
import { TimedSecretDialog } from '../components/Secret';
import { ReasonField } from './Reveal';
import type { Notice } from './KeyActions';

/** How long a new virtual key stays on screen: longer than a reveal, since it can never be shown again. */
export const VIRTUAL_KEY_SECONDS = 60;
const MAX_DAYS = 365;
const MAX_REQUESTS = 1_000_000_000;
const MAX_TOKENS = 1_000_000_000_000;

/** Making a virtual key is refused for the same reasons as a reveal; these say so in the virtual key's terms. */
const CREATE_ERRORS: ErrorOverrides = { key_disabled: 'vk.keyDisabled', key_expired: 'vk.keyExpired', conflict: 'vk.noUpstream' };

type Open = { kind: 'create' } | { kind: 'issued'; issued: IssuedVirtualKey } | { kind: 'revoke'; vk: VirtualKey } | null;

const stateOf = (vk: VirtualKey) => (vk.revokedAt ? 'revoked' : new Date(vk.expiresAt).getTime() <= Date.now() ? 'expired' : 'active');

/** Why no virtual key can be made for this key now, or null when one can. */
function blockedBy(k: ProviderKey): 'vk.keyDeleted' | 'vk.keyDisabled' | 'vk.keyExpired' | 'vk.noUpstream' | null {
  if (k.status === 'deleted') return 'vk.keyDeleted';
  if (k.status === 'disabled') return 'vk.keyDisabled';
  if (k.expiresAt && new Date(k.expiresAt).getTime() <= Date.now()) return 'vk.keyExpired';
  if (!upstreamOf(k.provider as Provider, k.baseUrl)) return 'vk.noUpstream';
  return null;
}

/**
 * A key's virtual keys: the list, making one (shown once), revoking one. For whoever may reveal the key (its owner, an
 * admin); auditors never see this section. `onChanged`: one was made or revoked, so the key's trail has a new row.
 */
export function VirtualKeysSection({ k, onChanged }: { k: ProviderKey; onChanged(): void }) {
  const { t, dateTime, number } = useI18n();
  const { userName } = useDirectory();
  const [items, setItems] = useState<VirtualKey[]>([]);
  const [loading, setLoading] = useState(true);
  const [error, setError] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  const [open, setOpen] = useState<Open>(null);
  const [notice, setNotice] = useState<Notice>(null);
  const [showEnded, setShowEnded] = useState(false);
  const reload = useCallback(() => setTick((n) => n + 1), []);
  const close = useCallback(() => setOpen(null), []);

  useEffect(() => {
    let live = true;
    setLoading(true);
    listAll((cursor) => call(client.GET('/api/v1/provider-keys/{id}/virtual-keys', { params: { path: { id: k.id }, query: query('/api/v1/provider-keys/{id}/virtual-keys', { limit: 200, cursor }) } })))
      .then((list) => live && (setItems(list), setError(null)))
      .catch((e: unknown) => live && setError(e))
      .finally(() => live && setLoading(false));
    return () => {
      live = false;
    };
  }, [k.id, tick]);

  const blocked = blockedBy(k);
  const rows = showEnded ? items : items.filter((vk) => stateOf(vk) === 'active');
  const limits = (vk: VirtualKey) =>
    vk.dailyRequestLimit === null && vk.dailyTokenLimit === null ? (
      <span className="muted">{t('vk.noLimit')}</span>
    ) : (
      <ul className="plain-list">
        {vk.dailyRequestLimit !== null && <li>{t('vk.requestsPerDay', { n: number(vk.dailyRequestLimit) })}</li>}
        {vk.dailyTokenLimit !== null && <li>{t('vk.tokensPerDay', { n: number(vk.dailyTokenLimit) })}</li>}
      </ul>
    );

  return (
    <section aria-labelledby="vk-heading" data-testid="virtual-keys">
      <div className="section-head">
        <div>
          <h3 id="vk-heading">{t('vk.title')}</h3>
          <p className="muted small">{t('vk.intro')}</p>
        </div>
        {!blocked && (
          <button type="button" className="primary" onClick={() => setOpen({ kind: 'create' })} data-testid="create-virtual-key">
            + {t('vk.create')}
          </button>
        )}
      </div>
      {blocked && (
        <Alert kind="info" testId="vk-blocked">
          {t(blocked)}
        </Alert>
      )}
      {notice && (
        <Alert kind={notice.kind} onDismiss={() => setNotice(null)} testId="vk-notice">
          {notice.text}
        </Alert>
      )}
      {error != null && <Alert kind="error">{errorText(t, error)}</Alert>}
      <label className="checkbox">
        <input type="checkbox" checked={showEnded} onChange={(e) => setShowEnded(e.target.checked)} data-testid="vk-show-ended" /> {t('vk.showEnded')}
      </label>
      <DataTable
        rows={rows}
        rowKey={(vk) => vk.id}
        rowAttrs={(vk) => ({ 'data-testid': 'vk-row', 'data-vk-id': vk.id, 'data-state': stateOf(vk) })}
        loading={loading}
        label={t('vk.title')}
        testId="vk-table"
        empty={items.length > 0 ? t('vk.noneActive') : t('vk.empty')}
        columns={[
          { id: 'name', header: t('vk.name'), cell: (vk) => <strong className="name">{vk.name}</strong> },
          { id: 'prefix', header: t('vk.prefix'), cell: (vk) => <code data-testid="vk-prefix">{vk.prefix}…</code> },
          {
            id: 'models',
            header: t('vk.models'),
            className: 'vk-models',
            cell: (vk) =>
              vk.models ? (
                <ul className="plain-list">
                  {vk.models.map((m) => (
                    <li key={m}>
                      <code>{m}</code>
                    </li>
                  ))}
                </ul>
              ) : (
                <span className="muted">{t('vk.anyModel')}</span>
              ),
          },
          { id: 'limits', header: t('vk.limits'), className: 'vk-limits', cell: limits },
          { id: 'user', header: t('vk.madeBy'), cell: (vk) => userName(vk.userId) },
          { id: 'status', header: t('common.status'), cell: (vk) => <StatusBadge status={stateOf(vk)} /> },
          { id: 'expires', header: t('vk.expires'), className: 'nowrap', cell: (vk) => dateTime(vk.expiresAt) },
          { id: 'used', header: t('vk.lastUsed'), className: 'nowrap', cell: (vk) => (vk.lastUsedAt ? dateTime(vk.lastUsedAt) : <span className="muted">{t('common.never')}</span>) },
          { id: 'requests', header: t('vk.requests'), className: 'num', cell: (vk) => number(vk.requestCount) },
        ]}
        actions={(vk) =>
          !vk.revokedAt && (
            <button type="button" className="small danger-text" onClick={() => setOpen({ kind: 'revoke', vk })} aria-label={t('vk.revokeNamed', { name: vk.name })} data-testid="vk-revoke">
              {t('vk.revoke')}
            </button>
          )
        }
      />

      {open?.kind === 'create' && (
        <CreateVirtualKeyDialog
          k={k}
          onClose={close}
          onIssued={(issued) => {
            setNotice(null);
            reload();
            onChanged();
            setOpen({ kind: 'issued', issued });
          }}
        />
      )}
      {open?.kind === 'issued' && (
        <TimedSecretDialog
          title={t('vk.issuedTitle', { name: open.issued.name })}
          secret={open.issued.virtualKey}
          seconds={VIRTUAL_KEY_SECONDS}
          note={t('vk.issuedNote')}
          aside={
            <span className="hint-inline">
              {t('vk.prefix')} <code>{open.issued.prefix}…</code>
            </span>
          }
          onHide={() => {
            setNotice({ kind: 'info', text: t('vk.hidden', { name: open.issued.name, prefix: `${open.issued.prefix}…` }) });
            close();
          }}
          testId="issued-vk-dialog"
        >
          <Alert kind="warning">{t('vk.once')}</Alert>
        </TimedSecretDialog>
      )}
      {open?.kind === 'revoke' && (
        <ConfirmDialog
          title={t('vk.revokeTitle')}
          message={t('vk.revokeConfirm', { name: open.vk.name })}
          confirmLabel={t('vk.revoke')}
          danger
          onClose={close}
          onConfirm={async () => {
            await call(client.DELETE('/api/v1/virtual-keys/{id}', { params: { path: { id: open.vk.id } } }));
            setNotice({ kind: 'success', text: t('vk.revoked', { name: open.vk.name }) });
            reload();
            onChanged();
          }}
        />
      )}
    </section>
  );
}

/** Model names from a comma- or newline-separated list, without blanks or repeats. */
export const parseModels = (text: string) => [...new Set(text.split(/[\n,]+/).map((m) => m.trim()).filter(Boolean))];

/** A whole number from a form field: null when empty, NaN when not a whole number in [1, max]. */
function wholeNumber(text: string, max: number): number | null {
  if (!text.trim()) return null;
  const n = Number(text.trim());
  return Number.isInteger(n) && n >= 1 && n <= max ? n : Number.NaN;
}

function CreateVirtualKeyDialog({ k, onClose, onIssued }: { k: ProviderKey; onClose(): void; onIssued(v: IssuedVirtualKey): void }) {
  const { t, number } = useI18n();
  const me = useMe();
  const { userName } = useDirectory();
  // An admin making one for someone else's key gives a reason, as for a reveal: it goes into the audit row.
  const needsReason = k.ownerId !== me.id;
  const [reason, setReason] = useState('');
  const [name, setName] = useState('');
  const [days, setDays] = useState('90');
  const [models, setModels] = useState('');
  const [requests, setRequests] = useState('');
  const [tokens, setTokens] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    if (needsReason && !reason.trim()) return setError(t('reveal.reasonRequired'));
    if (!name.trim()) return setError(t('keyForm.required', { field: t('vk.name') }));
    const expiresInDays = wholeNumber(days, MAX_DAYS);
    if (expiresInDays === null || Number.isNaN(expiresInDays)) return setError(t('tokens.daysRule'));
    const list = parseModels(models);
    if (list.length > 64) return setError(t('vk.modelsRule'));
    const dailyRequestLimit = wholeNumber(requests, MAX_REQUESTS);
    if (Number.isNaN(dailyRequestLimit)) return setError(t('vk.limitRule', { field: t('vk.dailyRequests'), max: number(MAX_REQUESTS) }));
    const dailyTokenLimit = wholeNumber(tokens, MAX_TOKENS);
    if (Number.isNaN(dailyTokenLimit)) return setError(t('vk.limitRule', { field: t('vk.dailyTokens'), max: number(MAX_TOKENS) }));
    setBusy(true);
    try {
      const issued: IssuedVirtualKey = await call(client.POST('/api/v1/provider-keys/{id}/virtual-keys', {
        params: { path: { id: k.id } },
        body: {
          name: name.trim(),
          expiresInDays,
          ...(list.length ? { models: list } : {}),
          ...(dailyRequestLimit !== null ? { dailyRequestLimit } : {}),
          ...(dailyTokenLimit !== null ? { dailyTokenLimit } : {}),
          ...(needsReason ? { reason: reason.trim() } : {}),
        },
      }));
      onIssued(issued);
    } catch (err) {
      setError(errorText(t, err, CREATE_ERRORS));
      setBusy(false);
    }
  };

  return (
    <Dialog title={t('vk.createTitle', { name: k.name })} onClose={onClose} className="dialog-wide" testId="create-vk-dialog">
      <form onSubmit={submit} noValidate autoComplete="off">
        {needsReason && <ReasonField id="vk-reason" value={reason} onChange={setReason} note={t('vk.reasonHelp', { owner: userName(k.ownerId) })} autoFocus />}
        <div className="grid-2">
          <Field label={t('vk.name')} htmlFor="vk-name">
            <input id="vk-name" value={name} onChange={(e) => setName(e.target.value)} maxLength={128} placeholder={t('vk.namePlaceholder')} data-autofocus={needsReason ? undefined : true} />
          </Field>
          <Field label={t('tokens.expiresInDays')} htmlFor="vk-days" help={t('tokens.daysRule')}>
            <input id="vk-days" type="number" inputMode="numeric" min={1} max={MAX_DAYS} value={days} onChange={(e) => setDays(e.target.value)} />
          </Field>
        </div>
        <Field label={t('vk.models')} htmlFor="vk-models" optional={t('common.optional')} help={t('vk.modelsHelp')}>
          <textarea id="vk-models" value={models} onChange={(e) => setModels(e.target.value)} rows={2} spellCheck={false} placeholder="gpt-4o-mini, gpt-4o" />
        </Field>
        <div className="grid-2">
          <Field label={t('vk.dailyRequests')} htmlFor="vk-requests" optional={t('common.optional')} help={t('vk.dailyHelp')}>
            <input id="vk-requests" type="number" inputMode="numeric" min={1} value={requests} onChange={(e) => setRequests(e.target.value)} />
          </Field>
          <Field label={t('vk.dailyTokens')} htmlFor="vk-tokens" optional={t('common.optional')} help={t('vk.dailyTokensHelp')}>
            <input id="vk-tokens" type="number" inputMode="numeric" min={1} value={tokens} onChange={(e) => setTokens(e.target.value)} />
          </Field>
        </div>
        {error && <Alert kind="error">{error}</Alert>}
        <div className="dialog-actions">
          <button type="button" onClick={onClose}>
            {t('common.cancel')}
          </button>
          <button type="submit" className="primary" disabled={busy} data-testid="vk-submit">
            {t('common.create')}
          </button>
        </div>
      </form>
    </Dialog>
  );
}
