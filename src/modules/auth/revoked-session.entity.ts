import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from '../../db/columns';

/** Logged-out session ids, kept until the token would have expired anyway. */
@Entity({ name: 'revoked_sessions' })
export class RevokedSessionEntity {
  @PrimaryColumn({ type: 'varchar', length: 64 }) jti: string;
  @Column({ name: 'user_id', type: 'varchar', length: 36 }) userId: string;
  @Column({ name: 'expires_at', type: 'bigint', transformer: epochMs }) expiresAt: Date;
}
