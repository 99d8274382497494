import { In, IsNull, type EntityManager } from 'typeorm';
import type { Database } from '../../db/database';
import { execute } from '../../db/statements';
import type { Logger } from '../../logger';
import { cliActor } from '../auth/actor';
import { ApiTokenEntity } from '../api-tokens/api-token.entity';
import type { ApiTokensRepository } from '../api-tokens/api-tokens.repository';
import { VirtualKeyEntity } from '../gateway/virtual-key.entity';
import type { VirtualKeysRepository } from '../gateway/virtual-keys.repository';
import type { AuditService } from './audit.service';
import { AuditEventEntity, detailOf } from './audit-event.entity';

/** The audit action that records the one-time sealing of credential rows from before row MACs; its presence is the flag. */
export const CREDENTIALS_SEALED = 'vault.credentials_sealed';
/** At most this many refused rows are named in the event (the counts are always complete). */
const NAMED_MAX = 100;

interface Evidence {
  /** `kind:id` → the genuine creation event and its detail. */
  created: Map<string, { event: AuditEventEntity; detail: Record<string, unknown> }>;
  /** `kind:id` → the latest expiry the trail recorded (creation or renewal), in ms. */
  expiresBy: Map<string, number>;
  /** `kind:id` of every credential the trail says was revoked. */
  revoked: Set<string>;
}

export interface SealedCounts {
  sealed: number;
  refused: number;
  refusedIds: Array<{ id: string; why: string }>;
}

export interface CredentialSealResult {
  virtualKeys: SealedCounts;
  apiTokens: SealedCounts;
}

const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
const msOf = (v: unknown) => (typeof v === 'string' ? Date.parse(v) : NaN);

/**
 * Seals, once, the virtual-key and API-token rows written before row MACs existed, then records
 * `vault.credentials_sealed` with the counts. The audit trail is MACed and hash-chained, so that event cannot be forged,
 * and deleting it fails `verify`; while it is there (MAC holding) nothing is ever sealed this way again, and a row
 * without a MAC is refused for good.
 *
 * A row is sealed only if the trail backs it: a genuine creation event names its id with the same user, provider key,
 * project, scopes or models and budgets, no later expiry than the trail recorded, and no recorded revocation the row
 * lost. A row planted in the database before the upgrade has no such event and stays unsealed (refused); its id and
 * why are named in the event and in a warning. What the trail cannot tell is the secret's hash (a regeneration is
 * audited without it): a writer who replaced the hash of an existing row before the upgrade is not caught here.
 *
 * Runs inside buildContainer, before anything serves; several processes starting on one database at once take turns
 * (the first statement write-locks the audit key's row on MySQL, and SQLite's write transactions are IMMEDIATE), and
 * the second finds the event and does nothing.
 */
export async function sealLegacyCredentials(
  db: Database,
  audit: AuditService,
  repos: { virtualKeys: Pick<VirtualKeysRepository, 'macOf'>; apiTokens: Pick<ApiTokensRepository, 'macOf'> },
  logger: Logger,
): Promise<CredentialSealResult | undefined> {
  const recorded = async (m: EntityManager) => (await m.getRepository(AuditEventEntity).findBy({ action: CREDENTIALS_SEALED })).some((e) => audit.chain.holds(e));
  if (await db.read(recorded)) return undefined; // every start but the first
  const result = await db.transaction(async (tx) => {
    await execute(tx, "UPDATE system_keys SET name = name WHERE name = 'audit_chain'", []);
    if (await recorded(tx)) return undefined;
    const vks = await tx.getRepository(VirtualKeyEntity).findBy({ rowMac: IsNull() });
    const tokens = await tx.getRepository(ApiTokenEntity).findBy({ rowMac: IsNull() });
    const evidence = vks.length + tokens.length > 0 ? await evidenceIn(tx, audit) : undefined;
    const done: CredentialSealResult = { virtualKeys: counts(), apiTokens: counts() };
    for (const v of vks) {
      const why = virtualKeyUnbacked(v, evidence!);
      if (why) note(done.virtualKeys, v.id, why);
      else if ((await execute(tx, 'UPDATE virtual_keys SET row_mac = ? WHERE id = ? AND row_mac IS NULL', [repos.virtualKeys.macOf(v), v.id])) !== 0) done.virtualKeys.sealed++;
    }
    for (const t of tokens) {
      const why = apiTokenUnbacked(t, evidence!);
      if (why) note(done.apiTokens, t.id, why);
      else if ((await execute(tx, 'UPDATE api_tokens SET row_mac = ? WHERE id = ? AND row_mac IS NULL', [repos.apiTokens.macOf(t), t.id])) !== 0) done.apiTokens.sealed++;
    }
    await audit.record(tx, { ...cliActor(null), username: 'credential-seal' }, CREDENTIALS_SEALED, 'success', {}, { detail: { ...done } });
    return done;
  });
  if (!result) return undefined;
  const refused = result.virtualKeys.refused + result.apiTokens.refused;
  const counts_ = { virtualKeys: result.virtualKeys.sealed, apiTokens: result.apiTokens.sealed };
  if (refused > 0) {
    logger.warn(`${refused} credential row(s) without a MAC are not backed by the audit trail and stay refused (planted in the database, or changed there): see the ${CREDENTIALS_SEALED} audit event`, {
      event: 'vault.credentials_refused',
      virtualKeys: result.virtualKeys.refusedIds.map((r) => r.id),
      apiTokens: result.apiTokens.refusedIds.map((r) => r.id),
    });
  }
  logger.info('existing credential rows sealed (once, at the first start with row MACs)', { event: CREDENTIALS_SEALED, sealed: counts_, refused });
  return result;
}

const counts = (): SealedCounts => ({ sealed: 0, refused: 0, refusedIds: [] });

function note(c: SealedCounts, id: string, why: string): void {
  c.refused++;
  if (c.refusedIds.length < NAMED_MAX) c.refusedIds.push({ id, why });
}

/** The genuine (MAC-holding) successful creations, renewals and revocations of credentials in the trail. */
async function evidenceIn(tx: EntityManager, audit: AuditService): Promise<Evidence> {
  const rows = await tx.getRepository(AuditEventEntity).find({
    where: { action: In(['virtual_key.create', 'virtual_key.revoke', 'api_token.create', 'api_token.renew', 'api_token.revoke']), outcome: 'success' },
    order: { at: 'ASC' },
  });
  const ev: Evidence = { created: new Map(), expiresBy: new Map(), revoked: new Set() };
  for (const e of rows) {
    if (!audit.chain.holds(e)) continue;
    const detail = detailOf(e);
    const vk = str(detail.virtualKeyId);
    const tok = str(detail.tokenId);
    const id = e.action.startsWith('virtual_key.') ? (vk ? `vk:${vk}` : undefined) : tok ? `tok:${tok}` : undefined;
    if (!id) continue;
    if (e.action.endsWith('.revoke')) ev.revoked.add(id);
    else {
      if (e.action.endsWith('.create') && !ev.created.has(id)) ev.created.set(id, { event: e, detail });
      const until = msOf(detail.expiresAt);
      if (Number.isFinite(until)) ev.expiresBy.set(id, Math.max(until, ev.expiresBy.get(id) ?? -Infinity));
    }
  }
  return ev;
}

/** Why the trail does not back this virtual key row as it stands; undefined when it does. */
function virtualKeyUnbacked(v: VirtualKeyEntity, ev: Evidence): string | undefined {
  const id = `vk:${v.id}`;
  const made = ev.created.get(id);
  if (!made) return 'no virtual_key.create event names it';
  const { event: e, detail: d } = made;
  if (e.actorId !== v.userId) return 'its user is not the one who made it';
  if (e.keyId !== v.keyId || e.ownerId !== v.boundOwnerId || e.projectId !== v.boundProjectId) return 'its provider key, owner or project differs from its creation';
  if (JSON.stringify(d.models ?? null) !== (v.models ?? 'null')) return 'its models differ from its creation';
  if ((d.dailyRequestLimit ?? null) !== v.dailyRequestLimit || (d.dailyTokenLimit ?? null) !== v.dailyTokenLimit) return 'its budgets differ from its creation';
  if (!(v.expiresAt.getTime() <= (ev.expiresBy.get(id) ?? -Infinity))) return 'it expires later than its creation said';
  if (ev.revoked.has(id) && !v.revokedAt) return 'the trail revoked it';
  return undefined;
}

/** Why the trail does not back this API token row as it stands; undefined when it does. */
function apiTokenUnbacked(t: ApiTokenEntity, ev: Evidence): string | undefined {
  const id = `tok:${t.id}`;
  const made = ev.created.get(id);
  if (!made) return 'no api_token.create event names it';
  const d = made.detail;
  if (d.userId !== t.userId) return 'its user differs from its creation';
  if (!Array.isArray(d.scopes) || d.scopes.join(' ') !== t.scopes) return 'its scopes differ from its creation';
  if (!(t.expiresAt.getTime() <= (ev.expiresBy.get(id) ?? -Infinity))) return 'it expires later than its creation or last renewal said';
  if (ev.revoked.has(id) && !t.revokedAt) return 'the trail revoked it';
  return undefined;
}
