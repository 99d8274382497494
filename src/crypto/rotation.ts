import type { EntityManager } from 'typeorm';
import type { Database } from '../db/database';
import type { Actor } from '../modules/auth/actor';
import type { AuditService } from '../modules/audit/audit.service';
import { ProviderKeyEntity } from '../modules/provider-keys/provider-key.entity';
import type { Envelope } from './envelope';
import type { Keyring } from './keyring';
import { SystemKeyEntity } from './keyring.entities';

export interface RotationProgress {
  done: number;
  total: number;
}

export interface RotationResult {
  toVersion: number;
  providerKeys: number;
  systemKeys: number;
  /** Rows that moved on their own meanwhile (re-sealed by a concurrent edit): nothing to do for them. */
  skipped: number;
  seconds: number;
}

type DekRow = Pick<ProviderKeyEntity, 'id' | 'kekVersion' | 'wrappedDek' | 'dekIv' | 'dekTag'>;

/**
 * Rewraps every data key (and the system keys) still under an older master key version to the active one.
 * Online and resumable: each batch is its own short transaction and each row is rewritten atomically, only if it
 * is still under the version it was read with, so a row is always readable by the old or the new version and a
 * killed run simply continues where it stopped. Secrets are not re-encrypted; only their data keys are.
 */
export class KeyringRotation {
  constructor(
    private readonly db: Database,
    private readonly keyring: Keyring,
    private readonly envelope: Envelope,
    private readonly audit: AuditService,
  ) {}

  async pending(): Promise<number> {
    const active = this.keyring.activeVersion;
    return this.db.read(async (m) => {
      const pk = await m.createQueryBuilder(ProviderKeyEntity, 'k').where('k.kek_version IS NOT NULL AND k.kek_version <> :active', { active }).getCount();
      const sk = await m.createQueryBuilder(SystemKeyEntity, 's').where('s.kek_version <> :active', { active }).getCount();
      return pk + sk;
    });
  }

  async run(actor: Actor, opts: { batchSize?: number; onProgress?: (p: RotationProgress) => void } = {}): Promise<RotationResult> {
    const started = Date.now();
    const toVersion = this.keyring.activeVersion;
    const batchSize = opts.batchSize ?? 1000;
    const total = await this.pending();
    const result: RotationResult = { toVersion, providerKeys: 0, systemKeys: 0, skipped: 0, seconds: 0 };
    const report = () => opts.onProgress?.({ done: result.providerKeys + result.systemKeys + result.skipped, total });
    try {
      result.systemKeys = await this.db.transaction((tx) => this.rotateSystemKeys(tx, toVersion));
      report();
      for (let after = ''; ; ) {
        const batch = await this.db.transaction(async (tx) => {
          const rows = await this.staleBatch(tx, toVersion, after, batchSize);
          let moved = 0;
          for (const row of rows) moved += await this.rewrapRow(tx, row, toVersion);
          return { rows, moved };
        });
        result.providerKeys += batch.moved;
        result.skipped += batch.rows.length - batch.moved;
        report();
        if (batch.rows.length < batchSize) break;
        after = batch.rows[batch.rows.length - 1].id;
      }
      result.seconds = (Date.now() - started) / 1000;
      await this.db.transaction((tx) => this.audit.record(tx, actor, 'keyring.rotate', 'success', {}, { detail: { ...result } }));
      return result;
    } catch (err) {
      await this.db
        .transaction((tx) => this.audit.record(tx, actor, 'keyring.rotate', 'error', {}, { detail: { ...result, toVersion } }))
        .catch(() => undefined);
      throw err;
    }
  }

  private staleBatch(tx: EntityManager, active: number, after: string, limit: number): Promise<DekRow[]> {
    const qb = tx
      .createQueryBuilder(ProviderKeyEntity, 'k')
      .select(['k.id', 'k.kekVersion', 'k.wrappedDek', 'k.dekIv', 'k.dekTag'])
      .where('k.kek_version IS NOT NULL AND k.kek_version <> :active AND k.id > :after', { active, after })
      .orderBy('k.id', 'ASC')
      .limit(limit);
    if (tx.connection.options.type === 'mysql') qb.setLock('pessimistic_write');
    return qb.getMany();
  }

  private async rewrapRow(tx: EntityManager, row: DekRow, toVersion: number): Promise<number> {
    const w = this.envelope.rewrap(row.id, { ...row, formatVersion: 1, secretCiphertext: null, secretIv: null, secretTag: null }, toVersion);
    const res = await tx
      .createQueryBuilder()
      .update(ProviderKeyEntity)
      .set({ kekVersion: w.kekVersion, wrappedDek: w.wrappedDek, dekIv: w.dekIv, dekTag: w.dekTag })
      .where('id = :id AND kek_version = :from', { id: row.id, from: row.kekVersion })
      .execute();
    return res.affected ?? 1;
  }

  private async rotateSystemKeys(tx: EntityManager, toVersion: number): Promise<number> {
    const stale = await tx.createQueryBuilder(SystemKeyEntity, 's').where('s.kek_version <> :toVersion', { toVersion }).getMany();
    for (const s of stale) {
      const context = `system:${s.name}`;
      const key = this.keyring.unwrap({ kekVersion: s.kekVersion, iv: s.iv, tag: s.tag, ciphertext: s.wrapped }, context);
      const w = this.keyring.wrap(key, context, toVersion);
      key.fill(0);
      await tx.update(SystemKeyEntity, { name: s.name, kekVersion: s.kekVersion }, { kekVersion: w.kekVersion, iv: w.iv, tag: w.tag, wrapped: w.ciphertext });
    }
    return stale.length;
  }
}
