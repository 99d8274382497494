import type { Database } from '../../db/database';
import { ConflictError, ForbiddenError, NotFoundError, UnauthorizedError, ValidationError } from '../../errors';
import { coalesced } from '../../batching';
import { newId } from '../../ids';
import type { Logger } from '../../logger';
import { hashApiToken, isApiTokenShape, newApiToken } from '../../crypto/tokens';
import { Page, PageResult, toPageResult } from '../../pagination';
import { Actor, effectiveRights, ROLE_SCOPES, Scope, SCOPES } from '../auth/actor';
import type { ClientInfo } from '../auth/auth.service';
import type { AuditService } from '../audit/audit.service';
import type { UsersRepository } from '../users/users.repository';
import { ApiTokenEntity } from './api-token.entity';
import type { ApiTokensRepository } from './api-tokens.repository';

export interface ApiToken {
  id: string;
  name: string;
  prefix: string;
  userId: string;
  scopes: Scope[];
  createdAt: string;
  expiresAt: string;
  lastUsedAt: string | null;
  lastUsedIp: string | null;
  usageCount: number;
  revokedAt: string | null;
}

export interface IssuedToken {
  id: string;
  name: string;
  prefix: string;
  userId: string;
  scopes: Scope[];
  expiresAt: string;
  token: string;
}

const DAY_MS = 86_400_000;
export const DEFAULT_TOKEN_DAYS = 90;
const IP_MAX = 64;
const parseScopes = (s: string) => s.split(' ').filter((x): x is Scope => (SCOPES as readonly string[]).includes(x));

interface PendingUse {
  count: number;
  lastUsedAt: Date;
  lastUsedIp: string | null;
}

/**
 * Counts uses in memory and flushes them in batches (every second and at shutdown), so authenticating a
 * request never costs a write; reads merge what is still pending here.
 */
export class UsageTracker {
  private pending = new Map<string, PendingUse>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Database,
    private readonly repo: ApiTokensRepository,
    private readonly logger: Logger,
    private readonly intervalMs = 1000,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  note(id: string, rawIp: string | null, at = new Date()): void {
    // Behind a trusting proxy the address is whatever the client sent: clip it like audit rows do, or one oversized
    // value would fail every flush on MySQL and stop usage counting for all tokens.
    const ip = rawIp === null ? null : rawIp.slice(0, IP_MAX);
    const p = this.pending.get(id);
    if (p) {
      p.count++;
      p.lastUsedAt = at;
      p.lastUsedIp = ip;
    } else this.pending.set(id, { count: 1, lastUsedAt: at, lastUsedIp: ip });
  }

  pendingFor(id: string): PendingUse | undefined {
    return this.pending.get(id);
  }

  /**
   * Runs fn while no flush is in progress, so a read of the stored counters plus `pendingFor` counts every use
   * exactly once (a flush moves uses from memory to the database in one step that fn never straddles).
   */
  settled<T>(fn: () => Promise<T>): Promise<T> {
    const result = this.flushing.then(fn);
    this.flushing = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.flushNow());
    return this.flushing;
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  private async flushNow(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    try {
      await this.db.transaction(async (tx) => {
        for (const [id, p] of batch) await this.repo.addUsage(tx, id, p.count, p.lastUsedAt, p.lastUsedIp);
      });
    } catch (err) {
      // Keep the counts for the next flush rather than lose them.
      for (const [id, p] of batch) {
        const now = this.pending.get(id);
        this.pending.set(id, now ? { count: now.count + p.count, lastUsedAt: now.lastUsedAt, lastUsedIp: now.lastUsedIp } : p);
      }
      this.logger.warn('api token usage flush failed; will retry', { event: 'api_token.usage_flush_failed', errorCode: (err as { code?: string }).code });
    }
  }
}

export class ApiTokensService {
  /** Told of every authentication's result (the metrics count them). */
  onAuthenticated: ((ok: boolean) => void) | undefined;
  /** Concurrent requests with one token (a gateway's burst) share one lookup per turn of the event loop. */
  private readonly tokenLookups = coalesced(
    (hash: string) => hash,
    (hash: string) => this.db.read((m) => this.tokens.findByHashWithUser(m, hash)),
  );

  constructor(
    private readonly db: Database,
    private readonly tokens: ApiTokensRepository,
    private readonly users: UsersRepository,
    private readonly audit: AuditService,
    readonly usage: UsageTracker,
    private readonly logger: Logger,
  ) {}

  /**
   * Malformed, unknown, expired and revoked tokens all fail the same way after the same work: one hash and one
   * indexed lookup. Rights are the token's scopes narrowed by the user's current role, every request.
   */
  async authenticate(token: string, client: ClientInfo): Promise<Actor> {
    const found = await this.tokenLookups.load(hashApiToken(token));
    const now = Date.now();
    if (found && !found.intact && isApiTokenShape(token)) {
      // Planted or changed in the database (its MAC does not hold): refused like an unknown token, and said so in the log.
      this.logger.warn('an API token row fails its integrity check (planted or changed in the database): refused', { event: 'api_token.forged', tokenId: found.token.id });
    }
    if (!found || !found.intact || !isApiTokenShape(token) || found.token.revokedAt || found.token.expiresAt.getTime() <= now || found.user.status !== 'active') {
      this.onAuthenticated?.(false);
      throw new UnauthorizedError();
    }
    this.onAuthenticated?.(true);
    const { token: t, user } = found;
    this.usage.note(t.id, client.ip);
    const scopes = parseScopes(t.scopes);
    return { userId: user.id, username: user.username, role: user.role, via: 'api_token', rights: effectiveRights(user.role, scopes), tokenScopes: scopes, apiTokenId: t.id, ...client };
  }

  async create(actor: Actor, input: { name: string; scopes: Scope[]; expiresInDays?: number; userId?: string }): Promise<IssuedToken> {
    this.assertManagedBySession(actor);
    const userId = input.userId ?? actor.userId;
    if (userId !== actor.userId && actor.role !== 'admin') throw new ForbiddenError('Only admins mint tokens for other users');
    const scopes = [...new Set(input.scopes)];
    // A reveal through a token is audited as the token's user: an admin minting one for someone else would reveal
    // that user's keys as them, with no reason on record. Operators at the host (CLI) may, for service accounts.
    if (userId !== actor.userId && actor.via !== 'cli' && scopes.includes('provider-keys:reveal')) {
      throw new ValidationError('provider-keys:reveal can only be granted by the token’s own user', { details: [{ field: 'body.scopes', message: 'reveal tokens are minted by their own user' }] });
    }
    const issued = newApiToken();
    const now = new Date();
    const row = Object.assign(new ApiTokenEntity(), {
      id: newId(),
      userId,
      name: input.name,
      prefix: issued.prefix,
      tokenHash: issued.hash,
      scopes: scopes.join(' '),
      createdBy: actor.userId || userId,
      createdAt: now,
      expiresAt: new Date(now.getTime() + (input.expiresInDays ?? DEFAULT_TOKEN_DAYS) * DAY_MS),
      lastUsedAt: null,
      lastUsedIp: null,
      usageCount: 0,
      revokedAt: null,
    });
    await this.db.transaction(async (tx) => {
      // Locked: a token minted while its user is being disabled would escape the revocation that disabling does.
      const owner = await this.users.findByIdLocked(tx, userId);
      if (!owner) throw new ValidationError('userId: no such user', { details: [{ field: 'body.userId', message: 'no such user' }] });
      if (owner.status !== 'active') throw new ValidationError('userId: the user is disabled', { details: [{ field: 'body.userId', message: 'the user is disabled' }] });
      const beyond = scopes.filter((s) => !ROLE_SCOPES[owner.role].includes(s));
      if (beyond.length > 0) {
        throw new ValidationError(`Scopes beyond the ${owner.role} role: ${beyond.join(', ')}`, { details: beyond.map((s) => ({ field: 'body.scopes', message: `${s} is beyond the ${owner.role} role` })) });
      }
      await this.tokens.insert(tx, row);
      await this.audit.record(tx, actor, 'api_token.create', 'success', {}, { detail: { tokenId: row.id, userId, name: row.name, scopes, expiresAt: row.expiresAt.toISOString() } });
    });
    return { id: row.id, name: row.name, prefix: row.prefix, userId, scopes, expiresAt: row.expiresAt.toISOString(), token: issued.token };
  }

  async list(actor: Actor, userId: string | undefined, page: Page): Promise<PageResult<ApiToken>> {
    const manager = this.managesAll(actor);
    if (!manager && userId && userId !== actor.userId) return { items: [], nextCursor: null };
    const scope = manager ? userId : actor.userId;
    return this.usage.settled(async () => {
      const rows = await this.db.read((m) => this.tokens.list(m, scope, page));
      return toPageResult(rows, page, (t) => this.toApiToken(t));
    });
  }

  async get(actor: Actor, id: string): Promise<ApiToken> {
    return this.usage.settled(async () => this.toApiToken(await this.db.read((m) => this.findVisibleTo(m, actor, id))));
  }

  async rename(actor: Actor, id: string, name: string): Promise<ApiToken> {
    this.assertManagedBySession(actor);
    const t = await this.db.transaction(async (tx) => {
      const found = await this.findVisibleTo(tx, actor, id);
      await this.tokens.update(tx, id, { name });
      return found;
    });
    return this.get(actor, t.id);
  }

  /**
   * A new secret, shown once; the old one stops working at the commit. Only to the token's own user: a token acts as
   * its user, so handing its new secret to anyone else (an admin) would let them act, and reveal, as that user.
   */
  async regenerate(actor: Actor, id: string): Promise<IssuedToken> {
    this.assertManagedBySession(actor);
    const issued = newApiToken();
    return this.db.transaction(async (tx) => {
      const t = await this.findLive(tx, actor, id);
      if (t.userId !== actor.userId) throw new ForbiddenError('Only the token’s own user can regenerate it (it acts as them); revoke it instead');
      // A new secret that is already dead would only mislead: renewing is the way back for an expired token.
      if (t.expiresAt.getTime() <= Date.now()) throw new ConflictError('This API token has expired; renew it first, then regenerate');
      await this.tokens.update(tx, id, { tokenHash: issued.hash, prefix: issued.prefix });
      await this.audit.record(tx, actor, 'api_token.regenerate', 'success', {}, { detail: { tokenId: id, userId: t.userId, name: t.name } });
      return { id, name: t.name, prefix: issued.prefix, userId: t.userId, scopes: parseScopes(t.scopes), expiresAt: t.expiresAt.toISOString(), token: issued.token };
    });
  }

  /** Same secret, new expiry counted from now. */
  async renew(actor: Actor, id: string, expiresInDays = DEFAULT_TOKEN_DAYS): Promise<ApiToken> {
    this.assertManagedBySession(actor);
    const expiresAt = new Date(Date.now() + expiresInDays * DAY_MS);
    await this.db.transaction(async (tx) => {
      const t = await this.findLive(tx, actor, id);
      await this.tokens.update(tx, id, { expiresAt });
      await this.audit.record(tx, actor, 'api_token.renew', 'success', {}, { detail: { tokenId: id, userId: t.userId, name: t.name, expiresAt: expiresAt.toISOString() } });
    });
    return this.get(actor, id);
  }

  /** Revoked for good: the row stays with revokedAt set, and no route brings it back. */
  async revoke(actor: Actor, id: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      const t = await this.findVisibleTo(tx, actor, id);
      if (t.revokedAt) return;
      await this.tokens.update(tx, id, { revokedAt: new Date() });
      await this.audit.record(tx, actor, 'api_token.revoke', 'success', {}, { detail: { tokenId: id, userId: t.userId, name: t.name } });
    });
  }

  private toApiToken(t: ApiTokenEntity): ApiToken {
    const p = this.usage.pendingFor(t.id);
    const lastUsedAt = p && (!t.lastUsedAt || p.lastUsedAt > t.lastUsedAt) ? p.lastUsedAt : t.lastUsedAt;
    return {
      id: t.id,
      name: t.name,
      prefix: t.prefix,
      userId: t.userId,
      scopes: parseScopes(t.scopes),
      createdAt: t.createdAt.toISOString(),
      expiresAt: t.expiresAt.toISOString(),
      lastUsedAt: lastUsedAt ? lastUsedAt.toISOString() : null,
      lastUsedIp: p && lastUsedAt === p.lastUsedAt ? p.lastUsedIp : t.lastUsedIp,
      usageCount: t.usageCount + (p?.count ?? 0),
      revokedAt: t.revokedAt ? t.revokedAt.toISOString() : null,
    };
  }

  /** Admins see and revoke everyone's tokens when signed in; through a token, only with users:write. */
  private managesAll(actor: Actor): boolean {
    return actor.role === 'admin' && (actor.via !== 'api_token' || actor.rights.has('users:write'));
  }

  /** A stolen token must not be able to mint, renew or regenerate tokens: those need a signed-in person. */
  private assertManagedBySession(actor: Actor): void {
    if (actor.via === 'api_token') throw new ForbiddenError('API tokens cannot manage API tokens; sign in to do this');
  }

  private async findVisibleTo(m: Parameters<ApiTokensRepository['findById']>[0], actor: Actor, id: string): Promise<ApiTokenEntity> {
    const t = await this.tokens.findById(m, id);
    if (!t || (!this.managesAll(actor) && t.userId !== actor.userId)) throw new NotFoundError('No such API token');
    return t;
  }

  private async findLive(m: Parameters<ApiTokensRepository['findById']>[0], actor: Actor, id: string): Promise<ApiTokenEntity> {
    const t = await this.findVisibleTo(m, actor, id);
    if (t.revokedAt) throw new ConflictError('This API token is revoked for good; create a new one');
    // A new secret or expiry would be sealed onto fields nobody checked: a row that fails its MAC is only ever revoked.
    if (!this.tokens.intact(t)) throw new ConflictError('This API token fails its integrity check (changed in the database); revoke it and create a new one');
    return t;
  }
}
