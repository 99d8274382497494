import type { EntityManager } from 'typeorm';
import type { Database } from '../../db/database';
import { isUniqueViolation } from '../../db/errors';
import { ConflictError, ForbiddenError, NotFoundError } from '../../errors';
import { newId } from '../../ids';
import { hashPassword, NO_PASSWORD } from '../../crypto/passwords';
import { Page, PageResult, toPageResult } from '../../pagination';
import { Actor, can, ROLE_SCOPES } from '../auth/actor';
import type { AuditService } from '../audit/audit.service';
import type { ApiTokensRepository } from '../api-tokens/api-tokens.repository';
import { Role, UserEntity, UserStatus } from './user.entity';
import type { UsersRepository } from './users.repository';

export interface User {
  id: string;
  username: string;
  displayName: string | null;
  role: Role;
  status: UserStatus;
  mustChangePassword: boolean;
  createdAt: string;
  updatedAt: string;
}

/** A token with users:write must not be a way to mint an admin or take over an account (and so every secret). */
const TOKEN_ADMIN_STATUS = 'API tokens cannot disable or enable admins; sign in to do this';
const TOKEN_ESCALATION = 'API tokens cannot create admins, change roles or set passwords; sign in to do this';
const TOKEN_PASSWORD = 'API tokens cannot choose a password: create the user without one, and an admin signed in sets it';

export function toUser(e: UserEntity): User {
  return {
    id: e.id,
    username: e.username,
    displayName: e.displayName,
    role: e.role,
    status: e.status,
    mustChangePassword: e.mustChangePassword,
    createdAt: e.createdAt.toISOString(),
    updatedAt: e.updatedAt.toISOString(),
  };
}

export interface CreateUserInput {
  username: string;
  /** Without one the account cannot sign in until a password is set (its API tokens can only come from the CLI). */
  password?: string;
  role: Role;
  displayName?: string;
  /** Whether the password must be changed at the first sign-in; by default, unless the CLI chose otherwise. */
  mustChangePassword?: boolean;
}

export interface UpdateUserInput {
  displayName?: string | null;
  role?: Role;
  status?: UserStatus;
  password?: string;
}

export class UsersService {
  constructor(
    private readonly db: Database,
    private readonly users: UsersRepository,
    private readonly tokens: Pick<ApiTokensRepository, 'revokeAllOf'>,
    private readonly virtualKeys: { revokeAllOf(tx: EntityManager, userId: string, at: Date): Promise<Array<{ id: string; keyId: string; name: string }>> },
    private readonly audit: AuditService,
    private readonly scryptCost: number,
  ) {}

  async create(actor: Actor, input: CreateUserInput): Promise<User> {
    if (!can(actor, 'users:write')) throw new ForbiddenError('Creating users needs the users:write right');
    if (actor.via === 'api_token') assertTokenMayCreate(actor, input);
    // Hash before the transaction: scrypt is slow by design and must not hold a database lock.
    const passwordHash = input.password === undefined ? NO_PASSWORD : await hashPassword(input.password, this.scryptCost);
    const now = new Date();
    const user = Object.assign(new UserEntity(), {
      id: newId(),
      username: input.username.toLowerCase(),
      displayName: input.displayName || null,
      role: input.role,
      status: 'active' as const,
      passwordHash,
      sessionEpoch: 0,
      // Whoever chose this password is not the user (an admin, a script, an operator): only the user may keep one.
      mustChangePassword: input.password !== undefined && (input.mustChangePassword ?? actor.via !== 'cli'),
      createdAt: now,
      updatedAt: now,
    });
    try {
      await this.db.transaction(async (tx) => {
        if (await this.users.findByUsername(tx, user.username)) throw new ConflictError(`Username "${user.username}" is taken`);
        await this.users.insert(tx, user);
        await this.audit.record(tx, actor, 'user.create', 'success', {}, {
          detail: { userId: user.id, username: user.username, role: user.role, firstSignIn: input.password === undefined ? 'no_password' : user.mustChangePassword ? 'must_change_password' : 'ready' },
        });
      });
    } catch (err) {
      if (isUniqueViolation(err)) throw new ConflictError(`Username "${user.username}" is taken`);
      throw err;
    }
    return toUser(user);
  }

  async get(actor: Actor, id: string): Promise<User> {
    if (!can(actor, 'users:read')) throw new ForbiddenError('Reading users needs the users:read right');
    const user = await this.db.read((m) => this.users.findById(m, id));
    if (!user) throw new NotFoundError('No such user');
    return toUser(user);
  }

  async list(actor: Actor, filter: { role?: string; status?: string }, page: Page): Promise<PageResult<User>> {
    if (!can(actor, 'users:read')) throw new ForbiddenError('Reading users needs the users:read right');
    const rows = await this.db.read((m) => this.users.list(m, filter, page));
    return toPageResult(rows, page, toUser);
  }

  async update(actor: Actor, id: string, input: UpdateUserInput): Promise<User> {
    if (!can(actor, 'users:write')) throw new ForbiddenError('Changing users needs the users:write right');
    if (actor.via === 'api_token' && (input.role !== undefined || input.password !== undefined)) throw new ForbiddenError(TOKEN_ESCALATION);
    const passwordHash = input.password === undefined ? undefined : await hashPassword(input.password, this.scryptCost);
    return this.db.transaction(async (tx) => {
      const user = await this.users.findById(tx, id);
      if (!user) throw new NotFoundError('No such user');
      if (actor.via === 'api_token' && user.role === 'admin' && input.status !== undefined && input.status !== user.status) throw new ForbiddenError(TOKEN_ADMIN_STATUS);
      const losesAdmin = user.role === 'admin' && user.status === 'active' && ((input.role && input.role !== 'admin') || input.status === 'disabled');
      if (losesAdmin && (await this.users.countActiveAdminsLocked(tx)) <= 1) {
        throw new ConflictError('This is the last active admin; make another admin first');
      }
      const now = new Date();
      const patch: Partial<UserEntity> = { updatedAt: now };
      const changed: string[] = [];
      if (input.displayName !== undefined && input.displayName !== user.displayName) (patch.displayName = input.displayName || null), changed.push('displayName');
      if (input.role !== undefined && input.role !== user.role) (patch.role = input.role), changed.push('role');
      if (input.status !== undefined && input.status !== user.status) (patch.status = input.status), changed.push('status');
      // Nothing to change: no write, no audit row, the same updatedAt.
      if (changed.length === 0 && passwordHash === undefined) return toUser(user);
      await this.users.update(tx, id, patch);
      // A password chosen by someone else (an admin, the CLI) must be changed by the user before anything else.
      const mustChange = passwordHash !== undefined ? actor.userId !== id : user.mustChangePassword;
      if (passwordHash !== undefined) {
        await this.users.setPassword(tx, id, passwordHash, mustChange, now);
        changed.push('password');
      } else if (patch.status === 'disabled') {
        await this.users.endSessions(tx, id, now);
      }
      await this.audit.record(tx, actor, 'user.update', 'success', {}, {
        detail: {
          userId: id,
          username: user.username,
          changed,
          ...(patch.role ? { role: patch.role } : {}),
          ...(patch.status ? { status: patch.status } : {}),
          ...(passwordHash !== undefined ? { mustChangePassword: mustChange } : {}),
        },
      });
      // Disabling ends every credential for good: sessions above, API tokens and virtual keys here, so re-enabling
      // revives none of them.
      if (patch.status === 'disabled') {
        for (const t of await this.tokens.revokeAllOf(tx, id, now)) {
          await this.audit.record(tx, actor, 'api_token.revoke', 'success', {}, { detail: { tokenId: t.id, userId: id, name: t.name, why: 'user_disabled' } });
        }
        for (const v of await this.virtualKeys.revokeAllOf(tx, id, now)) {
          await this.audit.record(tx, actor, 'virtual_key.revoke', 'success', { keyId: v.keyId }, { detail: { virtualKeyId: v.id, userId: id, name: v.name, why: 'user_disabled' } });
        }
      }
      return toUser({ ...user, ...patch, mustChangePassword: mustChange } as UserEntity);
    });
  }

  /** Sets a new password from the CLI (operator at the host); sessions issued before it die. */
  async resetPassword(actor: Actor, username: string, password: string): Promise<User> {
    const user = await this.db.read((m) => this.users.findByUsername(m, username));
    if (!user) throw new NotFoundError(`No user named "${username}"`);
    return this.update(actor, user.id, { password });
  }

  findByUsername(username: string): Promise<UserEntity | null> {
    return this.db.read((m) => this.users.findByUsername(m, username));
  }

  isEmpty(): Promise<boolean> {
    return this.db.read(async (m) => (await this.users.count(m)) === 0);
  }
}

/**
 * A users:write token creates accounts it cannot use: never with a password (the holder would know it and sign in as
 * the new user), never an admin, and only in a role whose every right the token holds itself.
 */
function assertTokenMayCreate(actor: Actor, input: CreateUserInput): void {
  if (input.password !== undefined) throw new ForbiddenError(TOKEN_PASSWORD);
  if (input.role === 'admin') throw new ForbiddenError(TOKEN_ESCALATION);
  const lacking = ROLE_SCOPES[input.role].filter((s) => !actor.rights.has(s));
  if (lacking.length > 0) throw new ForbiddenError(`This API token cannot create a ${input.role}: it lacks ${lacking.join(', ')}`);
}
