import { useId, useLayoutEffect, useRef, useState, type FormEvent, type ReactNode } from 'react';
import { useI18n } from '../i18n';
import { errorText, type ErrorOverrides } from '../errors';
import { Alert } from './Alert';

/** Where focus goes when a dialog opens: the element marked data-autofocus, else the first field, else the main button. */
function initialFocus(d: HTMLDialogElement): HTMLElement | null {
  return (
    d.querySelector<HTMLElement>('[data-autofocus]') ??
    d.querySelector<HTMLElement>('.dialog-body :is(input:not([type=hidden]), select, textarea):not([disabled])') ??
    d.querySelector<HTMLElement>('.dialog-body .dialog-actions button.primary:not([disabled])')
  );
}

/** Back to the control that opened the dialog; if it is gone or hidden (a closed menu), to its menu's button, else to the page. */
function restoreFocus(opener: Element | null): void {
  const visible = (el: Element | null): el is HTMLElement => el instanceof HTMLElement && el.isConnected && el.getClientRects().length > 0;
  const target = visible(opener) ? opener : opener?.closest('.menu')?.querySelector('.menu-button');
  if (visible(target ?? null)) return (target as HTMLElement).focus();
  document.querySelector<HTMLElement>('main')?.focus();
}

/**
 * A modal on the native <dialog> (focus trap, Esc, backdrop for free). Mounted = open. Focus goes to the field meant
 * to take it and, on close, back to the control that opened it (the native restore does not happen once React removes the element).
 */
export function Dialog({ title, onClose, children, className, testId }: { title: string; onClose(): void; children: ReactNode; className?: string; testId?: string }) {
  const ref = useRef<HTMLDialogElement>(null);
  const id = useId();
  const { t } = useI18n();
  // Layout effects: the cleanup runs before React removes the element, so close() and the focus move happen in order.
  useLayoutEffect(() => {
    const d = ref.current;
    const opener = document.activeElement;
    if (d && !d.open) d.showModal();
    if (d) initialFocus(d)?.focus();
    return () => {
      d?.close();
      restoreFocus(opener);
    };
  }, []);
  return (
    <dialog
      ref={ref}
      className={`dialog ${className ?? ''}`}
      aria-labelledby={id}
      data-testid={testId}
      onCancel={(e) => {
        e.preventDefault();
        onClose();
      }}
    >
      <div className="dialog-head">
        <h2 id={id}>{title}</h2>
        <button type="button" className="icon-button" aria-label={t('common.close')} onClick={onClose}>
          ×
        </button>
      </div>
      <div className="dialog-body">{children}</div>
    </dialog>
  );
}

/** A yes/no question; runs `onConfirm`, shows its failure as a sentence, closes on success. */
export function ConfirmDialog({
  title,
  message,
  confirmLabel,
  danger,
  onConfirm,
  onClose,
  errors,
  children,
  keepOpen,
}: {
  title: string;
  message: ReactNode;
  confirmLabel: string;
  danger?: boolean;
  onConfirm(): Promise<void>;
  onClose(): void;
  errors?: ErrorOverrides;
  children?: ReactNode;
  /** The caller replaces this dialog itself on success (e.g. with a "shown once" dialog). */
  keepOpen?: boolean;
}) {
  const { t } = useI18n();
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await onConfirm();
      if (!keepOpen) onClose();
    } catch (err) {
      setError(errorText(t, err, errors));
      setBusy(false);
    }
  };
  return (
    <Dialog title={title} onClose={onClose} testId="confirm-dialog">
      <form onSubmit={submit}>
        <p className="confirm-message">{message}</p>
        {children}
        {error && <Alert kind="error">{error}</Alert>}
        <div className="dialog-actions">
          {/* A destructive question starts on Cancel; Enter must not destroy by reflex. */}
          <button type="button" onClick={onClose} data-autofocus={danger ? true : undefined}>
            {t('common.cancel')}
          </button>
          <button type="submit" className={danger ? 'danger' : 'primary'} disabled={busy} data-autofocus={danger ? undefined : true}>
            {confirmLabel}
          </button>
        </div>
      </form>
    </Dialog>
  );
}
