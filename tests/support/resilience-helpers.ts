import 'reflect-metadata';
import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import type { TestContext } from './test-app';
import { allServerOutput, sleep } from './processes';
import { ProviderKeysRepository } from '../../src/modules/provider-keys/provider-keys.repository';
import { bindingOf } from '../../src/modules/provider-keys/provider-key.entity';
import { hintFor, Provider } from '../../src/modules/provider-keys/providers';

// ---------------------------------------------------------------------------------------------------------------
// HTTP to spawned servers
// ---------------------------------------------------------------------------------------------------------------

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  body: any;
  requestId: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });

/** One request to a spawned server over real HTTP (keep-alive). `path` is absolute (`/api/v1/...`, `/readyz`). */
export function call(
  base: string,
  method: string,
  urlPath: string,
  opts: { body?: unknown; headers?: Record<string, string>; timeoutMs?: number; requestId?: string } = {},
): Promise<Reply> {
  const payload = opts.body === undefined ? undefined : Buffer.from(JSON.stringify(opts.body), 'utf8');
  return rawCall(base, method, urlPath, { ...opts, body: payload, headers: { ...(payload ? { 'Content-Type': 'application/json' } : {}), ...opts.headers } });
}

/** A request with the body bytes exactly as given (no serialization, no content type unless set). */
export function rawCall(
  base: string,
  method: string,
  urlPath: string,
  opts: { body?: Buffer | string; headers?: Record<string, string>; timeoutMs?: number; requestId?: string } = {},
): Promise<Reply> {
  const requestId = opts.requestId ?? `t-${crypto.randomBytes(9).toString('base64url')}`;
  const payload = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body, 'utf8');
  const headers: Record<string, string> = { 'X-Request-Id': requestId, ...(payload ? { 'Content-Length': String(payload.length) } : {}), ...opts.headers };
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${urlPath}`, { method, headers, agent, timeout: opts.timeoutMs ?? 60_000 }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (c: Buffer) => parts.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const text = Buffer.concat(parts).toString('utf8');
        let body: unknown;
        try {
          body = text ? JSON.parse(text) : undefined;
        } catch {
          body = undefined;
        }
        resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body, requestId });
      });
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath} timed out`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** Serves an in-process app on 127.0.0.1 and an ephemeral port (real sockets, for raw bytes and headers). */
export async function listen(app: http.RequestListener): Promise<{ url: string; port: number; close(): Promise<void> }> {
  const server = http.createServer(app);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** Writes bytes on a fresh TCP connection and returns whatever comes back until the server closes it (or timeoutMs). */
export function rawSocket(port: number, payload: Buffer, timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const done = () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const timer = setTimeout(() => s.destroy(), timeoutMs);
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('error', () => undefined);
    s.on('close', done);
    s.write(payload);
  });
}

export const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

export async function loginAt(base: string, username: string, password: string, headers: Record<string, string> = {}): Promise<string> {
  const res = await call(base, 'POST', '/api/v1/auth/login', { body: { username, password }, headers });
  if (res.status !== 200) throw new Error(`login ${username} at ${base}: ${res.status} ${res.text}`);
  return res.body.accessToken as string;
}

/** The one error envelope of the API. */
export function isEnvelope(body: unknown, code?: string): boolean {
  const b = body as { error?: Record<string, unknown> } | undefined;
  if (!b || typeof b !== 'object' || Object.keys(b).join() !== 'error' || !b.error) return false;
  const e = b.error;
  return Object.keys(e).sort().join() === 'code,details,message,requestId' && typeof e.code === 'string' && typeof e.message === 'string' && Array.isArray(e.details) && (code === undefined || e.code === code);
}

// ---------------------------------------------------------------------------------------------------------------
// A TCP proxy in front of MariaDB that a test can cut and restore (the shared server itself is never touched)
// ---------------------------------------------------------------------------------------------------------------

export class TcpProxy {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(
    private readonly targetHost: string,
    private readonly targetPort: number,
  ) {}

  private listen(port: number): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, this.targetHost);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.once('close', () => this.sockets.delete(s));
        s.on('error', () => undefined);
      }
      client.pipe(upstream);
      upstream.pipe(client);
      client.once('close', () => upstream.destroy());
      upstream.once('close', () => client.destroy());
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject);
        this.port = (server.address() as net.AddressInfo).port;
        resolve();
      });
    });
  }

  start(): Promise<void> {
    return this.listen(0);
  }

  /** The database is gone for whoever connects through this proxy: every socket reset, new ones refused. */
  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    const closed = server ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
    for (const s of this.sockets) s.resetAndDestroy();
    this.sockets.clear();
    await closed;
  }

  /** Accepts again on the same port. */
  async restore(): Promise<void> {
    if (this.server) return;
    await this.listen(this.port);
  }

  async close(): Promise<void> {
    await this.cut();
  }

  /** A mysql:// URL identical to `url` except that it goes through this proxy. */
  via(url: string): string {
    const u = new URL(url);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Traffic
// ---------------------------------------------------------------------------------------------------------------

export interface Outcome {
  op: string;
  status: number;
  requestId: string;
  /** The parsed body (JSON) or undefined. */
  body: unknown;
  /** Set when the request got no HTTP answer at all (e.g. the server was killed). */
  error?: string;
  /** Anything the op wants to remember (the secret it sent, the key it touched). */
  meta?: Record<string, unknown>;
}

/**
 * Runs `pick(i)` with `concurrency` workers until stopped, recording every outcome. A request that fails at the
 * transport level (connection reset by a killed server) is recorded with status 0.
 */
export class Traffic {
  readonly outcomes: Outcome[] = [];
  private running = true;
  private workers: Promise<void>[] = [];
  private started = 0;
  inFlight = new Map<string, string>();

  constructor(
    private readonly base: () => string,
    private readonly pick: (i: number) => { op: string; method: string; path: string; body?: unknown; headers?: Record<string, string>; meta?: Record<string, unknown> },
    concurrency: number,
  ) {
    for (let w = 0; w < concurrency; w++) this.workers.push(this.worker());
  }

  private async worker(): Promise<void> {
    while (this.running) {
      const spec = this.pick(this.started++);
      const requestId = `tr-${crypto.randomBytes(9).toString('base64url')}`;
      this.inFlight.set(requestId, spec.op);
      try {
        const res = await call(this.base(), spec.method, spec.path, { body: spec.body, headers: spec.headers, requestId, timeoutMs: 60_000 });
        this.outcomes.push({ op: spec.op, status: res.status, requestId, body: res.body, meta: spec.meta });
      } catch (err) {
        this.outcomes.push({ op: spec.op, status: 0, requestId, body: undefined, error: (err as Error).message, meta: spec.meta });
        // A dead server: do not spin.
        await sleep(50);
      } finally {
        this.inFlight.delete(requestId);
      }
    }
  }

  count(pred: (o: Outcome) => boolean, since = 0): number {
    let n = 0;
    for (let i = since; i < this.outcomes.length; i++) if (pred(this.outcomes[i])) n++;
    return n;
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.workers);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// What the database holds after a fault
// ---------------------------------------------------------------------------------------------------------------

export interface KeyReport {
  total: number;
  live: number;
  deleted: number;
  /** id → plaintext, for every live key. */
  plaintexts: Map<string, string>;
  problems: string[];
}

/**
 * Opens every stored provider key with the container's envelope and checks each is whole: a live key opens, its
 * hint and fingerprint match its plaintext; a deleted one has no crypto material left.
 */
export async function openEveryKey(ctx: TestContext): Promise<KeyReport> {
  const repo = new ProviderKeysRepository();
  const fingerprintKey = await ctx.container.keyring.systemKey('fingerprint');
  const ids: Array<{ id: string }> = await ctx.db.read((m) => m.query('SELECT id FROM provider_keys ORDER BY id'));
  const report: KeyReport = { total: ids.length, live: 0, deleted: 0, plaintexts: new Map(), problems: [] };
  for (const { id } of ids) {
    const key = (await ctx.db.read((m) => repo.findById(m, id)))!;
    if (key.status === 'deleted') {
      report.deleted++;
      if (key.secretCiphertext || key.wrappedDek || key.fingerprint) report.problems.push(`${id}: deleted but still holds crypto material`);
      continue;
    }
    report.live++;
    try {
      const plain = ctx.container.envelope.open(bindingOf(key), key).toString('utf8');
      report.plaintexts.set(id, plain);
      if (key.hint !== hintFor(key.provider as Provider, plain)) report.problems.push(`${id}: hint does not match the stored secret`);
      const fp = crypto.createHmac('sha256', fingerprintKey).update(plain, 'utf8').digest('hex');
      if (key.fingerprint !== fp) report.problems.push(`${id}: fingerprint does not match the stored secret`);
    } catch (err) {
      report.problems.push(`${id}: does not open (${(err as Error).message})`);
    }
  }
  return report;
}

export async function countWhere(ctx: TestContext, table: string, where = '1 = 1', params: unknown[] = []): Promise<number> {
  const rows: Array<{ n: number | string }> = await ctx.db.read((m) => m.query(`SELECT COUNT(*) AS n FROM ${table} WHERE ${where}`, params));
  return Number(rows[0].n);
}

/** Request ids of audit rows, for matching responses to the rows they committed. */
export async function auditRequestIds(ctx: TestContext, action: string, outcome: string): Promise<Map<string, number>> {
  const rows: Array<{ request_id: string | null }> = await ctx.db.read((m) => m.query('SELECT request_id FROM audit_events WHERE action = ? AND outcome = ?', [action, outcome]));
  const out = new Map<string, number>();
  for (const r of rows) if (r.request_id) out.set(r.request_id, (out.get(r.request_id) ?? 0) + 1);
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// Secrets never leak
// ---------------------------------------------------------------------------------------------------------------

/**
 * Every secret, password and token a file handled, and every error body it received. `check` searches the captured
 * log of the in-process app, the output of every spawned server, the error bodies and every audit row for them.
 */
export class LeakBook {
  private readonly secrets = new Set<string>();
  private readonly errorBodies: string[] = [];

  add(...values: Array<string | undefined | null>): void {
    for (const v of values) if (v && v.length >= 16) this.secrets.add(v); // shorter ones match by chance
  }

  addUser(u: { password: string; token: string }): void {
    this.add(u.password, u.token);
  }

  /** Keeps the text of an error response (status ≥ 400) for the search. */
  seen(res: { status: number; text?: string; body?: unknown }): void {
    if (res.status >= 400) this.errorBodies.push(res.text ?? JSON.stringify(res.body ?? null));
  }

  get size(): number {
    return this.secrets.size;
  }

  /** The booked values found in `text` (shortened): should be none. */
  foundInText(text: string): string[] {
    return [...this.secrets].filter((s) => text.includes(s)).map((s) => `${s.slice(0, 12)}…`);
  }

  /** Where each secret was found: { place: [first 12 chars of the secret…] }; empty when nothing leaked. */
  async check(ctx: TestContext, extraText = ''): Promise<Record<string, string[]>> {
    const audit: Array<Record<string, unknown>> = await ctx.db.read((m) => m.query('SELECT * FROM audit_events'));
    const places: Record<string, string> = {
      'the in-process log': ctx.logText(),
      'spawned servers’ stdout/stderr': allServerOutput(),
      'error bodies': this.errorBodies.join('\n'),
      'audit rows': JSON.stringify(audit),
      other: extraText,
    };
    const found: Record<string, string[]> = {};
    for (const [place, text] of Object.entries(places)) {
      const hits = [...this.secrets].filter((s) => text.includes(s)).map((s) => `${s.slice(0, 12)}…`);
      if (hits.length) found[place] = hits;
    }
    return found;
  }
}

export const uniqueSecret = (prefix = 'sk-') => `${prefix}${crypto.randomBytes(24).toString('base64url')}`;
export const randomIp = () => `10.${crypto.randomInt(0, 256)}.${crypto.randomInt(0, 256)}.${crypto.randomInt(1, 255)}`;
