import crypto from 'node:crypto';
import type { Config } from './config';
import type { Database } from './db/database';
import type { Logger } from './logger';
import { Keyring } from './crypto/keyring';
import { Envelope } from './crypto/envelope';
import { CredentialMac } from './crypto/credential-mac';
import { createRateLimits, RateLimits } from './rate-limits';
import { KeyringService } from './modules/keyring/keyring.service';
import { KeyringRotation } from './modules/keyring/rotation';
import { AuditRepository } from './modules/audit/audit.repository';
import { AuditService } from './modules/audit/audit.service';
import { JobSlots } from './modules/audit/job-slots';
import { AuditChain } from './modules/audit/audit-chain';
import { CheckpointFile } from './modules/audit/audit-checkpoints';
import { sealLegacyCredentials } from './modules/audit/credential-seals';
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
import { VirtualKeysRepository } from './modules/gateway/virtual-keys.repository';
import { VirtualKeysService } from './modules/gateway/virtual-keys.service';
import { GatewayService } from './modules/gateway/gateway.service';
import { UsageRecorder, UsageRepository } from './modules/gateway/usage';
import { type Clock, systemClock } from './clock';
import { WebhooksRepository } from './modules/webhooks/webhooks.repository';
import { WebhookSecrets } from './modules/webhooks/webhook-secrets';
import { WebhooksService } from './modules/webhooks/webhooks.service';
import { WebhookDispatcher } from './modules/webhooks/webhook-dispatcher';
import { HealthRepository } from './modules/health/health.repository';
import { HealthService } from './modules/health/health.service';
import { PassiveHealth } from './modules/health/passive-health';
import { HealthScheduler } from './modules/health/health.scheduler';
import { HygieneRepository } from './modules/reports/hygiene.repository';
import { HygieneService } from './modules/reports/hygiene.service';
import { AUDIT_PENDING_CAP, Metrics } from './modules/metrics/metrics';
import type { AuditEventEntity } from './modules/audit/audit-event.entity';

export interface Container {
  config: Config;
  logger: Logger;
  db: Database;
  keyring: KeyringService;
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
  virtualKeys: VirtualKeysService;
  /** The data plane's decisions, its upstream connections and its usage recorder. */
  gateway: GatewayService;
  /** Webhook subscriptions and the outbox of deliveries (every feature's Notifier). */
  webhooks: WebhooksService;
  dispatcher: WebhookDispatcher;
  health: HealthService;
  /** Health from gateway answers, written on change in batches. */
  passiveHealth: PassiveHealth;
  /** Scheduled checks and expiry notices (started by main.ts when PKV_HEALTH_SCHEDULER is on). */
  scheduler: HealthScheduler;
  hygiene: HygieneService;
  /** Prometheus metrics: `GET /api/v1/metrics` (metrics:read) and the optional listener of PKV_METRICS_PORT. */
  metrics: Metrics;
  clock: Clock;
}

/** Derived from the JWT secret (shared by every instance, never stored in the database) for one purpose only. */
const loginLimitKey = (jwtSecret: Buffer) => crypto.createHmac('sha256', jwtSecret).update('pkv/v1/login-limit-key').digest();

/**
 * Composition root: repositories → services. Verifies the keyring against the database first, so a wrong
 * or missing master key stops start-up here, before anything serves.
 */
export async function buildContainer(config: Config, logger: Logger, db: Database, opts: { clock?: Clock } = {}): Promise<Container> {
  const clock = opts.clock ?? systemClock;
  const ring = new Keyring(config.masterKeys);
  const keyring = new KeyringService(db, ring);
  await keyring.verify();
  const fingerprintKey = await keyring.systemKey('fingerprint');
  const auditKey = await keyring.systemKey('audit_chain');
  const envelope = new Envelope(ring);
  const limits = createRateLimits(config, db);

  const auditRepo = new AuditRepository();
  const usersRepo = new UsersRepository();
  const projectsRepo = new ProjectsRepository();
  const keysRepo = new ProviderKeysRepository();
  // Credential rows are sealed under a key derived from the audit key (own label): a database writer cannot plant one.
  const credentialMac = new CredentialMac(auditKey);
  const tokensRepo = new ApiTokensRepository(credentialMac);
  const virtualKeysRepo = new VirtualKeysRepository(credentialMac);
  const usageRepo = new UsageRepository();
  const webhooksRepo = new WebhooksRepository();
  const healthRepo = new HealthRepository();

  const chain = new AuditChain(db, auditKey, logger, {
    checkpoints: CheckpointFile.inDataDir(config.dataDir, auditKey),
    checkpointIntervalMs: config.auditCheckpointIntervalSeconds * 1000,
  });
  const audit = new AuditService(db, auditRepo, logger, chain, new JobSlots(config.auditJobsPerUser, config.auditJobsTotal));
  const usage = new UsageTracker(db, tokensRepo, logger);
  const gatewayUsage = new UsageRecorder(db, usageRepo, virtualKeysRepo, logger);
  const webhookSecrets = new WebhookSecrets(() => keyring.systemKey('webhook_secrets'));
  const webhooks = new WebhooksService(db, webhooksRepo, webhookSecrets, audit, logger, clock);
  const dispatcher = new WebhookDispatcher(db, webhooksRepo, webhookSecrets, config.webhooks, logger, clock);
  webhooks.onQueued = () => dispatcher.kick();
  audit.chain.onVerifyFailed = async (r) => {
    try {
      await db.transaction((tx) => webhooks.enqueue(tx, 'audit.verify_failed', { checked: r.checked, firstBadId: r.firstBadId, reason: r.reason, headSeq: r.head.seq }));
    } catch (err) {
      logger.error('audit.verify_failed could not be queued for webhooks', { event: 'webhook.enqueue_failed', errorCode: (err as { code?: string })?.code });
    }
  };
  const health = new HealthService(db, keysRepo, healthRepo, envelope, audit, { byUser: limits.checkByUser, byIp: limits.checkByIp }, webhooks, config.health, logger, clock);
  const passiveHealth = new PassiveHealth(db, keysRepo, health, logger, clock);
  const apiTokens = new ApiTokensService(db, tokensRepo, usersRepo, audit, usage, logger);
  const gateway = new GatewayService(db, virtualKeysRepo, envelope, gatewayUsage, config.gateway, passiveHealth, webhooks, logger);
  const metrics = new Metrics({
    auditPending: () => chain.pending(AUDIT_PENDING_CAP),
    auditSealed: () => ({ rows: chain.sealedRows, lastAt: chain.lastSealAt }),
    gatewayUsage: () => gatewayUsage.backlog(),
    dbPool: () => db.pool,
    dbRetries: () => db.retries,
  });
  // Once per database (the first start with row MACs): seals the credential rows from before that the trail backs.
  await sealLegacyCredentials(db, audit, { virtualKeys: virtualKeysRepo, apiTokens: tokensRepo }, logger);
  observe(metrics, db, audit, apiTokens, gateway);
  return {
    config,
    logger,
    db,
    keyring,
    envelope,
    limits,
    audit,
    usage,
    users: new UsersService(db, usersRepo, tokensRepo, virtualKeysRepo, audit, config.scryptCost),
    auth: new AuthService(db, usersRepo, new SessionTokens(config.jwtSecret, config.jwtTtlSeconds), audit, limits, config.scryptCost, loginLimitKey(config.jwtSecret)),
    projects: new ProjectsService(db, projectsRepo, audit),
    providerKeys: new ProviderKeysService(db, keysRepo, usersRepo, projectsRepo, audit, envelope, fingerprintKey, { byUser: limits.revealByUser, byIp: limits.revealByIp }, virtualKeysRepo, webhooks),
    apiTokens,
    rotation: new KeyringRotation(db, ring, envelope, audit),
    virtualKeys: new VirtualKeysService(db, virtualKeysRepo, keysRepo, audit, gatewayUsage, usageRepo),
    gateway,
    webhooks,
    dispatcher,
    health,
    passiveHealth,
    scheduler: new HealthScheduler(db, keysRepo, healthRepo, health, webhooks, logger, clock),
    hygiene: new HygieneService(db, new HygieneRepository(), () => gatewayUsage.flush()),
    metrics,
    clock,
  };
}

/** The refusal's reason as the trail records it (`detail.why`); parsed for refusals only, never for a success. */
function whyOf(row: AuditEventEntity): string | undefined {
  if (row.outcome === 'success' || !row.detail) return undefined;
  try {
    const why = (JSON.parse(row.detail) as { why?: unknown }).why;
    return typeof why === 'string' ? why : undefined;
  } catch {
    return undefined;
  }
}

/** Connects the metrics to the points that report to them: committed audit rows, authentications, the data plane, the database. */
function observe(metrics: Metrics, db: Database, audit: AuditService, apiTokens: ApiTokensService, gateway: GatewayService): void {
  // Reveals and failed sign-ins are counted from the rows the trail committed: the metrics never disagree with it.
  audit.onCommitted = (rows) => {
    for (const row of rows) {
      if (row.action === 'provider_key.reveal') metrics.reveal(row.outcome, row.via, whyOf(row));
      else if (row.action === 'auth.login' && row.outcome !== 'success') metrics.loginFailed(row.outcome);
    }
  };
  apiTokens.onAuthenticated = (ok) => metrics.apiTokenAuthenticated(ok);
  gateway.observer = {
    authenticated: (ok) => metrics.virtualKeyAuthenticated(ok),
    call: (provider, status, seconds) => metrics.gatewayCall(provider, status, seconds),
    upstream: (provider, seconds) => metrics.upstream(provider, seconds),
    tokens: (provider, prompt, completion) => metrics.gatewayTokens(provider, prompt, completion),
  };
  db.observer = { transaction: (seconds) => metrics.transaction(seconds), groupCommit: (size) => metrics.groupCommit(size) };
}
