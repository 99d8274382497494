import type { ReactNode } from 'react';

/** A labelled form row: label above, control, optional help and error below. */
export function Field({ label, htmlFor, help, error, optional, children, className }: { label: ReactNode; htmlFor: string; help?: ReactNode; error?: string | null; optional?: string; children: ReactNode; className?: string }) {
  return (
    <div className={`field ${className ?? ''}`}>
      <label htmlFor={htmlFor}>
        {label}
        {optional && <span className="optional"> ({optional})</span>}
      </label>
      {children}
      {help && <div className="help">{help}</div>}
      {error && (
        <div className="field-error" role="alert">
          {error}
        </div>
      )}
    </div>
  );
}

/** `<input type="datetime-local">` value (local time) ↔ ISO-8601 UTC. */
export function localToIso(local: string): string | null {
  if (!local) return null;
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? null : d.toISOString();
}

export function isoToLocal(iso: string | null | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}
