import { useState, type FormEvent } from 'react';
import { call, client, type ProviderKey, type Revealed } from '../api';
import { useDirectory } from '../directory';
import { errorText } from '../errors';
import { useI18n } from '../i18n';
import { Alert } from '../components/Alert';
import { Dialog } from '../components/Dialog';
import { Field } from '../components/Field';
import { TimedSecretDialog } from '../components/Secret';

/** How long a revealed secret stays on screen. Tests shorten it only through a fake clock, never here. */
export const REVEAL_SECONDS = 30;

export async function revealKey(id: string, reason?: string): Promise<Revealed> {
  return call(client.POST('/api/v1/provider-keys/{id}/reveal', { params: { path: { id } }, body: reason ? { reason } : {} }));
}

/**
 * Why an admin acts on someone else's key (a reveal, a virtual key): the note saying whose key it is, and the reason,
 * which goes into the audit row.
 */
export function ReasonField({ id, value, onChange, note, autoFocus }: { id: string; value: string; onChange(v: string): void; note: string; autoFocus?: boolean }) {
  const { t } = useI18n();
  return (
    <>
      <p>{note}</p>
      <Field label={t('reveal.reason')} htmlFor={id}>
        <textarea id={id} value={value} onChange={(e) => onChange(e.target.value)} maxLength={1024} rows={3} placeholder={t('reveal.reasonPlaceholder')} data-autofocus={autoFocus ? true : undefined} />
      </Field>
    </>
  );
}

/** An admin revealing someone else's key must say why; the reason goes into the audit row. */
export function ReasonDialog({ k, onClose, onRevealed }: { k: ProviderKey; onClose(): void; onRevealed(r: Revealed): void }) {
  const { t } = useI18n();
  const { userName } = useDirectory();
  const [reason, setReason] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (!reason.trim()) return setError(t('reveal.reasonRequired'));
    setBusy(true);
    setError(null);
    try {
      const r = await revealKey(k.id, reason.trim());
      onRevealed(r);
    } catch (err) {
      setError(errorText(t, err));
      setBusy(false);
    }
  };
  return (
    <Dialog title={t('reveal.reasonTitle')} onClose={onClose} testId="reason-dialog">
      <form onSubmit={submit} noValidate>
        <ReasonField id="reveal-reason" value={reason} onChange={setReason} note={t('reveal.reasonHelp', { owner: userName(k.ownerId) })} autoFocus />
        {error && <Alert kind="error">{error}</Alert>}
        <div className="dialog-actions">
          <button type="button" onClick={onClose}>
            {t('common.cancel')}
          </button>
          <button type="submit" className="primary" disabled={busy}>
            {busy ? t('reveal.busy') : t('reveal.submit')}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

/** The revealed secret, for 30 s (see TimedSecretDialog for how it is kept and dropped). */
export function RevealDialog({ k, revealed, onHide }: { k: ProviderKey; revealed: Revealed; onHide(expired: boolean): void }) {
  const { t } = useI18n();
  return (
    <TimedSecretDialog
      title={t('reveal.title', { name: k.name })}
      secret={revealed.secret}
      seconds={REVEAL_SECONDS}
      note={t('reveal.note')}
      aside={
        <span className="hint-inline">
          {t('keys.col.hint')} <code>{revealed.hint}</code>
        </span>
      }
      onHide={onHide}
      testId="reveal-dialog"
    />
  );
}
