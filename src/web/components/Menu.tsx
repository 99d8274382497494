import { useEffect, useId, useRef, useState, type KeyboardEvent, type ReactNode } from 'react';

/**
 * A menu button (WAI-ARIA APG): a button with aria-haspopup="menu" opening a list of role="menuitem" buttons.
 * Enter, Space (a click) or ↓ open it on the first item, ↑ on the last; ↑ ↓ Home End move; Esc closes back to the button; Tab
 * and outside clicks close it. Choosing an item closes it and returns focus to the button (a dialog it opens then
 * returns focus there too).
 */
export function Menu({ label, ariaLabel, children, className, testId }: { label: ReactNode; ariaLabel?: string; children: ReactNode; className?: string; testId?: string }) {
  const [open, setOpen] = useState(false);
  const root = useRef<HTMLDivElement>(null);
  const button = useRef<HTMLButtonElement>(null);
  const list = useRef<HTMLDivElement>(null);
  const focusOnOpen = useRef<'first' | 'last' | null>(null);
  const id = useId();
  const buttonId = `${id}-button`;

  const items = () => Array.from(list.current?.querySelectorAll<HTMLElement>('[role=menuitem]:not([disabled])') ?? []);
  const show = (at: 'first' | 'last') => {
    focusOnOpen.current = at;
    setOpen(true);
  };
  const close = (refocus: boolean) => {
    setOpen(false);
    if (refocus) button.current?.focus();
  };

  useEffect(() => {
    if (!open) return;
    const all = items();
    if (focusOnOpen.current) (focusOnOpen.current === 'first' ? all[0] : all[all.length - 1])?.focus();
    focusOnOpen.current = null;
    const outside = (e: Event) => {
      if (!(e.target instanceof Node && root.current?.contains(e.target))) setOpen(false);
    };
    document.addEventListener('pointerdown', outside);
    document.addEventListener('focusin', outside);
    return () => {
      document.removeEventListener('pointerdown', outside);
      document.removeEventListener('focusin', outside);
    };
  }, [open]);

  const onButtonKey = (e: KeyboardEvent) => {
    // Enter and Space click the button, which opens the menu on its first item.
    if (e.key === 'ArrowDown') {
      e.preventDefault();
      show('first');
    } else if (e.key === 'ArrowUp') {
      e.preventDefault();
      show('last');
    }
  };
  const onMenuKey = (e: KeyboardEvent) => {
    const all = items();
    const i = all.indexOf(document.activeElement as HTMLElement);
    const go = (n: number) => {
      e.preventDefault();
      all[(n + all.length) % all.length]?.focus();
    };
    if (e.key === 'ArrowDown') go(i + 1);
    else if (e.key === 'ArrowUp') go(i - 1);
    else if (e.key === 'Home') go(0);
    else if (e.key === 'End') go(all.length - 1);
    else if (e.key === 'Escape') {
      e.preventDefault();
      e.stopPropagation();
      close(true);
    } else if (e.key === 'Tab') close(true);
  };

  return (
    <div ref={root} className={`menu ${className ?? ''}`} data-testid={testId}>
      <button
        ref={button}
        id={buttonId}
        type="button"
        className="menu-button"
        aria-haspopup="menu"
        aria-expanded={open}
        aria-controls={id}
        aria-label={ariaLabel}
        onClick={() => (open ? close(false) : show('first'))}
        onKeyDown={onButtonKey}
      >
        {label}
      </button>
      <div
        ref={list}
        id={id}
        role="menu"
        aria-label={ariaLabel}
        aria-labelledby={ariaLabel ? undefined : buttonId}
        className="menu-items"
        hidden={!open}
        onKeyDown={onMenuKey}
        onClick={(e) => {
          if (e.target instanceof Element && e.target.closest('[role=menuitem]')) close(true);
        }}
      >
        {children}
      </div>
    </div>
  );
}
