import { useEffect } from 'react';
import { I18nProvider, useI18n } from './i18n';
import { SessionProvider, useSession } from './session';
import { DirectoryProvider } from './directory';
import { match, navigate, useLocation } from './router';
import { canSee, Shell } from './components/Layout';
import { LoginPage } from './pages/LoginPage';
import { PasswordRequiredPage } from './pages/PasswordDialog';
import { KeysPage } from './pages/KeysPage';
import { KeyDetailPage } from './pages/KeyDetailPage';
import { AuditPage } from './pages/AuditPage';
import { UsersPage } from './pages/UsersPage';
import { ProjectsPage } from './pages/ProjectsPage';
import { TokensPage } from './pages/TokensPage';
import { HygienePage } from './pages/HygienePage';
import { WebhooksPage } from './pages/WebhooksPage';
import { NotFound } from './pages/NotFound';

function Routes() {
  const { path } = useLocation();
  const { me } = useSession();
  const { t } = useI18n();
  useEffect(() => {
    if (path === '/' || path === '/login') navigate('/keys', { replace: true });
  }, [path]);
  if (!me) return null;
  if (!canSee(me.role, path)) {
    return (
      <div className="page">
        <p className="empty">{t('forbiddenPage')}</p>
      </div>
    );
  }
  const keyId = match('/keys/:id', path)?.id;
  if (path === '/keys') return <KeysPage />;
  if (keyId) return <KeyDetailPage id={keyId} key={keyId} />;
  if (path === '/audit') return <AuditPage />;
  if (path === '/users') return <UsersPage />;
  if (path === '/projects') return <ProjectsPage />;
  if (path === '/tokens') return <TokensPage />;
  if (path === '/hygiene') return <HygienePage />;
  if (path === '/webhooks') return <WebhooksPage />;
  if (path === '/' || path === '/login') return null;
  return <NotFound />;
}

function Gate() {
  const { status, me } = useSession();
  const { t } = useI18n();
  if (status === 'loading') return <div className="boot">{t('common.loading')}</div>;
  if (status === 'signed-out') return <LoginPage />;
  if (me?.mustChangePassword) return <PasswordRequiredPage />;
  return (
    <DirectoryProvider>
      <Shell>
        <Routes />
      </Shell>
    </DirectoryProvider>
  );
}

export function App() {
  return (
    <I18nProvider>
      <SessionProvider>
        <Gate />
      </SessionProvider>
    </I18nProvider>
  );
}
