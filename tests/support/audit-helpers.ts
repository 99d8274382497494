import type { TestContext } from './test-app';

/** Runs task(i) for i < count with at most `concurrency` in flight; stops starting new ones after the deadline. */
export async function boundedLoop(count: number, concurrency: number, deadline: number, task: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  let done = 0;
  const worker = async () => {
    while (next < count && Date.now() < deadline) {
      const i = next++;
      await task(i);
      done++;
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return done;
}

/** A JSON request to a spawned server over real HTTP. */
export async function httpJson(
  base: string,
  method: string,
  route: string,
  opts: { body?: unknown; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: any }> {
  const res = await fetch(`${base}/api/v1${route}`, {
    method,
    headers: { ...(opts.body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...opts.headers },
    body: opts.body !== undefined ? JSON.stringify(opts.body) : undefined,
    signal: AbortSignal.timeout(30_000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

export const AUDIT_COLUMNS = [
  'id', 'seq', 'chain_hash', 'row_mac', 'at', 'action', 'outcome', 'actor_id', 'actor_username', 'actor_role', 'via', 'api_token_id',
  'key_id', 'project_id', 'owner_id', 'ip', 'user_agent', 'request_id', 'reason', 'detail',
] as const;
export type AuditColumn = (typeof AUDIT_COLUMNS)[number];
export type RawAuditRow = Record<AuditColumn, string | number | null>;

/** Writes audit rows straight through SQL, `batch` rows per INSERT (bypassing the product, as an attacker or a bulk load would). */
export async function insertAuditRows(ctx: TestContext, rows: RawAuditRow[], batch = 500): Promise<void> {
  const cols = AUDIT_COLUMNS.map((c) => `\`${c}\``).join(', ');
  const one = `(${AUDIT_COLUMNS.map(() => '?').join(', ')})`;
  for (let i = 0; i < rows.length; i += batch * 10) {
    const slice = rows.slice(i, i + batch * 10);
    await ctx.db.transaction(async (tx) => {
      for (let j = 0; j < slice.length; j += batch) {
        const part = slice.slice(j, j + batch);
        await tx.query(`INSERT INTO audit_events (${cols}) VALUES ${part.map(() => one).join(', ')}`, part.flatMap((r) => AUDIT_COLUMNS.map((c) => r[c])));
      }
    });
  }
}

/** Runs one statement in its own transaction (tampering done "with database access alone"). */
export function sql(ctx: TestContext, statement: string, params: unknown[] = []): Promise<any> {
  return ctx.db.transaction((tx) => tx.query(statement, params));
}

/** Sealed rows in chain order: {id, seq, chainHash}. */
export async function sealedRows(ctx: TestContext): Promise<Array<{ id: string; seq: number; chainHash: string }>> {
  const rows: Array<{ id: string; seq: string | number; chain_hash: string }> = await ctx.db.read((m) =>
    m.query('SELECT id, seq, chain_hash FROM audit_events WHERE seq IS NOT NULL ORDER BY seq'),
  );
  return rows.map((r) => ({ id: r.id, seq: Number(r.seq), chainHash: r.chain_hash }));
}

export async function countRows(ctx: TestContext, where = '1=1', params: unknown[] = []): Promise<number> {
  const [row] = await ctx.db.read((m) => m.query(`SELECT COUNT(*) AS n FROM audit_events WHERE ${where}`, params));
  return Number(row.n);
}
