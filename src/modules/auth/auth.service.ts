import crypto from 'node:crypto';
import type { Database } from '../../db/database';
import { isUniqueViolation } from '../../db/errors';
import { ForbiddenError, RateLimitedError, UnauthorizedError } from '../../errors';
import { coalesced } from '../../batching';
import { hashPassword, isUsablePasswordHash, verifyPassword } from '../../crypto/passwords';
import type { RateLimits } from '../../rate-limits';
import { USERNAME } from '../users/users.schemas';
import type { AuditService } from '../audit/audit.service';
import type { UsersRepository } from '../users/users.repository';
import { toUser, User } from '../users/users.service';
import { Actor, effectiveRights } from './actor';
import { RevokedSessionEntity } from './revoked-session.entity';
import type { SessionClaims, SessionTokens } from './sessions';

export interface ClientInfo {
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
}

export interface LoginResult {
  jti: string;
  accessToken: string;
  tokenType: 'Bearer';
  expiresIn: number;
  expiresAt: Date;
  user: User;
}

const BAD_CREDENTIALS = 'Invalid username or password';
const NOT_A_USERNAME = '(not a valid username)';
const UNKNOWN_USER = '(unknown user)';

export class AuthService {
  private dummyHash: Promise<string> | undefined;

  /** Concurrent requests on one session (a script's burst) share one lookup per turn of the event loop. */
  private readonly sessionLookups = coalesced(
    (c: SessionClaims) => `${c.sub}\u0000${c.jti}`,
    (c: SessionClaims) => this.db.read((m) => this.users.findForSession(m, c.sub, c.jti)),
  );

  constructor(
    private readonly db: Database,
    private readonly users: UsersRepository,
    private readonly sessions: SessionTokens,
    private readonly audit: AuditService,
    private readonly limits: RateLimits,
    private readonly scryptCost: number,
    /** Keys the per-name sign-in counters, which a shared store (MySQL, Redis) keeps where a database reader sees them. */
    private readonly limitKeySecret: Buffer,
  ) {
    // Computed now, not at the first unknown-user sign-in (which would then cost two scrypt runs and stand out).
    void this.dummy().catch(() => undefined);
  }

  /**
   * Unknown user, wrong password and disabled user answer alike and take the same time (one scrypt each). The
   * attempt is charged to both limiters before the slow check, so parallel guesses cannot all slip past a read.
   */
  async login(rawUsername: string, password: string, client: ClientInfo): Promise<LoginResult> {
    const username = rawUsername.toLowerCase();
    const userIpKey = this.nameIpKey(username, client.ip);
    const ipKey = client.ip ?? '';
    // Only names that could exist are looked up: MySQL's collation would match 'víctim ' to 'victim'.
    const user = USERNAME.test(username) ? await this.db.read((m) => this.users.findByUsername(m, username)) : null;
    // What was typed as a name is often a secret pasted in the wrong field: only an existing user's name is put on
    // record (the trail, its log line); anything else is recorded as a marker, nothing derived from it.
    const claimed = user ? user.username : USERNAME.test(username) ? UNKNOWN_USER : NOT_A_USERNAME;
    const anon = { anonymous: true as const, claimedUsername: claimed, userId: user?.id, role: user?.role, ...client };
    try {
      await this.limits.loginByUserIp.consume(userIpKey);
      await this.limits.loginByIp.consume(ipKey);
    } catch (err) {
      if (!(err instanceof RateLimitedError)) throw err;
      await this.db.transaction((tx) => this.audit.record(tx, anon, 'auth.login', 'rate_limited', {}, { detail: { retryAfterSeconds: err.retryAfterSeconds } }));
      throw new RateLimitedError(err.retryAfterSeconds, 'Too many failed sign-ins; try again later');
    }
    // An account without a password (created by a token, say) costs the same scrypt run as any other refusal.
    const usable = user !== null && isUsablePasswordHash(user.passwordHash);
    const ok = (await verifyPassword(password, usable ? user.passwordHash : await this.dummy())) && usable;
    if (!user || !ok || user.status !== 'active') {
      const why = !user ? 'unknown_user' : !usable ? 'no_password' : !ok ? 'wrong_password' : 'user_disabled';
      await this.db.transaction((tx) => this.audit.record(tx, anon, 'auth.login', 'denied', {}, { detail: { why } }));
      throw new UnauthorizedError(BAD_CREDENTIALS);
    }
    // A success wipes this user's failures here and gives back the attempt it cost the IP.
    await this.limits.loginByUserIp.forgive(userIpKey);
    await this.limits.loginByIp.reward(ipKey);
    const issued = this.sessions.issue(user.id, user.sessionEpoch);
    const actor = this.actorFor(user, { jti: issued.jti, expiresAt: issued.expiresAt }, client);
    await this.db.transaction((tx) => this.audit.record(tx, actor, 'auth.login', 'success', {}, user.mustChangePassword ? { detail: { mustChangePassword: true } } : {}));
    return { jti: issued.jti, accessToken: issued.token, tokenType: 'Bearer', expiresIn: this.sessions.ttlSeconds, expiresAt: issued.expiresAt, user: toUser(user) };
  }

  /** Verifies a session JWT against the user's current row: disabled users, logged-out and pre-password-change sessions die here. */
  async authenticateSession(token: string, client: ClientInfo, viaCookie = false): Promise<Actor> {
    const claims = this.sessions.verify(token);
    if (!claims) throw new UnauthorizedError();
    const found = await this.sessionLookups.load(claims);
    if (!found || found.revoked || found.user.status !== 'active' || found.user.sessionEpoch !== claims.ep) throw new UnauthorizedError();
    return this.actorFor(found.user, { jti: claims.jti, expiresAt: new Date(claims.exp * 1000), viaCookie }, client);
  }

  csrfTokenFor(actor: Actor): string | undefined {
    return actor.session?.viaCookie ? this.sessions.csrfFor(actor.session.jti) : undefined;
  }

  /** A cookie-carried session may change state only with its CSRF token (double defence with SameSite=Strict). */
  checkCsrf(actor: Actor, presented: string | undefined): boolean {
    const expected = this.csrfTokenFor(actor);
    if (!expected) return true;
    if (presented === undefined) return false;
    const a = Buffer.from(presented);
    const b = Buffer.from(expected);
    return a.length === b.length && crypto.timingSafeEqual(a, b);
  }

  async logout(actor: Actor): Promise<void> {
    if (!actor.session) throw new ForbiddenError('Only a session can log out; revoke API tokens with DELETE /api-tokens/:id');
    const { jti, expiresAt } = actor.session;
    await this.db.transaction(async (tx) => {
      try {
        await tx.insert(RevokedSessionEntity, { jti, userId: actor.userId, expiresAt });
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
      }
      await this.audit.record(tx, actor, 'auth.logout', 'success');
    });
  }

  async changePassword(actor: Actor, currentPassword: string, newPassword: string): Promise<void> {
    if (actor.via !== 'session') throw new ForbiddenError('Change your password from a signed-in session');
    const key = this.nameIpKey(actor.username, actor.ip);
    try {
      await this.limits.loginByUserIp.consume(key);
    } catch (err) {
      if (!(err instanceof RateLimitedError)) throw err;
      await this.db.transaction((tx) => this.audit.record(tx, actor, 'auth.password_change', 'rate_limited'));
      throw err;
    }
    const user = await this.db.read((m) => this.users.findById(m, actor.userId));
    if (!user || !(await verifyPassword(currentPassword, user.passwordHash))) {
      await this.db.transaction((tx) => this.audit.record(tx, actor, 'auth.password_change', 'denied', {}, { detail: { why: 'wrong_current_password' } }));
      throw new ForbiddenError('The current password is not correct');
    }
    await this.limits.loginByUserIp.forgive(key);
    const hash = await hashPassword(newPassword, this.scryptCost);
    await this.db.transaction(async (tx) => {
      await this.users.setPassword(tx, user.id, hash, false, new Date());
      await this.audit.record(tx, actor, 'auth.password_change', 'success', {}, user.mustChangePassword ? { detail: { wasRequired: true } } : {});
    });
  }

  /** Drops logout records of sessions that have expired anyway. */
  async pruneRevokedSessions(now = new Date()): Promise<void> {
    // A margin past the JWT clock tolerance: a logged-out token must never verify again once its row is gone.
    const cutoff = now.getTime() - 5 * 60_000;
    await this.db.transaction((tx) =>
      tx.createQueryBuilder().delete().from(RevokedSessionEntity).where('expires_at < :cutoff', { cutoff }).execute(),
    );
  }

  csrfForJti(jti: string): string {
    return this.sessions.csrfFor(jti);
  }

  private actorFor(user: { id: string; username: string; role: Actor['role']; mustChangePassword: boolean }, session: Actor['session'], client: ClientInfo): Actor {
    return {
      userId: user.id,
      username: user.username,
      role: user.role,
      via: 'session',
      rights: effectiveRights(user.role),
      ...(user.mustChangePassword ? { mustChangePassword: true } : {}),
      session,
      ...client,
    };
  }

  /** The per-name sign-in counter's key: a keyed hash, so no name typed there (a pasted secret) is stored as typed. */
  private nameIpKey(username: string, ip: string | null): string {
    const name = crypto.createHmac('sha256', this.limitKeySecret).update(username.toLowerCase(), 'utf8').digest('base64url').slice(0, 22);
    return `${name}|${ip ?? ''}`;
  }

  private dummy(): Promise<string> {
    this.dummyHash ??= hashPassword('timing-equaliser-not-a-password', this.scryptCost);
    return this.dummyHash;
  }
}
