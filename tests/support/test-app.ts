import 'reflect-metadata';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { IncomingMessage, ServerResponse } from 'node:http';
import mysql from 'mysql2/promise';
import request from 'supertest';
import type { Express } from 'express';
import { loadConfig, Config } from '../../src/config';
import { openDatabase } from '../../src/db/data-source';
import { Database } from '../../src/db/database';
import { buildContainer, Container } from '../../src/container';
import { createApp, createHandler } from '../../src/app';
import { CaptureTransport, createLogger } from '../../src/logger';
import { cliActor } from '../../src/modules/auth/actor';
import type { Role } from '../../src/modules/users/user.entity';
import { SuiteSecrets } from './leak-check';
import type { Clock } from '../../src/clock';
import { checkedAgent } from './openapi-check';

export type DbKind = 'sqlite' | 'mysql';
export const dbKind = (): DbKind => (process.env.PKV_TEST_DB === 'mysql' ? 'mysql' : 'sqlite');

/** A fresh, empty database for one test file: a temp SQLite file, or a new MySQL database dropped afterwards. */
export interface TestDatabase {
  url: string;
  dir: string;
  drop(): Promise<void>;
}

export async function createTestDatabase(kind: DbKind = dbKind()): Promise<TestDatabase> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pkv-test-'));
  if (kind === 'sqlite') {
    return { url: `sqlite:${path.join(dir, 'vault.db')}`, dir, drop: async () => fs.rmSync(dir, { recursive: true, force: true }) };
  }
  const admin = process.env.PKV_TEST_MYSQL_URL;
  if (!admin) throw new Error('PKV_TEST_MYSQL_URL is not set');
  const name = `pkv_t_${crypto.randomBytes(6).toString('hex')}`;
  const conn = await mysql.createConnection(admin);
  await conn.query(`CREATE DATABASE \`${name}\` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci`);
  await conn.end();
  const u = new URL(admin);
  u.pathname = `/${name}`;
  return {
    url: u.toString(),
    dir,
    drop: async () => {
      const c = await mysql.createConnection(admin);
      await c.query(`DROP DATABASE IF EXISTS \`${name}\``);
      await c.end();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function randomMasterKey(): string {
  return crypto.randomBytes(32).toString('base64');
}

/** The environment a test server runs with; overrides win. */
export function testEnv(tdb: TestDatabase, overrides: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  return {
    NODE_ENV: 'test',
    PKV_DATABASE_URL: tdb.url,
    PKV_DATA_DIR: tdb.dir,
    PKV_MASTER_KEY: randomMasterKey(),
    PKV_JWT_SECRET: crypto.randomBytes(48).toString('base64url'),
    PKV_SCRYPT_COST: '14',
    PKV_LOG_LEVEL: 'debug',
    ...overrides,
  };
}

export interface TestUser {
  id: string;
  username: string;
  password: string;
  role: Role;
  /** A real session JWT from POST /auth/login. */
  token: string;
  auth: { Authorization: string };
}

export interface TestContext {
  kind: DbKind;
  config: Config;
  env: Record<string, string | undefined>;
  tdb: TestDatabase;
  db: Database;
  container: Container;
  app: Express;
  /** What the server listens with (createHandler: the gateway and the express app), tapped for the leak check. */
  handler: (req: IncomingMessage, res: ServerResponse) => void;
  capture: CaptureTransport;
  /** supertest on the handler; every answer is checked against the OpenAPI document (a status or body it does not describe fails). */
  http(): ReturnType<typeof request>;
  /** Creates a user through the service (as the CLI would) and signs in through the API. */
  user(role: Role, name?: string): Promise<TestUser>;
  login(username: string, password: string): Promise<string>;
  /** Every captured log line, joined: search it for secrets. */
  logText(): string;
  /** What close() searches the logs, error bodies and audit rows for (learned from the traffic; add more by hand). */
  secrets: SuiteSecrets;
  close(): Promise<void>;
}

let seq = 0;

/** The real app on a real, freshly migrated database, with a capture transport on the logger. */
export async function createTestContext(overrides: Record<string, string | undefined> = {}, opts: { clock?: Clock } = {}): Promise<TestContext> {
  const kind = dbKind();
  const tdb = await createTestDatabase(kind);
  const env = testEnv(tdb, overrides);
  const config = loadConfig(env, { generateDevSecrets: false });
  const db = await openDatabase(config.database);
  await db.migrate();
  const capture = new CaptureTransport();
  const logger = createLogger('debug', [capture]);
  const container = await buildContainer(config, logger, db, opts);
  const app = createApp(container);
  const secrets = new SuiteSecrets();
  const handler = secrets.tap(createHandler(container, { ready: true }, app));
  // Every answer is checked against the OpenAPI document (tests/support/openapi-check.ts).
  const http = () => checkedAgent(request(handler));

  const login = async (username: string, password: string) => {
    const res = await http().post('/api/v1/auth/login').send({ username, password });
    if (res.status !== 200) throw new Error(`login ${username} failed: ${res.status} ${JSON.stringify(res.body)}`);
    secrets.add('password', password);
    return res.body.accessToken as string;
  };

  const user = async (role: Role, name?: string): Promise<TestUser> => {
    const username = name ?? `${role}${++seq}_${crypto.randomBytes(3).toString('hex')}`;
    const password = `pw-${crypto.randomBytes(12).toString('base64url')}`;
    const created = await container.users.create(cliActor(null), { username, password, role });
    const token = await login(username, password);
    return { id: created.id, username, password, role, token, auth: { Authorization: `Bearer ${token}` } };
  };

  return {
    kind,
    config,
    env,
    tdb,
    db,
    container,
    app,
    handler,
    capture,
    http,
    user,
    login,
    logText: () => capture.lines.join('\n'),
    secrets,
    close: async () => {
      let leaks: Record<string, string[]> = {};
      try {
        await container.usage.stop();
        await container.gateway.usage.stop();
        await stopBackground(container);
        await container.gateway.close();
        await container.audit.chain.stop();
        await secrets.addStoredSecrets(container, db);
        leaks = await secrets.check(capture.lines, db);
      } finally {
        await db.close();
        await tdb.drop();
      }
      if (Object.keys(leaks).length > 0) throw new Error(`secrets leaked in this test file: ${JSON.stringify(leaks)}`);
    },
  };
}

/** The health scheduler, gateway health signals and the webhook dispatcher, as main.ts stops them. */
export async function stopBackground(c: Container): Promise<void> {
  await c.scheduler.stop();
  await c.passiveHealth.stop();
  await c.health.close();
  await c.dispatcher.stop();
}

/** Another vault over an existing database, as a second process would open it (its own config, connection and services). */
export interface Instance {
  config: Config;
  db: Database;
  container: Container;
  app: Express;
  capture: CaptureTransport;
  http(): ReturnType<typeof request>;
  /** POST /auth/login; returns the response so a test can assert a refusal too. */
  login(username: string, password: string): Promise<request.Response>;
  close(): Promise<void>;
}

/** loadConfig → openDatabase → (migrate) → buildContainer → createApp, as createTestContext and main.ts do; no leak check of its own. */
export async function openInstance(env: Record<string, string | undefined>, opts: { migrate?: boolean; clock?: Clock } = {}): Promise<Instance> {
  const config = loadConfig(env, { generateDevSecrets: false });
  const db = await openDatabase(config.database);
  try {
    if (opts.migrate) await db.migrate();
    const capture = new CaptureTransport();
    const container = await buildContainer(config, createLogger('debug', [capture]), db, { clock: opts.clock });
    const app = createApp(container);
    const http = () => checkedAgent(request(app));
    return {
      config,
      db,
      container,
      app,
      capture,
      http,
      login: (username, password) => http().post('/api/v1/auth/login').send({ username, password }),
      close: async () => {
        await container.usage.stop();
        await container.gateway.usage.stop();
        await stopBackground(container);
        await container.gateway.close();
        await db.close();
      },
    };
  } catch (err) {
    await db.close();
    throw err;
  }
}
