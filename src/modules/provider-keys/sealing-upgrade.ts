import { In } from 'typeorm';
import type { Database } from '../../db/database';
import { execute } from '../../db/statements';
import { LEGACY_FORMAT_VERSION, sealIdOf, type Envelope } from '../../crypto/envelope';
import { IntegrityError } from '../../errors';
import type { Logger } from '../../logger';
import { cliActor } from '../auth/actor';
import type { AuditService } from '../audit/audit.service';
import { AuditEventEntity, detailOf } from '../audit/audit-event.entity';
import { sealNamedBy } from '../audit/key-seals';
import { bindingOf, ProviderKeyEntity } from './provider-key.entity';
import type { ProviderKeysRepository } from './provider-keys.repository';

/** The audit action recording the one-time upgrade of format-1 sealings; its presence (MAC holding) is the flag. */
export const SEALINGS_UPGRADED = 'vault.sealings_upgraded';
/** At most this many refused keys are named in the event (the counts are always complete). */
const NAMED_MAX = 100;

export interface SealingUpgrade {
  upgraded: number;
  refused: number;
  refusedIds: Array<{ id: string; why: string }>;
}


/**
 * Why the audit trail does not back this format-1 row as it stands (undefined when it does): its genuine
 * (MAC-holding) rows must show the key created, with the provider the row has, its baseUrl as last recorded (create,
 * or an update that changed it), and, where a sealing was recorded, the very sealing the row holds. A row re-pointed
 * in the database, or whose sealed columns were put back from an older copy, is not re-sealed to where it points.
 */
function unbacked(key: ProviderKeyEntity, trail: AuditEventEntity[]): string | undefined {
  // Upgraded already (the flag row deleted since?): a format-1 sealing now is a copy put back, never the current one.
  if (trail.some((e) => e.action === 'provider_key.reseal')) return 'the audit trail says the key was already re-sealed';
  const created = trail.find((e) => e.action === 'provider_key.create');
  if (!created) return 'no creation in the audit trail';
  const made = detailOf(created);
  if (typeof made.provider === 'string' && made.provider !== key.provider) return 'provider differs from the audit trail';
  let baseUrl: unknown = made.baseUrl ?? null;
  let sealId: string | null | undefined;
  for (const e of trail) {
    const d = detailOf(e);
    if (e.action === 'provider_key.update' && 'baseUrl' in d) baseUrl = d.baseUrl;
    const named = sealNamedBy(e);
    if (named !== undefined) sealId = named;
  }
  if (baseUrl !== key.baseUrl) return 'baseUrl differs from the audit trail';
  if (sealId === null) return 'the audit trail says the key was deleted';
  if (sealId !== undefined && sealId !== sealIdOf(key)) return 'the sealed columns are not the sealing the audit trail last recorded';
  return undefined;
}

/**
 * Re-seals, once, every format-1 sealing (bound to key, owner and project only) as format 2, which also binds the key's
 * provider and baseUrl, so that the gateway and health checks, which open format 2 only, can use it; then records
 * `vault.sealings_upgraded` with the counts. Only a row the audit trail backs is re-sealed (see unbacked): a row a
 * database writer re-pointed, or put back from an older copy, stays format 1 (revealed, never sent anywhere), named
 * in the event and in a warning. While the event is in the trail nothing is upgraded this way again, so a format-1
 * sealing put back later is never re-bound to anything. Each re-sealed key gets a `provider_key.reseal` row naming
 * the sealing it started from (verify follows it). Several processes starting at once take turns (the first statement
 * write-locks the audit key's row on MySQL; SQLite write transactions are IMMEDIATE) and the second does nothing.
 */
export async function upgradeLegacySealings(deps: { db: Database; audit: AuditService; envelope: Envelope; keys: Pick<ProviderKeysRepository, 'findById' | 'update'>; logger: Logger }): Promise<SealingUpgrade | undefined> {
  const { db, audit, envelope, keys, logger } = deps;
  const recorded = async (m: Parameters<Parameters<Database['read']>[0]>[0]) =>
    (await m.getRepository(AuditEventEntity).findBy({ action: SEALINGS_UPGRADED })).some((e) => audit.chain.holds(e));
  if (await db.read(recorded)) return undefined; // every start but the first
  const actor = { ...cliActor(null), username: 'upgrade' };
  const result = await db.transaction(async (tx) => {
    await execute(tx, "UPDATE system_keys SET name = name WHERE name = 'audit_chain'", []);
    if (await recorded(tx)) return undefined;
    const done: SealingUpgrade = { upgraded: 0, refused: 0, refusedIds: [] };
    const legacy = await tx.getRepository(ProviderKeyEntity).find({ select: { id: true }, where: { formatVersion: LEGACY_FORMAT_VERSION }, order: { id: 'ASC' } });
    for (const { id } of legacy) {
      // Read again under its row lock: what is re-sealed is the row as it stands, and nothing writes it meanwhile.
      const key = await keys.findById(tx, id, true);
      if (!key || key.formatVersion !== LEGACY_FORMAT_VERSION || !key.secretIv || key.status === 'deleted') continue;
      const trail = (
        await tx.getRepository(AuditEventEntity).find({
          where: { keyId: key.id, outcome: 'success', action: In(['provider_key.create', 'provider_key.update', 'provider_key.rotate', 'provider_key.delete', 'provider_key.reseal']) },
        })
      )
        .filter((e) => audit.chain.holds(e))
        // Chain order (sealed rows by seq, then the unsealed newest by id): ids come from each instance's clock.
        .sort((a, b) => (a.seq ?? Infinity) - (b.seq ?? Infinity) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
      let why = unbacked(key, trail);
      let plaintext: Buffer | undefined;
      if (!why) {
        try {
          plaintext = envelope.open(bindingOf(key), key, { legacy: true });
        } catch (err) {
          if (!(err instanceof IntegrityError)) throw err;
          why = 'the sealing does not open';
        }
      }
      if (why || !plaintext) {
        done.refused++;
        if (done.refusedIds.length < NAMED_MAX) done.refusedIds.push({ id: key.id, why: why ?? 'the sealing does not open' });
        continue;
      }
      try {
        const sealed = envelope.seal(bindingOf(key), plaintext);
        await keys.update(tx, key.id, sealed);
        await audit.record(tx, actor, 'provider_key.reseal', 'success', { keyId: key.id, ownerId: key.ownerId, projectId: key.projectId }, {
          detail: { fromFormat: LEGACY_FORMAT_VERSION, toFormat: sealed.formatVersion, provider: key.provider, baseUrl: key.baseUrl, fromSealId: sealIdOf(key), sealId: sealIdOf(sealed) },
        });
        done.upgraded++;
      } finally {
        plaintext.fill(0);
      }
    }
    await audit.record(tx, actor, SEALINGS_UPGRADED, 'success', {}, { detail: { ...done } });
    return done;
  });
  if (!result) return undefined;
  if (result.upgraded > 0) await db.scrub(); // the format-1 bytes go
  if (result.refused > 0) {
    logger.warn(`${result.refused} provider key(s) sealed as format 1 are not backed by the audit trail and stay format 1 (revealed, never sent upstream): see the ${SEALINGS_UPGRADED} audit event`, {
      event: 'provider_keys.reseal_refused',
      keyIds: result.refusedIds.map((r) => r.id),
    });
  }
  if (result.upgraded > 0) logger.warn(`re-sealed ${result.upgraded} provider key(s) from format 1 to format 2 (provider and baseUrl bound); each is audited as provider_key.reseal`, { event: 'provider_keys.resealed', count: result.upgraded });
  return result;
}
