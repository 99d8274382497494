import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { api, ApiError, setCsrfToken, setUnauthorizedHandler, type Me } from './api';
import { navigate } from './router';

type Status = 'loading' | 'signed-out' | 'signed-in';
export type SignOutReason = 'expired' | 'signed-out' | 'password-changed' | null;

interface Session {
  status: Status;
  me: Me | null;
  /** Why the sign-in page is showing, for its message. */
  reason: SignOutReason;
  signIn(username: string, password: string): Promise<void>;
  signOut(reason?: SignOutReason): Promise<void>;
}

const Ctx = createContext<Session | null>(null);

export function SessionProvider({ children }: { children: ReactNode }) {
  const [status, setStatus] = useState<Status>('loading');
  const [me, setMe] = useState<Me | null>(null);
  const [reason, setReason] = useState<SignOutReason>(null);

  const end = useCallback((why: SignOutReason) => {
    setCsrfToken(null);
    setMe(null);
    setReason(why);
    setStatus('signed-out');
  }, []);

  useEffect(() => {
    setUnauthorizedHandler(() => end('expired'));
    // After a reload the cookie may still be good: ask who we are and pick up the CSRF token (memory only).
    api<Me>('GET', '/auth/me', { quiet401: true })
      .then((m) => {
        setCsrfToken(m.csrfToken ?? null);
        setMe({ ...m, csrfToken: undefined });
        setStatus('signed-in');
      })
      .catch(() => end(null));
    return () => setUnauthorizedHandler(null);
  }, [end]);

  const signIn = useCallback(async (username: string, password: string) => {
    const res = await api<{ user: Me; csrfToken: string }>('POST', '/auth/login', { body: { username, password, cookie: true }, quiet401: true });
    setCsrfToken(res.csrfToken);
    setMe({ ...res.user, via: 'session' });
    setReason(null);
    setStatus('signed-in');
  }, []);

  const signOut = useCallback(
    async (why: SignOutReason = 'signed-out') => {
      try {
        if (why !== 'password-changed') await api('POST', '/auth/logout', { quiet401: true });
      } catch (err) {
        if (!(err instanceof ApiError)) throw err;
      } finally {
        end(why);
        navigate('/login', { replace: true });
      }
    },
    [end],
  );

  const value = useMemo(() => ({ status, me, reason, signIn, signOut }), [status, me, reason, signIn, signOut]);
  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;
}

export function useSession(): Session {
  const v = useContext(Ctx);
  if (!v) throw new Error('useSession outside SessionProvider');
  return v;
}

/** The signed-in principal; only used under the signed-in shell. */
export function useMe(): Me {
  const { me } = useSession();
  if (!me) throw new Error('not signed in');
  return me;
}
