import { useEffect, useRef, useState, type InputHTMLAttributes, type ReactNode } from 'react';
import { useI18n } from '../i18n';
import { Dialog } from './Dialog';

/** A masked field for pasting a secret: never autofilled, never spell-checked (spell-check can send text off-box). */
export function SecretInput({ value, onChange, id, ...rest }: { value: string; onChange(v: string): void; id: string } & Omit<InputHTMLAttributes<HTMLInputElement>, 'value' | 'onChange' | 'type'>) {
  const { t } = useI18n();
  const [shown, setShown] = useState(false);
  return (
    <div className="secret-input">
      <input
        id={id}
        type={shown ? 'text' : 'password'}
        value={value}
        onChange={(e) => onChange(e.target.value)}
        autoComplete="off"
        autoCorrect="off"
        autoCapitalize="off"
        spellCheck={false}
        data-lpignore="true"
        data-1p-ignore="true"
        {...rest}
      />
      <button type="button" onClick={() => setShown((s) => !s)} aria-pressed={shown} aria-controls={id}>
        {shown ? t('common.hide') : t('common.show')}
      </button>
    </div>
  );
}

/** Puts text on the clipboard: the async Clipboard API, or the legacy copy command outside secure contexts. */
export async function copyText(text: string): Promise<boolean> {
  try {
    if (navigator.clipboard?.writeText) {
      await navigator.clipboard.writeText(text);
      return true;
    }
  } catch {
    // fall back below
  }
  const ta = document.createElement('textarea');
  ta.value = text;
  ta.setAttribute('readonly', '');
  ta.className = 'offscreen';
  document.body.appendChild(ta);
  ta.select();
  let ok = false;
  try {
    ok = document.execCommand('copy');
  } catch {
    ok = false;
  } finally {
    ta.value = '';
    ta.remove();
  }
  return ok;
}

export function CopyButton({ text, label, testId, className, onCopied, first }: { text: () => string | null; label?: string; testId?: string; className?: string; onCopied?(): void; first?: boolean }) {
  const { t } = useI18n();
  const [state, setState] = useState<'idle' | 'copied' | 'failed'>('idle');
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => () => window.clearTimeout(timer.current), []);
  const copy = async () => {
    const value = text();
    if (value === null) return;
    const ok = await copyText(value);
    if (ok) onCopied?.();
    setState(ok ? 'copied' : 'failed');
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => setState('idle'), 2000);
  };
  return (
    <>
      <button type="button" className={className} onClick={copy} data-testid={testId} data-autofocus={first ? true : undefined}>
        {state === 'copied' ? `✓ ${t('common.copied')}` : (label ?? t('common.copy'))}
      </button>
      {state === 'failed' && (
        <span className="field-error" role="alert">
          {t('common.copyFailed')}
        </span>
      )}
    </>
  );
}

/**
 * Empties the clipboard if it still holds `secret`. Where the browser lets the page read the clipboard without asking,
 * only then; where it does not, it is emptied unless something else was copied in the console since.
 */
export async function clearClipboardOf(secret: string, copiedElseSince: boolean): Promise<void> {
  const clipboard = navigator.clipboard;
  if (!clipboard?.writeText) return;
  try {
    const permission = await navigator.permissions?.query({ name: 'clipboard-read' as PermissionName });
    if (permission?.state === 'granted') {
      if ((await clipboard.readText()) === secret) await clipboard.writeText('');
      return;
    }
  } catch {
    // cannot read it: decide below
  }
  if (!copiedElseSince) await clipboard.writeText('').catch(() => undefined);
}

/**
 * A secret on screen for `seconds`: masked until "Show", Copy first, gone by itself at the end of the countdown or on
 * "Hide now". It lives only in the caller's memory — never in the URL, storage, the title or history — and is dropped
 * when this unmounts; the clipboard is emptied then too, if it still holds the secret.
 */
export function TimedSecretDialog({
  title,
  secret,
  seconds,
  note,
  aside,
  children,
  onHide,
  testId,
}: {
  title: string;
  secret: string;
  seconds: number;
  note: ReactNode;
  /** Beside the buttons (the hint of a revealed key). */
  aside?: ReactNode;
  /** Above the secret (what the secret is for, a warning). */
  children?: ReactNode;
  onHide(expired: boolean): void;
  testId: string;
}) {
  const { t } = useI18n();
  const [shown, setShown] = useState(false);
  const deadline = useRef(Date.now() + seconds * 1000);
  const [now, setNow] = useState(() => Date.now());
  const hide = useRef(onHide);
  hide.current = onHide;
  const copied = useRef(false);
  const copiedElse = useRef(false);
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
  useEffect(() => {
    // Something else copied in the console (not our own fallback copy, from its off-screen field) replaces the secret.
    const onCopy = (e: Event) => {
      if (copied.current && !(e.target instanceof HTMLElement && e.target.classList.contains('offscreen'))) copiedElse.current = true;
    };
    document.addEventListener('copy', onCopy);
    document.addEventListener('cut', onCopy);
    return () => {
      document.removeEventListener('copy', onCopy);
      document.removeEventListener('cut', onCopy);
      if (copied.current) void clearClipboardOf(secret, copiedElse.current);
    };
  }, [secret]);

  return (
    <Dialog title={title} onClose={() => onHide(false)} testId={testId}>
      <div className="reveal">
        {children}
        <div className="secret-box" data-testid="secret-box">
          {shown ? (
            <code className="secret-text" data-testid="secret-text">
              {secret}
            </code>
          ) : (
            <span className="secret-mask" role="img" aria-label={t('reveal.masked')} data-testid="secret-mask">
              {'•'.repeat(24)}
            </span>
          )}
        </div>
        <div className="reveal-actions">
          <CopyButton text={() => secret} testId="secret-copy" className="primary" first onCopied={() => (copied.current = true)} />
          <button type="button" onClick={() => setShown((s) => !s)} aria-pressed={shown} data-testid="secret-toggle">
            {shown ? t('common.hide') : t('common.show')}
          </button>
          {aside}
        </div>
        <div className="countdown" data-testid="reveal-countdown">
          <span>{t('reveal.countdown', { seconds: remaining })}</span>
          <progress max={seconds} value={remaining} aria-hidden="true" />
        </div>
        <p className="muted small">{note}</p>
        <div className="dialog-actions">
          <button type="button" onClick={() => onHide(false)} data-testid="reveal-hide">
            {t('reveal.hideNow')}
          </button>
        </div>
      </div>
    </Dialog>
  );
}
