import type { EntityManager } from 'typeorm';
import type { Clock } from '../../clock';
import type { Database } from '../../db/database';
import { afterCommit } from '../../db/hooks';
import { ForbiddenError, NotFoundError } from '../../errors';
import { newId } from '../../ids';
import { isoTime } from '../../iso-time';
import type { Logger } from '../../logger';
import { newWebhookSecret } from '../../crypto/webhook-signature';
import { perTurn } from '../../batching';
import type { NotificationData, NotificationEvent, Notifier } from '../../notifications';
import { Page, PageResult, toPageResult } from '../../pagination';
import type { Actor } from '../auth/actor';
import type { AuditService } from '../audit/audit.service';
import type { WebhookSecrets } from './webhook-secrets';
import type { AttemptRow, DeliveryRow, DeliveryStatus, WebhookRow, WebhooksRepository, WebhookStatus } from './webhooks.repository';

export interface Webhook {
  id: string;
  url: string;
  events: string[];
  status: WebhookStatus;
  disabledReason: string | null;
  disabledAt: string | null;
  failingSince: string | null;
  createdBy: string;
  createdAt: string;
  updatedAt: string;
}

export interface CreatedWebhook extends Webhook {
  /** Only when the vault generated it: shown this once. A secret the admin gave is never sent back. */
  secret?: string;
}

export interface DeliveryAttempt {
  at: string;
  statusCode: number | null;
  error: string | null;
  durationMs: number;
}

export interface Delivery {
  id: string;
  webhookId: string;
  event: string;
  status: DeliveryStatus;
  attempts: number;
  /** When the next attempt is due; null once the delivery is finished. */
  nextAttemptAt: string | null;
  lastStatusCode: number | null;
  lastError: string | null;
  createdAt: string;
  completedAt: string | null;
  /** The JSON body sent (and signed) on every attempt. */
  body: unknown;
  attemptLog: DeliveryAttempt[];
}

export interface CreateWebhookInput {
  url: string;
  events: NotificationEvent[];
  secret?: string;
}

interface Published {
  event: NotificationEvent;
  data: NotificationData;
  at: number;
}

const iso = (d: Date | null) => (d ? isoTime(d) : null);

export function toWebhook(w: WebhookRow): Webhook {
  return {
    id: w.id,
    url: w.url,
    events: w.events,
    status: w.status,
    disabledReason: w.disabledReason,
    disabledAt: iso(w.disabledAt),
    failingSince: iso(w.failingSince),
    createdBy: w.createdBy,
    createdAt: isoTime(w.createdAt),
    updatedAt: isoTime(w.updatedAt),
  };
}

function toDelivery(d: DeliveryRow, attempts: AttemptRow[]): Delivery {
  return {
    id: d.id,
    webhookId: d.webhookId,
    event: d.event,
    status: d.status,
    attempts: d.attempts,
    nextAttemptAt: d.status === 'pending' ? isoTime(d.nextAttemptAt) : null,
    lastStatusCode: d.lastStatusCode,
    lastError: d.lastError,
    createdAt: isoTime(d.createdAt),
    completedAt: iso(d.completedAt),
    body: JSON.parse(d.payload),
    attemptLog: attempts.map((a) => ({ at: isoTime(a.at), statusCode: a.statusCode, error: a.error, durationMs: a.durationMs })),
  };
}

/** Scheme, host and port: what the audit trail records of a webhook URL (its path may carry the receiver's token). */
const originOf = (url: string) => new URL(url).origin;

/**
 * Webhook subscriptions (admin sessions only) and the outbox every feature writes its events to: one delivery row
 * per subscribed webhook, sent and retried by the dispatcher.
 */
export class WebhooksService implements Notifier {
  /** Called once deliveries are committed (the dispatcher sends them now rather than at its next poll). */
  onQueued: () => void = () => undefined;
  private readonly published = perTurn<Published, void>((batch) => this.publishBatch(batch), 256);

  constructor(
    private readonly db: Database,
    private readonly repo: WebhooksRepository,
    private readonly secrets: WebhookSecrets,
    private readonly audit: AuditService,
    private readonly logger: Logger,
    private readonly clock: Clock,
  ) {}

  async create(actor: Actor, input: CreateWebhookInput): Promise<CreatedWebhook> {
    assertManages(actor);
    const id = newId();
    const generated = input.secret === undefined ? newWebhookSecret() : undefined;
    const now = new Date(this.clock.now());
    const row: WebhookRow = {
      id,
      url: new URL(input.url).href,
      events: [...new Set(input.events)],
      status: 'active',
      disabledReason: null,
      disabledAt: null,
      failingSince: null,
      createdBy: actor.userId,
      createdAt: now,
      updatedAt: now,
      sealed: await this.secrets.seal(id, input.secret ?? generated!),
    };
    await this.db.transaction(async (tx) => {
      await this.repo.insert(tx, row);
      await this.audit.record(tx, actor, 'webhook.create', 'success', {}, { detail: { webhookId: id, origin: originOf(row.url), events: row.events, secretGenerated: generated !== undefined } });
    });
    return { ...toWebhook(row), ...(generated ? { secret: generated } : {}) };
  }

  async list(actor: Actor, page: Page): Promise<PageResult<Webhook>> {
    assertManages(actor);
    const rows = await this.db.read((m) => this.repo.list(m, page));
    return toPageResult(rows, page, toWebhook);
  }

  async get(actor: Actor, id: string): Promise<Webhook> {
    assertManages(actor);
    return toWebhook(await this.db.read((m) => this.find(m, id)));
  }

  /** The webhook, its secret and its delivery log go for good; nothing more is sent to it. */
  async delete(actor: Actor, id: string): Promise<void> {
    assertManages(actor);
    await this.db.transaction(async (tx) => {
      const w = await this.find(tx, id);
      await this.repo.delete(tx, id);
      await this.audit.record(tx, actor, 'webhook.delete', 'success', {}, { detail: { webhookId: id, origin: originOf(w.url), events: w.events, status: w.status } });
    });
  }

  async deliveries(actor: Actor, id: string, page: Page): Promise<PageResult<Delivery>> {
    assertManages(actor);
    return this.db.read(async (m) => {
      await this.find(m, id);
      const rows = await this.repo.listDeliveries(m, id, page);
      const result = toPageResult(rows, page, (d) => d);
      const attempts = await this.repo.attemptsOf(m, result.items.map((d) => d.id));
      return { items: result.items.map((d) => toDelivery(d, attempts.filter((a) => a.deliveryId === d.id))), nextCursor: result.nextCursor };
    });
  }

  /** Deliveries for every active webhook subscribed to `event`, written in the caller's transaction. */
  async enqueue(tx: EntityManager, event: NotificationEvent, data: NotificationData, at?: Date): Promise<void> {
    const rows = this.deliveriesFor([{ event, data, at: at?.getTime() ?? this.clock.now() }], await this.repo.subscriptions(tx));
    if (rows.length === 0) return;
    await this.repo.insertDeliveries(tx, rows);
    afterCommit(tx, () => this.onQueued());
  }

  /** The same in a transaction of its own, batched with the other events of this turn; a failure is logged, not thrown. */
  publish(event: NotificationEvent, data: NotificationData, at?: Date): void {
    this.published.load({ event, data, at: at?.getTime() ?? this.clock.now() }).catch((err: unknown) => {
      this.logger.error('webhook deliveries could not be queued', { event: 'webhook.enqueue_failed', notification: event, errorCode: (err as { code?: string })?.code });
    });
  }

  /** A read first: with no subscriber (the common case for reveals) nothing is written and no transaction opened. */
  private async publishBatch(batch: readonly Published[]): Promise<void[]> {
    const rows = this.deliveriesFor(batch, await this.db.read((m) => this.repo.subscriptions(m)));
    if (rows.length > 0) {
      await this.db.transaction((tx) => this.repo.insertDeliveries(tx, rows));
      this.onQueued();
    }
    return batch.map(() => undefined);
  }

  /** One delivery per event and active webhook subscribed to it. */
  private deliveriesFor(events: readonly Published[], subscriptions: Array<Pick<WebhookRow, 'id' | 'events'>>): DeliveryRow[] {
    const rows: DeliveryRow[] = [];
    for (const e of events) {
      for (const w of subscriptions.filter((s) => s.events.includes(e.event))) {
        const id = newId();
        const created = new Date(this.clock.now());
        rows.push({
          id,
          webhookId: w.id,
          event: e.event,
          payload: JSON.stringify({ id, event: e.event, at: isoTime(new Date(e.at)), data: e.data }),
          status: 'pending',
          attempts: 0,
          nextAttemptAt: created,
          lastStatusCode: null,
          lastError: null,
          createdAt: created,
          completedAt: null,
        });
      }
    }
    return rows;
  }

  private async find(m: EntityManager, id: string): Promise<WebhookRow> {
    const w = await this.repo.findById(m, id);
    if (!w) throw new NotFoundError('No such webhook');
    return w;
  }
}

/**
 * Admins, through a session or the CLI. Not through an API token: whoever holds one could point the vault's security
 * notifications elsewhere or silence them, and a token is the credential most likely to leak.
 */
function assertManages(actor: Actor): void {
  if (actor.role !== 'admin') throw new ForbiddenError('Webhooks are managed by admins');
  if (actor.via === 'api_token') throw new ForbiddenError('Webhooks are managed with an admin session, not an API token');
}
