import type { EntityManager } from 'typeorm';
import type { Database } from '../../db/database';
import { AppError, ConflictError, ForbiddenError, NotFoundError, ValidationError } from '../../errors';
import { newId } from '../../ids';
import { isoTime } from '../../iso-time';
import { newVirtualKey } from '../../crypto/tokens';
import { Page, PageResult, toPageResult } from '../../pagination';
import { Actor, can } from '../auth/actor';
import type { AuditService } from '../audit/audit.service';
import type { ProviderKeyEntity } from '../provider-keys/provider-key.entity';
import type { ProviderKeysRepository } from '../provider-keys/provider-keys.repository';
import { decideReveal, upstreamOrigin } from '../provider-keys/provider-keys.service';
import { VirtualKeyEntity } from './virtual-key.entity';
import { parseModels, VirtualKeysRepository } from './virtual-keys.repository';
import { DAY_MS, UsageBucket, UsageRecorder, UsageRepository } from './usage';

export interface VirtualKey {
  id: string;
  keyId: string;
  userId: string;
  name: string;
  prefix: string;
  models: string[] | null;
  dailyRequestLimit: number | null;
  dailyTokenLimit: number | null;
  createdAt: string;
  expiresAt: string;
  revokedAt: string | null;
  lastUsedAt: string | null;
  requestCount: number;
}

export interface IssuedVirtualKey extends VirtualKey {
  /** Shown this once; only its SHA-256 is stored. */
  virtualKey: string;
}

export interface CreateVirtualKeyInput {
  name: string;
  expiresInDays?: number;
  models?: string[];
  dailyRequestLimit?: number;
  dailyTokenLimit?: number;
  reason?: string;
}

export interface UsageQuery {
  from?: Date;
  to?: Date;
  granularity?: 'hour' | 'day';
}

export const DEFAULT_VIRTUAL_KEY_DAYS = 90;
const HOUR_MS = 3_600_000;
export const MAX_USAGE_BUCKETS = 1000;
const iso = (d: Date | null) => (d ? isoTime(d) : null);

export function toVirtualKey(v: VirtualKeyEntity): VirtualKey {
  return {
    id: v.id,
    keyId: v.keyId,
    userId: v.userId,
    name: v.name,
    prefix: v.prefix,
    models: parseModels(v.models),
    dailyRequestLimit: v.dailyRequestLimit,
    dailyTokenLimit: v.dailyTokenLimit,
    createdAt: isoTime(v.createdAt),
    expiresAt: isoTime(v.expiresAt),
    revokedAt: iso(v.revokedAt),
    lastUsedAt: iso(v.lastUsedAt),
    requestCount: v.requestCount,
  };
}

const target = (k: Pick<ProviderKeyEntity, 'id' | 'ownerId' | 'projectId'>) => ({ keyId: k.id, ownerId: k.ownerId, projectId: k.projectId });

/**
 * The management side of the gateway. Making a virtual key is a reveal in all but the plaintext: the same people may
 * do it (the owner, or an admin giving a reason), refusals are audited the same way, and the audit row commits with
 * the virtual key.
 */
export class VirtualKeysService {
  constructor(
    private readonly db: Database,
    private readonly virtualKeys: VirtualKeysRepository,
    private readonly keys: Pick<ProviderKeysRepository, 'findById'>,
    private readonly audit: AuditService,
    private readonly usage: UsageRecorder,
    private readonly usageRows: UsageRepository,
  ) {}

  async create(actor: Actor, keyId: string, input: CreateVirtualKeyInput): Promise<IssuedVirtualKey> {
    const made = newVirtualKey();
    const done = await this.db.transaction(async (tx): Promise<{ error: AppError } | { row: VirtualKeyEntity }> => {
      const refuse = async (error: AppError, why: string, key?: ProviderKeyEntity) => {
        await this.audit.record(tx, actor, 'virtual_key.create', 'denied', key ? target(key) : { keyId }, { reason: input.reason, detail: { why } });
        return { error };
      };
      const now = new Date();
      // Locked until commit (MySQL): a concurrent move of the key waits, then ends this virtual key with the others.
      const key = await this.keys.findById(tx, keyId, true);
      if (!key || key.status === 'deleted') return refuse(new NotFoundError('No such key'), key ? 'key_deleted' : 'not_found', key ?? undefined);
      const decision = decideReveal(actor, key, input.reason, now);
      if (!decision.allowed) return refuse(decision.error, decision.why, key);
      const upstream = upstreamOrigin(key);
      if (!upstream) return refuse(new ConflictError('This key has no baseUrl; an admin must set one before it can be used through the gateway'), 'no_upstream', key);
      const row = Object.assign(new VirtualKeyEntity(), {
        id: newId(),
        keyId: key.id,
        userId: actor.userId,
        name: input.name,
        prefix: made.prefix,
        tokenHash: made.hash,
        models: input.models ? JSON.stringify([...new Set(input.models)]) : null,
        dailyRequestLimit: input.dailyRequestLimit ?? null,
        dailyTokenLimit: input.dailyTokenLimit ?? null,
        boundOwnerId: key.ownerId,
        boundProjectId: key.projectId,
        boundUpstream: upstream,
        createdAt: now,
        expiresAt: new Date(now.getTime() + (input.expiresInDays ?? DEFAULT_VIRTUAL_KEY_DAYS) * DAY_MS),
        revokedAt: null,
        lastUsedAt: null,
        requestCount: 0,
      });
      await this.virtualKeys.insert(tx, row);
      await this.audit.record(tx, actor, 'virtual_key.create', 'success', target(key), {
        reason: input.reason,
        detail: {
          why: decision.why,
          virtualKeyId: row.id,
          name: row.name,
          models: parseModels(row.models),
          dailyRequestLimit: row.dailyRequestLimit,
          dailyTokenLimit: row.dailyTokenLimit,
          expiresAt: row.expiresAt.toISOString(),
        },
      });
      return { row };
    });
    if ('error' in done) throw done.error;
    return { ...toVirtualKey(done.row), virtualKey: made.token };
  }

  async list(actor: Actor, keyId: string, page: Page): Promise<PageResult<VirtualKey>> {
    const key = await this.db.read((m) => this.keys.findById(m, keyId));
    this.assertManages(actor, key);
    await this.usage.flush(); // this instance's calls are counted in requestCount and lastUsedAt
    const rows = await this.db.read((m) => this.virtualKeys.listForKey(m, keyId, page));
    return toPageResult(rows, page, toVirtualKey);
  }

  async get(actor: Actor, id: string): Promise<VirtualKey> {
    await this.usage.flush();
    return toVirtualKey(await this.db.read((m) => this.findManaged(m, actor, id)));
  }

  /** Revoked for good: the row stays with revokedAt set, and no route brings it back. */
  async revoke(actor: Actor, id: string): Promise<void> {
    await this.db.transaction(async (tx) => {
      const vk = await this.findManaged(tx, actor, id);
      if (vk.revokedAt) return;
      const key = await this.keys.findById(tx, vk.keyId);
      await this.virtualKeys.revoke(tx, id, new Date());
      await this.audit.record(tx, actor, 'virtual_key.revoke', 'success', key ? target(key) : { keyId: vk.keyId }, { detail: { virtualKeyId: id, userId: vk.userId, name: vk.name } });
    });
  }

  /** A provider key's gateway calls per hour or UTC day: its owner, admins and auditors (tokens: provider-keys:read). */
  async keyUsage(actor: Actor, keyId: string, q: UsageQuery): Promise<{ items: UsageBucket[] }> {
    const key = await this.db.read((m) => this.keys.findById(m, keyId));
    if (!key || (actor.role === 'member' && key.ownerId !== actor.userId)) throw new NotFoundError('No such key');
    if (!can(actor, 'provider-keys:read')) throw new ForbiddenError('Reading a key’s usage needs the provider-keys:read right');
    const bucket = q.granularity === 'day' ? DAY_MS : HOUR_MS;
    const to = Math.ceil((q.to ?? new Date()).getTime() / bucket) * bucket;
    const from = Math.floor((q.from?.getTime() ?? to - (bucket === DAY_MS ? 30 : 1) * DAY_MS) / bucket) * bucket;
    if (from >= to) throw invalid('query.from', 'must be before to');
    if ((to - from) / bucket > MAX_USAGE_BUCKETS) throw invalid('query.from', `at most ${MAX_USAGE_BUCKETS} ${q.granularity ?? 'hour'}s at once`);
    await this.usage.flush();
    const found = await this.db.read((m) => this.usageRows.buckets(m, keyId, from, to, bucket));
    const items: UsageBucket[] = [];
    for (let start = from; start < to; start += bucket) {
      items.push({ start: new Date(start).toISOString(), ...(found.get(start) ?? { requests: 0, errors: 0, promptTokens: 0, completionTokens: 0 }) });
    }
    return { items };
  }

  /** Rights to see and revoke a key's virtual keys are those of using it: never auditors, and tokens need reveal. */
  private assertManages(actor: Actor, key: ProviderKeyEntity | null): asserts key is ProviderKeyEntity {
    if (!key || (actor.role === 'member' && key.ownerId !== actor.userId)) throw new NotFoundError('No such key');
    if (actor.role === 'auditor') throw new ForbiddenError('Auditors never use keys');
    if (!can(actor, 'provider-keys:reveal')) throw new ForbiddenError('This credential lacks the provider-keys:reveal scope');
  }

  /** The virtual key when the actor made it, owns its provider key, or is an admin; 404 otherwise. */
  private async findManaged(m: EntityManager, actor: Actor, id: string): Promise<VirtualKeyEntity> {
    const vk = await this.virtualKeys.findById(m, id);
    if (!vk) throw new NotFoundError('No such virtual key');
    const key = await this.keys.findById(m, vk.keyId);
    if (actor.role === 'member' && vk.userId !== actor.userId && key?.ownerId !== actor.userId) throw new NotFoundError('No such virtual key');
    if (actor.role === 'auditor') throw new ForbiddenError('Auditors never use keys');
    if (!can(actor, 'provider-keys:reveal')) throw new ForbiddenError('This credential lacks the provider-keys:reveal scope');
    return vk;
  }
}

function invalid(field: string, message: string): ValidationError {
  return new ValidationError(`${field}: ${message}`, { details: [{ field, message }] });
}
