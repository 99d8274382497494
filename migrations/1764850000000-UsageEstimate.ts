import { MigrationInterface, QueryRunner, TableColumn } from 'typeorm';

/**
 * gateway_usage.tokens_estimated: 1 when a call's tokens are the gateway's estimate (its answer was cut off, or
 * reported no usage) rather than the provider's report. Existing rows are reports, or counted nothing: 0.
 */
export class UsageEstimate1764850000000 implements MigrationInterface {
  name = 'UsageEstimate1764850000000';

  async up(q: QueryRunner): Promise<void> {
    await q.addColumn('gateway_usage', new TableColumn({ name: 'tokens_estimated', type: 'smallint', default: 0 }));
  }

  async down(q: QueryRunner): Promise<void> {
    await q.dropColumn('gateway_usage', 'tokens_estimated');
  }
}
