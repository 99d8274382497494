import crypto from 'node:crypto';
import type { EntityManager } from 'typeorm';
import type { Database } from '../../db/database';
import { isConflict, isUnavailable, isUniqueViolation } from '../../db/errors';
import {
  AppError,
  ConflictError,
  ForbiddenError,
  IntegrityError,
  KeyDisabledError,
  KeyExpiredError,
  NotFoundError,
  PayloadTooLargeError,
  UnavailableError,
  ValidationError,
} from '../../errors';
import { perTurn } from '../../batching';
import { newId } from '../../ids';
import { isoTime } from '../../iso-time';
import { sealIdOf, type Envelope, type SecretBinding } from '../../crypto/envelope';
import { Page, PageResult, toPageResult } from '../../pagination';
import type { Notifier } from '../../notifications';
import { Actor, can } from '../auth/actor';
import { auditOfRefusal, spendAllowance, type Allowance, type AllowanceRefusal } from '../auth/allowance';
import type { AuditEvent, AuditService, AuditTarget } from '../audit/audit.service';
import type { AuditEventEntity, AuditOutcome } from '../audit/audit-event.entity';
import type { ProjectsRepository } from '../projects/projects.repository';
import type { UsersRepository } from '../users/users.repository';
import { bindingOf, HealthStatus, KeyStatus, ProviderKeyEntity } from './provider-key.entity';
import type { KeyFilter, ProviderKeysRepository } from './provider-keys.repository';
import { hintFor, MAX_SECRET_BYTES, Provider, PROBE_PROVIDERS, upstreamOf } from './providers';

export interface ProviderKey {
  id: string;
  name: string;
  provider: Provider;
  hint: string;
  status: KeyStatus;
  ownerId: string;
  projectId: string;
  remark: string | null;
  baseUrl: string | null;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
  expiresAt: string | null;
  lastRevealedAt: string | null;
  revealCount: number;
  /** The last health a check or a gateway answer established (docs/health.md). */
  health: { status: HealthStatus; checkedAt: string | null; detail: string | null };
  /** The opt-in probe of a provider without a free check (Volcengine Ark, custom); null: none. */
  healthProbe: { model: string } | null;
}

export interface Revealed {
  id: string;
  secret: string;
  hint: string;
  revealedAt: string;
}

interface RevealRequest {
  actor: Actor;
  id: string;
  reason: string | undefined;
  /**
   * The rate limits' answer, being fetched while the batch reads its keys: a refusal (audited, in the same batch),
   * an error of the limiter store (the reveal fails unaudited, as it would have before reaching the key), or nothing.
   */
  allowance: Promise<AllowanceRefusal | undefined>;
}

type RevealDone = { key: ProviderKeyEntity; opened: Buffer; at: Date; error?: undefined } | { error: AppError; key?: undefined; opened?: undefined; at?: undefined };

export interface CreateKeyInput {
  ownerId: string;
  projectId: string;
  name: string;
  provider: Provider;
  secret: string;
  remark?: string;
  expiresAt?: Date | null;
  baseUrl?: string | null;
  healthProbe?: { model: string } | null;
}

export interface UpdateKeyInput {
  name?: string;
  remark?: string | null;
  status?: 'active' | 'disabled';
  ownerId?: string;
  projectId?: string;
  expiresAt?: Date | null;
  baseUrl?: string | null;
  healthProbe?: { model: string } | null;
  /** Required when the owner or baseUrl changes on a key the actor does not own (who may reveal it, where it is sent). */
  reason?: string;
}

/** What the key service needs of the gateway: a key that moves, is deleted or points elsewhere ends its virtual keys. */
export interface VirtualKeyRevoker {
  revokeForKey(tx: EntityManager, keyId: string, at: Date): Promise<number>;
}

const iso = (d: Date | null) => (d ? isoTime(d) : null);

export function toProviderKey(k: ProviderKeyEntity): ProviderKey {
  return {
    id: k.id,
    name: k.name,
    // Stored only after validation against PROVIDER_NAMES.
    provider: k.provider as Provider,
    hint: k.hint,
    status: k.status,
    ownerId: k.ownerId,
    projectId: k.projectId,
    remark: k.remark,
    baseUrl: k.baseUrl,
    createdBy: k.createdBy,
    createdAt: isoTime(k.createdAt),
    updatedAt: isoTime(k.updatedAt),
    expiresAt: iso(k.expiresAt),
    lastRevealedAt: iso(k.lastRevealedAt),
    revealCount: k.revealCount,
    health: { status: k.healthStatus, checkedAt: iso(k.healthCheckedAt), detail: k.healthDetail },
    healthProbe: k.healthProbeModel ? { model: k.healthProbeModel } : null,
  };
}

/** What a key's health was said about a secret and an upstream that changed: unknown, and checked at the next run. */
const FRESH_HEALTH: Pick<ProviderKeyEntity, 'healthStatus' | 'healthCheckedAt' | 'healthDetail' | 'healthNextCheckAt' | 'healthKeyRequired'> = {
  healthStatus: 'unknown',
  healthCheckedAt: null,
  healthDetail: null,
  healthNextCheckAt: null,
  healthKeyRequired: false,
};

/** Only providers without a free authenticated call take a probe (it spends a completion token). */
function assertProbeAllowed(provider: string, probe: { model: string } | null | undefined): void {
  if (probe && !(PROBE_PROVIDERS as readonly string[]).includes(provider)) {
    throw invalid('healthProbe', `only ${PROBE_PROVIDERS.join(' and ')} keys take a probe; ${provider} keys are checked by listing models, which spends nothing`);
  }
}

const TOKEN_OWNER_CHANGE = 'Changing the owner through an API token needs the provider-keys:reveal scope as well: the new owner can reveal the key';
const TOKEN_BASE_URL_CHANGE = 'Changing baseUrl through an API token needs the provider-keys:reveal scope as well: the gateway sends the key there';
const target = (k: Pick<ProviderKeyEntity, 'id' | 'ownerId' | 'projectId'>) => ({ keyId: k.id, ownerId: k.ownerId, projectId: k.projectId });

/** Who receives the key when the gateway uses it: scheme, host and port of its upstream (null when it has none). */
export function upstreamOrigin(k: Pick<ProviderKeyEntity, 'provider' | 'baseUrl'>): string | null {
  const url = upstreamOf(k.provider, k.baseUrl);
  return url ? new URL(url).origin : null;
}

/** Paste hygiene: pastes carry newlines; empty, NUL-bearing and oversized secrets are refused. */
export function cleanSecret(raw: string): string {
  const secret = raw.trim();
  if (secret.length === 0) throw new ValidationError('secret must not be empty', { details: [{ field: 'body.secret', message: 'must not be empty' }] });
  if (secret.includes('\u0000')) throw new ValidationError('secret must not contain NUL characters', { details: [{ field: 'body.secret', message: 'must not contain NUL' }] });
  if (Buffer.byteLength(secret, 'utf8') > MAX_SECRET_BYTES) throw new PayloadTooLargeError(`secret must be at most ${MAX_SECRET_BYTES} bytes`);
  return secret;
}

export type RevealDecision =
  | { allowed: true; why: 'owner' | 'admin_with_reason' }
  | { allowed: false; why: string; error: AppError; outcome: 'denied' };

/** Who may reveal what, as a pure function of the actor, the key and the moment. */
export function decideReveal(actor: Actor, key: ProviderKeyEntity, reason: string | undefined, now: Date): RevealDecision {
  const isOwner = key.ownerId === actor.userId;
  if (actor.role === 'auditor') return { allowed: false, why: 'auditor', outcome: 'denied', error: new ForbiddenError('Auditors never see secrets') };
  if (actor.role === 'member' && !isOwner) return { allowed: false, why: 'not_owner', outcome: 'denied', error: new NotFoundError('No such key') };
  if (!can(actor, 'provider-keys:reveal')) return { allowed: false, why: 'missing_scope', outcome: 'denied', error: new ForbiddenError('This credential lacks the provider-keys:reveal scope') };
  if (!isOwner && !reason) {
    return { allowed: false, why: 'reason_required', outcome: 'denied', error: new ValidationError('A reason is required to reveal a key you do not own', { details: [{ field: 'body.reason', message: 'required when revealing another user’s key' }] }) };
  }
  if (key.status === 'disabled') return { allowed: false, why: 'key_disabled', outcome: 'denied', error: new KeyDisabledError() };
  if (key.expiresAt && key.expiresAt.getTime() <= now.getTime()) return { allowed: false, why: 'key_expired', outcome: 'denied', error: new KeyExpiredError() };
  return { allowed: true, why: isOwner ? 'owner' : 'admin_with_reason' };
}

export class ProviderKeysService {
  private readonly reveals = perTurn<RevealRequest, RevealDone>((reqs) => this.revealBatch(reqs), 32);

  constructor(
    private readonly db: Database,
    private readonly keys: ProviderKeysRepository,
    private readonly users: UsersRepository,
    private readonly projects: ProjectsRepository,
    private readonly audit: AuditService,
    private readonly envelope: Envelope,
    private readonly fingerprintKey: Buffer,
    private readonly revealLimits: Allowance,
    private readonly virtualKeys: VirtualKeyRevoker,
    private readonly notifier: Notifier,
  ) {}

  async create(actor: Actor, input: CreateKeyInput): Promise<ProviderKey> {
    if (!can(actor, 'provider-keys:write')) throw new ForbiddenError('Adding keys needs the provider-keys:write right');
    const secret = cleanSecret(input.secret);
    if (input.expiresAt && input.expiresAt.getTime() <= Date.now()) throw invalid('expiresAt', 'must be in the future');
    assertProbeAllowed(input.provider, input.healthProbe);
    const now = new Date();
    const id = newId();
    const fingerprint = this.fingerprint(secret);
    const key = Object.assign(new ProviderKeyEntity(), {
      id,
      name: input.name,
      provider: input.provider,
      hint: hintFor(input.provider, secret),
      status: 'active' as const,
      ownerId: input.ownerId,
      projectId: input.projectId,
      remark: input.remark || null,
      baseUrl: input.baseUrl ?? null,
      createdBy: actor.userId,
      createdAt: now,
      updatedAt: now,
      expiresAt: input.expiresAt ?? null,
      lastRevealedAt: null,
      revealCount: 0,
      fingerprint,
      ...FRESH_HEALTH,
      healthProbeModel: input.healthProbe?.model ?? null,
      expiryNoticeDays: null,
      secretSetAt: now,
      ...this.sealText(bindingOf({ id, ownerId: input.ownerId, projectId: input.projectId, provider: input.provider, baseUrl: input.baseUrl ?? null }), secret),
    });
    await this.withDuplicateCheck(fingerprint, () =>
      this.db.transaction(async (tx) => {
        await this.assertBindable(tx, input.ownerId, input.projectId);
        await this.assertNotStored(tx, fingerprint);
        await this.keys.insert(tx, key);
        await this.audit.record(tx, actor, 'provider_key.create', 'success', target(key), {
          detail: { name: key.name, provider: key.provider, ...(key.baseUrl ? { baseUrl: key.baseUrl } : {}), ...(key.healthProbeModel ? { healthProbe: key.healthProbeModel } : {}), sealId: sealIdOf(key) },
        });
      }),
    );
    return toProviderKey(key);
  }

  async list(actor: Actor, filter: KeyFilter, page: Page): Promise<PageResult<ProviderKey>> {
    if (!can(actor, 'provider-keys:read')) throw new ForbiddenError('Listing keys needs the provider-keys:read right');
    if (actor.role === 'member') {
      if (filter.ownerId && filter.ownerId !== actor.userId) return { items: [], nextCursor: null };
      filter = { ...filter, ownerId: actor.userId };
    }
    const rows = await this.db.read((m) => this.keys.list(m, filter, page));
    return toPageResult(rows, page, toProviderKey);
  }

  async get(actor: Actor, id: string): Promise<ProviderKey> {
    const key = await this.db.read((m) => this.findVisibleTo(m, actor, id));
    if (!can(actor, 'provider-keys:read')) throw new ForbiddenError('Reading keys needs the provider-keys:read right');
    return toProviderKey(key);
  }

  async update(actor: Actor, id: string, input: UpdateKeyInput): Promise<ProviderKey> {
    if (input.expiresAt && input.expiresAt.getTime() <= Date.now()) throw invalid('expiresAt', 'must be in the future');
    try {
      const updated = await this.applyUpdate(actor, id, input);
      if (input.ownerId !== undefined || input.projectId !== undefined || input.baseUrl !== undefined) await this.db.scrub(); // re-sealed: the old bytes go
      return updated;
    } catch (err) {
      if (err instanceof IntegrityError) {
        // Moving a key whose stored bytes fail authentication: refused, and the failure is on the record.
        await this.db.transaction((tx) => this.audit.record(tx, actor, 'provider_key.update', 'error', { keyId: id }, { detail: { why: 'integrity_check_failed' } }));
      }
      throw err;
    }
  }

  private async applyUpdate(actor: Actor, id: string, input: UpdateKeyInput): Promise<ProviderKey> {
    return this.db.transaction(async (tx) => {
      const key = await this.findWritable(tx, actor, id);
      const patch: Partial<ProviderKeyEntity> = {};
      if (input.name !== undefined && input.name !== key.name) patch.name = input.name;
      if (input.remark !== undefined && (input.remark || null) !== key.remark) patch.remark = input.remark || null;
      if (input.status !== undefined && input.status !== key.status) patch.status = input.status;
      if (input.expiresAt !== undefined && iso(input.expiresAt) !== iso(key.expiresAt)) patch.expiresAt = input.expiresAt;
      if (input.healthProbe !== undefined && (input.healthProbe?.model ?? null) !== key.healthProbeModel) {
        assertProbeAllowed(key.provider, input.healthProbe);
        patch.healthProbeModel = input.healthProbe?.model ?? null;
      }
      if (input.ownerId !== undefined && input.ownerId !== key.ownerId) patch.ownerId = input.ownerId;
      // Handing a key to a new owner hands them its secret: through a token that is a reveal, so it needs that scope.
      if (patch.ownerId && actor.via === 'api_token' && !can(actor, 'provider-keys:reveal')) throw new ForbiddenError(TOKEN_OWNER_CHANGE);
      if (input.projectId !== undefined && input.projectId !== key.projectId) patch.projectId = input.projectId;
      if (input.baseUrl !== undefined && input.baseUrl !== key.baseUrl) patch.baseUrl = input.baseUrl;
      // Pointing the key at another host sends it there: through a token that is a reveal, so it needs that scope.
      if (patch.baseUrl !== undefined && actor.via === 'api_token' && !can(actor, 'provider-keys:reveal')) throw new ForbiddenError(TOKEN_BASE_URL_CHANGE);
      // Who holds someone else's key and where it is sent are theirs to decide: an admin changing either gives a reason,
      // as for a reveal (moving a key to oneself would otherwise be a reveal without one).
      if ((patch.baseUrl !== undefined || patch.ownerId) && key.ownerId !== actor.userId && !input.reason) {
        throw new ValidationError('A reason is required to change the owner or baseUrl of another user’s key', { details: [{ field: 'body.reason', message: 'required when changing the owner or baseUrl of another user’s key' }] });
      }
      const changed = Object.keys(patch).map((f) => (f === 'healthProbeModel' ? 'healthProbe' : f));
      // A new expiry gets its own notices; a key checked against another upstream or probe starts again from unknown.
      if (patch.expiresAt !== undefined) patch.expiryNoticeDays = null;
      if (patch.baseUrl !== undefined || patch.healthProbeModel !== undefined) Object.assign(patch, FRESH_HEALTH);
      if (patch.ownerId || patch.projectId || patch.baseUrl !== undefined) {
        const moved = { ...key, ...patch };
        if (patch.ownerId || patch.projectId) await this.assertBindable(tx, moved.ownerId, moved.projectId);
        // The secret's AAD names its owner, project and upstream: moving or re-pointing it re-seals it under a fresh data key.
        const plaintext = this.envelope.open(bindingOf(key), key);
        try {
          Object.assign(patch, this.envelope.seal(bindingOf(moved), plaintext));
        } finally {
          plaintext.fill(0);
        }
      }
      if (changed.length > 0) {
        patch.updatedAt = new Date();
        await this.keys.update(tx, id, patch);
      }
      const after = { ...key, ...patch };
      // A virtual key was made for this owner, project and upstream: when one of them changes it ends for good (any
      // baseUrl change, even on the same host: another path can be another service).
      const revokedVirtualKeys = patch.ownerId || patch.projectId || patch.baseUrl !== undefined ? await this.virtualKeys.revokeForKey(tx, id, patch.updatedAt ?? new Date()) : 0;
      await this.audit.record(tx, actor, 'provider_key.update', 'success', target(after), {
        ...(input.reason && (patch.baseUrl !== undefined || patch.ownerId) ? { reason: input.reason } : {}),
        detail: {
          changed,
          ...(patch.ownerId ? { fromOwnerId: key.ownerId } : {}),
          ...(patch.projectId ? { fromProjectId: key.projectId } : {}),
          ...(patch.status ? { status: patch.status } : {}),
          ...(patch.baseUrl !== undefined ? { fromBaseUrl: key.baseUrl, baseUrl: patch.baseUrl } : {}),
          ...(patch.healthProbeModel !== undefined ? { healthProbe: patch.healthProbeModel } : {}),
          ...(revokedVirtualKeys > 0 ? { revokedVirtualKeys } : {}),
          ...(patch.secretIv ? { sealId: sealIdOf(after) } : {}),
        },
      });
      return toProviderKey(after);
    });
  }

  async replaceSecret(actor: Actor, id: string, rawSecret: string): Promise<ProviderKey> {
    const secret = cleanSecret(rawSecret);
    const fingerprint = this.fingerprint(secret);
    const replaced = await this.withDuplicateCheck(fingerprint, () =>
      this.db.transaction(async (tx) => {
        const key = await this.findWritable(tx, actor, id);
        if (key.fingerprint !== fingerprint) await this.assertNotStored(tx, fingerprint);
        const sealed = this.sealText(bindingOf(key), secret);
        const patch: Partial<ProviderKeyEntity> = {
          hint: hintFor(key.provider as Provider, secret),
          fingerprint,
          updatedAt: new Date(),
          secretSetAt: new Date(),
          ...FRESH_HEALTH,
          ...sealed,
        };
        await this.keys.update(tx, id, patch);
        await this.audit.record(tx, actor, 'provider_key.rotate', 'success', target(key), { detail: { name: key.name, sealId: sealIdOf(sealed) } });
        return toProviderKey({ ...key, ...patch });
      }),
    );
    await this.db.scrub();
    return replaced;
  }

  /** Destroys the ciphertext and wrapped data key; the row stays as a `deleted` tombstone so audit rows resolve. */
  async delete(actor: Actor, id: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      const key = await this.findWritable(tx, actor, id);
      const at = new Date();
      const revokedVirtualKeys = await this.virtualKeys.revokeForKey(tx, id, at);
      await this.keys.update(tx, id, {
        status: 'deleted',
        updatedAt: at,
        fingerprint: null,
        kekVersion: null,
        wrappedDek: null,
        dekIv: null,
        dekTag: null,
        secretCiphertext: null,
        secretIv: null,
        secretTag: null,
      });
      await this.audit.record(tx, actor, 'provider_key.delete', 'success', target(key), { detail: { name: key.name, ...(revokedVirtualKeys > 0 ? { revokedVirtualKeys } : {}) } });
    });
    await this.db.scrub();
  }

  /**
   * The heart: one transaction reads the key, opens it and commits the audit row (allowed, refused, or `error` when
   * the stored bytes fail authentication). The plaintext is sent only after that commit; if the audit row cannot be
   * written, the opened bytes are zeroed and the caller gets the error, never the secret. Reveals that arrive
   * together share that transaction (see revealBatch).
   */
  async reveal(actor: Actor, id: string, reason: string | undefined): Promise<Revealed> {
    const allowance = spendAllowance(this.revealLimits, actor, 'provider-keys:reveal');
    const done = await this.reveals.load({ actor, id, reason, allowance });
    if (done.error) throw done.error;
    const k = done.key;
    this.notifier.publish(
      'provider_key.revealed',
      { keyId: k.id, name: k.name, provider: k.provider, projectId: k.projectId, ownerId: k.ownerId, actorId: actor.userId, actorUsername: actor.username, via: actor.via, why: k.ownerId === actor.userId ? 'owner' : 'admin_with_reason', reason: reason ?? null },
      done.at,
    );
    const secret = done.opened.toString('utf8');
    done.opened.fill(0);
    return { id: done.key.id, secret, hint: done.key.hint, revealedAt: done.at.toISOString() };
  }

  /**
   * Group commit for reveals: the reveals that arrived in one turn of the event loop are decided, opened and audited
   * in one transaction (the keys read and locked in one statement, every audit row in one, every counter in one),
   * instead of a transaction each. Each keeps its own decision and its own audit row, and hears nothing before the COMMIT. If the
   * transaction fails for any reason but an unreachable database, each reveal is run again alone, so one bad request
   * cannot fail the others.
   */
  private async revealBatch(reqs: readonly RevealRequest[]): Promise<Array<RevealDone | Error>> {
    try {
      return await this.revealTogether(reqs);
    } catch (err) {
      // A batch that kept losing races for its keys' rows (Galera: to other nodes) is split too: alone, each reveal
      // touches one key row, and its own retries are much likelier to win.
      if (reqs.length === 1 || (unreachable(err) && !isConflict(err))) throw err;
      return Promise.all(reqs.map((r) => this.revealTogether([r]).then(([done]) => done, (e: unknown) => (e instanceof Error ? e : new Error(String(e))))));
    }
  }

  private async revealTogether(reqs: readonly RevealRequest[]): Promise<RevealDone[]> {
    const allowances = await Promise.all(reqs.map((r) => r.allowance));
    const opened: Buffer[] = [];
    const zero = () => opened.splice(0).forEach((b) => b.fill(0));
    const ids = [...new Set(reqs.map((r) => r.id))].sort();
    try {
      return await this.db.transaction(async (tx) => {
        zero(); // a transaction the server aborted is run again, and decides again
        const now = new Date();
        const keys = await this.keys.findByIds(tx, ids, true);
        const rows: AuditEventEntity[] = [];
        const counts = new Map<string, number>();
        const answers = reqs.map((r, i): RevealDone => {
          const refuse = (outcome: AuditOutcome, error: AppError, where: AuditTarget, why?: string) => {
            rows.push(this.audit.build(r.actor, 'provider_key.reveal', outcome, where, { reason: r.reason, ...(why ? { detail: { why } } : {}) }));
            return { error };
          };
          const limited = allowances[i];
          if (limited) {
            const { outcome, why } = auditOfRefusal(limited);
            return refuse(outcome, limited, { keyId: r.id }, why);
          }
          const key = keys.get(r.id);
          if (!key || key.status === 'deleted') return refuse('denied', new NotFoundError('No such key'), key ? target(key) : { keyId: r.id }, key ? 'key_deleted' : 'not_found');
          const decision = decideReveal(r.actor, key, r.reason, now);
          if (!decision.allowed) return refuse(decision.outcome, decision.error, target(key), decision.why);
          let secret: Buffer;
          try {
            // A format-1 sealing (not bound to provider and baseUrl) can still be revealed: nothing is sent anywhere.
            secret = this.envelope.open(bindingOf(key), key, { legacy: true });
          } catch (err) {
            // Damaged or moved bytes: the trail says so (and only so); no success row, no reveal counted.
            return refuse('error', err instanceof IntegrityError ? err : new IntegrityError(undefined, err), target(key), 'integrity_check_failed');
          }
          opened.push(secret);
          // The sealing opened: verify tells a reveal of an older copy, put back in the database, from the current one.
          rows.push(this.audit.build(r.actor, 'provider_key.reveal', 'success', target(key), { reason: r.reason, detail: { why: decision.why, sealId: sealIdOf(key) } }));
          counts.set(key.id, (counts.get(key.id) ?? 0) + 1);
          return { key, opened: secret, at: now };
        });
        await this.audit.recordBuilt(tx, rows);
        if (counts.size > 0) await this.keys.addReveals(tx, counts, now);
        return answers;
      });
    } catch (err) {
      zero();
      // No audit row, no reveal: the caller gets 503, never the secret.
      throw err instanceof AppError ? err : new UnavailableError('The audit trail cannot be written right now', err);
    }
  }

  /**
   * The key's audit trail, for its owner, admins and auditors. A member sees where their own requests came from, but
   * not the addresses and browsers of anyone else in it (a previous owner, an admin).
   */
  async auditTrail(actor: Actor, id: string, page: Page): Promise<PageResult<AuditEvent>> {
    await this.db.read((m) => this.findVisibleTo(m, actor, id));
    if (!can(actor, 'provider-keys:read') && !can(actor, 'audit:read')) throw new ForbiddenError('Reading a key’s trail needs the provider-keys:read or audit:read right');
    const trail = await this.audit.listForKey(id, page);
    if (actor.role !== 'member') return trail;
    return { ...trail, items: trail.items.map((e) => (e.actorId === actor.userId ? e : { ...e, ip: null, userAgent: null })) };
  }

  private sealText(where: SecretBinding, secret: string) {
    const plaintext = Buffer.from(secret, 'utf8');
    try {
      return this.envelope.seal(where, plaintext);
    } finally {
      plaintext.fill(0);
    }
  }

  private fingerprint(secret: string): string {
    return crypto.createHmac('sha256', this.fingerprintKey).update(secret, 'utf8').digest('hex');
  }

  /** 404 for keys the actor may not see: members see only their own. */
  private async findVisibleTo(m: EntityManager, actor: Actor, id: string, forUpdate = false): Promise<ProviderKeyEntity> {
    const key = await this.keys.findById(m, id, forUpdate);
    if (!key || (actor.role === 'member' && key.ownerId !== actor.userId)) throw new NotFoundError('No such key');
    return key;
  }

  private async findWritable(tx: EntityManager, actor: Actor, id: string): Promise<ProviderKeyEntity> {
    const key = await this.findVisibleTo(tx, actor, id, true);
    if (!can(actor, 'provider-keys:write')) throw new ForbiddenError('Changing keys needs the provider-keys:write right');
    if (key.status === 'deleted') throw new ConflictError('This key is deleted');
    return key;
  }

  private async assertBindable(tx: EntityManager, ownerId: string, projectId: string): Promise<void> {
    const owner = await this.users.findById(tx, ownerId);
    if (!owner) throw invalid('ownerId', 'no such user');
    if (owner.status !== 'active') throw invalid('ownerId', 'the owner is disabled');
    if (owner.role === 'auditor') throw invalid('ownerId', 'auditors cannot own keys (they never see secrets)');
    if (!(await this.projects.findById(tx, projectId))) throw invalid('projectId', 'no such project');
  }

  private async assertNotStored(tx: EntityManager, fingerprint: string): Promise<void> {
    const existing = await this.keys.findByFingerprint(tx, fingerprint);
    if (existing) throw duplicate(existing.id);
  }

  /** A concurrent paste of the same secret loses at the unique index; it still gets the 409 naming the winner. */
  private async withDuplicateCheck<T>(fingerprint: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      const existing = await this.db.read((m) => this.keys.findByFingerprint(m, fingerprint));
      if (existing) throw duplicate(existing.id);
      throw err;
    }
  }
}

/** The database could not be reached at all (a retry alone would fail the same way), as opposed to refusing one statement. */
function unreachable(err: unknown): boolean {
  return isUnavailable(err) || (err instanceof Error && isUnavailable(err.cause));
}

function invalid(field: string, message: string): ValidationError {
  return new ValidationError(`${field}: ${message}`, { details: [{ field: `body.${field}`, message }] });
}

function duplicate(existingId: string): ConflictError {
  return new ConflictError(`This secret is already stored as key ${existingId}`, { details: [{ existingKeyId: existingId }] });
}
