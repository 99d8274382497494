import { RateLimitedError } from '../../errors';

/** What a refused caller is told to wait: exports and verifies have no fixed length, so a short, honest guess. */
const RETRY_AFTER_SECONDS = 10;

/**
 * Caps the audit exports and verifies running at once on this instance, per user and in all: each holds a database
 * cursor's worth of work and (an export) a response a slow reader can keep open, so a flood of them would grow the
 * server's memory without bound. Beyond the cap the caller gets 429 with Retry-After.
 */
export class JobSlots {
  private readonly byUser = new Map<string, number>();
  private total = 0;

  constructor(
    private readonly perUser: number,
    private readonly overall: number,
  ) {}

  /** Takes a slot for `userId` or throws RateLimitedError; the returned function gives it back (once). */
  acquire(userId: string): () => void {
    const mine = this.byUser.get(userId) ?? 0;
    if (mine >= this.perUser) throw new RateLimitedError(RETRY_AFTER_SECONDS, `You already have ${mine} audit exports or verifications running; try again when one finishes`);
    if (this.total >= this.overall) throw new RateLimitedError(RETRY_AFTER_SECONDS, 'Too many audit exports or verifications are running; try again shortly');
    this.byUser.set(userId, mine + 1);
    this.total++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.total--;
      const left = (this.byUser.get(userId) ?? 1) - 1;
      if (left > 0) this.byUser.set(userId, left);
      else this.byUser.delete(userId);
    };
  }

  get running(): number {
    return this.total;
  }
}
