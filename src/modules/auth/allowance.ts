import { RateLimitedError } from '../../errors';
import type { Limiter } from '../../rate-limits';
import { Actor, can, type Scope } from './actor';

/** A per-user and a per-address limiter that every use of one right spends together (reveals, key checks). */
export interface Allowance {
  byUser: Limiter;
  byIp: Limiter;
}

/**
 * Spends one point of both allowances at once (one round trip to a shared store, not two); a refusal is returned, to
 * be audited, and any other failure is thrown. A user's API tokens count with the user, so minting tokens buys no
 * allowance; a credential that lacks `right` altogether is counted apart, so its refusals (still audited, still
 * limited) cannot use up the allowance of the user's real credentials.
 */
export async function spendAllowance(limits: Allowance, actor: Actor, right: Scope): Promise<RateLimitedError | undefined> {
  const userKey = !can(actor, right) && actor.apiTokenId ? `token:${actor.apiTokenId}` : actor.userId;
  const [byUser, byIp] = await Promise.allSettled([limits.byUser.consume(userKey), actor.ip ? limits.byIp.consume(actor.ip) : undefined]);
  const refused = [byUser, byIp].find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (!refused) return undefined;
  const err: unknown = refused.reason;
  if (!(err instanceof RateLimitedError)) throw err;
  // One user over their own allowance must not use up the address's, which everyone behind one NAT or proxy shares.
  // If the give-back fails the point simply stays spent (stricter, never looser).
  if (byUser.status === 'rejected' && byIp.status === 'fulfilled' && actor.ip) await limits.byIp.reward(actor.ip).catch(() => undefined);
  return err;
}
