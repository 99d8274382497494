import { Column, Entity, PrimaryColumn } from 'typeorm';
import { epochMs } from '../../db/columns';

@Entity({ name: 'projects' })
export class ProjectEntity {
  @PrimaryColumn({ type: 'varchar', length: 36 }) id: string;
  @Column({ type: 'varchar', length: 128 }) name: string;
  /** What uniqueness compares (see nameKey): the same decision on SQLite and MySQL, whatever their collations. */
  @Column({ name: 'name_key', type: 'varchar', length: 64 }) nameKey: string;
  @Column({ type: 'varchar', length: 1024, nullable: true }) description: string | null;
  @Column({ name: 'created_at', type: 'bigint', transformer: epochMs }) createdAt: Date;
  @Column({ name: 'updated_at', type: 'bigint', transformer: epochMs }) updatedAt: Date;
}
