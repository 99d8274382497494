import { useState, type FormEvent } from 'react';
import { call, client, query, WEBHOOK_EVENTS, type CreatedWebhook, type Delivery, type Webhook, type WebhookEvent } from '../api';
import { useDirectory } from '../directory';
import { errorText } from '../errors';
import { useTitle } from '../hooks';
import { useI18n, type MessageKey } from '../i18n';
import { Alert } from '../components/Alert';
import { StatusBadge } from '../components/Badges';
import { ConfirmDialog, Dialog } from '../components/Dialog';
import { DataTable } from '../components/DataTable';
import { Field } from '../components/Field';
import { Pager, usePaged } from '../components/Pager';
import { SecretInput, TimedSecretDialog } from '../components/Secret';
import type { Notice } from './KeyActions';

/** How long a generated signing secret stays on screen: it can never be shown again. */
export const WEBHOOK_SECRET_SECONDS = 120;

type Open = { kind: 'create' } | { kind: 'secret'; webhook: CreatedWebhook & { secret: string } } | { kind: 'delete' | 'log'; webhook: Webhook } | null;

/** Where the vault's notifications go (docs/webhooks.md): admins, through their session only. */
export function WebhooksPage() {
  const { t, dateTime } = useI18n();
  const { userName } = useDirectory();
  useTitle(t('webhooks.title'));
  const [open, setOpen] = useState<Open>(null);
  const [notice, setNotice] = useState<Notice>(null);
  const pager = usePaged<Webhook>((cursor, limit) => call(client.GET('/api/v1/webhooks', { params: { query: query('/api/v1/webhooks', { limit, cursor }) } })), 'webhooks');
  const close = () => setOpen(null);

  return (
    <div className="page">
      <div className="page-head">
        <h1>{t('webhooks.title')}</h1>
        <button type="button" className="primary" onClick={() => setOpen({ kind: 'create' })} data-testid="create-webhook">
          + {t('webhooks.create')}
        </button>
      </div>
      <p className="muted">{t('webhooks.intro')}</p>
      {notice && (
        <Alert kind={notice.kind} onDismiss={() => setNotice(null)} testId="page-notice">
          {notice.text}
        </Alert>
      )}
      {pager.error != null && <Alert kind="error">{errorText(t, pager.error)}</Alert>}
      <DataTable
        rows={pager.items}
        rowKey={(w) => w.id}
        rowAttrs={(w) => ({ 'data-testid': 'webhook-row', 'data-webhook-id': w.id, 'data-status': w.status })}
        loading={pager.loading}
        label={t('webhooks.title')}
        testId="webhooks-table"
        empty={t('webhooks.empty')}
        columns={[
          { id: 'url', header: t('webhooks.url'), cell: (w) => <code className="wrap name" data-testid="webhook-url">{w.url}</code> },
          {
            id: 'events',
            header: t('webhooks.events'),
            cell: (w) => (
              <ul className="event-list">
                {w.events.map((ev) => (
                  <li key={ev}>{t(`webhooks.event.${ev}` as MessageKey)}</li>
                ))}
              </ul>
            ),
          },
          {
            id: 'status',
            header: t('common.status'),
            cell: (w) => (
              <>
                <StatusBadge status={w.status} />
                {w.status === 'disabled' && (
                  <div className="small wrap" data-testid="webhook-disabled-reason">
                    {t('webhooks.disabledAt', { at: dateTime(w.disabledAt) })} {w.disabledReason}
                  </div>
                )}
                {w.status === 'active' && w.failingSince && (
                  <div className="small" data-testid="webhook-failing">
                    {t('webhooks.failingSince', { at: dateTime(w.failingSince) })}
                  </div>
                )}
              </>
            ),
          },
          { id: 'created', header: t('common.created'), cell: (w) => `${dateTime(w.createdAt)} · ${userName(w.createdBy)}` },
        ]}
        actions={(w) => (
          <div className="row-actions">
            <button type="button" onClick={() => setOpen({ kind: 'log', webhook: w })} aria-label={t('webhooks.logFor', { url: w.url })} data-testid="webhook-log">
              {t('webhooks.log')}
            </button>
            <button type="button" className="danger-text" onClick={() => setOpen({ kind: 'delete', webhook: w })} aria-label={t('webhooks.deleteFor', { url: w.url })} data-testid="webhook-delete">
              {t('common.delete')}
            </button>
          </div>
        )}
      />
      <Pager pager={pager} />
      {pager.items.some((w) => w.status === 'disabled') && <p className="muted small">{t('webhooks.resumeNote')}</p>}

      {open?.kind === 'create' && (
        <CreateWebhookDialog
          onClose={close}
          onCreated={(w) => {
            pager.reload();
            if (w.secret) setOpen({ kind: 'secret', webhook: { ...w, secret: w.secret } });
            else {
              setNotice({ kind: 'success', text: t('webhooks.created', { url: w.url }) });
              close();
            }
          }}
        />
      )}
      {open?.kind === 'secret' && (
        <TimedSecretDialog
          title={t('webhooks.secretTitle')}
          secret={open.webhook.secret}
          seconds={WEBHOOK_SECRET_SECONDS}
          note={t('webhooks.secretNote', { seconds: WEBHOOK_SECRET_SECONDS })}
          testId="webhook-secret-dialog"
          onHide={() => {
            setNotice({ kind: 'success', text: t('webhooks.createdSecretGone', { url: open.webhook.url }) });
            close();
          }}
        >
          <Alert kind="warning">{t('webhooks.secretOnce', { url: open.webhook.url })}</Alert>
        </TimedSecretDialog>
      )}
      {open?.kind === 'delete' && (
        <ConfirmDialog
          title={t('webhooks.deleteTitle')}
          message={t('webhooks.deleteConfirm', { url: open.webhook.url })}
          confirmLabel={t('common.delete')}
          danger
          onClose={close}
          onConfirm={async () => {
            await call(client.DELETE('/api/v1/webhooks/{id}', { params: { path: { id: open.webhook.id } } }));
            setNotice({ kind: 'success', text: t('webhooks.deleted', { url: open.webhook.url }) });
            pager.reload();
          }}
        />
      )}
      {open?.kind === 'log' && <DeliveryLogDialog webhook={open.webhook} onClose={close} />}
    </div>
  );
}

const SECRET_RULE = /^[\x21-\x7e]{16,256}$/;

function CreateWebhookDialog({ onClose, onCreated }: { onClose(): void; onCreated(w: CreatedWebhook): void }) {
  const { t } = useI18n();
  const [url, setUrl] = useState('');
  const [events, setEvents] = useState<WebhookEvent[]>(['provider_key.health_changed', 'provider_key.expiring']);
  const [secret, setSecret] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const toggle = (ev: WebhookEvent) => setEvents((cur) => (cur.includes(ev) ? cur.filter((x) => x !== ev) : [...cur, ev]));
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    if (!url.trim()) return setError(t('keyForm.required', { field: t('webhooks.url') }));
    if (events.length === 0) return setError(t('webhooks.eventsRule'));
    if (secret && !SECRET_RULE.test(secret)) return setError(t('webhooks.secretRule'));
    setBusy(true);
    try {
      // Kept in the order of the list, whatever order they were ticked in.
      const body = { url: url.trim(), events: WEBHOOK_EVENTS.filter((ev) => events.includes(ev)), ...(secret ? { secret } : {}) };
      onCreated(await call(client.POST('/api/v1/webhooks', { body })));
    } catch (err) {
      setError(errorText(t, err));
      setBusy(false);
    }
  };
  return (
    <Dialog title={t('webhooks.create')} onClose={onClose} className="dialog-wide" testId="create-webhook-dialog">
      <form onSubmit={submit} noValidate>
        <Field label={t('webhooks.url')} htmlFor="webhook-url" help={t('webhooks.urlHelp')}>
          <input id="webhook-url" type="url" value={url} onChange={(e) => setUrl(e.target.value)} maxLength={2048} placeholder="https://hooks.example.com/pkv" autoComplete="off" spellCheck={false} data-autofocus />
        </Field>
        <fieldset className="field">
          <legend>{t('webhooks.events')}</legend>
          <div className="scope-grid">
            {WEBHOOK_EVENTS.map((ev) => (
              <label key={ev} className="checkbox">
                <input type="checkbox" checked={events.includes(ev)} onChange={() => toggle(ev)} value={ev} data-testid={`event-${ev}`} />
                <span>
                  {t(`webhooks.event.${ev}` as MessageKey)} <code className="muted small">{ev}</code>
                  <span className="muted small"> — {t(`webhooks.eventHelp.${ev}` as MessageKey)}</span>
                </span>
              </label>
            ))}
          </div>
        </fieldset>
        <Field label={t('webhooks.secret')} htmlFor="webhook-secret" optional={t('common.optional')} help={t('webhooks.secretHelp')}>
          <SecretInput id="webhook-secret" value={secret} onChange={setSecret} maxLength={256} />
        </Field>
        {error && <Alert kind="error">{error}</Alert>}
        <div className="dialog-actions">
          <button type="button" onClick={onClose}>
            {t('common.cancel')}
          </button>
          <button type="submit" className="primary" disabled={busy} data-testid="webhook-submit">
            {t('common.create')}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

/** Every delivery to one webhook, newest first: its status, each attempt's answer and the next retry. */
function DeliveryLogDialog({ webhook, onClose }: { webhook: Webhook; onClose(): void }) {
  const { t, dateTime, number } = useI18n();
  const pager = usePaged<Delivery>((cursor, limit) => call(client.GET('/api/v1/webhooks/{id}/deliveries', { params: { path: { id: webhook.id }, query: query('/api/v1/webhooks/{id}/deliveries', { limit, cursor }) } })), webhook.id);
  const attempt = (a: { statusCode: number | null; error: string | null }) => (a.statusCode !== null ? `HTTP ${a.statusCode}` : (a.error ?? t('common.none')));
  return (
    <Dialog title={t('webhooks.logTitle', { url: webhook.url })} onClose={onClose} className="dialog-log" testId="delivery-log-dialog">
      {webhook.status === 'disabled' && (
        <Alert kind="warning">
          {t('webhooks.disabledAt', { at: dateTime(webhook.disabledAt) })} {webhook.disabledReason}
        </Alert>
      )}
      <p className="muted small">{t('webhooks.logNote')}</p>
      {pager.error != null && <Alert kind="error">{errorText(t, pager.error)}</Alert>}
      <DataTable
        rows={pager.items}
        rowKey={(d) => d.id}
        rowAttrs={(d) => ({ 'data-testid': 'delivery-row', 'data-status': d.status })}
        loading={pager.loading}
        label={t('webhooks.log')}
        testId="deliveries-table"
        empty={t('webhooks.logEmpty')}
        columns={[
          { id: 'event', header: t('webhooks.col.event'), cell: (d) => <strong className="name">{t(`webhooks.event.${d.event}` as MessageKey)}</strong> },
          { id: 'created', header: t('webhooks.col.created'), className: 'nowrap', cell: (d) => dateTime(d.createdAt) },
          { id: 'status', header: t('common.status'), cell: (d) => <span className={`badge badge-delivery-${d.status}`}>{t(`webhooks.delivery.${d.status}` as MessageKey)}</span> },
          {
            id: 'attempts',
            header: t('webhooks.col.attempts'),
            cell: (d) =>
              d.attemptLog.length === 0 ? (
                <span className="muted">{t('webhooks.noAttempt')}</span>
              ) : (
                <ol className="attempt-list" aria-label={t('webhooks.attemptsOf', { n: number(d.attempts) })}>
                  {d.attemptLog.map((a, i) => (
                    <li key={i}>
                      <span className="nowrap">{dateTime(a.at)}</span> — <span className={a.statusCode !== null && a.statusCode < 300 ? undefined : 'danger-text'}>{attempt(a)}</span> <span className="muted">({t('webhooks.ms', { n: number(a.durationMs) })})</span>
                    </li>
                  ))}
                </ol>
              ),
          },
          {
            id: 'next',
            header: t('webhooks.col.next'),
            cell: (d) => (d.status === 'pending' && d.nextAttemptAt ? dateTime(d.nextAttemptAt) : d.completedAt ? t('webhooks.completed', { at: dateTime(d.completedAt) }) : <span className="muted">{t('common.none')}</span>),
          },
        ]}
      />
      <Pager pager={pager} />
      <div className="dialog-actions">
        <button type="button" onClick={onClose}>
          {t('common.close')}
        </button>
      </div>
    </Dialog>
  );
}
