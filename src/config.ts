import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { z } from 'zod';
import net from 'node:net';
import proxyaddr from 'proxy-addr';
import type { MasterKey } from './crypto/keyring';

export type { MasterKey };

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export type DatabaseConfig = ({ kind: 'sqlite'; path: string } | { kind: 'mysql'; url: string }) & {
  /** Lock waits (SQLite busy_timeout, MySQL session lock-wait timeouts) and waits for a pooled connection. */
  timeoutMs?: number;
};

export interface GatewayConfig {
  connectTimeoutMs: number;
  firstByteTimeoutMs: number;
  idleTimeoutMs: number;
  bodyLimitBytes: number;
}

export interface HealthConfig {
  /** Whether this process runs the scheduler (active checks and expiry notices). */
  scheduler: boolean;
  intervalMs: number;
  concurrency: number;
  timeoutMs: number;
}

export interface WebhookConfig {
  /** Whether this process sends deliveries (any process still records them). */
  dispatcher: boolean;
  timeoutMs: number;
  /** First retry after this; each later one waits twice as long, at most 4 h apart. */
  retryBaseMs: number;
  /** How long a delivery is retried, and how long a webhook may fail without a success before it is disabled. */
  retryForMs: number;
}

export interface Config {
  nodeEnv: 'development' | 'production' | 'test';
  database: DatabaseConfig;
  masterKeys: readonly MasterKey[];
  jwtSecret: Buffer;
  jwtTtlSeconds: number;
  host: string;
  port: number;
  /** The separate, credential-free metrics listener; undefined (off) unless PKV_METRICS_PORT is set. */
  metrics: { host: string; port: number } | undefined;
  dataDir: string;
  bootstrapAdminPassword: string | undefined;
  revealRateLimit: number;
  loginRateLimit: number;
  trustProxy: boolean | number | string | undefined;
  logLevel: 'error' | 'warn' | 'info' | 'http' | 'verbose' | 'debug';
  scryptCost: number;
  redisUrl: string | undefined;
  gateway: GatewayConfig;
  /** Seconds between audit checkpoints written while the sealer advances the chain (and one at shutdown). */
  auditCheckpointIntervalSeconds: number;
  /** Audit exports and verifies in flight at once, per user and on this instance in all. */
  auditJobsPerUser: number;
  auditJobsTotal: number;
  health: HealthConfig;
  webhooks: WebhookConfig;
  /** Names of secrets generated into the data dir by this start (dev only). */
  generated: readonly string[];
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

/** Secret variables accept `<NAME>_FILE` as an alternative, never both. */
const SECRET_VARS = ['PKV_MASTER_KEYS', 'PKV_MASTER_KEY', 'PKV_JWT_SECRET', 'PKV_BOOTSTRAP_ADMIN_PASSWORD', 'PKV_DATABASE_URL', 'PKV_REDIS_URL'] as const;

const onOff = z.enum(['on', 'off'], { error: 'must be on or off' });

const intIn = (min: number, max: number) =>
  z
    .string()
    .regex(/^\d+$/, `must be a whole number from ${min} to ${max}`)
    .transform(Number)
    .refine((n) => n >= min && n <= max, `must be a whole number from ${min} to ${max}`);

const UNIT_MS = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 } as const;
const spoken = (ms: number) => (ms % 3_600_000 === 0 ? `${ms / 3_600_000}h` : ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`);

/** A duration with a unit (`250ms`, `10s`, `5m`, `6h`; a bare number is seconds), as milliseconds within [min, max]. */
const duration = (fallback: string, minMs: number, maxMs: number) =>
  z
    .string()
    .default(fallback)
    .transform((v, ctx) => {
      const m = /^(\d+)(ms|s|m|h)?$/.exec(v.trim());
      const ms = m ? Number(m[1]) * UNIT_MS[(m[2] ?? 's') as keyof typeof UNIT_MS] : NaN;
      if (!(ms >= minMs && ms <= maxMs)) {
        ctx.addIssue({ code: 'custom', message: `must be a duration from ${spoken(minMs)} to ${spoken(maxMs)}, like ${fallback}` });
        return z.NEVER;
      }
      return ms;
    });

/** A size in bytes, with an optional binary unit (`512k`, `8m`), within [min, max]. */
const size = (fallback: string, min: number, max: number) =>
  z
    .string()
    .default(fallback)
    .transform((v, ctx) => {
      const m = /^(\d+)(k|m|kb|mb|kib|mib)?$/i.exec(v.trim());
      const unit = m?.[2]?.[0]?.toLowerCase();
      const bytes = m ? Number(m[1]) * (unit === 'k' ? 1024 : unit === 'm' ? 1024 * 1024 : 1) : NaN;
      if (!(bytes >= min && bytes <= max)) {
        ctx.addIssue({ code: 'custom', message: `must be a size from ${min} bytes to ${max / 1024 / 1024} MiB, like ${fallback}` });
        return z.NEVER;
      }
      return bytes;
    });

const schema = z.object({
  NODE_ENV: z
    .enum(['development', 'production', 'test'])
    .default('development')
    .describe('development, production or test; production never generates secrets'),
  PKV_DATABASE_URL: z
    .string()
    .default('sqlite:./data/vault.db')
    .describe('sqlite:PATH or mysql://user:pass@host:port/db'),
  PKV_MASTER_KEYS: z.string().optional().describe('keyring VERSION:BASE64[,VERSION:BASE64…], first entry active'),
  PKV_MASTER_KEY: z.string().optional().describe('BASE64 key, shorthand for version 1'),
  PKV_JWT_SECRET: z.string().optional().describe('HMAC secret for session tokens, at least 32 bytes'),
  PKV_JWT_TTL: z
    .string()
    .default('15m')
    .transform((v, ctx) => {
      const m = /^(\d+)(s|m|h)?$/.exec(v.trim());
      const seconds = m ? Number(m[1]) * { s: 1, m: 60, h: 3600 }[(m[2] ?? 's') as 's' | 'm' | 'h'] : NaN;
      if (!(seconds >= 30 && seconds <= 86400)) {
        ctx.addIssue({ code: 'custom', message: 'must be a duration from 30s to 24h, like 15m' });
        return z.NEVER;
      }
      return seconds;
    })
    .describe('session token lifetime: 30s, 15m, 1h …'),
  PKV_HOST: z
    .string()
    .default('127.0.0.1')
    .refine((v) => net.isIP(v) !== 0 || HOSTNAME.test(v), 'must be an IP address or a host name')
    .describe('listen address'),
  PKV_PORT: intIn(0, 65535).default(8080).describe('listen port'),
  PKV_METRICS_HOST: z
    .string()
    .refine((v) => net.isIP(v) !== 0 || HOSTNAME.test(v), 'must be an IP address or a host name')
    .optional()
    .describe('metrics: listen address of the separate GET /metrics listener (no credentials asked there); default 127.0.0.1'),
  PKV_METRICS_PORT: intIn(0, 65535).optional().describe('metrics: port of the separate GET /metrics listener; unset: no such listener (API tokens with metrics:read still read GET /api/v1/metrics)'),
  PKV_DATA_DIR: z
    .string()
    .min(1)
    .default('./data')
    .refine((v) => !fs.existsSync(v) || fs.statSync(v).isDirectory(), 'exists but is not a directory')
    .describe('where dev files and the audit checkpoint file live'),
  PKV_BOOTSTRAP_ADMIN_PASSWORD: z
    .string()
    .min(12, 'must be at least 12 characters')
    .max(1024)
    .optional()
    .describe('password for the first admin on an empty database'),
  PKV_REVEAL_RATE_LIMIT: intIn(1, 100000).default(30).describe('reveals per user per minute'),
  PKV_LOGIN_RATE_LIMIT: intIn(1, 1000).default(10).describe('failed sign-ins per username+IP per 15 minutes'),
  PKV_TRUST_PROXY: z
    .string()
    .optional()
    .describe('express trust-proxy: true, false, a hop count, or a list of addresses/subnets'),
  PKV_LOG_LEVEL: z.enum(['error', 'warn', 'info', 'http', 'verbose', 'debug']).default('info').describe('winston level'),
  PKV_SCRYPT_COST: intIn(14, 20).default(17).describe('log2 of the scrypt N parameter for password hashes'),
  PKV_REDIS_URL: z
    .string()
    .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL')
    .optional()
    .describe('shared rate-limit state for several instances'),
  PKV_GATEWAY_CONNECT_TIMEOUT: duration('10s', 100, 120_000).describe('gateway: time to open a connection to a provider'),
  PKV_GATEWAY_FIRST_BYTE_TIMEOUT: duration('600s', 100, 3_600_000).describe('gateway: time from sending a request to the provider’s answer headers'),
  PKV_GATEWAY_IDLE_TIMEOUT: duration('300s', 100, 3_600_000).describe('gateway: longest silence within a provider’s answer body (a stream)'),
  PKV_GATEWAY_BODY_LIMIT: size('8m', 1024, 1024 * 1024 * 1024).describe('gateway: largest request body forwarded (larger: 413)'),
  PKV_AUDIT_CHECKPOINT_INTERVAL: intIn(1, 3600).default(10).describe('seconds between audit chain checkpoints written to the data dir'),
  PKV_AUDIT_CONCURRENCY_PER_USER: intIn(1, 100).default(2).describe('audit exports and verifies one user may run at once'),
  PKV_AUDIT_CONCURRENCY: intIn(1, 1000).default(8).describe('audit exports and verifies this instance runs at once'),
  PKV_DB_WAIT_TIMEOUT: intIn(1, 600).default(5).describe('seconds a database lock wait or a wait for a pooled connection may take before the request fails with 503'),
  PKV_HEALTH_SCHEDULER: onOff.optional().describe('health: run the scheduler here (active checks, expiry notices): on or off; default on, off when NODE_ENV=test'),
  PKV_HEALTH_CHECK_INTERVAL: duration('6h', 60_000, 7 * 24 * 3_600_000).describe('health: time between two checks of one key (each jittered by up to ±10%)'),
  PKV_HEALTH_CHECK_CONCURRENCY: intIn(1, 64).default(4).describe('health: checks run at once by one instance'),
  PKV_HEALTH_CHECK_TIMEOUT: duration('10s', 100, 120_000).describe('health: time for one check call to a provider (longer: upstream_error)'),
  PKV_WEBHOOK_DISPATCHER: onOff.optional().describe('webhooks: send deliveries from this instance: on or off; default on, off when NODE_ENV=test'),
  PKV_WEBHOOK_TIMEOUT: duration('10s', 100, 60_000).describe('webhooks: time for a receiver to answer one delivery (longer: a failed attempt)'),
  PKV_WEBHOOK_RETRY_BASE: duration('30s', 100, 3_600_000).describe('webhooks: wait before the first retry; each later retry waits twice as long, at most 4h'),
  PKV_WEBHOOK_RETRY_FOR: duration('24h', 1000, 7 * 24 * 3_600_000).describe('webhooks: how long a delivery is retried; a webhook failing that long without a success is disabled'),
});

type RawEnv = Record<string, string | undefined>;

/** Resolves `<NAME>_FILE` variants into `<NAME>`; reports both-at-once and unreadable files. */
function resolveFileVariants(env: RawEnv, problems: string[]): RawEnv {
  const out: RawEnv = { ...env };
  for (const name of SECRET_VARS) {
    const fileVar = `${name}_FILE`;
    const file = env[fileVar];
    if (file === undefined || file === '') continue;
    if (env[name] !== undefined && env[name] !== '') {
      problems.push(`${name}: set either ${name} or ${fileVar}, not both`);
      continue;
    }
    try {
      out[name] = fs.readFileSync(file, 'utf8').trim();
    } catch (err) {
      problems.push(`${fileVar}: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  }
  for (const [k, v] of Object.entries(out)) if (v === '') delete out[k];
  return out;
}

const BASE64 = /^[A-Za-z0-9+/_-]+={0,2}$/;

function decodeKey(text: string): Buffer | undefined {
  const t = text.trim();
  if (!BASE64.test(t)) return undefined;
  return Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

/** Parses `VERSION:BASE64[,…]` (or a bare BASE64 key as version 1). */
export function parseKeyring(text: string, variable: string, problems: string[]): MasterKey[] {
  const keys: MasterKey[] = [];
  const entries = text.split(',').map((e) => e.trim()).filter(Boolean);
  if (entries.length === 0) problems.push(`${variable}: is empty`);
  for (const entry of entries) {
    const m = /^(\d{1,5}):(.+)$/.exec(entry);
    const version = m ? Number(m[1]) : entries.length === 1 ? 1 : NaN;
    const material = m ? m[2] : entry;
    if (!Number.isInteger(version) || version < 1 || version > 65535) {
      problems.push(`${variable}: each entry must be VERSION:BASE64KEY with VERSION from 1 to 65535`);
      continue;
    }
    const key = decodeKey(material);
    if (!key) {
      problems.push(`${variable}: version ${version} key is not valid base64`);
      continue;
    }
    if (key.length !== 32) {
      problems.push(`${variable}: version ${version} key must be exactly 32 bytes, got ${key.length}`);
      continue;
    }
    if (keys.some((k) => k.version === version)) {
      problems.push(`${variable}: version ${version} is listed twice`);
      continue;
    }
    keys.push({ version, key });
  }
  return keys;
}

function parseDatabaseUrl(url: string, problems: string[]): DatabaseConfig {
  if (url.startsWith('sqlite:')) {
    const p = url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (!p) problems.push('PKV_DATABASE_URL: sqlite: needs a file path, like sqlite:./data/vault.db');
    return { kind: 'sqlite', path: path.resolve(p || '.') };
  }
  if (url.startsWith('mysql://')) {
    try {
      const u = new URL(url);
      if (!u.hostname || u.pathname.length < 2) throw new Error('incomplete');
    } catch {
      problems.push('PKV_DATABASE_URL: not a valid mysql://user:pass@host:port/db URL');
    }
    return { kind: 'mysql', url };
  }
  problems.push('PKV_DATABASE_URL: unsupported scheme; use sqlite:PATH or mysql://user:pass@host:port/db');
  return { kind: 'sqlite', path: '' };
}

function parseTrustProxy(v: string | undefined, problems: string[]): Config['trustProxy'] {
  if (v === undefined) return undefined;
  if (v === 'true') return true;
  if (v === 'false') return false;
  if (/^\d+$/.test(v)) return Number(v);
  const list = v.split(',').map((s) => s.trim());
  try {
    // The very parser express uses for this setting: what passes here, express accepts.
    proxyaddr.compile(list);
  } catch (err) {
    problems.push(`PKV_TRUST_PROXY: ${(err as Error).message}; use true, false, a hop count, or addresses/subnets (loopback, 10.0.0.0/8, …)`);
  }
  return list.join(', ');
}

function isUnderTempDir(p: string): boolean {
  const roots = [os.tmpdir(), '/tmp', '/var/tmp', '/dev/shm'].map((r) => path.resolve(r) + path.sep);
  return roots.some((r) => (path.resolve(p) + path.sep).startsWith(r));
}

/** Reads a dev secret file from the data dir, creating it (mode 0600) when absent. */
function devSecretFile(dataDir: string, name: string, make: () => string, generated: string[]): string {
  const file = path.join(dataDir, name);
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  try {
    const fd = fs.openSync(file, 'wx', 0o600);
    fs.writeSync(fd, make() + '\n');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    generated.push(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
  return fs.readFileSync(file, 'utf8').trim();
}

export interface LoadOptions {
  /** Create dev secret files in the data dir when none are configured (never in production). */
  generateDevSecrets?: boolean;
}

/** Validates the environment into a frozen Config, or throws ConfigError listing every problem. */
export function loadConfig(env: RawEnv = process.env, options: LoadOptions = {}): Config {
  const problems: string[] = [];
  const resolved = resolveFileVariants(env, problems);
  let parsed = schema.safeParse(resolved);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) problems.push(`${String(issue.path[0])}: ${issue.message}`);
    // Keep checking the rest (bad values fall back to their defaults) so every problem is listed at once.
    const bad = new Set(parsed.error.issues.map((issue) => String(issue.path[0])));
    parsed = schema.safeParse(Object.fromEntries(Object.entries(resolved).filter(([k]) => !bad.has(k))));
    if (!parsed.success) throw new ConfigError(problems);
  }
  const e = parsed.data;
  const production = e.NODE_ENV === 'production';
  const dataDir = path.resolve(e.PKV_DATA_DIR);
  const database: DatabaseConfig = { ...parseDatabaseUrl(e.PKV_DATABASE_URL, problems), timeoutMs: e.PKV_DB_WAIT_TIMEOUT * 1000 };
  const generated: string[] = [];
  const mayGenerate = !production && options.generateDevSecrets !== false;

  if (e.PKV_MASTER_KEYS && e.PKV_MASTER_KEY) {
    problems.push('PKV_MASTER_KEYS: set either PKV_MASTER_KEYS or PKV_MASTER_KEY, not both');
  }
  let masterKeys: MasterKey[] = [];
  if (e.PKV_MASTER_KEYS) masterKeys = parseKeyring(e.PKV_MASTER_KEYS, 'PKV_MASTER_KEYS', problems);
  else if (e.PKV_MASTER_KEY) {
    const key = decodeKey(e.PKV_MASTER_KEY);
    if (!key) problems.push('PKV_MASTER_KEY: version 1 key is not valid base64');
    else if (key.length !== 32) problems.push(`PKV_MASTER_KEY: version 1 key must be exactly 32 bytes, got ${key.length}`);
    else masterKeys = [{ version: 1, key }];
  } else if (production) {
    problems.push('PKV_MASTER_KEYS: required when NODE_ENV=production (no key is ever generated in production)');
  } else if (mayGenerate && problems.length === 0) {
    const text = devSecretFile(dataDir, 'master.key', () => `1:${crypto.randomBytes(32).toString('base64')}`, generated);
    masterKeys = parseKeyring(text, `${path.join(dataDir, 'master.key')}`, problems);
  }

  let jwtSecret = Buffer.alloc(0);
  if (e.PKV_JWT_SECRET) {
    jwtSecret = Buffer.from(e.PKV_JWT_SECRET, 'utf8');
    if (jwtSecret.length < 32) problems.push('PKV_JWT_SECRET: must be at least 32 bytes');
  } else if (production) {
    problems.push('PKV_JWT_SECRET: required when NODE_ENV=production (no secret is ever generated in production)');
  } else if (mayGenerate && problems.length === 0) {
    jwtSecret = Buffer.from(devSecretFile(dataDir, 'jwt.secret', () => crypto.randomBytes(48).toString('base64url'), generated), 'utf8');
    // A file cut short (a crash mid-write) or edited by hand must not become a forgeable session key.
    if (jwtSecret.length < 32) problems.push(`PKV_JWT_SECRET: ${path.join(dataDir, 'jwt.secret')} holds fewer than 32 bytes; delete it to have a new one generated`);
  }

  if (production && database.kind === 'sqlite' && database.path && isUnderTempDir(database.path)) {
    problems.push(`PKV_DATABASE_URL: refusing a SQLite database under a temporary directory in production (${database.path})`);
  }

  const trustProxy = parseTrustProxy(e.PKV_TRUST_PROXY, problems);

  if (e.PKV_METRICS_HOST !== undefined && e.PKV_METRICS_PORT === undefined) {
    problems.push('PKV_METRICS_HOST: set PKV_METRICS_PORT too (the metrics listener is off without a port)');
  }
  const metricsHost = e.PKV_METRICS_HOST ?? '127.0.0.1';
  if (e.PKV_METRICS_PORT !== undefined && e.PKV_METRICS_PORT !== 0 && e.PKV_METRICS_PORT === e.PKV_PORT) {
    problems.push(`PKV_METRICS_PORT: ${e.PKV_METRICS_PORT} is PKV_PORT too; the metrics listener needs a port of its own`);
  }

  if (problems.length > 0) throw new ConfigError(problems);

  return Object.freeze({
    nodeEnv: e.NODE_ENV,
    database,
    masterKeys: Object.freeze(masterKeys),
    jwtSecret,
    jwtTtlSeconds: e.PKV_JWT_TTL,
    host: e.PKV_HOST,
    port: e.PKV_PORT,
    metrics: e.PKV_METRICS_PORT === undefined ? undefined : Object.freeze({ host: metricsHost, port: e.PKV_METRICS_PORT }),
    dataDir,
    bootstrapAdminPassword: e.PKV_BOOTSTRAP_ADMIN_PASSWORD,
    revealRateLimit: e.PKV_REVEAL_RATE_LIMIT,
    loginRateLimit: e.PKV_LOGIN_RATE_LIMIT,
    trustProxy,
    logLevel: e.PKV_LOG_LEVEL,
    scryptCost: e.PKV_SCRYPT_COST,
    redisUrl: e.PKV_REDIS_URL,
    gateway: Object.freeze({
      connectTimeoutMs: e.PKV_GATEWAY_CONNECT_TIMEOUT,
      firstByteTimeoutMs: e.PKV_GATEWAY_FIRST_BYTE_TIMEOUT,
      idleTimeoutMs: e.PKV_GATEWAY_IDLE_TIMEOUT,
      bodyLimitBytes: e.PKV_GATEWAY_BODY_LIMIT,
    }),
    auditCheckpointIntervalSeconds: e.PKV_AUDIT_CHECKPOINT_INTERVAL,
    auditJobsPerUser: e.PKV_AUDIT_CONCURRENCY_PER_USER,
    auditJobsTotal: e.PKV_AUDIT_CONCURRENCY,
    // Background work is off under test unless a test asks for it: tests drive it with their own clock.
    health: Object.freeze({
      scheduler: (e.PKV_HEALTH_SCHEDULER ?? (e.NODE_ENV === 'test' ? 'off' : 'on')) === 'on',
      intervalMs: e.PKV_HEALTH_CHECK_INTERVAL,
      concurrency: e.PKV_HEALTH_CHECK_CONCURRENCY,
      timeoutMs: e.PKV_HEALTH_CHECK_TIMEOUT,
    }),
    webhooks: Object.freeze({
      dispatcher: (e.PKV_WEBHOOK_DISPATCHER ?? (e.NODE_ENV === 'test' ? 'off' : 'on')) === 'on',
      timeoutMs: e.PKV_WEBHOOK_TIMEOUT,
      retryBaseMs: e.PKV_WEBHOOK_RETRY_BASE,
      retryForMs: e.PKV_WEBHOOK_RETRY_FOR,
    }),
    generated: Object.freeze(generated),
  });
}

/** Every variable the schema knows, with its description and default, for .env.example and --help. */
export function describeVariables(): Array<{ name: string; description: string }> {
  return Object.entries(schema.shape).map(([name, s]) => ({ name, description: s.description ?? '' }));
}
