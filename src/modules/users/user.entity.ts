import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs, flag } from '../../db/columns';

export const ROLES = ['admin', 'member', 'auditor'] as const;
export type Role = (typeof ROLES)[number];
export const USER_STATUSES = ['active', 'disabled'] as const;
export type UserStatus = (typeof USER_STATUSES)[number];

@Entity({ name: 'users' })
export class UserEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 }) id: string;
  @Column({ type: 'varchar', length: 64 }) username: string;
  @Column({ name: 'display_name', type: 'varchar', length: 128, nullable: true }) displayName: string | null;
  @Column({ type: 'varchar', length: 16 }) role: Role;
  @Column({ type: 'varchar', length: 16 }) status: UserStatus;
  @Column({ name: 'password_hash', type: 'varchar', length: 255 }) passwordHash: string;
  /** Bumped on every password change; sessions carry it and die when it moves. */
  @Column({ name: 'session_epoch', type: 'int', default: 0 }) sessionEpoch: number;
  /** Set when someone else chose the password (an admin, the CLI): the user must change it before doing anything else. */
  @Column({ name: 'must_change_password', type: 'smallint', default: 0, transformer: flag }) mustChangePassword: boolean;
  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs }) createdAt: Date;
  @Column({ name: 'updated_at', type: 'bigint', transformer: epochMs }) updatedAt: Date;
}
