import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from '../../db/columns';

export const KEY_STATUSES = ['active', 'disabled', 'deleted'] as const;
export type KeyStatus = (typeof KEY_STATUSES)[number];

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
}
