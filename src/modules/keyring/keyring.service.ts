import crypto from 'node:crypto';
import type { Database } from '../../db/database';
import { isUniqueViolation } from '../../db/errors';
import type { Keyring } from '../../crypto/keyring';
import { KekCanaryEntity, SystemKeyEntity } from './keyring.entities';
import { ProviderKeyEntity } from '../provider-keys/provider-key.entity';

/** The vault's own keys, wrapped under the keyring; `webhook_secrets` is made with the first webhook. */
export const SYSTEM_KEY_NAMES = ['fingerprint', 'audit_chain', 'webhook_secrets'] as const;
export type SystemKeyName = (typeof SYSTEM_KEY_NAMES)[number];

/** Start-up refusal: the keyring does not match the database. Carries one line for the operator. */
export class KeyringMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'KeyringMismatchError';
  }
}

export interface VersionCount {
  version: number;
  providerKeys: number;
  systemKeys: number;
  rows: number;
}

/** The keyring against its database: canaries, the rows wrapped under each version, and the vault's system keys. */
export class KeyringService {
  constructor(
    private readonly db: Database,
    readonly keyring: Keyring,
  ) {}

  get activeVersion(): number {
    return this.keyring.activeVersion;
  }

  /**
   * Start-up checks: every configured version opens its canary (sealed on first use), and no row is
   * wrapped under a version missing from the config. Throws KeyringMismatchError naming the version.
   */
  async verify(): Promise<void> {
    const canaries = await this.db.read((m) => m.getRepository(KekCanaryEntity).find());
    for (const version of this.keyring.versions) {
      const canary = canaries.find((c) => c.kekVersion === version);
      if (canary && !this.keyring.opensCanary(version, canary)) {
        throw new KeyringMismatchError(
          `PKV_MASTER_KEYS: master key version ${version} does not match the key this database was sealed with (wrong or truncated key)`,
        );
      }
    }
    for (const { version, rows } of await this.rowsByVersion()) {
      if (!this.keyring.has(version)) {
        throw new KeyringMismatchError(
          `PKV_MASTER_KEYS: master key version ${version} is missing but still wraps ${rows} row(s); put it back (after the active key) and run \`pkv keyring rotate\``,
        );
      }
    }
    for (const version of this.keyring.versions) {
      if (canaries.some((c) => c.kekVersion === version)) continue;
      // No canary yet, but rows under this version (a database from before canaries, a partial restore): a canary
      // sealed now would bless whatever key is configured, so first prove the key opens one of those rows.
      if (!(await this.opensAWrappedRow(version))) {
        throw new KeyringMismatchError(
          `PKV_MASTER_KEYS: master key version ${version} does not open the rows wrapped under it (wrong or truncated key), and this database has no canary for it`,
        );
      }
      const sealed = this.keyring.sealCanary(version);
      try {
        await this.db.transaction((tx) => tx.insert(KekCanaryEntity, { kekVersion: version, ...sealed, createdAt: new Date() }));
      } catch (err) {
        if (!isUniqueViolation(err)) throw err;
        return this.verify(); // another process sealed it first: check theirs
      }
    }
  }

  /** True when no row is wrapped under `version`, or one such row unwraps under the configured key. */
  private async opensAWrappedRow(version: number): Promise<boolean> {
    const [system, provider] = await this.db.read(async (m) => [
      await m.getRepository(SystemKeyEntity).findOneBy({ kekVersion: version }),
      await m.getRepository(ProviderKeyEntity).findOne({ where: { kekVersion: version }, select: ['id', 'kekVersion', 'wrappedDek', 'dekIv', 'dekTag'] }),
    ]);
    try {
      if (system) this.keyring.unwrap({ kekVersion: version, iv: system.iv, tag: system.tag, ciphertext: system.wrapped }, `system:${system.name}`).fill(0);
      else if (provider?.wrappedDek && provider.dekIv && provider.dekTag) {
        this.keyring.unwrap({ kekVersion: version, iv: provider.dekIv, tag: provider.dekTag, ciphertext: provider.wrappedDek }, provider.id).fill(0);
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
  async matches(): Promise<boolean> {
    const [canaries, systemKeys] = await this.db.read(async (m) => [await m.getRepository(KekCanaryEntity).find(), await m.getRepository(SystemKeyEntity).find({ select: ['kekVersion'] })]);
    if (systemKeys.some((k) => !this.keyring.has(k.kekVersion))) return false;
    return canaries.filter((c) => this.keyring.has(c.kekVersion)).every((c) => this.keyring.opensCanary(c.kekVersion, c));
  }

  /** Rows per KEK version across everything wrapped: provider keys' data keys and the system keys. */
  async rowsByVersion(): Promise<VersionCount[]> {
    const [pk, sk] = await this.db.read(async (m) => [
      await m.createQueryBuilder(ProviderKeyEntity, 'k').select('k.kek_version', 'v').addSelect('COUNT(*)', 'n').where('k.kek_version IS NOT NULL').groupBy('k.kek_version').getRawMany<{ v: number; n: number | string }>(),
      await m.createQueryBuilder(SystemKeyEntity, 's').select('s.kek_version', 'v').addSelect('COUNT(*)', 'n').groupBy('s.kek_version').getRawMany<{ v: number; n: number | string }>(),
    ]);
    const out = new Map<number, VersionCount>();
    const at = (v: number) => out.get(v) ?? out.set(v, { version: v, providerKeys: 0, systemKeys: 0, rows: 0 }).get(v)!;
    for (const r of pk) at(Number(r.v)).providerKeys += Number(r.n);
    for (const r of sk) at(Number(r.v)).systemKeys += Number(r.n);
    for (const e of out.values()) e.rows = e.providerKeys + e.systemKeys;
    return [...out.values()].sort((a, b) => b.version - a.version);
  }

  /** Loads (creating on first start) a vault-internal 256-bit key wrapped under the keyring. */
  async systemKey(name: SystemKeyName): Promise<Buffer> {
    const existing = await this.db.read((m) => m.getRepository(SystemKeyEntity).findOneBy({ name }));
    if (existing) return this.keyring.unwrap({ kekVersion: existing.kekVersion, iv: existing.iv, tag: existing.tag, ciphertext: existing.wrapped }, `system:${name}`);
    const key = crypto.randomBytes(32);
    const w = this.keyring.wrap(key, `system:${name}`);
    try {
      await this.db.transaction((tx) => tx.insert(SystemKeyEntity, { name, kekVersion: w.kekVersion, iv: w.iv, tag: w.tag, wrapped: w.ciphertext, createdAt: new Date() }));
      return key;
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
      return this.systemKey(name);
    }
  }
}
