import { createContext, useCallback, useContext, useEffect, useMemo, useState, type ReactNode } from 'react';
import { call, client, listAll, query, type Project, type User } from './api';
import { useMe } from './session';

/**
 * Names for the ids the API returns (owners, projects). Admins and auditors may read every user; a member
 * sees only themself (and only keys they own), so for them the directory is just "me".
 */
interface Directory {
  users: User[];
  projects: Project[];
  userName(id: string | null | undefined): string;
  projectName(id: string | null | undefined): string;
  reload(): Promise<void>;
  loaded: boolean;
}

const Ctx = createContext<Directory | null>(null);

export function DirectoryProvider({ children }: { children: ReactNode }) {
  const me = useMe();
  const [users, setUsers] = useState<User[]>([]);
  const [projects, setProjects] = useState<Project[]>([]);
  const [loaded, setLoaded] = useState(false);

  const reload = useCallback(async () => {
    const canReadUsers = me.role === 'admin' || me.role === 'auditor';
    const [u, p] = await Promise.all([
      canReadUsers
        ? listAll((cursor) => call(client.GET('/api/v1/users', { params: { query: query('/api/v1/users', { limit: 200, cursor }) } })))
        : Promise.resolve<User[]>([{ id: me.id, username: me.username, displayName: null, role: me.role, status: 'active', mustChangePassword: false, createdAt: '', updatedAt: '' }]),
      listAll((cursor) => call(client.GET('/api/v1/projects', { params: { query: query('/api/v1/projects', { limit: 200, cursor }) } }))),
    ]);
    setUsers(u);
    setProjects(p);
    setLoaded(true);
  }, [me]);

  useEffect(() => {
    reload().catch(() => setLoaded(true));
  }, [reload]);

  const value = useMemo<Directory>(() => {
    const un = new Map(users.map((u) => [u.id, u.username]));
    const pn = new Map(projects.map((p) => [p.id, p.name]));
    return {
      users: [...users].sort((a, b) => a.username.localeCompare(b.username)),
      projects: [...projects].sort((a, b) => a.name.localeCompare(b.name)),
      userName: (id) => (id ? (un.get(id) ?? id.slice(0, 8)) : ''),
      projectName: (id) => (id ? (pn.get(id) ?? id.slice(0, 8)) : ''),
      reload,
      loaded,
    };
  }, [users, projects, reload, loaded]);
  return <Ctx.Provider value={value}>{children}</Ctx.Provider>;
}

export function useDirectory(): Directory {
  const v = useContext(Ctx);
  if (!v) throw new Error('useDirectory outside DirectoryProvider');
  return v;
}
