import type { ReactNode } from 'react';

export function Alert({ kind, children, onDismiss, testId }: { kind: 'error' | 'success' | 'info' | 'warning'; children: ReactNode; onDismiss?(): void; testId?: string }) {
  return (
    <div className={`alert alert-${kind}`} role={kind === 'error' ? 'alert' : 'status'} data-testid={testId}>
      <div className="alert-text">{children}</div>
      {onDismiss && (
        <button type="button" className="icon-button" aria-label="×" onClick={onDismiss}>
          ×
        </button>
      )}
    </div>
  );
}
