import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs, flag } from '../../db/columns';
import type { SecretBinding } from '../../crypto/envelope';

export const KEY_STATUSES = ['active', 'disabled', 'deleted'] as const;
export type KeyStatus = (typeof KEY_STATUSES)[number];
export const HEALTH_STATUSES = ['valid', 'invalid', 'no_credit', 'rate_limited', 'upstream_error', 'unknown'] as const;
export type HealthStatus = (typeof HEALTH_STATUSES)[number];

/** An upstream key we store. The sealed columns are null once the key is deleted (tombstone). */
@Entity({ name: 'provider_keys' })
export class ProviderKeyEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 }) id: string;
  @Column({ type: 'varchar', length: 128 }) name: string;
  @Column({ type: 'varchar', length: 32 }) provider: string;
  @Column({ type: 'varchar', length: 64 }) hint: string;
  @Column({ type: 'varchar', length: 16 }) status: KeyStatus;
  @Column({ name: 'owner_id', type: 'varchar', length: 36 }) ownerId: string;
  @Column({ name: 'project_id', type: 'varchar', length: 36 }) projectId: string;
  @Column({ type: 'varchar', length: 1024, nullable: true }) remark: string | null;
  /** Where the gateway sends this key's calls; null: the provider's default. */
  @Column({ name: 'base_url', type: 'varchar', length: 2048, nullable: true }) baseUrl: string | null;
  @Column({ name: 'created_by', type: 'varchar', length: 36 }) createdBy: string;
  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs }) createdAt: Date;
  @Column({ name: 'updated_at', type: 'bigint', transformer: epochMs }) updatedAt: Date;
  @Column({ name: 'expires_at', type: 'bigint', nullable: true, transformer: epochMs }) expiresAt: Date | null;
  @Column({ name: 'last_revealed_at', type: 'bigint', nullable: true, transformer: epochMs }) lastRevealedAt: Date | null;
  @Column({ name: 'reveal_count', type: 'int', default: 0 }) revealCount: number;
  @Column({ name: 'format_version', type: 'smallint' }) formatVersion: number;
  @Column({ name: 'kek_version', type: 'int', nullable: true }) kekVersion: number | null;
  @Column({ name: 'wrapped_dek', type: 'blob', nullable: true }) wrappedDek: Buffer | null;
  @Column({ name: 'dek_iv', type: 'blob', nullable: true }) dekIv: Buffer | null;
  @Column({ name: 'dek_tag', type: 'blob', nullable: true }) dekTag: Buffer | null;
  @Column({ name: 'secret_ciphertext', type: 'blob', nullable: true }) secretCiphertext: Buffer | null;
  @Column({ name: 'secret_iv', type: 'blob', nullable: true }) secretIv: Buffer | null;
  @Column({ name: 'secret_tag', type: 'blob', nullable: true }) secretTag: Buffer | null;
  /** HMAC-SHA256 of the secret under the fingerprint key; unique among live keys, null on the tombstone. */
  @Column({ type: 'varchar', length: 64, nullable: true }) fingerprint: string | null;
  /** The last health established by a check or a gateway answer (docs/health.md). */
  @Column({ name: 'health_status', type: 'varchar', length: 16, default: 'unknown' }) healthStatus: HealthStatus;
  @Column({ name: 'health_checked_at', type: 'bigint', nullable: true, transformer: epochMs }) healthCheckedAt: Date | null;
  /** Scrubbed of the key, never a response body: the provider's short error message at most. */
  @Column({ name: 'health_detail', type: 'varchar', length: 512, nullable: true }) healthDetail: string | null;
  /** The key's upstream was seen to refuse a call for want of the key: a success from it shows the key works. */
  @Column({ name: 'health_key_required', type: 'smallint', default: 0, transformer: flag }) healthKeyRequired: boolean;
  /** The model of the opt-in probe for providers without a free check (Volcengine Ark, custom). */
  @Column({ name: 'health_probe_model', type: 'varchar', length: 128, nullable: true }) healthProbeModel: string | null;
  @Column({ name: 'health_next_check_at', type: 'bigint', nullable: true, transformer: epochMs }) healthNextCheckAt: Date | null;
  /** The smallest expiry notice (7 or 1 days before) already sent for the current expiresAt; null: none yet. */
  @Column({ name: 'expiry_notice_days', type: 'int', nullable: true }) expiryNoticeDays: number | null;
  /** When the secret was pasted or last replaced: the key's age. */
  @Column({ name: 'secret_set_at', type: 'bigint', nullable: true, transformer: epochMs }) secretSetAt: Date | null;
}

/** What a key's sealing is bound to: its id, owner, project, provider and upstream (see Envelope). */
export const bindingOf = (k: Pick<ProviderKeyEntity, 'id' | 'ownerId' | 'projectId' | 'provider' | 'baseUrl'>): SecretBinding => ({
  keyId: k.id,
  ownerId: k.ownerId,
  projectId: k.projectId,
  provider: k.provider,
  baseUrl: k.baseUrl,
});
