import { useEffect, useId, useState, type KeyboardEvent } from 'react';

export interface ComboOption {
  value: string;
  label: string;
  /** Also searched, shown after the label (a display name). */
  detail?: string | null;
}

/**
 * A searchable picker (WAI-ARIA APG combobox with a listbox popup): type to narrow the options, ↑ ↓ to move,
 * Enter to choose, Esc to close. Leaving the field
 * chooses an option typed out in full, or else puts back the current choice.
 */
export function Combobox({
  id,
  options,
  value,
  onChange,
  placeholder,
  noMatch,
  describedBy,
}: {
  id: string;
  options: ComboOption[];
  value: string;
  onChange(value: string): void;
  placeholder?: string;
  noMatch: string;
  describedBy?: string;
}) {
  const labelOf = (v: string) => options.find((o) => o.value === v)?.label ?? '';
  const [text, setText] = useState(() => labelOf(value));
  const [open, setOpen] = useState(false);
  const [active, setActive] = useState(0);
  const listId = useId();
  const selectedLabel = labelOf(value);

  useEffect(() => {
    setText(selectedLabel);
  }, [selectedLabel]);

  const needle = text.trim().toLowerCase();
  const matches = needle && needle !== selectedLabel.toLowerCase() ? options.filter((o) => `${o.label} ${o.detail ?? ''}`.toLowerCase().includes(needle)) : options;
  const optionId = (i: number) => `${listId}-${i}`;

  const choose = (o: ComboOption) => {
    onChange(o.value);
    setText(o.label);
    setOpen(false);
  };
  const onKey = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      e.preventDefault();
      if (!open) return setOpen(true);
      const n = matches.length;
      if (n) setActive((a) => (e.key === 'ArrowDown' ? (a + 1) % n : (a - 1 + n) % n));
    } else if (e.key === 'Enter' && open) {
      // Choosing must not submit the form around it.
      e.preventDefault();
      if (matches[active]) choose(matches[active]);
    } else if (e.key === 'Escape' && open) {
      // Close the list, not the dialog around it.
      e.preventDefault();
      setOpen(false);
    }
  };

  return (
    <div className="combobox">
      <input
        id={id}
        type="text"
        role="combobox"
        aria-autocomplete="list"
        aria-expanded={open}
        aria-controls={listId}
        aria-activedescendant={open && matches[active] ? optionId(active) : undefined}
        aria-describedby={describedBy}
        autoComplete="off"
        spellCheck={false}
        value={text}
        placeholder={placeholder}
        onChange={(e) => {
          setText(e.target.value);
          setActive(0);
          setOpen(true);
          if (!e.target.value.trim()) onChange('');
        }}
        onClick={() => setOpen(true)}
        onBlur={() => {
          const exact = options.find((o) => o.label.toLowerCase() === needle);
          if (exact) choose(exact);
          else {
            setOpen(false);
            setText(selectedLabel);
          }
        }}
        onKeyDown={onKey}
      />
      <ul id={listId} role="listbox" className="combobox-list" hidden={!open}>
        {matches.map((o, i) => (
          <li
            key={o.value}
            id={optionId(i)}
            role="option"
            aria-selected={o.value === value}
            className={i === active ? 'active' : undefined}
            // Before the input's blur, which would close the list first.
            onMouseDown={(e) => {
              e.preventDefault();
              choose(o);
            }}
          >
            {o.label}
            {o.detail && <span className="muted"> · {o.detail}</span>}
          </li>
        ))}
        {matches.length === 0 && (
          <li className="combobox-empty" role="option" aria-disabled="true" aria-selected="false">
            {noMatch}
          </li>
        )}
      </ul>
    </div>
  );
}
