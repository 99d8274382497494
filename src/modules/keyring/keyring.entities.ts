import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from '../../db/columns';

/** A known value sealed under each KEK version: a wrong or missing key is found at start-up, not at the first reveal. */
@Entity({ name: 'kek_canaries' })
export class KekCanaryEntity {
  @PrimaryColumn({ name: 'kek_version', type: 'int' }) kekVersion: number;
  @Column({ type: 'blob' }) iv: Buffer;
  @Column({ type: 'blob' }) tag: Buffer;
  @Column({ type: 'blob' }) ciphertext: Buffer;
  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs }) createdAt: Date;
}

/** Vault-internal keys (fingerprint, audit chain), wrapped under the keyring like data keys. */
@Entity({ name: 'system_keys' })
export class SystemKeyEntity {
  @PrimaryColumn({ type: 'varchar', length: 32 }) name: string;
  @Column({ name: 'kek_version', type: 'int' }) kekVersion: number;
  @Column({ type: 'blob' }) iv: Buffer;
  @Column({ type: 'blob' }) tag: Buffer;
  @Column({ type: 'blob' }) wrapped: Buffer;
  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs }) createdAt: Date;
}
