import { useEffect, useRef, useState, type InputHTMLAttributes } from 'react';
import { useI18n } from '../i18n';

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

export function CopyButton({ text, label, testId }: { text: () => string | null; label?: string; testId?: string }) {
  const { t } = useI18n();
  const [state, setState] = useState<'idle' | 'copied' | 'failed'>('idle');
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => () => window.clearTimeout(timer.current), []);
  const copy = async () => {
    const value = text();
    if (value === null) return;
    const ok = await copyText(value);
    setState(ok ? 'copied' : 'failed');
    window.clearTimeout(timer.current);
    timer.current = window.setTimeout(() => setState('idle'), 2000);
  };
  return (
    <>
      <button type="button" onClick={copy} data-testid={testId}>
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
