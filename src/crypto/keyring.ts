import crypto from 'node:crypto';
import type { MasterKey } from '../config';
import { IntegrityError } from '../errors';
import type { Database } from '../db/database';
import { isUniqueViolation } from '../db/database';
import { aad, open, seal, Sealed } from './aead';
import { KekCanaryEntity, SystemKeyEntity } from './keyring.entities';
import { ProviderKeyEntity } from '../modules/provider-keys/provider-key.entity';

const CANARY = Buffer.from('provider-key-vault canary v1', 'utf8');
export const SYSTEM_KEY_NAMES = ['fingerprint', 'audit_chain'] as const;
export type SystemKeyName = (typeof SYSTEM_KEY_NAMES)[number];

/** Start-up refusal: the keyring does not match the database. Carries one line for the operator. */
export class KeyringMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyringMismatchError';
  }
}

export interface WrappedKey extends Sealed {
  kekVersion: number;
}

/** The master keys (KEKs) by version; the first configured one is active for new wraps. */
export class Keyring {
  private readonly keys = new Map<number, Buffer>();
  readonly activeVersion: number;

  constructor(masterKeys: readonly MasterKey[]) {
    if (masterKeys.length === 0) throw new KeyringMismatchError('PKV_MASTER_KEYS: no master key configured');
    for (const k of masterKeys) this.keys.set(k.version, k.key);
    this.activeVersion = masterKeys[0].version;
  }

  get versions(): number[] {
    return [...this.keys.keys()];
  }

  has(version: number): boolean {
    return this.keys.has(version);
  }

  /** Seals a data key under the active KEK, bound to its owner row (`context`) and the KEK version. */
  wrap(dataKey: Buffer, context: string, version = this.activeVersion): WrappedKey {
    return { kekVersion: version, ...seal(this.kek(version), dataKey, aad('pkv/v1/dek', context, version)) };
  }

  unwrap(w: WrappedKey, context: string): Buffer {
    return open(this.kek(w.kekVersion), w, aad('pkv/v1/dek', context, w.kekVersion));
  }

  private kek(version: number): Buffer {
    const key = this.keys.get(version);
    if (!key) throw new IntegrityError(`master key version ${version} is not configured`);
    return key;
  }

  /**
   * Start-up checks: every configured version opens its canary (sealed on first use), and no row is
   * wrapped under a version missing from the config. Throws KeyringMismatchError naming the version.
   */
  async verifyAgainst(db: Database): Promise<void> {
    const canaries = await db.read((m) => m.getRepository(KekCanaryEntity).find());
    for (const version of this.versions) {
      const canary = canaries.find((c) => c.kekVersion === version);
      if (!canary) continue;
      try {
        const text = open(this.kek(version), canary, aad('pkv/v1/canary', version));
        if (!text.equals(CANARY)) throw new Error('canary text differs');
      } catch {
        throw new KeyringMismatchError(
          `PKV_MASTER_KEYS: master key version ${version} does not match the key this database was sealed with (wrong or truncated key)`,
        );
      }
    }
    for (const { version, rows } of await this.rowsByVersion(db)) {
      if (!this.has(version)) {
        throw new KeyringMismatchError(
          `PKV_MASTER_KEYS: master key version ${version} is missing but still wraps ${rows} row(s); put it back (after the active key) and run \`pkv keyring rotate\``,
        );
      }
    }
    for (const version of this.versions) {
      if (canaries.some((c) => c.kekVersion === version)) continue;
      // No canary yet, but rows under this version (a database from before canaries, a partial restore): a canary
      // sealed now would bless whatever key is configured, so first prove the key opens one of those rows.
      if (!(await this.opensAWrappedRow(db, version))) {
        throw new KeyringMismatchError(
          `PKV_MASTER_KEYS: master key version ${version} does not open the rows wrapped under it (wrong or truncated key), and this database has no canary for it`,
        );
      }
      const sealed = seal(this.kek(version), CANARY, aad('pkv/v1/canary', version));
      try {
        await db.transaction((tx) => tx.insert(KekCanaryEntity, { kekVersion: version, ...sealed, createdAt: new Date() }));
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        return this.verifyAgainst(db); // another process sealed it first: check theirs
      }
    }
  }

  /** True when no row is wrapped under `version`, or one such row unwraps under the configured key. */
  private async opensAWrappedRow(db: Database, version: number): Promise<boolean> {
    const [system, provider] = await db.read(async (m) => [
      await m.getRepository(SystemKeyEntity).findOneBy({ kekVersion: version }),
      await m.getRepository(ProviderKeyEntity).findOne({ where: { kekVersion: version }, select: ['id', 'kekVersion', 'wrappedDek', 'dekIv', 'dekTag'] }),
    ]);
    try {
      if (system) this.unwrap({ kekVersion: version, iv: system.iv, tag: system.tag, ciphertext: system.wrapped }, `system:${system.name}`).fill(0);
      else if (provider?.wrappedDek && provider.dekIv && provider.dekTag) {
        this.unwrap({ kekVersion: version, iv: provider.dekIv, tag: provider.dekTag, ciphertext: provider.wrappedDek }, provider.id).fill(0);
      }
      return true;
    } catch {
      return false;
    }
  }

  /**
   * For readiness: every configured version's canary in the database still opens, and the system keys (rotated
   * first by `pkv keyring rotate`) are under configured versions: a server left with an outdated keyring after a
   * rotation is not ready, rather than failing every reveal.
   */
  async matches(db: Database): Promise<boolean> {
    const [canaries, systemKeys] = await db.read(async (m) => [await m.getRepository(KekCanaryEntity).find(), await m.getRepository(SystemKeyEntity).find({ select: ['kekVersion'] })]);
    if (systemKeys.some((k) => !this.has(k.kekVersion))) return false;
    return canaries
      .filter((c) => this.has(c.kekVersion))
      .every((c) => {
        try {
          return open(this.kek(c.kekVersion), c, aad('pkv/v1/canary', c.kekVersion)).equals(CANARY);
        } catch {
          return false;
        }
      });
  }

  /** Rows per KEK version across everything wrapped: provider keys' data keys and the system keys. */
  async rowsByVersion(db: Database): Promise<Array<{ version: number; providerKeys: number; systemKeys: number; rows: number }>> {
    const [pk, sk] = await db.read(async (m) => [
      await m.createQueryBuilder(ProviderKeyEntity, 'k').select('k.kek_version', 'v').addSelect('COUNT(*)', 'n').where('k.kek_version IS NOT NULL').groupBy('k.kek_version').getRawMany<{ v: number; n: number | string }>(),
      await m.createQueryBuilder(SystemKeyEntity, 's').select('s.kek_version', 'v').addSelect('COUNT(*)', 'n').groupBy('s.kek_version').getRawMany<{ v: number; n: number | string }>(),
    ]);
    const out = new Map<number, { version: number; providerKeys: number; systemKeys: number; rows: number }>();
    const at = (v: number) => out.get(v) ?? out.set(v, { version: v, providerKeys: 0, systemKeys: 0, rows: 0 }).get(v)!;
    for (const r of pk) at(Number(r.v)).providerKeys += Number(r.n);
    for (const r of sk) at(Number(r.v)).systemKeys += Number(r.n);
    for (const e of out.values()) e.rows = e.providerKeys + e.systemKeys;
    return [...out.values()].sort((a, b) => b.version - a.version);
  }

  /** Loads (creating on first start) a vault-internal 256-bit key wrapped under the keyring. */
  async systemKey(db: Database, name: SystemKeyName): Promise<Buffer> {
    const existing = await db.read((m) => m.getRepository(SystemKeyEntity).findOneBy({ name }));
    if (existing) return this.unwrap({ kekVersion: existing.kekVersion, iv: existing.iv, tag: existing.tag, ciphertext: existing.wrapped }, `system:${name}`);
    const key = crypto.randomBytes(32);
    const w = this.wrap(key, `system:${name}`);
    try {
      await db.transaction((tx) => tx.insert(SystemKeyEntity, { name, kekVersion: w.kekVersion, iv: w.iv, tag: w.tag, wrapped: w.ciphertext, createdAt: new Date() }));
      return key;
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      return this.systemKey(db, name);
    }
  }
}
