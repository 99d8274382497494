import { Agent } from 'undici';
import type { GatewayConfig } from '../../config';
import type { Database } from '../../db/database';
import { AppError, ConflictError, ForbiddenError, NotFoundError, UnauthorizedError } from '../../errors';
import { coalesced } from '../../batching';
import type { Envelope } from '../../crypto/envelope';
import { hashApiToken, isVirtualKeyShape } from '../../crypto/tokens';
import { effectiveRights, type Actor } from '../auth/actor';
import { decideReveal, upstreamOrigin } from '../provider-keys/provider-keys.service';
import { credentialHeaderOf, CredentialHeader, upstreamOf } from '../provider-keys/providers';
import type { GatewayGrant, VirtualKeysRepository } from './virtual-keys.repository';
import type { BudgetSpentError, UsageRecorder } from './usage';
import type { Logger } from '../../logger';
import type { Notifier } from '../../notifications';
import { bindingOf, type ProviderKeyEntity } from '../provider-keys/provider-key.entity';

/** What the gateway tells key health: each answer's status, and the first bytes of an error body (already scrubbed). */
export interface KeyHealthObserver {
  observe(key: Pick<ProviderKeyEntity, 'id' | 'provider' | 'baseUrl' | 'healthStatus' | 'healthKeyRequired'>, httpStatus: number, bodyHead: string): void;
}

/** What the data plane reports to the metrics: small fixed label values only (provider names, HTTP statuses). */
export interface GatewayObserver {
  authenticated(ok: boolean): void;
  /** A call answered (or cut short: 499); provider is undefined when the call was refused before its key was known. */
  call(provider: string | undefined, status: number, seconds: number): void;
  /** From sending a call upstream to the end of the provider's answer (or its failure). */
  upstream(provider: string, seconds: number): void;
  tokens(provider: string, prompt: number | undefined, completion: number | undefined): void;
}

/** A gateway call that may go out: who, through which virtual key, to where, and how to present the key there. */
export interface Pass {
  grant: GatewayGrant;
  upstream: URL;
  credential: CredentialHeader;
}

/** One answer for every dead virtual key (unknown, malformed, revoked, expired, its user disabled, its key gone or moved). */
const dead = () => new UnauthorizedError('This virtual key is not valid');

/** Whether a virtual key may be used right now, as a pure function of what the database holds and the moment. */
export function decideGatewayUse(g: GatewayGrant, now: Date): AppError | undefined {
  if (g.vk.revokedAt || g.vk.expiresAt.getTime() <= now.getTime() || g.user.status !== 'active') return dead();
  if (g.key.status === 'deleted') return dead();
  // Made for this owner, project and upstream host: a key handed on, or pointed elsewhere, no longer honours it.
  if (g.key.ownerId !== g.vk.boundOwnerId || g.key.projectId !== g.vk.boundProjectId || upstreamOrigin(g.key) !== g.vk.boundUpstream) return dead();
  // The rights of a reveal, as the user's role stands now; the reason an admin gave was audited when this was made.
  const decision = decideReveal(asActor(g), g.key, 'given when the virtual key was made', now);
  if (!decision.allowed) return decision.error instanceof NotFoundError ? new ForbiddenError('This virtual key’s user can no longer use this key') : decision.error;
  if (!upstreamOf(g.key.provider, g.key.baseUrl)) return new ConflictError('This key has no baseUrl; an admin must set one');
  return undefined;
}

function asActor(g: GatewayGrant): Actor {
  return { userId: g.user.id, username: g.user.username, role: g.user.role, via: 'session', rights: effectiveRights(g.user.role), ip: null, userAgent: null, requestId: null };
}

/**
 * The data plane's decisions. Every call looks its virtual key up in the database (no cache that could outlive a
 * revocation; concurrent calls with one key in one turn of the event loop share that lookup), decides, checks the
 * budget, and only then opens the provider key.
 */
export class GatewayService {
  /** Keep-alive connections to providers, pooled per origin; redirects are never followed. */
  readonly dispatcher: Agent;
  private readonly lookups = coalesced(
    (hash: string) => hash,
    (hash: string) => this.db.read((m) => this.virtualKeys.findGrant(m, hash)),
  );
  /** Budget notices this instance already sent or saw claimed, as `virtualKeyId:day` (today's only). */
  private readonly budgetNoticed = new Set<string>();
  private budgetDay = 0;
  /** Told of each call's authentication, answer, time upstream and tokens (the metrics); set by the container. */
  observer: GatewayObserver | undefined;

  constructor(
    private readonly db: Database,
    private readonly virtualKeys: Pick<VirtualKeysRepository, 'findGrant' | 'claimBudgetNotice'>,
    private readonly envelope: Envelope,
    readonly usage: UsageRecorder,
    readonly config: GatewayConfig,
    readonly health: KeyHealthObserver,
    private readonly notifier: Notifier,
    private readonly logger: Logger,
  ) {
    this.dispatcher = new Agent({
      connect: { timeout: config.connectTimeoutMs },
      headersTimeout: config.firstByteTimeoutMs,
      bodyTimeout: config.idleTimeoutMs,
      maxRedirections: 0,
    });
  }

  /** The call's pass, or the refusal (401, 403, 409). Malformed and unknown keys cost the same hash and lookup. */
  async authorize(presented: string | undefined): Promise<Pass> {
    if (presented === undefined) throw this.refused(new UnauthorizedError());
    const grant = await this.lookups.load(hashApiToken(presented));
    if (!grant || !isVirtualKeyShape(presented)) throw this.refused(dead());
    if (!grant.intact) {
      // Planted or changed in the database (its MAC does not hold): refused like an unknown key, and said so in the log.
      this.logger.warn('a virtual key row fails its integrity check (planted or changed in the database): refused', { event: 'gateway.virtual_key_forged', virtualKeyId: grant.vk.id });
      throw this.refused(dead());
    }
    const refusal = decideGatewayUse(grant, new Date());
    if (refusal) throw this.refused(refusal);
    this.observer?.authenticated(true);
    return { grant, upstream: new URL(upstreamOf(grant.key.provider, grant.key.baseUrl)!), credential: credentialHeaderOf(grant.key.provider) };
  }

  private refused(err: AppError): AppError {
    this.observer?.authenticated(false);
    return err;
  }

  /** The plaintext, for the upstream request's header only; the caller drops it as soon as the request is sent. */
  openSecret(pass: Pass): string {
    const k = pass.grant.key;
    const opened = this.envelope.open(bindingOf(k), k);
    try {
      return opened.toString('utf8');
    } finally {
      opened.fill(0);
    }
  }

  /**
   * A call refused because its virtual key's daily budget is spent: `virtual_key.budget_exhausted`, once per virtual key
   * and UTC day across instances (claimed on its row), in the background; the refusal does not wait for it.
   */
  budgetSpent(grant: GatewayGrant, err: BudgetSpentError): void {
    if (err.day !== this.budgetDay) {
      this.budgetNoticed.clear();
      this.budgetDay = err.day;
    }
    const seen = `${grant.vk.id}:${err.day}`;
    if (this.budgetNoticed.has(seen)) return;
    this.budgetNoticed.add(seen);
    const { vk, key } = grant;
    this.db
      .transaction(async (tx) => {
        if (!(await this.virtualKeys.claimBudgetNotice(tx, vk.id, err.day))) return;
        await this.notifier.enqueue(tx, 'virtual_key.budget_exhausted', {
          virtualKeyId: vk.id,
          keyId: key.id,
          userId: vk.userId,
          projectId: key.projectId,
          budget: err.budget,
          limit: err.limit,
          resetsAt: new Date(err.day + 86_400_000).toISOString(),
        });
      })
      .catch((e: unknown) => {
        this.budgetNoticed.delete(seen);
        this.logger.warn('budget notice could not be queued', { event: 'gateway.budget_notice_failed', errorCode: (e as { code?: string })?.code });
      });
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}
