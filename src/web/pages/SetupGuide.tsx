import { useEffect, useState, type ReactNode } from 'react';
import { call, client } from '../api';
import { useDirectory } from '../directory';
import { useI18n, type MessageKey } from '../i18n';
import { Link } from '../router';
import { useMe } from '../session';

/** Whether the vault holds no key yet (null while asking); the setup path shows until the first key is added. */
export function useVaultEmpty(): boolean | null {
  const [empty, setEmpty] = useState<boolean | null>(null);
  useEffect(() => {
    let live = true;
    call(client.GET('/api/v1/provider-keys', { params: { query: { limit: '1' } } }))
      .then((p) => live && setEmpty(p.items.length === 0))
      .catch(() => live && setEmpty(false));
    return () => {
      live = false;
    };
  }, []);
  return empty;
}

interface Step {
  id: 'project' | 'users' | 'key';
  done: boolean;
  action: ReactNode;
}

/**
 * The first run, for an admin: create a project, add the people who will own keys, add the first key. Each step
 * says what it is for and links to where it is done; done steps are ticked in words, not only in colour.
 */
export function SetupGuide({ onAddKey }: { onAddKey?(): void }) {
  const { t } = useI18n();
  const me = useMe();
  const { projects, users, loaded } = useDirectory();
  if (me.role !== 'admin' || !loaded) return null;
  const hasProject = projects.length > 0;
  const hasOwners = users.some((u) => u.id !== me.id && u.role !== 'auditor' && u.status === 'active');
  const steps: Step[] = [
    {
      id: 'project',
      done: hasProject,
      action: (
        <Link to="/projects?new=1" className="button small">
          {t('setup.createProject')}
        </Link>
      ),
    },
    {
      id: 'users',
      done: hasOwners,
      action: (
        <Link to="/users?new=1" className="button small">
          {t('setup.addUsers')}
        </Link>
      ),
    },
    {
      id: 'key',
      done: false,
      action: onAddKey ? (
        <button type="button" className="primary small" onClick={onAddKey} disabled={!hasProject} data-testid="setup-add-key">
          {t('setup.addKey')}
        </button>
      ) : (
        <Link to="/keys?new=1" className="button small" aria-disabled={!hasProject || undefined}>
          {t('setup.addKey')}
        </Link>
      ),
    },
  ];
  return (
    <section className="card setup" aria-labelledby="setup-title" data-testid="setup-guide">
      <h2 id="setup-title">{t('setup.title')}</h2>
      <p className="muted">{t('setup.intro')}</p>
      <ol className="setup-steps">
        {steps.map((s) => (
          <li key={s.id} className={s.done ? 'done' : undefined} data-testid={`setup-${s.id}`} data-done={String(s.done)}>
            <div className="setup-text">
              <strong>{t(`setup.${s.id}.title` as MessageKey)}</strong>
              {s.done && <span className="badge badge-active">{t('setup.done')}</span>}
              <p className="muted small">{t(`setup.${s.id}.body` as MessageKey)}</p>
            </div>
            {!s.done && <div className="setup-action">{s.action}</div>}
          </li>
        ))}
      </ol>
    </section>
  );
}
