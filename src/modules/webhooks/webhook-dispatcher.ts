import { Agent, request } from 'undici';
import type { Clock } from '../../clock';
import type { WebhookConfig } from '../../config';
import type { Database } from '../../db/database';
import { webhookSignature } from '../../crypto/webhook-signature';
import { newId } from '../../ids';
import { isoTime } from '../../iso-time';
import type { Logger } from '../../logger';
import type { WebhookSecrets } from './webhook-secrets';
import type { DeliveryRow, WebhookRow, WebhooksRepository } from './webhooks.repository';

const BATCH = 50;
const CONCURRENCY = 8;
/** Retries are never further apart than this, whatever the base. */
const MAX_BACKOFF_MS = 4 * 3_600_000;
/** Finished deliveries are kept this long for GET /webhooks/:id/deliveries, then pruned. */
const KEEP_MS = 30 * 86_400_000;
const PRUNE_EVERY_MS = 3_600_000;
/** At most this much of a receiver's answer is read (and then dropped: it is never stored). */
const ANSWER_LIMIT = 64 * 1024;

interface Outcome {
  statusCode: number | null;
  error: string | null;
  durationMs: number;
}

/** Exponential backoff after the n-th failed attempt: base, 2·base, 4·base, … at most 4 h. */
export function retryDelay(baseMs: number, attempts: number): number {
  return Math.min(MAX_BACKOFF_MS, baseMs * 2 ** Math.min(30, attempts - 1));
}

/**
 * Sends due deliveries, signed, and records every attempt. Several instances may run it at once: each delivery is
 * claimed with a conditional UPDATE (a lease) before it is sent, so exactly one instance sends each attempt. A
 * failed attempt is retried with exponential backoff until the delivery is PKV_WEBHOOK_RETRY_FOR old; a webhook
 * that fails for that long without a success (or whose delivery ran out of retries) is disabled with its reason.
 * Delivery is at least once: an instance that dies after sending but before recording lets the lease run out and
 * the attempt is made again (receivers deduplicate by the delivery's `id`).
 */
export class WebhookDispatcher {
  /** This instance, as the owner of its leases. */
  readonly owner = newId();
  private readonly agent: Agent;
  private readonly leaseMs: number;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<number> | undefined;
  private again = false;
  private lastPrune = 0;

  constructor(
    private readonly db: Database,
    private readonly repo: WebhooksRepository,
    private readonly secrets: WebhookSecrets,
    private readonly config: WebhookConfig,
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {
    // Redirects are never followed: a receiver cannot bounce a delivery to another address.
    this.agent = new Agent({ connect: { timeout: config.timeoutMs }, headersTimeout: config.timeoutMs, bodyTimeout: config.timeoutMs, maxRedirections: 0 });
    this.leaseMs = config.timeoutMs * 3 + 5000;
  }

  start(pollMs = 2000): void {
    this.timer ??= setInterval(() => this.kick(), pollMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => undefined);
    await this.agent.close();
  }

  /** Runs soon (new deliveries were committed); only while started. */
  kick(): void {
    if (!this.timer) return;
    void this.runOnce().catch((err: unknown) => this.logger.warn('webhook dispatch failed; will retry', { event: 'webhook.dispatch_failed', errorCode: (err as { code?: string })?.code }));
  }

  /** Sends every delivery due now, in claimed batches; returns how many attempts were made. Runs one at a time. */
  runOnce(): Promise<number> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      let total = 0;
      do {
        this.again = false;
        for (;;) {
          const claimed = await this.claimDue();
          if (claimed.length === 0) break;
          total += await this.sendAll(claimed);
        }
      } while (this.again);
      await this.pruneNow();
      return total;
    })().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async claimDue(): Promise<DeliveryRow[]> {
    const now = this.clock.now();
    const candidates = await this.db.read((m) => this.repo.due(m, now, BATCH));
    if (candidates.length === 0) return [];
    const claimed = await this.db.transaction(async (tx) => {
      const mine: string[] = [];
      for (const id of candidates) if (await this.repo.claim(tx, id, now, now + this.leaseMs, this.owner)) mine.push(id);
      return mine;
    });
    return this.db.read((m) => this.repo.findDeliveries(m, claimed));
  }

  private async sendAll(deliveries: DeliveryRow[]): Promise<number> {
    const webhooks = await this.db.read((m) => this.repo.findByIds(m, [...new Set(deliveries.map((d) => d.webhookId))]));
    let next = 0;
    let sent = 0;
    const worker = async () => {
      while (next < deliveries.length) {
        const d = deliveries[next++];
        const w = webhooks.get(d.webhookId);
        if (!w || w.status !== 'active' || !w.sealed) {
          await this.db.transaction((tx) => this.repo.cancel(tx, d.id, w ? 'webhook disabled' : 'webhook deleted', this.clock.now()));
          continue;
        }
        await this.attempt(w, d);
        sent++;
      }
    };
    await Promise.all(Array.from({ length: Math.min(CONCURRENCY, deliveries.length) }, worker));
    return sent;
  }

  private async attempt(w: WebhookRow, d: DeliveryRow): Promise<void> {
    const at = this.clock.now();
    const outcome = await this.send(w, d, at);
    const now = this.clock.now();
    const ok = outcome.error === null;
    const end = d.createdAt.getTime() + this.config.retryForMs;
    const attempts = d.attempts + 1;
    const giveUp = !ok && now >= end;
    // The last retry falls at the end of the window, so a delivery is retried for the whole of it.
    const nextAttemptAt = Math.min(now + retryDelay(this.config.retryBaseMs, attempts), end);
    const disabled = await this.db.transaction(async (tx) => {
      await this.repo.insertAttempt(tx, { id: newId(at), deliveryId: d.id, webhookId: w.id, at: new Date(at), ...outcome });
      await this.repo.settle(tx, d.id, this.owner, {
        status: ok ? 'delivered' : giveUp ? 'failed' : 'pending',
        statusCode: outcome.statusCode,
        error: outcome.error,
        nextAttemptAt: ok || giveUp ? d.nextAttemptAt.getTime() : nextAttemptAt,
        completedAt: ok || giveUp ? now : null,
      });
      if (ok) {
        await this.repo.markSucceeded(tx, w.id, now);
        return undefined;
      }
      const failingSince = (await this.repo.markFailed(tx, w.id, at))?.getTime() ?? at;
      if (!giveUp && now - failingSince < this.config.retryForMs) return undefined;
      const reason = `no successful delivery since ${isoTime(new Date(failingSince))} (${hours(now - failingSince)}); last attempt: ${outcome.error}`;
      return (await this.repo.disable(tx, w.id, reason, now)) ? reason : undefined;
    });
    if (disabled) this.logger.warn('webhook disabled after repeated failures', { event: 'webhook.disabled', webhookId: w.id, why: disabled });
  }

  /** One signed POST; the receiver's answer is read up to a limit and dropped (never stored, never logged). */
  private async send(w: WebhookRow, d: DeliveryRow, at: number): Promise<Outcome> {
    const started = Date.now();
    const done = (statusCode: number | null, error: string | null): Outcome => ({ statusCode, error, durationMs: Date.now() - started });
    let secret: string;
    try {
      secret = await this.secrets.open(w.id, w.sealed!);
    } catch {
      return done(null, 'the signing secret cannot be opened');
    }
    try {
      const answer = await request(w.url, {
        method: 'POST',
        dispatcher: this.agent,
        signal: AbortSignal.timeout(this.config.timeoutMs),
        headers: {
          'content-type': 'application/json',
          'user-agent': 'pkv-webhooks/1',
          'x-pkv-event': d.event,
          'x-pkv-delivery': d.id,
          'x-pkv-signature': webhookSignature(secret, d.payload, Math.floor(at / 1000)),
        },
        body: d.payload,
      });
      await answer.body.dump({ limit: ANSWER_LIMIT }).catch(() => undefined);
      const ok = answer.statusCode >= 200 && answer.statusCode < 300;
      return done(answer.statusCode, ok ? null : `HTTP ${answer.statusCode}`);
    } catch (err) {
      return done(null, failureOf(err));
    }
  }

  private async pruneNow(): Promise<void> {
    const now = this.clock.now();
    if (now - this.lastPrune < PRUNE_EVERY_MS) return;
    this.lastPrune = now;
    await this.db.transaction((tx) => this.repo.prune(tx, now - KEEP_MS));
  }
}

/** What went wrong, in words that carry nothing of the receiver's answer. */
function failureOf(err: unknown): string {
  const e = err as { code?: string; name?: string; cause?: { code?: string } };
  const code = e?.code ?? e?.cause?.code;
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError' || code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return 'timeout';
  if (code === 'UND_ERR_MAX_REDIRECTIONS' || code === 'UND_ERR_REDIRECT') return 'redirect refused';
  return typeof code === 'string' && /^[A-Z0-9_]{2,40}$/.test(code) ? `unreachable (${code})` : 'unreachable';
}

const hours = (ms: number) => (ms >= 3_600_000 ? `${Math.round(ms / 360_000) / 10} h` : `${Math.round(ms / 1000)} s`);
