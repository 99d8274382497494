import { Column, Entity, PrimaryColumn } from 'typeorm';
import { bigintNumber, epochMs } from '../../db/columns';

export const AUDIT_ACTIONS = [
  'auth.login', 'auth.logout', 'auth.password_change',
  'user.create', 'user.update',
  'project.create', 'project.update', 'project.delete',
  'provider_key.create', 'provider_key.update', 'provider_key.rotate', 'provider_key.delete', 'provider_key.reveal', 'provider_key.check',
  'provider_key.reseal', 'vault.sealings_upgraded',
  'api_token.create', 'api_token.regenerate', 'api_token.renew', 'api_token.revoke',
  'keyring.rotate', 'audit.export',
  'virtual_key.create', 'virtual_key.revoke',
  'webhook.create', 'webhook.delete',
  'vault.restore', 'vault.credentials_sealed',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];
export const AUDIT_OUTCOMES = ['success', 'denied', 'rate_limited', 'error'] as const;
export type AuditOutcome = (typeof AUDIT_OUTCOMES)[number];

@Entity({ name: 'audit_events' })
export class AuditEventEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 }) id: string;
  /** Position in the tamper-evident chain; null until the row is sealed. */
  @Column({ type: 'bigint', nullable: true, transformer: bigintNumber }) seq: number | null;
  @Column({ name: 'chain_hash', type: 'varchar', length: 64, nullable: true }) chainHash: string | null;
  /** HMAC of the row's content under the audit key, set at insert: a row forged with database access alone fails it. */
  @Column({ name: 'row_mac', type: 'varchar', length: 64 }) rowMac: string;
  @Column({ type: 'bigint', transformer: epochMs }) at: Date;
  @Column({ type: 'varchar', length: 48 }) action: AuditAction;
  @Column({ type: 'varchar', length: 16 }) outcome: AuditOutcome;
  @Column({ name: 'actor_id', type: 'varchar', length: 36, nullable: true }) actorId: string | null;
  @Column({ name: 'actor_username', type: 'varchar', length: 64, nullable: true }) actorUsername: string | null;
  @Column({ name: 'actor_role', type: 'varchar', length: 16, nullable: true }) actorRole: string | null;
  @Column({ type: 'varchar', length: 16, nullable: true }) via: string | null;
  @Column({ name: 'api_token_id', type: 'varchar', length: 36, nullable: true }) apiTokenId: string | null;
  @Column({ name: 'key_id', type: 'varchar', length: 36, nullable: true }) keyId: string | null;
  @Column({ name: 'project_id', type: 'varchar', length: 36, nullable: true }) projectId: string | null;
  @Column({ name: 'owner_id', type: 'varchar', length: 36, nullable: true }) ownerId: string | null;
  @Column({ type: 'varchar', length: 64, nullable: true }) ip: string | null;
  @Column({ name: 'user_agent', type: 'varchar', length: 512, nullable: true }) userAgent: string | null;
  @Column({ name: 'request_id', type: 'varchar', length: 64, nullable: true }) requestId: string | null;
  @Column({ type: 'varchar', length: 1024, nullable: true }) reason: string | null;
  /** JSON object; never holds a secret. */
  @Column({ type: 'text', nullable: true }) detail: string | null;
}

@Entity({ name: 'audit_chain_head' })
export class AuditChainHeadEntity {
  @PrimaryColumn({ type: 'int' }) id: number;
  @Column({ type: 'bigint', transformer: bigintNumber }) seq: number;
  @Column({ type: 'varchar', length: 64 }) hash: string;
  @Column({ name: 'updated_at', type: 'bigint', transformer: epochMs }) updatedAt: Date;
}

/** A row's detail as an object: {} when it has none or it is not a JSON object (rows are read as evidence, never trusted to parse). */
export function detailOf(e: Pick<AuditEventEntity, 'detail'>): Record<string, unknown> {
  try {
    const d = JSON.parse(e.detail ?? 'null') as unknown;
    return d && typeof d === 'object' && !Array.isArray(d) ? (d as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}
