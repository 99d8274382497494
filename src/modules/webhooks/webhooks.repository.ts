import type { EntityManager } from 'typeorm';
import type { Sealed } from '../../crypto/aead';
import { execute } from '../../db/statements';
import type { Page } from '../../pagination';

export const WEBHOOK_STATUSES = ['active', 'disabled'] as const;
export type WebhookStatus = (typeof WEBHOOK_STATUSES)[number];
export const DELIVERY_STATUSES = ['pending', 'delivered', 'failed', 'cancelled'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** A webhook as stored; its secret stays sealed until a delivery is signed. */
export interface WebhookRow {
  id: string;
  url: string;
  events: string[];
  status: WebhookStatus;
  disabledReason: string | null;
  disabledAt: Date | null;
  failingSince: Date | null;
  createdBy: string;
  createdAt: Date;
  updatedAt: Date;
  sealed: Sealed | null;
}

export interface DeliveryRow {
  id: string;
  webhookId: string;
  event: string;
  payload: string;
  status: DeliveryStatus;
  attempts: number;
  nextAttemptAt: Date;
  lastStatusCode: number | null;
  lastError: string | null;
  createdAt: Date;
  completedAt: Date | null;
}

export interface AttemptRow {
  id: string;
  deliveryId: string;
  webhookId: string;
  at: Date;
  statusCode: number | null;
  error: string | null;
  durationMs: number;
}

type Raw = Record<string, unknown>;
const ms = (v: unknown) => (v == null ? null : new Date(Number(v)));
const num = (v: unknown) => (v == null ? null : Number(v));
const buf = (v: unknown) => (Buffer.isBuffer(v) ? v : Buffer.from(v as Uint8Array));
const str = (v: unknown) => (v == null ? null : String(v));

function webhookOf(r: Raw): WebhookRow {
  return {
    id: String(r.id),
    url: String(r.url),
    events: JSON.parse(String(r.events)) as string[],
    status: r.status as WebhookStatus,
    disabledReason: str(r.disabled_reason),
    disabledAt: ms(r.disabled_at),
    failingSince: ms(r.failing_since),
    createdBy: String(r.created_by),
    createdAt: new Date(Number(r.created_at)),
    updatedAt: new Date(Number(r.updated_at)),
    sealed: r.secret_ciphertext == null ? null : { iv: buf(r.secret_iv), tag: buf(r.secret_tag), ciphertext: buf(r.secret_ciphertext) },
  };
}

function deliveryOf(r: Raw): DeliveryRow {
  return {
    id: String(r.id),
    webhookId: String(r.webhook_id),
    event: String(r.event),
    payload: String(r.payload),
    status: r.status as DeliveryStatus,
    attempts: Number(r.attempts),
    nextAttemptAt: new Date(Number(r.next_attempt_at)),
    lastStatusCode: num(r.last_status_code),
    lastError: str(r.last_error),
    createdAt: new Date(Number(r.created_at)),
    completedAt: ms(r.completed_at),
  };
}

function attemptOf(r: Raw): AttemptRow {
  return {
    id: String(r.id),
    deliveryId: String(r.delivery_id),
    webhookId: String(r.webhook_id),
    at: new Date(Number(r.at)),
    statusCode: num(r.status_code),
    error: str(r.error),
    durationMs: Number(r.duration_ms),
  };
}

const inList = (n: number) => Array.from({ length: n }, () => '?').join(', ');

export class WebhooksRepository {
  async insert(tx: EntityManager, w: WebhookRow): Promise<void> {
    await tx.query(
      'INSERT INTO webhooks (id, url, events, secret_iv, secret_tag, secret_ciphertext, status, disabled_reason, disabled_at, failing_since, created_by, created_at, updated_at) ' +
        'VALUES (?, ?, ?, ?, ?, ?, ?, NULL, NULL, NULL, ?, ?, ?)',
      [w.id, w.url, JSON.stringify(w.events), w.sealed?.iv, w.sealed?.tag, w.sealed?.ciphertext, w.status, w.createdBy, w.createdAt.getTime(), w.updatedAt.getTime()],
    );
  }

  async findById(m: EntityManager, id: string): Promise<WebhookRow | null> {
    const rows: Raw[] = await m.query('SELECT * FROM webhooks WHERE id = ?', [id]);
    return rows[0] ? webhookOf(rows[0]) : null;
  }

  async findByIds(m: EntityManager, ids: string[]): Promise<Map<string, WebhookRow>> {
    if (ids.length === 0) return new Map();
    const rows: Raw[] = await m.query(`SELECT * FROM webhooks WHERE id IN (${inList(ids.length)})`, ids);
    return new Map(rows.map((r) => [String(r.id), webhookOf(r)]));
  }

  async list(m: EntityManager, page: Page): Promise<WebhookRow[]> {
    const rows: Raw[] = page.before
      ? await m.query('SELECT * FROM webhooks WHERE id < ? ORDER BY id DESC LIMIT ?', [page.before, page.limit + 1])
      : await m.query('SELECT * FROM webhooks ORDER BY id DESC LIMIT ?', [page.limit + 1]);
    return rows.map(webhookOf);
  }

  /** Every active webhook and the events it takes (they are few: matched to events by the caller, not in SQL). */
  async subscriptions(m: EntityManager): Promise<Array<Pick<WebhookRow, 'id' | 'events'>>> {
    const rows: Raw[] = await m.query("SELECT id, events FROM webhooks WHERE status = 'active'");
    return rows.map((r) => ({ id: String(r.id), events: JSON.parse(String(r.events)) as string[] }));
  }

  /** The webhook and its whole delivery log, for good. */
  async delete(tx: EntityManager, id: string): Promise<void> {
    await tx.query('DELETE FROM webhook_attempts WHERE webhook_id = ?', [id]);
    await tx.query('DELETE FROM webhook_deliveries WHERE webhook_id = ?', [id]);
    await tx.query('DELETE FROM webhooks WHERE id = ?', [id]);
  }

  async insertDeliveries(tx: EntityManager, rows: DeliveryRow[]): Promise<void> {
    for (const d of rows) {
      await tx.query(
        'INSERT INTO webhook_deliveries (id, webhook_id, event, payload, status, attempts, next_attempt_at, lease_until, lease_owner, last_status_code, last_error, created_at, completed_at) ' +
          'VALUES (?, ?, ?, ?, ?, 0, ?, NULL, NULL, NULL, NULL, ?, NULL)',
        [d.id, d.webhookId, d.event, d.payload, d.status, d.nextAttemptAt.getTime(), d.createdAt.getTime()],
      );
    }
  }

  async listDeliveries(m: EntityManager, webhookId: string, page: Page): Promise<DeliveryRow[]> {
    const rows: Raw[] = page.before
      ? await m.query('SELECT * FROM webhook_deliveries WHERE webhook_id = ? AND id < ? ORDER BY id DESC LIMIT ?', [webhookId, page.before, page.limit + 1])
      : await m.query('SELECT * FROM webhook_deliveries WHERE webhook_id = ? ORDER BY id DESC LIMIT ?', [webhookId, page.limit + 1]);
    return rows.map(deliveryOf);
  }

  async attemptsOf(m: EntityManager, deliveryIds: string[]): Promise<AttemptRow[]> {
    if (deliveryIds.length === 0) return [];
    const rows: Raw[] = await m.query(`SELECT * FROM webhook_attempts WHERE delivery_id IN (${inList(deliveryIds.length)}) ORDER BY id`, deliveryIds);
    return rows.map(attemptOf);
  }

  /** Pending deliveries whose time has come and that no live lease holds, oldest due first. */
  async due(m: EntityManager, now: number, limit: number): Promise<string[]> {
    const rows: Raw[] = await m.query(
      "SELECT id FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?) ORDER BY next_attempt_at LIMIT ?",
      [now, now, limit],
    );
    return rows.map((r) => String(r.id));
  }

  /**
   * Claims one due delivery for `owner` until `leaseUntil`: a conditional UPDATE, so of several instances racing for
   * the row exactly one matches it. True when this caller got it.
   */
  async claim(tx: EntityManager, id: string, now: number, leaseUntil: number, owner: string): Promise<boolean> {
    const n = await execute(
      tx,
      "UPDATE webhook_deliveries SET lease_until = ?, lease_owner = ? WHERE id = ? AND status = 'pending' AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until < ?)",
      [leaseUntil, owner, id, now, now],
    );
    return n === 1;
  }

  async findDeliveries(m: EntityManager, ids: string[]): Promise<DeliveryRow[]> {
    if (ids.length === 0) return [];
    const rows: Raw[] = await m.query(`SELECT * FROM webhook_deliveries WHERE id IN (${inList(ids.length)})`, ids);
    return rows.map(deliveryOf);
  }

  /** Records one attempt, unless its delivery is gone meanwhile (the webhook was deleted while it was being sent). */
  async insertAttempt(tx: EntityManager, a: AttemptRow): Promise<void> {
    await tx.query(
      'INSERT INTO webhook_attempts (id, delivery_id, webhook_id, at, status_code, error, duration_ms) SELECT ?, ?, ?, ?, ?, ?, ? FROM webhook_deliveries WHERE id = ?',
      [a.id, a.deliveryId, a.webhookId, a.at.getTime(), a.statusCode, a.error, a.durationMs, a.deliveryId],
    );
  }

  /** The outcome of one attempt, written only while this owner still holds the lease. */
  async settle(
    tx: EntityManager,
    id: string,
    owner: string,
    outcome: { status: DeliveryStatus; statusCode: number | null; error: string | null; nextAttemptAt: number; completedAt: number | null },
  ): Promise<boolean> {
    const n = await execute(
      tx,
      'UPDATE webhook_deliveries SET status = ?, attempts = attempts + 1, last_status_code = ?, last_error = ?, next_attempt_at = ?, completed_at = ?, lease_until = NULL, lease_owner = NULL ' +
        "WHERE id = ? AND lease_owner = ? AND status = 'pending'",
      [outcome.status, outcome.statusCode, outcome.error, outcome.nextAttemptAt, outcome.completedAt, id, owner],
    );
    return n === 1;
  }

  /** A delivery whose webhook is gone or disabled: it will never be sent. */
  async cancel(tx: EntityManager, id: string, reason: string, at: number): Promise<void> {
    await tx.query("UPDATE webhook_deliveries SET status = 'cancelled', last_error = ?, completed_at = ?, lease_until = NULL, lease_owner = NULL WHERE id = ? AND status = 'pending'", [reason, at, id]);
  }

  async markSucceeded(tx: EntityManager, webhookId: string, at: number): Promise<void> {
    await tx.query('UPDATE webhooks SET failing_since = NULL, updated_at = ? WHERE id = ? AND failing_since IS NOT NULL', [at, webhookId]);
  }

  /** Notes a failed attempt; returns when the webhook has been failing since (the first failure after a success). */
  async markFailed(tx: EntityManager, webhookId: string, at: number): Promise<Date | null> {
    await tx.query('UPDATE webhooks SET failing_since = ?, updated_at = ? WHERE id = ? AND failing_since IS NULL', [at, at, webhookId]);
    const rows: Raw[] = await tx.query('SELECT failing_since FROM webhooks WHERE id = ?', [webhookId]);
    return rows[0] ? ms(rows[0].failing_since) : null;
  }

  /** Disables an active webhook with its reason and cancels its pending deliveries; false when it was not active. */
  async disable(tx: EntityManager, webhookId: string, reason: string, at: number): Promise<boolean> {
    const n = await execute(tx, "UPDATE webhooks SET status = 'disabled', disabled_reason = ?, disabled_at = ?, updated_at = ? WHERE id = ? AND status = 'active'", [reason, at, at, webhookId]);
    if (n !== 1) return false;
    await tx.query(
      "UPDATE webhook_deliveries SET status = 'cancelled', last_error = 'webhook disabled', completed_at = ?, lease_until = NULL, lease_owner = NULL WHERE webhook_id = ? AND status = 'pending'",
      [at, webhookId],
    );
    return true;
  }

  /** Finished deliveries (and their attempts) created before `before`: the log is kept bounded. */
  async prune(tx: EntityManager, before: number): Promise<void> {
    await tx.query("DELETE FROM webhook_attempts WHERE delivery_id IN (SELECT id FROM webhook_deliveries WHERE status <> 'pending' AND created_at < ?)", [before]);
    await tx.query("DELETE FROM webhook_deliveries WHERE status <> 'pending' AND created_at < ?", [before]);
  }
}
