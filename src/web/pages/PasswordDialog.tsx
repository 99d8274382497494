import { useState, type FormEvent, type ReactNode } from 'react';
import { ApiError, call, client } from '../api';
import { errorText } from '../errors';
import { useTitle } from '../hooks';
import { LanguageSwitch, useI18n } from '../i18n';
import { useSession } from '../session';
import { Alert } from '../components/Alert';
import { Dialog } from '../components/Dialog';
import { Field } from '../components/Field';

/** Changing one's password ends every session issued before it, this one included: back to sign-in. */
function PasswordForm({ actions }: { actions(busy: boolean): ReactNode }) {
  const { t } = useI18n();
  const { signOut } = useSession();
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [repeat, setRepeat] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    if (next.length < 12) return setError(t('users.passwordRule'));
    if (next !== repeat) return setError(t('password.mismatch'));
    if (next === current) return setError(t('password.same'));
    setBusy(true);
    try {
      await call(client.POST('/api/v1/auth/password', { body: { currentPassword: current, newPassword: next } }));
      await signOut('password-changed');
    } catch (err) {
      setError(err instanceof ApiError && err.code === 'forbidden' ? t('password.wrongCurrent') : errorText(t, err));
      setBusy(false);
    }
  };

  return (
    <form onSubmit={submit}>
      <Field label={t('password.current')} htmlFor="pw-current">
        <input id="pw-current" type="password" autoComplete="current-password" value={current} onChange={(e) => setCurrent(e.target.value)} required />
      </Field>
      <Field label={t('password.new')} htmlFor="pw-new" help={t('users.passwordHelp')}>
        <input id="pw-new" type="password" autoComplete="new-password" value={next} onChange={(e) => setNext(e.target.value)} required minLength={12} />
      </Field>
      <Field label={t('password.repeat')} htmlFor="pw-repeat">
        <input id="pw-repeat" type="password" autoComplete="new-password" value={repeat} onChange={(e) => setRepeat(e.target.value)} required />
      </Field>
      {error && <Alert kind="error">{error}</Alert>}
      {actions(busy)}
    </form>
  );
}

export function PasswordDialog({ onClose }: { onClose(): void }) {
  const { t } = useI18n();
  return (
    <Dialog title={t('password.title')} onClose={onClose}>
      <PasswordForm
        actions={(busy) => (
          <div className="dialog-actions">
            <button type="button" onClick={onClose}>
              {t('common.cancel')}
            </button>
            <button type="submit" className="primary" disabled={busy}>
              {t('common.save')}
            </button>
          </div>
        )}
      />
    </Dialog>
  );
}

/** Someone else chose this password (an admin, the CLI): the session can do nothing else until it is changed. */
export function PasswordRequiredPage() {
  const { t } = useI18n();
  const { signOut } = useSession();
  useTitle(t('password.title'));
  return (
    <div className="login-wrap">
      <div className="login-lang">
        <LanguageSwitch />
      </div>
      <div className="login-card">
        <h1 id="password-required-title">{t('password.title')}</h1>
        <Alert kind="info">{t('password.required')}</Alert>
        <PasswordForm
          actions={(busy) => (
            <div className="dialog-actions">
              <button type="button" onClick={() => void signOut()}>
                {t('nav.signOut')}
              </button>
              <button type="submit" className="primary" disabled={busy}>
                {t('common.save')}
              </button>
            </div>
          )}
        />
      </div>
    </div>
  );
}
