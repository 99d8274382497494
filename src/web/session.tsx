import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { flushSync } from 'react-dom';
import { call, client, ApiError, setCsrfToken, setUnauthorizedHandler, type Me } from './api';
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

  // After a reload (or a restore from the back/forward cache) the cookie may still be good: ask who we are and pick up
  // the CSRF token (memory only).
  const probe = useCallback(() => {
    call(client.GET('/api/v1/auth/me'), { quiet401: true })
      .then((m) => {
        setCsrfToken(m.csrfToken ?? null);
        setMe({ ...m, csrfToken: undefined });
        setStatus('signed-in');
      })
      .catch(() => end(null));
  }, [end]);

  useEffect(() => {
    setUnauthorizedHandler(() => end('expired'));
    probe();
    return () => setUnauthorizedHandler(null);
  }, [end, probe]);

  useEffect(() => {
    // Leaving the page: drop everything signed-in (a shown secret, lists, open dialogs) before the browser may keep the
    // page in its back/forward cache, so Back or Forward never brings it back as it was; synchronously, before the freeze.
    const leave = () => {
      flushSync(() => {
        setCsrfToken(null);
        setMe(null);
        setStatus('loading');
      });
    };
    // Restored from that cache: the session may have ended meanwhile, so ask the server again before showing anything.
    const restore = (e: PageTransitionEvent) => {
      if (e.persisted) probe();
    };
    window.addEventListener('pagehide', leave);
    window.addEventListener('pageshow', restore);
    return () => {
      window.removeEventListener('pagehide', leave);
      window.removeEventListener('pageshow', restore);
    };
  }, [probe]);

  const signIn = useCallback(async (username: string, password: string) => {
    const res = await call(client.POST('/api/v1/auth/login', { body: { username, password, cookie: true } }), { quiet401: true });
    setCsrfToken('csrfToken' in res ? res.csrfToken : null);
    const u = res.user;
    setMe({ id: u.id, username: u.username, role: u.role, status: 'active', via: 'session', ...(u.mustChangePassword ? { mustChangePassword: true } : {}) });
    setReason(null);
    setStatus('signed-in');
  }, []);

  const signOut = useCallback(
    async (why: SignOutReason = 'signed-out') => {
      try {
        if (why !== 'password-changed') await call(client.POST('/api/v1/auth/logout'), { quiet401: true });
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
