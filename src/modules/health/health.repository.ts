import type { EntityManager } from 'typeorm';
import { execute } from '../../db/statements';
import type { Page } from '../../pagination';
import type { HealthStatus } from '../provider-keys/provider-key.entity';

/** Health results kept per key: the newest this many (at the default 6 h interval, about 25 days of checks). */
export const HISTORY_PER_KEY = 100;

export const HEALTH_SOURCES = ['manual', 'scheduled', 'gateway'] as const;
export type HealthSource = (typeof HEALTH_SOURCES)[number];

export interface HealthEventRow {
  /** The answer showed that the upstream needs a key (a refusal of this key, or of the call without one). */
  keyRequired?: boolean;
  id: string;
  keyId: string;
  at: Date;
  status: HealthStatus;
  previousStatus: HealthStatus | null;
  detail: string | null;
  source: HealthSource;
  httpStatus: number | null;
  actorId: string | null;
}

type Raw = Record<string, unknown>;

function eventOf(r: Raw): HealthEventRow {
  return {
    id: String(r.id),
    keyId: String(r.key_id),
    at: new Date(Number(r.at)),
    status: r.status as HealthStatus,
    previousStatus: (r.previous_status ?? null) as HealthStatus | null,
    detail: r.detail == null ? null : String(r.detail),
    source: r.source as HealthSource,
    httpStatus: r.http_status == null ? null : Number(r.http_status),
    actorId: r.actor_id == null ? null : String(r.actor_id),
  };
}

export class HealthRepository {
  /** The key's health as of `at`, and one row of its history (the oldest beyond HISTORY_PER_KEY go). */
  async record(tx: EntityManager, e: HealthEventRow): Promise<void> {
    await tx.query('UPDATE provider_keys SET health_status = ?, health_checked_at = ?, health_detail = ?, health_key_required = CASE WHEN ? = 1 THEN 1 ELSE health_key_required END WHERE id = ?', [
      e.status, e.at.getTime(), e.detail, e.keyRequired ? 1 : 0, e.keyId,
    ]);
    await tx.query('INSERT INTO key_health_events (id, key_id, at, status, previous_status, detail, source, http_status, actor_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)', [
      e.id, e.keyId, e.at.getTime(), e.status, e.previousStatus, e.detail, e.source, e.httpStatus, e.actorId,
    ]);
    const [oldestKept]: Raw[] = await tx.query('SELECT id FROM key_health_events WHERE key_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?', [e.keyId, HISTORY_PER_KEY - 1]);
    if (oldestKept) await tx.query('DELETE FROM key_health_events WHERE key_id = ? AND id < ?', [e.keyId, oldestKept.id]);
  }

  async history(m: EntityManager, keyId: string, page: Page): Promise<HealthEventRow[]> {
    const rows: Raw[] = page.before
      ? await m.query('SELECT * FROM key_health_events WHERE key_id = ? AND id < ? ORDER BY id DESC LIMIT ?', [keyId, page.before, page.limit + 1])
      : await m.query('SELECT * FROM key_health_events WHERE key_id = ? ORDER BY id DESC LIMIT ?', [keyId, page.limit + 1]);
    return rows.map(eventOf);
  }

  /** Active, unexpired keys whose check is due (never checked first). */
  async due(m: EntityManager, now: number, limit: number): Promise<string[]> {
    const rows: Raw[] = await m.query(
      "SELECT id FROM provider_keys WHERE status = 'active' AND (health_next_check_at IS NULL OR health_next_check_at <= ?) AND (expires_at IS NULL OR expires_at > ?) ORDER BY health_next_check_at LIMIT ?",
      [now, now, limit],
    );
    return rows.map((r) => String(r.id));
  }

  /**
   * Claims a due key for one check by moving its next check to `next`: a conditional UPDATE, so of several instances
   * racing for it exactly one matches. True when this caller got it.
   */
  async claimDue(tx: EntityManager, id: string, now: number, next: number): Promise<boolean> {
    const n = await execute(tx, "UPDATE provider_keys SET health_next_check_at = ? WHERE id = ? AND status = 'active' AND (health_next_check_at IS NULL OR health_next_check_at <= ?)", [next, id, now]);
    return n === 1;
  }

  async scheduleNext(tx: EntityManager, id: string, next: number): Promise<void> {
    await tx.query('UPDATE provider_keys SET health_next_check_at = ? WHERE id = ?', [next, id]);
  }

  /** Active keys expiring within `horizon` ms whose notice for that distance has not been sent. */
  async expiring(m: EntityManager, now: number, horizon: number): Promise<Array<{ id: string; expiresAt: number; noticeDays: number | null }>> {
    const rows: Raw[] = await m.query("SELECT id, expires_at, expiry_notice_days FROM provider_keys WHERE status = 'active' AND expires_at > ? AND expires_at <= ?", [now, now + horizon]);
    return rows.map((r) => ({ id: String(r.id), expiresAt: Number(r.expires_at), noticeDays: r.expiry_notice_days == null ? null : Number(r.expiry_notice_days) }));
  }

  /** Claims the `days`-before notice of this expiry (once, across instances): true when this caller got it. */
  async claimExpiryNotice(tx: EntityManager, id: string, expiresAt: number, days: number): Promise<boolean> {
    const n = await execute(
      tx,
      "UPDATE provider_keys SET expiry_notice_days = ? WHERE id = ? AND status = 'active' AND expires_at = ? AND (expiry_notice_days IS NULL OR expiry_notice_days > ?)",
      [days, id, expiresAt, days],
    );
    return n === 1;
  }
}
