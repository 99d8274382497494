import type { Role } from '../users/user.entity';

export const SCOPES = [
  'provider-keys:read', 'provider-keys:write', 'provider-keys:reveal', 'audit:read',
  'users:read', 'users:write', 'projects:read', 'projects:write', 'metrics:read',
] as const;
export type Scope = (typeof SCOPES)[number];

/**
 * What each role may ever do; an API token narrows this further, never widens it. metrics:read (the vault's operational
 * figures) is an admin's: operators run the vault; auditors read the trail, which the metrics only summarize.
 */
export const ROLE_SCOPES: Record<Role, readonly Scope[]> = {
  admin: SCOPES,
  member: ['provider-keys:read', 'provider-keys:reveal', 'projects:read'],
  auditor: ['provider-keys:read', 'audit:read', 'users:read', 'projects:read'],
};

/** Who is asking, and from where. Built per request from a verified credential and the user's current row. */
export interface Actor {
  userId: string;
  username: string;
  role: Role;
  via: 'session' | 'api_token' | 'cli';
  /** Effective rights: the role's scopes, intersected with the token's scopes for API tokens. */
  rights: ReadonlySet<Scope>;
  tokenScopes?: readonly Scope[];
  apiTokenId?: string;
  session?: { jti: string; expiresAt: Date; viaCookie?: boolean };
  /** A session of a user whose password someone else chose: it may only change it (or sign out) until then. */
  mustChangePassword?: boolean;
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
}

export function effectiveRights(role: Role, tokenScopes?: readonly Scope[]): ReadonlySet<Scope> {
  const granted = ROLE_SCOPES[role];
  return new Set(tokenScopes ? granted.filter((s) => tokenScopes.includes(s)) : granted);
}

export function can(actor: Actor, scope: Scope): boolean {
  return actor.rights.has(scope);
}

/** The principal a CLI command acts as: audited like anyone, with the rights of its role. */
export function cliActor(user: { id: string; username: string; role: Role } | null): Actor {
  return {
    userId: user?.id ?? '',
    username: user?.username ?? 'cli',
    role: user?.role ?? 'admin',
    via: 'cli',
    rights: effectiveRights(user?.role ?? 'admin'),
    ip: null,
    userAgent: 'pkv-cli',
    requestId: null,
  };
}
