import { useState, type FormEvent } from 'react';
import { ApiError } from '../api';
import { errorText } from '../errors';
import { useTitle } from '../hooks';
import { LanguageSwitch, useI18n } from '../i18n';
import { useSession } from '../session';
import { Alert } from '../components/Alert';

export function LoginPage() {
  const { t } = useI18n();
  const { signIn, reason } = useSession();
  useTitle(t('login.title'));
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await signIn(username.trim(), password);
    } catch (err) {
      setPassword('');
      if (err instanceof ApiError && err.code === 'unauthorized') setError(t('login.failed'));
      else if (err instanceof ApiError && err.code === 'rate_limited') setError(t('login.tooMany', { seconds: err.retryAfter ?? 60 }));
      else setError(errorText(t, err));
      setBusy(false);
    }
  };

  return (
    <div className="login-wrap">
      <div className="login-lang">
        <LanguageSwitch />
      </div>
      <form className="login-card" onSubmit={submit} aria-labelledby="login-title">
        <div className="login-brand">
          <span className="brand-mark" aria-hidden="true">
            ◆
          </span>
          <span>{t('app.name')}</span>
        </div>
        <h1 id="login-title">{t('login.title')}</h1>
        <p className="muted">{t('login.subtitle')}</p>
        {reason === 'expired' && <Alert kind="info">{t('login.expired')}</Alert>}
        {reason === 'signed-out' && <Alert kind="info">{t('login.signedOut')}</Alert>}
        {reason === 'password-changed' && <Alert kind="success">{t('password.done')}</Alert>}
        {error && <Alert kind="error">{error}</Alert>}
        <div className="field">
          <label htmlFor="login-username">{t('login.username')}</label>
          <input id="login-username" name="username" autoComplete="username" value={username} onChange={(e) => setUsername(e.target.value)} required autoFocus />
        </div>
        <div className="field">
          <label htmlFor="login-password">{t('login.password')}</label>
          <input id="login-password" name="password" type="password" autoComplete="current-password" value={password} onChange={(e) => setPassword(e.target.value)} required />
        </div>
        <button type="submit" className="primary wide" disabled={busy}>
          {busy ? t('login.busy') : t('login.submit')}
        </button>
      </form>
    </div>
  );
}
