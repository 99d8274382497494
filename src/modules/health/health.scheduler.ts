import type { Clock } from '../../clock';
import type { Database } from '../../db/database';
import { isoTime } from '../../iso-time';
import type { Logger } from '../../logger';
import type { Notifier } from '../../notifications';
import type { ProviderKeysRepository } from '../provider-keys/provider-keys.repository';
import { checkPlanFor } from './health-checks';
import type { HealthRepository } from './health.repository';
import type { HealthService } from './health.service';

const DAY_MS = 86_400_000;
/** Expiry notices: 7 days and 1 day before. A key found inside both distances at once gets the nearer one only. */
export const EXPIRY_NOTICE_DAYS = [7, 1] as const;

export interface TickResult {
  checked: number;
  expiryNotices: number;
}

/**
 * The background work of key health, on a timer (PKV_HEALTH_SCHEDULER) or driven by tests through tick() with their
 * own clock: checks every active, unexpired key when it is due (claimed first, so several instances never check one
 * key at once, at most `concurrency` at a time here), and sends each expiry notice once.
 */
export class HealthScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<TickResult> | undefined;
  /** Set while stop() waits: the run claims nothing more and starts no further check (those under way finish). */
  private stopping = false;

  constructor(
    private readonly db: Database,
    private readonly keys: Pick<ProviderKeysRepository, 'findById'>,
    private readonly repo: HealthRepository,
    private readonly health: HealthService,
    private readonly notifier: Notifier,
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {}

  /** Runs now (keys that fell due while no instance ran), then every tenth of the interval, at least every minute. */
  start(): void {
    if (this.timer) return;
    const run = () => this.timer && void this.tick().catch((err: unknown) => this.logger.warn('health scheduler run failed; will retry', { event: 'health.tick_failed', errorCode: (err as { code?: string })?.code }));
    this.timer = setInterval(run, Math.min(60_000, Math.max(1000, this.health.config.intervalMs / 10)));
    this.timer.unref();
    setImmediate(run);
  }

  /** Stops promptly: the checks under way finish; keys claimed for this run but not started are due again at once. */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.stopping = true;
    await this.running?.catch(() => undefined);
    this.stopping = false;
  }

  /** One run: every due check and every due expiry notice. Runs one at a time (a call during a run joins it). */
  tick(): Promise<TickResult> {
    this.running ??= (async () => {
      const expiryNotices = await this.sendExpiryNotices();
      const checked = await this.checkDue();
      return { checked, expiryNotices };
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async checkDue(): Promise<number> {
    const { concurrency } = this.health.config;
    let checked = 0;
    for (;;) {
      if (this.stopping) return checked;
      const now = this.clock.now();
      const due = await this.db.read((m) => this.repo.due(m, now, concurrency * 4));
      if (due.length === 0) return checked;
      const claimed = await this.db.transaction(async (tx) => {
        const mine: string[] = [];
        for (const id of due) if (await this.repo.claimDue(tx, id, now, this.health.nextCheckAt(now))) mine.push(id);
        return mine;
      });
      let next = 0;
      const worker = async () => {
        while (next < claimed.length && !this.stopping) {
          const id = claimed[next++];
          const key = await this.db.read((m) => this.keys.findById(m, id));
          // A key without a check (no probe, no baseUrl) was claimed all the same: it is not looked at again until then.
          if (!key || key.status !== 'active' || 'none' in checkPlanFor(key)) continue;
          try {
            await this.health.runCheck(key, 'scheduled', null);
            checked++;
          } catch (err) {
            this.logger.warn('scheduled health check failed', { event: 'health.check_failed', keyId: id, errorCode: (err as { code?: string })?.code });
          }
        }
      };
      await Promise.all(Array.from({ length: Math.min(concurrency, claimed.length) }, worker));
      // Stopped mid-run: what this run claimed but never started is handed back (due now) for the next start or instance.
      if (next < claimed.length) {
        const left = claimed.slice(next);
        await this.db.transaction(async (tx) => {
          for (const id of left) await this.repo.scheduleNext(tx, id, now);
        });
        return checked;
      }
      if (due.length < concurrency * 4) return checked;
    }
  }

  private async sendExpiryNotices(): Promise<number> {
    const now = this.clock.now();
    const soon = await this.db.read((m) => this.repo.expiring(m, now, EXPIRY_NOTICE_DAYS[0] * DAY_MS));
    let sent = 0;
    for (const k of soon) {
      const days = [...EXPIRY_NOTICE_DAYS].reverse().find((d) => k.expiresAt - now <= d * DAY_MS)!;
      if (k.noticeDays !== null && k.noticeDays <= days) continue;
      const notified = await this.db.transaction(async (tx) => {
        if (!(await this.repo.claimExpiryNotice(tx, k.id, k.expiresAt, days))) return false;
        const key = await this.keys.findById(tx, k.id);
        if (!key) return false;
        await this.notifier.enqueue(
          tx,
          'provider_key.expiring',
          { keyId: key.id, name: key.name, provider: key.provider, projectId: key.projectId, ownerId: key.ownerId, expiresAt: isoTime(new Date(k.expiresAt)), daysLeft: days },
          new Date(now),
        );
        return true;
      });
      if (notified) sent++;
    }
    return sent;
  }
}
