import type { EntityManager } from 'typeorm';
import { Agent, request } from 'undici';
import type { Clock } from '../../clock';
import type { HealthConfig } from '../../config';
import type { Database } from '../../db/database';
import { sealIdOf, type Envelope } from '../../crypto/envelope';
import { AppError, ConflictError, ForbiddenError, IntegrityError, KeyDisabledError, KeyExpiredError, NotFoundError, UnavailableError } from '../../errors';
import { upstreamOf } from '../provider-keys/providers';
import { newId } from '../../ids';
import { isoTime } from '../../iso-time';
import type { Logger } from '../../logger';
import type { Notifier } from '../../notifications';
import { Page, PageResult, toPageResult } from '../../pagination';
import { Actor, can } from '../auth/actor';
import { auditOfRefusal, spendAllowance, type Allowance } from '../auth/allowance';
import type { AuditService } from '../audit/audit.service';
import { KeyScrubber } from '../gateway/scrub';
import { bindingOf, type HealthStatus, type ProviderKeyEntity } from '../provider-keys/provider-key.entity';
import type { ProviderKeysRepository } from '../provider-keys/provider-keys.repository';
import { CheckPlan, checkPlanFor, Classified, classifyAnswer, refusedWithoutKey } from './health-checks';
import type { HealthEventRow, HealthRepository, HealthSource } from './health.repository';

export interface Health {
  status: HealthStatus;
  checkedAt: string | null;
  detail: string | null;
}

export interface HealthEvent {
  id: string;
  at: string;
  status: HealthStatus;
  previousStatus: HealthStatus | null;
  detail: string | null;
  source: HealthSource;
  httpStatus: number | null;
  actorId: string | null;
}

/** A result to record: what the check or the gateway found, and the HTTP status it was read from. */
export interface Finding extends Classified {
  httpStatus: number | null;
}

/** At most this much of a provider's answer is read to classify it (it is then scrubbed; only a line is kept). */
const ANSWER_LIMIT = 16 * 1024;

export const toHealth = (k: Pick<ProviderKeyEntity, 'healthStatus' | 'healthCheckedAt' | 'healthDetail'>): Health => ({
  status: k.healthStatus,
  checkedAt: k.healthCheckedAt ? isoTime(k.healthCheckedAt) : null,
  detail: k.healthDetail,
});

function toHealthEvent(e: HealthEventRow): HealthEvent {
  return { id: e.id, at: isoTime(e.at), status: e.status, previousStatus: e.previousStatus, detail: e.detail, source: e.source, httpStatus: e.httpStatus, actorId: e.actorId };
}

/** Whatever part of the key an answer echoes is masked (every run of 8 of its bytes), as the gateway masks answers. */
function scrubbed(scrubber: KeyScrubber, bytes: Buffer): string {
  const s = scrubber.stream();
  return Buffer.concat([s.push(bytes), s.end()]).toString('utf8');
}

/**
 * Key health: active checks (one authenticated call that spends nothing, or an admin's probe) and the record of
 * every result, with the history and the `provider_key.health_changed` notification when the status moves.
 */
export class HealthService {
  private readonly agent: Agent;
  /** Checks under way on this instance, by key: a second request for the same key waits for the first. */
  private readonly inFlight = new Map<string, Promise<Health>>();

  constructor(
    private readonly db: Database,
    private readonly keys: Pick<ProviderKeysRepository, 'findById'>,
    private readonly repo: HealthRepository,
    private readonly envelope: Envelope,
    private readonly audit: Pick<AuditService, 'record'>,
    /** Manual checks per user and per address per minute: each writes an audit row and calls the provider. */
    private readonly checkLimits: Allowance,
    private readonly notifier: Notifier,
    readonly config: HealthConfig,
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {
    // Redirects are never followed: the key is sent to its baseUrl and nowhere else.
    this.agent = new Agent({ connect: { timeout: config.timeoutMs }, headersTimeout: config.timeoutMs, bodyTimeout: config.timeoutMs, maxRedirections: 0 });
  }

  /**
   * POST /provider-keys/:id/check: the key's owner or an admin (no reason needed: nothing is shown, and the key goes
   * only to the upstream its sealing is bound to); API tokens need provider-keys:reveal, like a virtual key. Auditors
   * 403. Every request, allowed or refused, writes a `provider_key.check` audit row, committed before the key is sent.
   */
  async check(actor: Actor, id: string): Promise<Health> {
    // Counted per user (their API tokens with them) and per address, as reveals are.
    const limited = await spendAllowance(this.checkLimits, actor, 'provider-keys:reveal');
    const unavailable = (err: unknown) => {
      throw err instanceof AppError ? err : new UnavailableError('The audit trail cannot be written right now', err);
    };
    // Decided on the locked row and recorded in one transaction: no audit row, no check (503, nothing sent).
    const { key, refusal } = await this.db
      .transaction(async (tx) => {
        const row = await this.keys.findById(tx, id, true);
        const where = row ? { keyId: row.id, ownerId: row.ownerId, projectId: row.projectId } : { keyId: id };
        const no = limited ? { ...auditOfRefusal(limited), error: limited } : this.refusal(actor, row);
        const detail = no ? { why: no.why } : { why: row!.ownerId === actor.userId ? 'owner' : 'admin', upstream: upstreamOf(row!.provider, row!.baseUrl), sealId: sealIdOf(row!) };
        await this.audit.record(tx, actor, 'provider_key.check', no ? no.outcome : 'success', where, { detail });
        // Claimed as the scheduler claims a due key: no instance's scheduler picks it up while this check runs.
        if (!no) await this.repo.scheduleNext(tx, row!.id, this.nextCheckAt(this.clock.now()));
        return { key: row, refusal: no };
      })
      .catch(unavailable);
    if (refusal) throw refusal.error;
    try {
      return await this.runCheck(key!, 'manual', actor.userId);
    } catch (err) {
      if (err instanceof IntegrityError) {
        // The sealing did not open for this row's upstream (re-pointed or damaged in the database): nothing was sent.
        const where = { keyId: key!.id, ownerId: key!.ownerId, projectId: key!.projectId };
        await this.db.transaction((tx) => this.audit.record(tx, actor, 'provider_key.check', 'error', where, { detail: { why: 'integrity_check_failed' } })).catch(() => undefined);
      }
      throw err;
    }
  }

  private refusal(actor: Actor, key: ProviderKeyEntity | null): { outcome: 'denied'; why: string; error: Error } | undefined {
    const denied = (why: string, error: Error) => ({ outcome: 'denied' as const, why, error });
    if (!key || key.status === 'deleted' || (actor.role === 'member' && key.ownerId !== actor.userId)) {
      return denied(!key ? 'not_found' : key.status === 'deleted' ? 'key_deleted' : 'not_owner', new NotFoundError('No such key'));
    }
    if (actor.role === 'auditor') return denied('auditor', new ForbiddenError('Auditors never use keys'));
    if (!can(actor, 'provider-keys:reveal')) return denied('missing_scope', new ForbiddenError('Checking a key uses it: this credential lacks the provider-keys:reveal scope'));
    if (key.status === 'disabled') return denied('key_disabled', new KeyDisabledError());
    if (key.expiresAt && key.expiresAt.getTime() <= this.clock.now()) return denied('key_expired', new KeyExpiredError());
    const plan = checkPlanFor(key);
    if ('none' in plan) return denied('no_check', new ConflictError(plan.none));
    return undefined;
  }

  /** GET /provider-keys/:id/health: the key's recent results, newest first (whoever may read the key). */
  async history(actor: Actor, id: string, page: Page): Promise<PageResult<HealthEvent>> {
    const key = await this.db.read((m) => this.keys.findById(m, id));
    if (!key || (actor.role === 'member' && key.ownerId !== actor.userId)) throw new NotFoundError('No such key');
    if (!can(actor, 'provider-keys:read')) throw new ForbiddenError('Reading a key’s health needs the provider-keys:read right');
    const rows = await this.db.read((m) => this.repo.history(m, id, page));
    return toPageResult(rows, page, toHealthEvent);
  }

  /** One check of one key now, recorded (also moves its next scheduled check); concurrent ones share it. */
  runCheck(key: ProviderKeyEntity, source: HealthSource, actorId: string | null): Promise<Health> {
    let flight = this.inFlight.get(key.id);
    if (!flight) {
      flight = this.checkAndRecord(key, source, actorId).finally(() => this.inFlight.delete(key.id));
      this.inFlight.set(key.id, flight);
    }
    return flight;
  }

  /** When the key is due again: the interval, jittered by up to ±10% so a fleet of keys does not move in step. */
  nextCheckAt(now: number): number {
    return now + Math.round(this.config.intervalMs * (0.9 + Math.random() * 0.2));
  }

  /**
   * Records a finding on the locked key row: its health, a history row, and the notification when the status
   * changed. Returns false (and writes nothing) when the key is gone.
   */
  async record(tx: EntityManager, key: ProviderKeyEntity, f: Finding, source: HealthSource, actorId: string | null, at: Date): Promise<boolean> {
    if (key.status === 'deleted') return false;
    await this.repo.record(tx, { id: newId(at.getTime()), keyId: key.id, at, status: f.status, previousStatus: key.healthStatus, detail: f.detail, source, httpStatus: f.httpStatus, actorId, keyRequired: f.keyRequired });
    if (f.status !== key.healthStatus) {
      await this.notifier.enqueue(
        tx,
        'provider_key.health_changed',
        { keyId: key.id, name: key.name, provider: key.provider, projectId: key.projectId, ownerId: key.ownerId, from: key.healthStatus, to: f.status, detail: f.detail, source, checkedAt: isoTime(at) },
        at,
      );
    }
    return true;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  private async checkAndRecord(key: ProviderKeyEntity, source: HealthSource, actorId: string | null): Promise<Health> {
    const plan = checkPlanFor(key);
    if ('none' in plan) throw new ConflictError(plan.none);
    const finding = await this.probe(key, plan);
    const at = new Date(this.clock.now());
    return this.db.transaction(async (tx) => {
      const now = await this.keys.findById(tx, key.id, true);
      // A secret replaced or a key pointed elsewhere while the check ran: the finding is about something gone.
      if (!now || now.fingerprint !== key.fingerprint || now.baseUrl !== key.baseUrl || now.healthProbeModel !== key.healthProbeModel) return toHealth(now ?? key);
      await this.repo.scheduleNext(tx, key.id, this.nextCheckAt(at.getTime()));
      if (!(await this.record(tx, now, finding, source, actorId, at))) return toHealth(now);
      return { status: finding.status, checkedAt: isoTime(at), detail: finding.detail };
    });
  }

  /** The keyed call, then (after a success) the same call without the key, which must be refused. */
  private async probe(key: ProviderKeyEntity, plan: CheckPlan): Promise<Finding> {
    const opened = this.envelope.open(bindingOf(key), key);
    let secret: string;
    try {
      secret = opened.toString('utf8');
    } finally {
      opened.fill(0);
    }
    const scrubber = new KeyScrubber(secret);
    const keyed = await this.call(plan, { ...plan.extra, ...plan.credential(secret) }, scrubber);
    if ('failure' in keyed) return { status: 'upstream_error', detail: keyed.failure, httpStatus: null };
    const verdict = classifyAnswer(key.provider, keyed.status, keyed.body);
    if (verdict) return { ...verdict, httpStatus: keyed.status };
    const what = `${plan.method} ${new URL(plan.url).pathname}`;
    const control = await this.call(plan, plan.extra, scrubber);
    if ('failure' in control) return { status: 'unknown', detail: `${what} answered ${keyed.status} with the key, but the same call without it failed (${control.failure}): not confirmed`, httpStatus: keyed.status };
    if (!refusedWithoutKey(key.provider, control.status, control.body)) {
      return { status: 'unknown', detail: `${what} answered ${keyed.status} with the key and ${control.status} without it: this endpoint does not show whether the key works`, httpStatus: keyed.status };
    }
    return { status: 'valid', detail: `${what} answered ${keyed.status}; without the key: ${control.status}`, httpStatus: keyed.status, keyRequired: true };
  }

  /** One call to the provider; its answer is read up to a limit and scrubbed of the key before anything looks at it. */
  private async call(plan: CheckPlan, headers: Record<string, string>, scrubber: KeyScrubber): Promise<{ status: number; body: string } | { failure: string }> {
    try {
      const answer = await request(plan.url, {
        method: plan.method,
        headers: { accept: 'application/json', 'accept-encoding': 'identity', 'user-agent': 'pkv-health/1', ...headers },
        body: plan.body,
        dispatcher: this.agent,
        signal: AbortSignal.timeout(this.config.timeoutMs),
      });
      const parts: Buffer[] = [];
      let size = 0;
      for await (const chunk of answer.body) {
        if (size < ANSWER_LIMIT) parts.push(chunk as Buffer);
        size += (chunk as Buffer).length;
        if (size >= ANSWER_LIMIT) break;
      }
      if (size >= ANSWER_LIMIT) answer.body.destroy();
      return { status: answer.statusCode, body: scrubbed(scrubber, Buffer.concat(parts).subarray(0, ANSWER_LIMIT)) };
    } catch (err) {
      const e = err as { name?: string; code?: string };
      const timeout = e?.name === 'TimeoutError' || e?.name === 'AbortError' || /TIMEOUT/.test(e?.code ?? '');
      this.logger.debug('health check call failed', { event: 'health.call_failed', errorName: e?.name, errorCode: e?.code });
      return { failure: timeout ? `no answer within ${this.config.timeoutMs / 1000} s` : `the provider could not be reached (${/^[A-Z0-9_]{2,40}$/.test(e?.code ?? '') ? e.code : 'network error'})` };
    }
  }
}
