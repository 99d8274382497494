import { useState, type ReactNode } from 'react';
import { LanguageSwitch, useI18n, type MessageKey } from '../i18n';
import { Link, useLocation } from '../router';
import { useMe, useSession } from '../session';
import { Menu } from './Menu';
import { PasswordDialog } from '../pages/PasswordDialog';
import type { Role } from '../api';

const NAV: Array<{ to: string; label: MessageKey; roles: Role[] }> = [
  { to: '/keys', label: 'nav.keys', roles: ['admin', 'member', 'auditor'] },
  { to: '/audit', label: 'nav.audit', roles: ['admin', 'auditor'] },
  { to: '/users', label: 'nav.users', roles: ['admin', 'auditor'] },
  { to: '/projects', label: 'nav.projects', roles: ['admin', 'auditor'] },
  { to: '/hygiene', label: 'nav.hygiene', roles: ['admin', 'auditor'] },
  { to: '/webhooks', label: 'nav.webhooks', roles: ['admin'] },
  { to: '/tokens', label: 'nav.tokens', roles: ['admin', 'member', 'auditor'] },
];

export const canSee = (role: Role, path: string) => NAV.find((n) => path === n.to || path.startsWith(`${n.to}/`))?.roles.includes(role) ?? true;

export function Shell({ children }: { children: ReactNode }) {
  const { t } = useI18n();
  const me = useMe();
  const { signOut } = useSession();
  const { path } = useLocation();
  const [changingPassword, setChangingPassword] = useState(false);
  return (
    <div className="shell">
      <header className="topbar">
        <Link to="/keys" className="brand">
          <span className="brand-mark" aria-hidden="true">
            ◆
          </span>
          <span className="brand-name">{t('app.name')}</span>
        </Link>
        <nav className="mainnav" aria-label={t('nav.main')}>
          {NAV.filter((n) => n.roles.includes(me.role)).map((n) => (
            <Link key={n.to} to={n.to} className={path === n.to || path.startsWith(`${n.to}/`) ? 'active' : undefined} aria-current={path === n.to ? 'page' : undefined}>
              {t(n.label)}
            </Link>
          ))}
        </nav>
        <div className="topbar-right">
          <LanguageSwitch />
          <Menu
            className="user-menu"
            testId="user-menu"
            label={
              <>
                <span className="user-name" title={me.username}>
                  {me.username}
                </span> <span className="user-role">{t(`role.${me.role}` as MessageKey)}</span>
              </>
            }
          >
            <button type="button" role="menuitem" onClick={() => setChangingPassword(true)}>
              {t('nav.changePassword')}
            </button>
            <button type="button" role="menuitem" onClick={() => void signOut()} data-testid="sign-out">
              {t('nav.signOut')}
            </button>
          </Menu>
        </div>
      </header>
      {/* Focusable, so focus has somewhere sensible to go when the control that opened a dialog is gone. */}
      <main className="content" tabIndex={-1}>
        {children}
      </main>
      {changingPassword && <PasswordDialog onClose={() => setChangingPassword(false)} />}
    </div>
  );
}
