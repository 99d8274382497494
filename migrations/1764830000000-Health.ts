import { MigrationInterface, QueryRunner, Table, TableColumn, TableColumnOptions, TableIndex, TableOptions } from 'typeorm';

const id = (name = 'id'): TableColumnOptions => ({ name, type: 'varchar', length: '36', isPrimary: name === 'id' });
const str = (name: string, length: number, nullable = false): TableColumnOptions => ({ name, type: 'varchar', length: String(length), isNullable: nullable });
const ms = (name: string, nullable = false): TableColumnOptions => ({ name, type: 'bigint', isNullable: nullable });
const int = (name: string, nullable = false): TableColumnOptions => ({ name, type: 'int', isNullable: nullable });
const blob = (name: string): TableColumnOptions => ({ name, type: 'blob', isNullable: true });

const mysql = (q: QueryRunner) => q.connection.options.type === 'mysql';
const utf8mb4 = (c: TableColumnOptions): TableColumnOptions => (c.type === 'varchar' || c.type === 'text' ? { ...c, charset: 'utf8mb4', collation: 'utf8mb4_unicode_ci' } : c);

/** Text columns are utf8mb4 on MySQL/MariaDB whatever the database's default, as in the Initial migration. */
function table(q: QueryRunner, options: TableOptions): Table {
  return new Table(mysql(q) ? { ...options, columns: options.columns?.map(utf8mb4) } : options);
}
const column = (q: QueryRunner, options: TableColumnOptions) => new TableColumn(mysql(q) ? utf8mb4(options) : options);

/**
 * Key health, hygiene and webhooks (issue 21):
 * - provider_keys: the key's health (status, when, why), whether its upstream is known to need the key, the opt-in probe model, when the scheduler checks it next,
 *   which expiry notice was sent for its current expiry, and when its secret was last set (its age).
 * - virtual_keys: the UTC day whose budget-exhausted notice was sent.
 * - key_health_events: each key's recent health results (bounded per key by the application).
 * - webhooks, webhook_deliveries, webhook_attempts: subscriptions, the outbox of signed deliveries, every attempt.
 */
export class Health1764830000000 implements MigrationInterface {
  name = 'Health1764830000000';

  async up(q: QueryRunner): Promise<void> {
    await q.addColumn('provider_keys', column(q, { name: 'health_status', type: 'varchar', length: '16', default: "'unknown'" }));
    await q.addColumn('provider_keys', column(q, ms('health_checked_at', true)));
    await q.addColumn('provider_keys', column(q, str('health_detail', 512, true)));
    await q.addColumn('provider_keys', column(q, str('health_probe_model', 128, true)));
    // 1 once the key's upstream was seen to refuse a call for want of this key (or any key): its successes then count.
    await q.addColumn('provider_keys', column(q, { name: 'health_key_required', type: 'smallint', default: 0 }));
    await q.addColumn('provider_keys', column(q, ms('health_next_check_at', true)));
    await q.addColumn('provider_keys', column(q, int('expiry_notice_days', true)));
    await q.addColumn('provider_keys', column(q, ms('secret_set_at', true)));
    // A key's age is that of its secret: the last successful rotation, else its creation.
    await q.query(
      'UPDATE provider_keys SET secret_set_at = COALESCE((SELECT MAX(a.at) FROM audit_events a ' +
        "WHERE a.key_id = provider_keys.id AND a.action = 'provider_key.rotate' AND a.outcome = 'success'), created_at)",
    );
    await q.createIndex('provider_keys', new TableIndex({ name: 'ix_provider_keys_health', columnNames: ['health_status', 'id'] }));
    await q.createIndex('provider_keys', new TableIndex({ name: 'ix_provider_keys_health_due', columnNames: ['status', 'health_next_check_at'] }));
    // Expiry notices look for keys expiring soon every minute.
    await q.createIndex('provider_keys', new TableIndex({ name: 'ix_provider_keys_expires', columnNames: ['status', 'expires_at'] }));

    await q.addColumn('virtual_keys', column(q, ms('budget_notified_day', true)));

    // No foreign keys: written by the scheduler and the gateway's batches, which must never wait on a parent's lock.
    await q.createTable(
      table(q, {
        name: 'key_health_events',
        columns: [id(), id('key_id'), ms('at'), str('status', 16), str('previous_status', 16, true), str('detail', 512, true), str('source', 16), int('http_status', true), str('actor_id', 36, true)],
        indices: [new TableIndex({ name: 'ix_key_health_events_key', columnNames: ['key_id', 'id'] })],
      }),
    );

    await q.createTable(
      table(q, {
        name: 'webhooks',
        columns: [
          id(),
          str('url', 2048),
          // JSON array of event names.
          str('events', 1024),
          // The signing secret, sealed (AES-256-GCM) under the webhook system key, bound to this row's id.
          blob('secret_iv'),
          blob('secret_tag'),
          blob('secret_ciphertext'),
          str('status', 16),
          str('disabled_reason', 512, true),
          ms('disabled_at', true),
          // First failed attempt since the last success: a webhook failing for the whole retry window is disabled.
          ms('failing_since', true),
          id('created_by'),
          ms('created_at'),
          ms('updated_at'),
        ],
      }),
    );

    await q.createTable(
      table(q, {
        name: 'webhook_deliveries',
        columns: [
          id(),
          id('webhook_id'),
          str('event', 48),
          // The exact JSON body that is signed and sent on every attempt.
          { name: 'payload', type: 'text' },
          str('status', 16),
          { name: 'attempts', type: 'int', default: 0 },
          ms('next_attempt_at'),
          // A claim by one instance while it sends: another instance skips the row until the lease runs out.
          ms('lease_until', true),
          str('lease_owner', 36, true),
          int('last_status_code', true),
          str('last_error', 256, true),
          ms('created_at'),
          ms('completed_at', true),
        ],
        indices: [
          new TableIndex({ name: 'ix_webhook_deliveries_webhook', columnNames: ['webhook_id', 'id'] }),
          new TableIndex({ name: 'ix_webhook_deliveries_due', columnNames: ['status', 'next_attempt_at'] }),
          new TableIndex({ name: 'ix_webhook_deliveries_created', columnNames: ['created_at'] }),
        ],
      }),
    );

    await q.createTable(
      table(q, {
        name: 'webhook_attempts',
        columns: [id(), id('delivery_id'), id('webhook_id'), ms('at'), int('status_code', true), str('error', 256, true), int('duration_ms')],
        indices: [new TableIndex({ name: 'ix_webhook_attempts_delivery', columnNames: ['delivery_id', 'id'] })],
      }),
    );
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropTable('webhook_attempts');
    await q.dropTable('webhook_deliveries');
    await q.dropTable('webhooks');
    await q.dropTable('key_health_events');
    await q.dropColumn('virtual_keys', 'budget_notified_day');
    await q.dropIndex('provider_keys', 'ix_provider_keys_expires');
    await q.dropIndex('provider_keys', 'ix_provider_keys_health_due');
    await q.dropIndex('provider_keys', 'ix_provider_keys_health');
    for (const c of ['secret_set_at', 'expiry_notice_days', 'health_next_check_at', 'health_key_required', 'health_probe_model', 'health_detail', 'health_checked_at', 'health_status']) {
      await q.dropColumn('provider_keys', c);
    }
  }
}
