import type { Clock } from '../../clock';
import type { Database } from '../../db/database';
import type { Logger } from '../../logger';
import type { HealthStatus, ProviderKeyEntity } from '../provider-keys/provider-key.entity';
import type { ProviderKeysRepository } from '../provider-keys/provider-keys.repository';
import { classifyPassive } from './health-checks';
import type { Finding, HealthService } from './health.service';

/** Passing states: a key that keeps flapping between them and `valid` is written at most once a minute per instance. */
const TRANSIENT: ReadonlySet<HealthStatus> = new Set(['rate_limited', 'upstream_error']);
const TRANSIENT_EVERY_MS = 60_000;

interface Observed {
  finding: Finding;
  at: number;
}

/**
 * Health from the gateway's answers, without a write per call. Each call compares what the provider answered with
 * the health its key row had when the call was authorized (read afresh for every call); only a difference is kept,
 * in memory (the latest per key), and written in one transaction about every second, where the row is compared again
 * under its lock. So a key's health is written when it changes, not per request: a 401 makes a `valid` key `invalid`
 * within a second, and the calls after that see `invalid` and write nothing.
 */
export class PassiveHealth {
  private pending = new Map<string, Observed>();
  private readonly lastTransient = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> = Promise.resolve();

  constructor(
    private readonly db: Database,
    private readonly keys: Pick<ProviderKeysRepository, 'findByIds'>,
    private readonly health: Pick<HealthService, 'record'>,
    private readonly logger: Logger,
    private readonly clock: Clock,
    private readonly intervalMs = 1000,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  /** One gateway answer: its status and the first bytes of an error body (already scrubbed of the key). */
  observe(key: Pick<ProviderKeyEntity, 'id' | 'provider' | 'baseUrl' | 'healthStatus' | 'healthKeyRequired'>, httpStatus: number, bodyHead: string): void {
    const found = classifyPassive(key, httpStatus, bodyHead);
    if (!found) return;
    if (found.status === key.healthStatus && !this.pending.has(key.id)) return;
    this.pending.set(key.id, { finding: { ...found, httpStatus }, at: this.clock.now() });
  }

  /** Writes the changes observed since the last flush (serialized: callers may await it to see their own). */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.flushNow());
    return this.flushing;
  }

  private async flushNow(): Promise<void> {
    if (this.pending.size === 0) return;
    const batch = this.pending;
    this.pending = new Map();
    const now = this.clock.now();
    for (const [id, at] of this.lastTransient) if (now - at >= TRANSIENT_EVERY_MS) this.lastTransient.delete(id);
    const wanted = [...batch].filter(([id, o]) => !(TRANSIENT.has(o.finding.status) && this.lastTransient.has(id)));
    if (wanted.length === 0) return;
    try {
      const written = await this.db.transaction(async (tx) => {
        const rows = await this.keys.findByIds(tx, wanted.map(([id]) => id).sort(), true);
        const done: string[] = [];
        for (const [id, o] of wanted) {
          const row = rows.get(id);
          if (!row || row.status === 'deleted' || row.healthStatus === o.finding.status) continue;
          if (await this.health.record(tx, row, o.finding, 'gateway', null, new Date(o.at))) done.push(id);
        }
        return done;
      });
      for (const id of written) if (TRANSIENT.has(batch.get(id)!.finding.status)) this.lastTransient.set(id, now);
    } catch (err) {
      // Kept for the next flush, unless a newer observation of the same key came in meanwhile.
      for (const [id, o] of wanted) if (!this.pending.has(id)) this.pending.set(id, o);
      this.logger.warn('gateway health signals could not be written; will retry', { event: 'health.passive_flush_failed', errorCode: (err as { code?: string })?.code });
    }
  }
}
