import { useEffect, useRef, type ReactNode } from 'react';

/** A small drop-down of actions on <details>: keyboard-accessible, closes on choice, outside click or Esc. */
export function Menu({ label, children, className, testId }: { label: ReactNode; children: ReactNode; className?: string; testId?: string }) {
  const ref = useRef<HTMLDetailsElement>(null);
  useEffect(() => {
    const close = (e: Event) => {
      const d = ref.current;
      if (d?.open && !(e.target instanceof Node && d.contains(e.target))) d.open = false;
    };
    const esc = (e: KeyboardEvent) => {
      if (e.key === 'Escape' && ref.current?.open) ref.current.open = false;
    };
    document.addEventListener('click', close);
    document.addEventListener('keydown', esc);
    return () => {
      document.removeEventListener('click', close);
      document.removeEventListener('keydown', esc);
    };
  }, []);
  return (
    <details ref={ref} className={`menu ${className ?? ''}`} data-testid={testId}>
      <summary>{label}</summary>
      <div
        className="menu-items"
        role="menu"
        onClick={() => {
          if (ref.current) ref.current.open = false;
        }}
      >
        {children}
      </div>
    </details>
  );
}
