import { Column, Entity, PrimaryColumn } from 'typeorm';
import { bigintNumber, epochMs } from '../../db/columns';

/** The vault's own credential. Only the SHA-256 of the token is stored. */
@Entity({ name: 'api_tokens' })
export class ApiTokenEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 }) id: string;
  @Column({ name: 'user_id', type: 'varchar', length: 36 }) userId: string;
  @Column({ type: 'varchar', length: 128 }) name: string;
  @Column({ type: 'varchar', length: 16 }) prefix: string;
  @Column({ name: 'token_hash', type: 'varchar', length: 64 }) tokenHash: string;
  /** Space-separated scope names. */
  @Column({ type: 'varchar', length: 512 }) scopes: string;
  @Column({ name: 'created_by', type: 'varchar', length: 36 }) createdBy: string;
  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs }) createdAt: Date;
  @Column({ name: 'expires_at', type: 'bigint', transformer: epochMs }) expiresAt: Date;
  @Column({ name: 'last_used_at', type: 'bigint', nullable: true, transformer: epochMs }) lastUsedAt: Date | null;
  @Column({ name: 'last_used_ip', type: 'varchar', length: 64, nullable: true }) lastUsedIp: string | null;
  @Column({ name: 'usage_count', type: 'bigint', default: 0, transformer: bigintNumber }) usageCount: number;
  @Column({ name: 'revoked_at', type: 'bigint', nullable: true, transformer: epochMs }) revokedAt: Date | null;
  /** HMAC over the columns that decide what the token may do (see apiTokenFields); null: a row the product never sealed. */
  @Column({ name: 'row_mac', type: 'varchar', length: 64, nullable: true }) rowMac: string | null;
}
