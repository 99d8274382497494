import type { EntityManager } from 'typeorm';

/**
 * The events a webhook can subscribe to (docs/webhooks.md). `audit.checkpoint` is named here for the audit checkpoint
 * work (issue 25b), which will publish it when a checkpoint is written; nothing publishes it yet.
 */
export const AUDIT_CHECKPOINT_EVENT = 'audit.checkpoint';
export const NOTIFICATION_EVENTS = [
  'provider_key.health_changed',
  'provider_key.expiring',
  'virtual_key.budget_exhausted',
  'provider_key.revealed',
  'audit.verify_failed',
  AUDIT_CHECKPOINT_EVENT,
] as const;
export type NotificationEvent = (typeof NOTIFICATION_EVENTS)[number];

/** Ids, names, statuses and times only: a notification never carries a secret, a hint or a response body. */
export type NotificationData = Record<string, string | number | boolean | null>;

/**
 * Where features hand their events to the webhooks: the seam that keeps them from importing the webhooks module.
 * `enqueue` writes the deliveries in the caller's transaction (they commit with the change, or not at all);
 * `publish` writes them in a transaction of its own, batched per turn of the event loop, and never throws.
 */
export interface Notifier {
  enqueue(tx: EntityManager, event: NotificationEvent, data: NotificationData, at?: Date): Promise<void>;
  publish(event: NotificationEvent, data: NotificationData, at?: Date): void;
}

/** For compositions without webhooks (and for tests of other features). */
export const silentNotifier: Notifier = {
  enqueue: async () => undefined,
  publish: () => undefined,
};
