import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Config } from './config';
import { openDatabase } from './db/data-source';
import { Database } from './db/database';
import { buildContainer, Container } from './container';
import { createHandler, AppState } from './app';
import type { Logger } from './logger';
import { cliActor } from './modules/auth/actor';
import { acceptRestore } from './modules/backup/restore';
import { ProviderKeysRepository } from './modules/provider-keys/provider-keys.repository';
import { upgradeLegacySealings } from './modules/provider-keys/sealing-upgrade';
import { metricsListener } from './modules/metrics/metrics.routes';

export interface TlsMaterial {
  cert: Buffer | string;
  key: Buffer | string;
}

export interface RunningServer {
  url: string;
  server: http.Server;
  /** The separate metrics listener's `…/metrics` URL, when PKV_METRICS_PORT is set. */
  metricsUrl?: string;
  container: Container;
  /** Set when this start created the first admin with a random password (print it once). */
  bootstrapPassword?: string;
  close(): Promise<void>;
}

export class StartupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'StartupError';
  }
}

/** Opens the database and brings its schema up to date where allowed: SQLite migrates itself, MySQL must be migrated explicitly. */
export async function openMigrated(config: Config): Promise<Database> {
  const db = await openDatabase(config.database);
  try {
    if (config.database.kind === 'sqlite') await db.migrate();
    else if (await db.pendingMigrations()) {
      throw new StartupError('PKV_DATABASE_URL: the MySQL schema has pending migrations; run `pkv migrate` first, then start again');
    }
    return db;
  } catch (err) {
    await db.close();
    throw err;
  }
}

/** On an empty database, creates the first admin `admin` (never with a generated password in production). */
async function bootstrapAdmin(c: Container): Promise<string | undefined> {
  if (!(await c.users.isEmpty())) return undefined;
  let password = c.config.bootstrapAdminPassword;
  let generated: string | undefined;
  if (!password) {
    if (c.config.nodeEnv === 'production') {
      c.logger.warn('no users yet: set PKV_BOOTSTRAP_ADMIN_PASSWORD or run `pkv user create --role admin`', { event: 'bootstrap.skipped' });
      return undefined;
    }
    password = generated = crypto.randomBytes(18).toString('base64url');
  }
  try {
    // The operator starting the vault is its first admin and chose (or was just shown) this password: no forced change.
    await c.users.create({ ...cliActor(null), username: 'bootstrap' }, { username: 'admin', password, role: 'admin', displayName: 'Administrator', mustChangePassword: false });
  } catch (err) {
    if ((err as { code?: string }).code === 'conflict') return undefined; // another instance won the race
    throw err;
  }
  c.logger.info('created the first admin user "admin"', { event: 'bootstrap.admin_created' });
  return generated;
}

/** The health scheduler, gateway health signals (their last batch is written) and the webhook dispatcher. */
async function stopBackground(c: Container): Promise<void> {
  await c.scheduler.stop().catch(() => undefined);
  await c.passiveHealth.stop().catch(() => undefined);
  await c.health.close().catch(() => undefined);
  await c.dispatcher.stop().catch(() => undefined);
}

/** Listens with `server` on host:port, or fails with a StartupError naming the variables that chose them. */
function listen(server: http.Server, host: string, port: number, variables: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', (err: NodeJS.ErrnoException) =>
      reject(err.code === 'EADDRINUSE' || err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL' || err.code === 'ENOTFOUND' ? new StartupError(`${variables}: cannot listen on ${host}:${port} (${err.code})`) : err),
    );
    server.listen(port, host, () => resolve());
  });
}

const urlOf = (server: http.Server, scheme: string) => {
  const addr = server.address() as AddressInfo;
  return `${scheme}://${addr.family === 'IPv6' ? `[${addr.address}]` : addr.address}:${addr.port}`;
};

/** loadConfig → openDatabase → checks → createApp → listen; returns a handle whose close() stops gracefully. */
export async function start(config: Config, logger: Logger, opts: { tls?: TlsMaterial; host?: string; port?: number } = {}): Promise<RunningServer> {
  const db = await openMigrated(config);
  const state: AppState = { ready: false };
  let container: Container;
  try {
    container = await buildContainer(config, logger, db);
  } catch (err) {
    await db.close();
    throw err;
  }
  try {
    // The first start after `pkv restore` accepts the rewound trail once and audits it (vault.restore).
    await acceptRestore(container);
    // Keys sealed before their provider and baseUrl were bound get the binding now (audited per key), before any use.
    await upgradeLegacySealings({ ...container, keys: new ProviderKeysRepository() });
  } catch (err) {
    await container.limits.close().catch(() => undefined);
    await db.close();
    throw err;
  }
  // A trail behind or off its checkpoint is logged loudly (audit.checkpoint_mismatch) and fails verify, but the vault
  // still serves: refusing to start would let anyone who can write the database take it down.
  await container.audit.chain.checkAnchor().catch((err) => logger.warn('cannot compare the audit trail with its checkpoint', { event: 'audit.checkpoint_failed', errorCode: (err as { code?: string }).code }));
  if (container.limits.store === 'mysql' && db.galera) {
    // Measured (docs/operations.md): every node upserts the same counter rows, and certification conflicts abort them.
    logger.warn('rate-limit counters in a Galera cluster conflict across nodes and some requests will get 503: set PKV_REDIS_URL', { event: 'rate_limits.galera_without_redis' });
  }
  container.usage.start();
  container.gateway.usage.start();
  container.passiveHealth.start();
  container.audit.chain.start();
  if (config.health.scheduler) container.scheduler.start();
  if (config.webhooks.dispatcher) container.dispatcher.start();
  const prune = setInterval(() => void container.auth.pruneRevokedSessions().catch(() => undefined), 10 * 60 * 1000);
  prune.unref();

  const handler = createHandler(container, state);
  let server!: http.Server; // assigned first thing in the try below
  let metricsServer: http.Server | undefined;
  let bootstrapPassword: string | undefined;
  try {
    // TLS material and the port are checked before the first admin is created: a start that fails after that
    // would have created it with a random password nobody ever saw.
    server = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : http.createServer(handler);
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000;
    server.requestTimeout = 30_000;
    await listen(server, opts.host ?? config.host, opts.port ?? config.port, 'PKV_HOST/PKV_PORT');
    if (config.metrics) {
      metricsServer = http.createServer(metricsListener(container.metrics));
      metricsServer.requestTimeout = 30_000;
      await listen(metricsServer, config.metrics.host, config.metrics.port, 'PKV_METRICS_HOST/PKV_METRICS_PORT');
    }
    bootstrapPassword = await bootstrapAdmin(container);
  } catch (err) {
    clearInterval(prune);
    if (server?.listening) await new Promise((resolve) => server.close(resolve)); // undefined when createServer threw
    if (metricsServer?.listening) await new Promise((resolve) => metricsServer!.close(resolve));
    await container.usage.stop().catch(() => undefined);
    await container.gateway.usage.stop().catch(() => undefined);
    await stopBackground(container);
    await container.gateway.close().catch(() => undefined);
    await container.audit.chain.stop();
    await container.limits.close().catch(() => undefined);
    await db.close();
    throw err;
  }
  state.ready = true;
  const url = urlOf(server, opts.tls ? 'https' : 'http');
  const metricsUrl = metricsServer ? `${urlOf(metricsServer, 'http')}/metrics` : undefined;
  logger.info('serving', { event: 'server.listening', url, database: config.database.kind, kekVersion: container.keyring.activeVersion });
  if (metricsUrl) logger.info('serving metrics', { event: 'metrics.listening', url: metricsUrl });

  let closing: Promise<void> | undefined;
  const close = () =>
    (closing ??= (async () => {
      state.ready = false;
      clearInterval(prune);
      const force = setTimeout(() => server.closeAllConnections(), 10_000);
      force.unref();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      clearTimeout(force);
      if (metricsServer) {
        metricsServer.closeAllConnections();
        await new Promise((resolve) => metricsServer!.close(resolve));
      }
      await container.audit.chain.stop();
      // Handlers of requests whose clients hung up may still be committing: let them land before the last seal.
      await db.quiesce();
      await container.usage.stop();
      // Gateway calls that were cut short at the deadline are recorded by now: the last batch of usage goes in.
      await container.gateway.usage.stop();
      await stopBackground(container);
      await container.gateway.close();
      await container.audit.chain.sealPending().catch(() => undefined);
      await container.audit.chain.flush();
      await container.limits.close();
      await db.close();
      logger.info('stopped', { event: 'server.stopped' });
    })());
  return { url, server, metricsUrl, container, bootstrapPassword, close };
}
