import { Column, Entity, PrimaryColumn } from 'typeorm';
import { bigintNumber, epochMs } from '../../db/columns';

/** A credential for the gateway that uses one provider key as the user who made it. Only its SHA-256 is stored. */
@Entity({ name: 'virtual_keys' })
export class VirtualKeyEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 }) id: string;
  @Column({ name: 'key_id', type: 'varchar', length: 36 }) keyId: string;
  @Column({ name: 'user_id', type: 'varchar', length: 36 }) userId: string;
  @Column({ type: 'varchar', length: 128 }) name: string;
  @Column({ type: 'varchar', length: 16 }) prefix: string;
  @Column({ name: 'token_hash', type: 'varchar', length: 64 }) tokenHash: string;
  /** JSON array of model names; null: any model. */
  @Column({ type: 'text', nullable: true }) models: string | null;
  @Column({ name: 'daily_request_limit', type: 'bigint', nullable: true, transformer: bigintNumber }) dailyRequestLimit: number | null;
  @Column({ name: 'daily_token_limit', type: 'bigint', nullable: true, transformer: bigintNumber }) dailyTokenLimit: number | null;
  /** The key's owner, project and upstream origin when this was made: if any of them changes, it stops working. */
  @Column({ name: 'bound_owner_id', type: 'varchar', length: 36 }) boundOwnerId: string;
  @Column({ name: 'bound_project_id', type: 'varchar', length: 36 }) boundProjectId: string;
  @Column({ name: 'bound_upstream', type: 'varchar', length: 512 }) boundUpstream: string;
  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs }) createdAt: Date;
  @Column({ name: 'expires_at', type: 'bigint', transformer: epochMs }) expiresAt: Date;
  @Column({ name: 'revoked_at', type: 'bigint', nullable: true, transformer: epochMs }) revokedAt: Date | null;
  @Column({ name: 'last_used_at', type: 'bigint', nullable: true, transformer: epochMs }) lastUsedAt: Date | null;
  @Column({ name: 'request_count', type: 'bigint', default: 0, transformer: bigintNumber }) requestCount: number;
  /** HMAC over the columns that decide what the key may do (see virtualKeyFields); null: a row the product never sealed. */
  @Column({ name: 'row_mac', type: 'varchar', length: 64, nullable: true }) rowMac: string | null;
}
