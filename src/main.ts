import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Config } from './config';
import { openDatabase, Database } from './db/database';
import { buildContainer, Container } from './container';
import { createHandler, AppState } from './app';
import type { Logger } from './logger';
import { cliActor } from './modules/auth/actor';

export interface TlsMaterial {
  cert: Buffer | string;
  key: Buffer | string;
}

export interface RunningServer {
  url: string;
  server: http.Server;
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
    await c.users.create({ ...cliActor(null), username: 'bootstrap' }, { username: 'admin', password, role: 'admin', displayName: 'Administrator' });
  } catch (err) {
    if ((err as { code?: string }).code === 'conflict') return undefined; // another instance won the race
    throw err;
  }
  c.logger.info('created the first admin user "admin"', { event: 'bootstrap.admin_created' });
  return generated;
}

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
  container.usage.start();
  container.audit.chain.start();
  const prune = setInterval(() => void container.auth.pruneRevokedSessions().catch(() => undefined), 10 * 60 * 1000);
  prune.unref();

  const app = createHandler(container, state);
  let server!: http.Server; // assigned first thing in the try below
  let bootstrapPassword: string | undefined;
  try {
    // TLS material and the port are checked before the first admin is created: a start that fails after that
    // would have created it with a random password nobody ever saw.
    server = opts.tls ? https.createServer({ cert: opts.tls.cert, key: opts.tls.key }, app) : http.createServer(app);
    server.keepAliveTimeout = 65_000;
    server.headersTimeout = 66_000;
    server.requestTimeout = 30_000;
    const where = { port: opts.port ?? config.port, host: opts.host ?? config.host };
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(err.code === 'EADDRINUSE' || err.code === 'EACCES' || err.code === 'EADDRNOTAVAIL' ? new StartupError(`PKV_HOST/PKV_PORT: cannot listen on ${where.host}:${where.port} (${err.code})`) : err),
      );
      server.listen(where.port, where.host, () => resolve());
    });
    bootstrapPassword = await bootstrapAdmin(container);
  } catch (err) {
    clearInterval(prune);
    if (server?.listening) await new Promise((resolve) => server.close(resolve)); // undefined when createServer threw
    await container.usage.stop().catch(() => undefined);
    await container.audit.chain.stop();
    await container.limits.close().catch(() => undefined);
    await db.close();
    throw err;
  }
  state.ready = true;
  const addr = server.address() as AddressInfo;
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `${opts.tls ? 'https' : 'http'}://${host}:${addr.port}`;
  logger.info('serving', { event: 'server.listening', url, database: config.database.kind, kekVersion: container.keyring.activeVersion });

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
      await container.audit.chain.stop();
      // Handlers of requests whose clients hung up may still be committing: let them land before the last seal.
      await db.quiesce();
      await container.usage.stop();
      await container.audit.chain.sealPending().catch(() => undefined);
      await container.limits.close();
      await db.close();
      logger.info('stopped', { event: 'server.stopped' });
    })());
  return { url, server, container, bootstrapPassword, close };
}
