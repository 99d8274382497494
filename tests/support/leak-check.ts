import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Container } from '../../src/container';
import type { Database } from '../../src/db/database';
import type { SealedSecret } from '../../src/crypto/envelope';

const asBuffer = (v: unknown): Buffer | null => (v == null ? null : Buffer.isBuffer(v) ? v : Buffer.from(v as Uint8Array));

/** A provider_keys row (raw SQL result) in the envelope's stored form. */
export function sealedOf(r: Record<string, unknown>): SealedSecret {
  return {
    formatVersion: Number(r.format_version),
    kekVersion: r.kek_version == null ? null : Number(r.kek_version),
    wrappedDek: asBuffer(r.wrapped_dek),
    dekIv: asBuffer(r.dek_iv),
    dekTag: asBuffer(r.dek_tag),
    secretCiphertext: asBuffer(r.secret_ciphertext),
    secretIv: asBuffer(r.secret_iv),
    secretTag: asBuffer(r.secret_tag),
  };
}

/** Shorter values match ordinary text by chance. */
const MIN_NEEDLE = 12;
/** Above this many needles, search by a fixed-width window in a set: one pass over the text, whatever the count. */
const WINDOW = 16;
const MAX_RESPONSE = 1 << 20;

/**
 * Every secret a test file's in-process app handled: passwords, session and API tokens, provider secrets (learned
 * from the traffic itself and, at the end, by opening every stored key), and every error body it sent. `check()`
 * searches the captured log lines, the error bodies and every audit, usage, health and webhook row for them: the suite-wide guarantee that no
 * stored secret or issued token ever lands there.
 */
export class SuiteSecrets {
  private readonly needles = new Map<string, string>();
  private readonly errorBodies: string[] = [];
  /** Every gateway answer as the client got it, headers and body (each up to MAX_RESPONSE). */
  private readonly gatewayAnswers: string[] = [];

  add(kind: string, value: string | null | undefined): void {
    if (!value) return;
    // A JWT's header and claims are shared or public; its signature is what must never be seen.
    const needle = kind === 'session token' ? value.slice(value.lastIndexOf('.') + 1) : kind === 'api token' ? value.slice(12) : value;
    if (needle.length >= MIN_NEEDLE) this.needles.set(needle, kind);
  }

  /** Wraps the app so that every answer teaches the book its secrets and every error body is kept for the search. */
  tap(app: (req: IncomingMessage, res: ServerResponse) => void): (req: IncomingMessage, res: ServerResponse) => void {
    return (req, res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const keep = (chunk: unknown, encoding?: unknown) => {
        if (chunk == null || typeof chunk === 'function' || size > MAX_RESPONSE) return;
        const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk), typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8');
        size += b.length;
        chunks.push(b);
      };
      const write = res.write.bind(res) as (...args: unknown[]) => boolean;
      const end = res.end.bind(res) as (...args: unknown[]) => ServerResponse;
      res.write = ((chunk: unknown, ...rest: unknown[]) => (keep(chunk, rest[0]), write(chunk, ...rest))) as typeof res.write;
      res.end = ((chunk?: unknown, ...rest: unknown[]) => {
        keep(chunk, rest[0]);
        const text = Buffer.concat(chunks).toString('utf8');
        if (req.url?.startsWith('/gateway')) this.gatewayAnswers.push(`${JSON.stringify(res.getHeaders())}\n${text}`);
        this.learn(res.statusCode, String(res.getHeader('content-type') ?? ''), text);
        return end(chunk, ...rest);
      }) as typeof res.end;
      app(req, res);
    };
  }

  private learn(status: number, contentType: string, text: string): void {
    if (status >= 400) {
      this.errorBodies.push(text);
      return;
    }
    if (!contentType.includes('json') || !text) return;
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      return;
    }
    const b = body as { accessToken?: unknown; token?: unknown; secret?: unknown; virtualKey?: unknown };
    if (typeof b?.accessToken === 'string') this.add('session token', b.accessToken);
    if (typeof b?.token === 'string' && b.token.startsWith('pkv_')) this.add('api token', b.token);
    if (typeof b?.secret === 'string') this.add('provider secret', b.secret);
    if (typeof b?.virtualKey === 'string') this.add('virtual key', b.virtualKey);
  }

  /** Every gateway answer so far as its client got it (headers, then body, each up to 1 MiB), for searches of its own. */
  gatewayAnswerText(): string {
    return this.gatewayAnswers.join('\n');
  }

  /** Opens every stored (not deleted) provider key and books its secret. */
  async addStoredSecrets(container: Container, db: Database): Promise<void> {
    for (let after = ''; ; ) {
      const rows: Array<Record<string, unknown>> = await db.read((m) =>
        m.query("SELECT * FROM provider_keys WHERE status <> 'deleted' AND id > ? ORDER BY id LIMIT 1000", [after]),
      );
      for (const r of rows) {
        try {
          this.add('provider secret', container.envelope.open({ keyId: String(r.id), ownerId: String(r.owner_id), projectId: String(r.project_id), provider: String(r.provider), baseUrl: r.base_url == null ? null : String(r.base_url) }, sealedOf(r), { legacy: true }).toString('utf8'));
        } catch {
          /* a row a test damaged on purpose */
        }
      }
      if (rows.length < 1000) return;
      after = String(rows[rows.length - 1].id);
    }
  }

  /** Where each kind of secret was found: { place: [kind: first characters…] }; empty when nothing leaked. */
  async check(logLines: readonly string[], db: Database): Promise<Record<string, string[]>> {
    const found: Record<string, string[]> = {};
    const search = (place: string, text: string) => {
      for (const hit of this.hitsIn(text)) (found[place] ??= []).includes(hit) || found[place].push(hit);
    };
    search('log lines', logLines.join('\n'));
    search('error bodies', this.errorBodies.join('\n'));
    search('gateway answers', this.gatewayAnswers.join('\n'));
    const tables = [
      ['audit rows', 'audit_events'], ['virtual key rows', 'virtual_keys'], ['gateway usage rows', 'gateway_usage'], ['provider key rows', 'provider_keys'],
      ['health history rows', 'key_health_events'], ['webhook rows', 'webhooks'], ['webhook delivery rows', 'webhook_deliveries'], ['webhook attempt rows', 'webhook_attempts'],
    ];
    for (const [place, table] of tables) {
      for (let after = ''; ; ) {
        const rows: Array<Record<string, unknown>> = await db.read((m) => m.query(`SELECT * FROM ${table} WHERE id > ? ORDER BY id LIMIT 5000`, [after]));
        search(place, JSON.stringify(rows));
        if (rows.length < 5000) break;
        after = String(rows[rows.length - 1].id);
      }
    }
    return found;
  }

  private hitsIn(text: string): string[] {
    const label = (needle: string) => `${this.needles.get(needle)}: ${needle.slice(0, 6)}…`;
    if (this.needles.size <= 64) return [...this.needles.keys()].filter((n) => text.includes(n)).map(label);
    const windows = new Map<string, string[]>();
    const short: string[] = [];
    for (const n of this.needles.keys()) {
      if (n.length < WINDOW) short.push(n);
      else {
        const w = n.slice(-WINDOW);
        windows.set(w, [...(windows.get(w) ?? []), n]);
      }
    }
    const hits = new Set(short.filter((n) => text.includes(n)));
    for (let i = 0; i + WINDOW <= text.length; i++) {
      const candidates = windows.get(text.substr(i, WINDOW));
      if (candidates) for (const n of candidates) if (text.startsWith(n, i + WINDOW - n.length)) hits.add(n);
    }
    return [...hits].map(label);
  }
}
