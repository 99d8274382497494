import { RateLimitedError, UnavailableError } from '../../errors';
import type { AuditOutcome } from '../audit/audit-event.entity';
import type { Limiter } from '../../rate-limits';
import { Actor, can, type Scope } from './actor';

/** A per-user and a per-address limiter that every use of one right spends together (reveals, key checks). */
export interface Allowance {
  byUser: Limiter;
  byIp: Limiter;
}

/** Why an allowance was refused: over its limit (429), or its store could not be asked (503: fail closed). */
export type AllowanceRefusal = RateLimitedError | UnavailableError;

/** How a refused allowance is audited: the outcome and the `why` of its row. */
export function auditOfRefusal(refusal: AllowanceRefusal): { outcome: AuditOutcome; why: string } {
  return refusal instanceof RateLimitedError ? { outcome: 'rate_limited', why: 'rate_limited' } : { outcome: 'error', why: 'rate_limit_unavailable' };
}

/**
 * Spends one point of both allowances at once (one round trip to a shared store, not two). A refusal is returned, to
 * be audited: over the limit, or the store failed (Redis or the database unreachable), which refuses too. A user's
 * API tokens count with the user, so minting tokens buys no allowance; a credential that lacks `right` altogether is
 * counted apart, so its refusals (still audited, still limited) cannot use up the allowance of the user's real
 * credentials.
 */
export async function spendAllowance(limits: Allowance, actor: Actor, right: Scope): Promise<AllowanceRefusal | undefined> {
  const userKey = !can(actor, right) && actor.apiTokenId ? `token:${actor.apiTokenId}` : actor.userId;
  const [byUser, byIp] = await Promise.allSettled([limits.byUser.consume(userKey), actor.ip ? limits.byIp.consume(actor.ip) : undefined]);
  const refused = [byUser, byIp].find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (!refused) return undefined;
  const err: unknown = refused.reason;
  if (!(err instanceof RateLimitedError)) return err instanceof UnavailableError ? err : new UnavailableError('Rate-limit state is unavailable', err);
  // One user over their own allowance must not use up the address's, which everyone behind one NAT or proxy shares.
  // If the give-back fails the point simply stays spent (stricter, never looser).
  if (byUser.status === 'rejected' && byIp.status === 'fulfilled' && actor.ip) await limits.byIp.reward(actor.ip).catch(() => undefined);
  return err;
}
