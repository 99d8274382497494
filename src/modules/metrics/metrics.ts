import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ForbiddenError } from '../../errors';
import { type Actor, can } from '../auth/actor';

/**
 * What the scrape reads from the rest of the vault when it is taken (never on a request's path). Each figure comes
 * from state the vault keeps anyway, or (audit rows pending sealing) from one bounded query.
 */
export interface MetricSources {
  /** Unsealed audit rows (counted up to a cap) and when the oldest of them was written; undefined when none. */
  auditPending(): Promise<{ rows: number; oldestAt: Date | undefined }>;
  /** Audit rows this process sealed, and when it last sealed any (0: never). */
  auditSealed(): { rows: number; lastAt: number };
  /** Gateway calls recorded in memory and not yet written, the oldest one's time, and calls dropped unwritten. */
  gatewayUsage(): { pending: number; oldestAt: Date | undefined; dropped: number };
  /** Database connections in use and callers waiting for one, as counted at our own acquire/release points. */
  dbPool(): { inUse: number; waiting: number };
  /** MySQL operations run again after the server refused them. */
  dbRetries(): number;
}

/** Children of a labelled instrument, made once per label value and kept (the label sets are small and fixed). */
class Children<C> {
  private readonly made = new Map<string, C>();
  constructor(private readonly make: (value: string) => C) {}
  of(value: string): C {
    let c = this.made.get(value);
    if (!c) this.made.set(value, (c = this.make(value)));
    return c;
  }
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const TX_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64];

/** Upper bound of the one query a scrape makes (audit rows pending sealing): above it, the figure reads as the cap. */
export const AUDIT_PENDING_CAP = 10_000;

/**
 * The vault's Prometheus metrics (docs/operations.md lists them). One registry per container, so tests that build
 * several containers in one process never share counters. Labels are small fixed sets (outcome, via, reason,
 * provider, HTTP status): never a key, user or token id, never a secret.
 */
export class Metrics {
  readonly registry = new Registry();
  readonly contentType = this.registry.contentType;

  private readonly revealsTotal = new Counter({ name: 'pkv_reveals_total', help: 'Reveal attempts audited, by outcome (success, denied, rate_limited, error) and credential kind', labelNames: ['outcome', 'via'] as const, registers: [this.registry] });
  private readonly refusalsTotal = new Counter({ name: 'pkv_reveal_refusals_total', help: 'Reveals refused, by reason (not_owner, reason_required, key_disabled, rate_limited, …)', labelNames: ['reason'] as const, registers: [this.registry] });
  private readonly loginFailuresTotal = new Counter({ name: 'pkv_login_failures_total', help: 'Failed sign-ins, by outcome (denied: wrong credentials or disabled; rate_limited)', labelNames: ['outcome'] as const, registers: [this.registry] });
  private readonly apiTokenAuthsTotal = new Counter({ name: 'pkv_api_token_authentications_total', help: 'API token authentications, by result (success, failure)', labelNames: ['result'] as const, registers: [this.registry] });
  private readonly virtualKeyAuthsTotal = new Counter({ name: 'pkv_virtual_key_authentications_total', help: 'Gateway virtual key authentications, by result (success, failure)', labelNames: ['result'] as const, registers: [this.registry] });
  private readonly gatewayRequestsTotal = new Counter({ name: 'pkv_gateway_requests_total', help: 'Gateway calls answered, by provider (none: refused before its key was known) and HTTP status (499: the client went away)', labelNames: ['provider', 'status'] as const, registers: [this.registry] });
  private readonly gatewayDuration = new Histogram({ name: 'pkv_gateway_request_duration_seconds', help: 'Gateway calls from arrival to the end of the answer, by provider', labelNames: ['provider'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  private readonly upstreamDuration = new Histogram({ name: 'pkv_gateway_upstream_duration_seconds', help: 'Time spent on the provider: from sending the call to the end of its answer, by provider', labelNames: ['provider'] as const, buckets: LATENCY_BUCKETS, registers: [this.registry] });
  private readonly tokensTotal = new Counter({ name: 'pkv_gateway_tokens_total', help: 'Tokens in the usage the providers reported through the gateway, by provider and kind (prompt, completion)', labelNames: ['provider', 'kind'] as const, registers: [this.registry] });
  private readonly txDuration = new Histogram({ name: 'pkv_db_transaction_duration_seconds', help: 'Write transactions from start to commit, retries and group-commit waits included', buckets: TX_BUCKETS, registers: [this.registry] });
  private readonly groupCommitSize = new Histogram({ name: 'pkv_db_group_commit_batch_size', help: 'SQLite: transactions committed together by one COMMIT', buckets: BATCH_BUCKETS, registers: [this.registry] });

  private readonly reveals = new Children((outcome) => new Children((via) => this.revealsTotal.labels(outcome, via)));
  private readonly refusals = new Children((reason) => this.refusalsTotal.labels(reason));
  private readonly loginFailures = new Children((outcome) => this.loginFailuresTotal.labels(outcome));
  private readonly tokenAuth = { success: this.apiTokenAuthsTotal.labels('success'), failure: this.apiTokenAuthsTotal.labels('failure') };
  private readonly virtualKeyAuth = { success: this.virtualKeyAuthsTotal.labels('success'), failure: this.virtualKeyAuthsTotal.labels('failure') };
  private readonly gatewayCalls = new Children((provider) => new Children((status) => this.gatewayRequestsTotal.labels(provider, status)));
  private readonly gatewayLatency = new Children((provider) => this.gatewayDuration.labels(provider));
  private readonly upstreamLatency = new Children((provider) => this.upstreamDuration.labels(provider));
  private readonly tokens = new Children((provider) => ({ prompt: this.tokensTotal.labels(provider, 'prompt'), completion: this.tokensTotal.labels(provider, 'completion') }));

  constructor(sources: MetricSources, opts: { processMetrics?: boolean } = {}) {
    if (opts.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
    const registers = [this.registry];
    // Both audit gauges come from one query per scrape (a database that does not answer leaves them NaN).
    let pending: Promise<{ rows: number; oldestAt: Date | undefined }> | undefined;
    const pendingOnce = () => {
      if (!pending) {
        pending = sources.auditPending().catch(() => ({ rows: NaN, oldestAt: undefined }));
        void pending.finally(() => setImmediate(() => (pending = undefined)));
      }
      return pending;
    };
    new Gauge({
      name: 'pkv_audit_rows_pending_sealing',
      help: `Audit rows committed and not yet sealed into the hash chain (counted up to ${AUDIT_PENDING_CAP})`,
      registers,
      async collect() {
        const p = await pendingOnce();
        this.set(p.rows);
      },
    });
    new Gauge({
      name: 'pkv_audit_sealing_lag_seconds',
      help: 'Age of the oldest audit row not yet sealed (0 when every row is sealed)',
      registers,
      async collect() {
        const p = await pendingOnce();
        this.set(Number.isNaN(p.rows) ? NaN : p.oldestAt ? Math.max(0, (Date.now() - p.oldestAt.getTime()) / 1000) : 0);
      },
    });
    new Counter({
      name: 'pkv_audit_rows_sealed_total',
      help: 'Audit rows this process sealed into the hash chain',
      registers,
      collect() {
        this.reset();
        this.inc(sources.auditSealed().rows);
      },
    });
    new Gauge({
      name: 'pkv_audit_last_seal_timestamp_seconds',
      help: 'When this process last sealed audit rows (Unix time; 0: not yet)',
      registers,
      collect() {
        this.set(sources.auditSealed().lastAt / 1000);
      },
    });
    new Gauge({
      name: 'pkv_gateway_usage_pending',
      help: 'Gateway calls recorded in memory and not yet written to the database',
      registers,
      collect() {
        this.set(sources.gatewayUsage().pending);
      },
    });
    new Gauge({
      name: 'pkv_gateway_usage_flush_lag_seconds',
      help: 'Age of the oldest gateway call not yet written to the database (0 when none)',
      registers,
      collect() {
        const u = sources.gatewayUsage();
        this.set(u.oldestAt ? Math.max(0, (Date.now() - u.oldestAt.getTime()) / 1000) : 0);
      },
    });
    new Counter({
      name: 'pkv_gateway_usage_dropped_total',
      help: 'Gateway calls dropped unwritten because the database refused usage writes for too long',
      registers,
      collect() {
        this.reset();
        this.inc(sources.gatewayUsage().dropped);
      },
    });
    new Gauge({
      name: 'pkv_db_connections_in_use',
      help: 'Database connections held by this process right now (SQLite: 1 while the writer commits a group)',
      registers,
      async collect() {
        await pendingOnce(); // the scrape's own query has given its connection back: not counted
        this.set(sources.dbPool().inUse);
      },
    });
    new Gauge({
      name: 'pkv_db_connections_waiting',
      help: 'Callers waiting for a database connection (SQLite: transactions queued for the next group commit)',
      registers,
      async collect() {
        await pendingOnce(); // the scrape's own query has given its connection back: not counted
        this.set(sources.dbPool().waiting);
      },
    });
    new Counter({
      name: 'pkv_db_retries_total',
      help: 'MySQL transactions, reads and statements run again after the server refused them (deadlocks, Galera conflicts)',
      registers,
      collect() {
        this.reset();
        this.inc(sources.dbRetries());
      },
    });
  }

  /** The whole scrape in the Prometheus text format (the separate listener: whoever reaches its address). */
  scrape(): Promise<string> {
    return this.registry.metrics();
  }

  /** The scrape for an API caller: admins' sessions and API tokens holding metrics:read. Not audited (a scraper reads every 15 s). */
  async scrapeFor(actor: Actor): Promise<string> {
    if (!can(actor, 'metrics:read')) throw new ForbiddenError('Reading metrics needs the metrics:read right');
    return this.scrape();
  }

  /** One committed audit row of a reveal (`why` is the refusal's reason as the trail records it). */
  reveal(outcome: string, via: string | null, why: string | undefined): void {
    this.reveals.of(outcome).of(via ?? 'unknown').inc();
    if (outcome !== 'success') this.refusals.of(outcome === 'rate_limited' ? 'rate_limited' : (why ?? outcome)).inc();
  }

  loginFailed(outcome: string): void {
    this.loginFailures.of(outcome).inc();
  }

  apiTokenAuthenticated(ok: boolean): void {
    (ok ? this.tokenAuth.success : this.tokenAuth.failure).inc();
  }

  virtualKeyAuthenticated(ok: boolean): void {
    (ok ? this.virtualKeyAuth.success : this.virtualKeyAuth.failure).inc();
  }

  /** One gateway call answered (or cut short); provider is undefined when it was refused before its key was known. */
  gatewayCall(provider: string | undefined, status: number, seconds: number): void {
    const p = provider ?? 'none';
    this.gatewayCalls.of(p).of(String(status)).inc();
    this.gatewayLatency.of(p).observe(seconds);
  }

  upstream(provider: string, seconds: number): void {
    this.upstreamLatency.of(provider).observe(seconds);
  }

  gatewayTokens(provider: string, prompt: number | undefined, completion: number | undefined): void {
    const t = this.tokens.of(provider);
    if (prompt) t.prompt.inc(prompt);
    if (completion) t.completion.inc(completion);
  }

  transaction(seconds: number): void {
    this.txDuration.observe(seconds);
  }

  groupCommit(size: number): void {
    this.groupCommitSize.observe(size);
  }
}
