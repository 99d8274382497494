'use strict';
// The physical limit, per shared/BENCH.md: the minimum a correct reveal must do with the driver alone —
// read the key row, insert the audit row, bump the counter, durable commit — with nothing on top.
// `node bench/baseline.js serve` is the bare node:http server; `inprocess` is the same transaction in a loop.
// The server also answers a bare key list (the same page of 50 with a project filter, one statement, the same JSON
// shape), the limit for the list point: no authentication, no validation, no logging.
// `node bench/baseline.js proxy UPSTREAM_ORIGIN [PORT]` is the bare forwarding proxy, the gateway's limit (baseline 3).
const crypto = require('node:crypto');
const http = require('node:http');

const LIST_SQL =
  "SELECT id, name, provider, hint, status, owner_id, project_id, remark, base_url, created_by, created_at, updated_at, expires_at, last_revealed_at, reveal_count, health_status, health_checked_at, health_detail, health_probe_model FROM provider_keys WHERE project_id = ? AND status <> 'deleted' ORDER BY id DESC LIMIT 51";
const iso = (v) => (v == null ? null : new Date(Number(v)).toISOString());
const listed = (r) => ({
  id: r.id,
  name: r.name,
  provider: r.provider,
  hint: r.hint,
  status: r.status,
  ownerId: r.owner_id,
  projectId: r.project_id,
  remark: r.remark ?? null,
  baseUrl: r.base_url ?? null,
  createdBy: r.created_by,
  createdAt: iso(r.created_at),
  updatedAt: iso(r.updated_at),
  expiresAt: iso(r.expires_at),
  lastRevealedAt: iso(r.last_revealed_at),
  revealCount: Number(r.reveal_count),
  health: { status: r.health_status ?? 'unknown', checkedAt: iso(r.health_checked_at), detail: r.health_detail ?? null },
  healthProbe: r.health_probe_model ? { model: r.health_probe_model } : null,
});
function page(rows) {
  const items = rows.slice(0, 50).map(listed);
  return { items, nextCursor: rows.length > 50 ? Buffer.from(items[49].id).toString('base64url') : null };
}

const AUDIT_SQL =
  'INSERT INTO audit_events (id, at, action, outcome, actor_id, key_id, project_id, owner_id, ip, row_mac) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)';

function sqliteReveal(file) {
  const Database = require('better-sqlite3');
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('busy_timeout = 5000');
  const read = db.prepare('SELECT id, owner_id, project_id, status, secret_ciphertext FROM provider_keys WHERE id = ?');
  const audit = db.prepare(AUDIT_SQL);
  const bump = db.prepare('UPDATE provider_keys SET reveal_count = reveal_count + 1, last_revealed_at = ? WHERE id = ?');
  const tx = db.transaction((id) => {
    const row = read.get(id);
    const now = Date.now();
    audit.run(crypto.randomUUID(), now, 'provider_key.reveal', 'success', row.owner_id, id, row.project_id, row.owner_id, '127.0.0.1', '0');
    bump.run(now, id);
    return row;
  });
  const list = db.prepare(LIST_SQL);
  return { reveal: async (id) => tx.immediate(id), list: async (projectId) => page(list.all(projectId)), close: async () => db.close() };
}

function mysqlReveal(url) {
  const mysql = require('mysql2/promise');
  const pool = mysql.createPool({ uri: url, connectionLimit: 24 });
  return {
    reveal: async (id) => {
      const conn = await pool.getConnection();
      try {
        await conn.beginTransaction();
        const [rows] = await conn.execute('SELECT id, owner_id, project_id, status, secret_ciphertext FROM provider_keys WHERE id = ? FOR UPDATE', [id]);
        const row = rows[0];
        const now = Date.now();
        await conn.execute(AUDIT_SQL, [crypto.randomUUID(), now, 'provider_key.reveal', 'success', row.owner_id, id, row.project_id, row.owner_id, '127.0.0.1', '0']);
        await conn.execute('UPDATE provider_keys SET reveal_count = reveal_count + 1, last_revealed_at = ? WHERE id = ?', [now, id]);
        await conn.commit();
        return row;
      } catch (err) {
        await conn.rollback().catch(() => undefined);
        throw err;
      } finally {
        conn.release();
      }
    },
    list: async (projectId) => page((await pool.query(LIST_SQL, [projectId]))[0]),
    close: () => pool.end(),
  };
}

function open(dbUrl) {
  return dbUrl.startsWith('sqlite:') ? sqliteReveal(dbUrl.slice('sqlite:'.length)) : mysqlReveal(dbUrl);
}

async function serve(dbUrl, port) {
  const driver = open(dbUrl);
  const server = http.createServer(async (req, res) => {
    const m = /^\/(reveal|list)\/([0-9a-f-]{36})$/.exec(req.url || '');
    if (!m) return res.writeHead(404).end();
    try {
      let body;
      if (m[1] === 'list') body = JSON.stringify(await driver.list(m[2]));
      else {
        const row = await driver.reveal(m[2]);
        body = JSON.stringify({ id: row.id, secret: 'x', revealedAt: new Date().toISOString() });
      }
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
    } catch {
      res.writeHead(500).end();
    }
  });
  server.keepAliveTimeout = 65000;
  server.listen(port, '127.0.0.1', () => process.stdout.write(`baseline listening on http://127.0.0.1:${server.address().port}\n`));
  process.on('SIGTERM', () => server.close(() => driver.close().then(() => process.exit(0))));
}

// Hop-by-hop headers, and Host (the upstream request gets its own).
const NOT_PASSED = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

/** Headers without the hop-by-hop ones (and those the Connection header names), nor `drop`. */
function endToEnd(headers, drop) {
  const listed = String(headers.connection ?? '').toLowerCase().split(',').map((s) => s.trim());
  const out = {};
  for (const [name, value] of Object.entries(headers)) if (value !== undefined && name !== drop && !NOT_PASSED.has(name) && !listed.includes(name)) out[name] = value;
  return out;
}

/**
 * The minimum a forwarding proxy does: checks the client's credential (PKV_BENCH_PROXY_KEY), swaps it for the real one
 * (PKV_BENCH_STANDIN_KEY), streams the request up and the answer back over keep-alive connections (undici, as the
 * gateway), drops hop-by-hop headers. Nothing else: no key lookup, no decryption, no scrubbing, no usage, no log.
 */
function proxy(upstream, port) {
  const { Agent } = require('undici');
  const { pipeline } = require('node:stream/promises');
  const clientAuth = `Bearer ${process.env.PKV_BENCH_PROXY_KEY}`;
  const realAuth = `Bearer ${process.env.PKV_BENCH_STANDIN_KEY}`;
  const origin = new URL(upstream).origin;
  const agent = new Agent();
  const server = http.createServer(async (req, res) => {
    if (req.headers.authorization !== clientAuth) {
      req.resume();
      return res.writeHead(401).end();
    }
    const headers = endToEnd(req.headers, 'authorization');
    headers.authorization = realAuth;
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    try {
      const answer = await agent.request({ origin, path: req.url, method: req.method, headers, body: hasBody ? req : null });
      res.writeHead(answer.statusCode, endToEnd(answer.headers));
      await pipeline(answer.body, res);
    } catch {
      if (res.headersSent) res.destroy();
      else res.writeHead(502).end();
    }
  });
  server.keepAliveTimeout = 65000;
  server.listen(port, '127.0.0.1', () => process.stdout.write(`proxy listening on http://127.0.0.1:${server.address().port}\n`));
  process.on('SIGTERM', () => server.close(() => agent.close().then(() => process.exit(0))));
}

async function inprocess(dbUrl, ids, seconds, concurrency) {
  const driver = open(dbUrl);
  const latencies = [];
  const deadline = Date.now() + seconds * 1000;
  const worker = async () => {
    while (Date.now() < deadline) {
      const t = process.hrtime.bigint();
      await driver.reveal(ids[(Math.random() * ids.length) | 0]);
      latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
  };
  const started = Date.now();
  await Promise.all(Array.from({ length: concurrency }, worker));
  const elapsed = (Date.now() - started) / 1000;
  await driver.close();
  latencies.sort((a, b) => a - b);
  const pct = (p) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))];
  return { requests: latencies.length, rps: latencies.length / elapsed, p50: pct(50), p99: pct(99) };
}

/** Removes the baselines' audit rows, so the product's sealer does not start with a backlog it never wrote. */
async function cleanup(dbUrl) {
  if (dbUrl.startsWith('sqlite:')) {
    const Database = require('better-sqlite3');
    const db = new Database(dbUrl.slice('sqlite:'.length));
    db.prepare("DELETE FROM audit_events WHERE row_mac = '0'").run();
    db.pragma('wal_checkpoint(TRUNCATE)');
    db.close();
    return;
  }
  const mysql = require('mysql2/promise');
  const c = await mysql.createConnection(dbUrl);
  await c.query("DELETE FROM audit_events WHERE row_mac = '0'");
  await c.end();
}

module.exports = { inprocess, cleanup };

if (require.main === module) {
  const [mode, dbUrl, port] = process.argv.slice(2);
  if (mode === 'serve') serve(dbUrl, Number(port || 0));
  else if (mode === 'proxy') proxy(dbUrl, Number(port || 0));
  else {
    process.stderr.write('usage: node bench/baseline.js serve DB_URL [PORT] | proxy UPSTREAM_ORIGIN [PORT]\n');
    process.exit(2);
  }
}
