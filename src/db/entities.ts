import { UserEntity } from '../modules/users/user.entity';
import { ProjectEntity } from '../modules/projects/project.entity';
import { RevokedSessionEntity } from '../modules/auth/revoked-session.entity';
import { ProviderKeyEntity } from '../modules/provider-keys/provider-key.entity';
import { ApiTokenEntity } from '../modules/api-tokens/api-token.entity';
import { AuditChainHeadEntity, AuditEventEntity } from '../modules/audit/audit-event.entity';
import { KekCanaryEntity, SystemKeyEntity } from '../modules/keyring/keyring.entities';
import { VirtualKeyEntity } from '../modules/gateway/virtual-key.entity';

export const entities = [
  UserEntity,
  ProjectEntity,
  RevokedSessionEntity,
  ProviderKeyEntity,
  ApiTokenEntity,
  AuditEventEntity,
  AuditChainHeadEntity,
  KekCanaryEntity,
  SystemKeyEntity,
  VirtualKeyEntity,
];
