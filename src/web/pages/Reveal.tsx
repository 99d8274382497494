import { useEffect, useRef, useState, type FormEvent } from 'react';
import { api, type ProviderKey, type Revealed } from '../api';
import { useDirectory } from '../directory';
import { errorText } from '../errors';
import { useI18n } from '../i18n';
import { Alert } from '../components/Alert';
import { Dialog } from '../components/Dialog';
import { Field } from '../components/Field';
import { CopyButton } from '../components/Secret';

/** How long a revealed secret stays on screen. Tests shorten it only through a fake clock, never here. */
export const REVEAL_SECONDS = 30;

export async function revealKey(id: string, reason?: string): Promise<Revealed> {
  return api<Revealed>('POST', `/provider-keys/${id}/reveal`, { body: reason ? { reason } : {} });
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
        <p>{t('reveal.reasonHelp', { owner: userName(k.ownerId) })}</p>
        <Field label={t('reveal.reason')} htmlFor="reveal-reason">
          <textarea id="reveal-reason" value={reason} onChange={(e) => setReason(e.target.value)} maxLength={1024} rows={3} placeholder={t('reveal.reasonPlaceholder')} autoFocus />
        </Field>
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

/**
 * The revealed secret: masked until "Show", copyable, gone by itself after 30 s. It lives only in this
 * component's memory — never in the URL, storage, the title or history — and is dropped when it unmounts.
 */
export function RevealDialog({ k, revealed, onHide }: { k: ProviderKey; revealed: Revealed; onHide(expired: boolean): void }) {
  const { t } = useI18n();
  const [shown, setShown] = useState(false);
  const deadline = useRef(Date.now() + REVEAL_SECONDS * 1000);
  const [now, setNow] = useState(() => Date.now());
  const hide = useRef(onHide);
  hide.current = onHide;
  const remaining = Math.max(0, Math.ceil((deadline.current - now) / 1000));

  useEffect(() => {
    const tick = () => setNow(Date.now());
    const timer = window.setInterval(tick, 250);
    // Background tabs throttle timers: catch up the moment the tab is visible again.
    document.addEventListener('visibilitychange', tick);
    return () => {
      window.clearInterval(timer);
      document.removeEventListener('visibilitychange', tick);
    };
  }, []);
  useEffect(() => {
    if (remaining <= 0) hide.current(true);
  }, [remaining]);

  return (
    <Dialog title={t('reveal.title', { name: k.name })} onClose={() => onHide(false)} testId="reveal-dialog">
      <div className="reveal">
        <div className="secret-box" data-testid="secret-box">
          {shown ? (
            <code className="secret-text" data-testid="secret-text">
              {revealed.secret}
            </code>
          ) : (
            <span className="secret-mask" aria-label={t('reveal.masked')} data-testid="secret-mask">
              {'•'.repeat(24)}
            </span>
          )}
        </div>
        <div className="reveal-actions">
          <button type="button" onClick={() => setShown((s) => !s)} aria-pressed={shown} data-testid="secret-toggle">
            {shown ? t('common.hide') : t('common.show')}
          </button>
          <CopyButton text={() => revealed.secret} testId="secret-copy" />
          <span className="hint-inline">
            <code>{revealed.hint}</code>
          </span>
        </div>
        <div className="countdown" role="timer" data-testid="reveal-countdown">
          <span>{t('reveal.countdown', { seconds: remaining })}</span>
          <progress max={REVEAL_SECONDS} value={remaining} aria-hidden="true" />
        </div>
        <p className="muted small">{t('reveal.note')}</p>
        <div className="dialog-actions">
          <button type="button" className="primary" onClick={() => onHide(false)} data-testid="reveal-hide">
            {t('reveal.hideNow')}
          </button>
        </div>
      </div>
    </Dialog>
  );
}
