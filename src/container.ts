import type { Config } from './config';
import type { Database } from './db/database';
import type { Logger } from './logger';
import { Keyring } from './crypto/keyring';
import { Envelope } from './crypto/envelope';
import { KeyringRotation } from './crypto/rotation';
import { createRateLimits, RateLimits } from './rate-limits';
import { AuditRepository } from './modules/audit/audit.repository';
import { AuditService } from './modules/audit/audit.service';
import { AuditChain } from './modules/audit/audit-chain';
import { UsersRepository } from './modules/users/users.repository';
import { UsersService } from './modules/users/users.service';
import { SessionTokens } from './modules/auth/sessions';
import { AuthService } from './modules/auth/auth.service';
import { ProjectsRepository } from './modules/projects/projects.repository';
import { ProjectsService } from './modules/projects/projects.service';
import { ProviderKeysRepository } from './modules/provider-keys/provider-keys.repository';
import { ProviderKeysService } from './modules/provider-keys/provider-keys.service';
import { ApiTokensRepository } from './modules/api-tokens/api-tokens.repository';
import { ApiTokensService, UsageTracker } from './modules/api-tokens/api-tokens.service';

export interface Container {
  config: Config;
  logger: Logger;
  db: Database;
  keyring: Keyring;
  envelope: Envelope;
  limits: RateLimits;
  audit: AuditService;
  users: UsersService;
  auth: AuthService;
  projects: ProjectsService;
  providerKeys: ProviderKeysService;
  apiTokens: ApiTokensService;
  usage: UsageTracker;
  rotation: KeyringRotation;
}

/**
 * Composition root: repositories → services. Verifies the keyring against the database first, so a wrong
 * or missing master key stops start-up here, before anything serves.
 */
export async function buildContainer(config: Config, logger: Logger, db: Database): Promise<Container> {
  const keyring = new Keyring(config.masterKeys);
  await keyring.verifyAgainst(db);
  const fingerprintKey = await keyring.systemKey(db, 'fingerprint');
  const auditKey = await keyring.systemKey(db, 'audit_chain');
  const envelope = new Envelope(keyring);
  const limits = createRateLimits(config, db);

  const auditRepo = new AuditRepository();
  const usersRepo = new UsersRepository();
  const projectsRepo = new ProjectsRepository();
  const keysRepo = new ProviderKeysRepository();
  const tokensRepo = new ApiTokensRepository();

  const audit = new AuditService(db, auditRepo, logger, new AuditChain(db, auditKey, logger));
  const usage = new UsageTracker(db, tokensRepo, logger);
  return {
    config,
    logger,
    db,
    keyring,
    envelope,
    limits,
    audit,
    usage,
    users: new UsersService(db, usersRepo, audit, config.scryptCost),
    auth: new AuthService(db, usersRepo, new SessionTokens(config.jwtSecret, config.jwtTtlSeconds), audit, limits, config.scryptCost),
    projects: new ProjectsService(db, projectsRepo, audit),
    providerKeys: new ProviderKeysService(db, keysRepo, usersRepo, projectsRepo, audit, envelope, fingerprintKey, { byUser: limits.revealByUser, byIp: limits.revealByIp }),
    apiTokens: new ApiTokensService(db, tokensRepo, usersRepo, audit, usage),
    rotation: new KeyringRotation(db, keyring, envelope, audit),
  };
}
