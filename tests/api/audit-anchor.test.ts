import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { createProject } from '../support/factories';
import { countRows, sealedRows, sql } from '../support/audit-helpers';
import { runPkv } from '../support/processes';
import { buildContainer, Container } from '../../src/container';
import { CaptureTransport, createLogger } from '../../src/logger';
import { start } from '../../src/main';
import { cliActor } from '../../src/modules/auth/actor';
import { GENESIS } from '../../src/modules/audit/audit-chain';
import { CHECKPOINT_FILE, Checkpoint, CheckpointFile } from '../../src/modules/audit/audit-checkpoints';

/**
 * Point 3 of issue 25: someone with write access to the database alone deletes a row from the middle of the sealed
 * trail (nulls seq and chain_hash from there on, deletes the row, rewinds audit_chain_head), or wipes the trail, or
 * replaces the audit key. The head anchored in the data dir, which that attacker cannot reach, tells.
 */
jest.setTimeout(60_000);

const events = (capture: CaptureTransport, event: string) => capture.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.event === event);
const fileLines = (ctx: TestContext) =>
  fs.readFileSync(path.join(ctx.config.dataDir, CHECKPOINT_FILE), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Checkpoint & { mac: string });

async function writeRows(ctx: TestContext, admin: TestUser, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await createProject(ctx, admin);
}

/** Another server process's view of the same database and data dir: nothing of this process's memory. */
async function freshContainer(ctx: TestContext, dataDir = ctx.config.dataDir): Promise<{ c: Container; capture: CaptureTransport }> {
  const capture = new CaptureTransport();
  const c = await buildContainer({ ...ctx.config, dataDir }, createLogger('debug', [capture]), ctx.db);
  return { c, capture };
}

/** What the red team did: null seq and chain_hash from row `from` on, delete that row, put the head back on the row before. */
async function deleteFromMiddle(ctx: TestContext, from: number): Promise<string> {
  const rows = await sealedRows(ctx);
  const victim = rows[from - 1];
  await sql(ctx, 'UPDATE audit_events SET seq = NULL, chain_hash = NULL WHERE seq >= ?', [from]);
  await sql(ctx, 'DELETE FROM audit_events WHERE id = ?', [victim.id]);
  await sql(ctx, 'UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1', [from - 1, rows[from - 2].chainHash]);
  return victim.id;
}

describe('the checkpoint file', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let auditor: TestUser;
  beforeEach(async () => {
    ctx = await createTestContext();
    admin = await ctx.user('admin');
    auditor = await ctx.user('auditor');
  });
  afterEach(() => ctx.close());

  it('gets one fsynced, MACed line {seq, hash, at, mac} after sealing, private to the owner, then at most one per interval and the rest on flush', async () => {
    const seen: Checkpoint[] = [];
    ctx.container.audit.chain.onCheckpoint((c) => seen.push(c));
    await writeRows(ctx, admin, 3);
    await ctx.container.audit.chain.sealPending();
    await ctx.container.audit.chain.flush();
    const first = (await ctx.container.audit.chain.head()).seq;

    const file = path.join(ctx.config.dataDir, CHECKPOINT_FILE);
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    const [line] = fileLines(ctx);
    expect(Object.keys(line).sort()).toEqual(['at', 'hash', 'mac', 'seq']);
    expect(line).toMatchObject({ seq: first, hash: (await ctx.container.audit.chain.head()).hash });
    expect(line.mac).toMatch(/^[0-9a-f]{64}$/);
    expect(new Date(line.at).toISOString()).toBe(line.at);

    // Within the interval (10 s by default) a second sealed batch is remembered, not written...
    await writeRows(ctx, admin, 2);
    await ctx.container.audit.chain.sealPending();
    expect(fileLines(ctx)).toHaveLength(1);
    // ...until the interval ends or the process stops.
    await ctx.container.audit.chain.flush();
    const lines = fileLines(ctx);
    expect(lines.map((l) => l.seq)).toEqual([first, (await ctx.container.audit.chain.head()).seq]);
    expect(seen.map((c) => c.seq)).toEqual(lines.map((l) => l.seq));

    const body = (await ctx.http().get('/api/v1/audit-events/verify').set(auditor.auth).expect(200)).body;
    expect(body).toMatchObject({ ok: true, checkpoint: { seq: lines[1].seq, hash: lines[1].hash, at: lines[1].at } });
  });

  it('keeps the newest lines when it grows long, never drops a line that fails its MAC, and reports that line', async () => {
    const key = await ctx.container.keyring.systemKey('audit_chain');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pkv-ckpt-'));
    try {
      const file = new CheckpointFile(path.join(dir, 'cp.ndjson'), key);
      for (let seq = 1; seq <= 70; seq++) await file.append({ seq, hash: GENESIS });
      const compacted = await file.read();
      expect(compacted.forged).toBe(0);
      expect(compacted.valid.length).toBeLessThanOrEqual(64);
      expect(compacted.valid.map((c) => c.seq).slice(-3)).toEqual([68, 69, 70]);

      const text = fs.readFileSync(file.file, 'utf8').split('\n');
      text[0] = text[0].replace(/"seq":\d+/, '"seq":999');
      fs.writeFileSync(file.file, text.join('\n'));
      for (let seq = 71; seq <= 140; seq++) await file.append({ seq, hash: GENESIS });
      const after = await file.read();
      expect(after.forged).toBe(1);
      expect(after.valid.length).toBeGreaterThan(64);
      expect(fs.readFileSync(file.file, 'utf8')).toContain('"seq":999');

      // The same lines under another vault's audit key verify not at all.
      expect(await new CheckpointFile(file.file, Buffer.alloc(32, 7)).read()).toEqual({ valid: [], forged: after.valid.length + 1 });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('a database writer deleting a row from the middle of the sealed trail', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let auditor: TestUser;
  let sealedBefore: number;
  beforeEach(async () => {
    ctx = await createTestContext();
    admin = await ctx.user('admin');
    auditor = await ctx.user('auditor');
    await writeRows(ctx, admin, 10);
    await ctx.container.audit.chain.sealPending();
    sealedBefore = (await ctx.container.audit.chain.head()).seq;
    expect(sealedBefore).toBeGreaterThan(10);
  });
  afterEach(() => ctx.close());

  /** The checkpoint is written in the background after sealing: wait for it where another process needs the file. */
  const anchored = () => ctx.container.audit.chain.flush();

  it('is reported by verify, and the sealer re-links nothing around the hole (it stops, saying so once)', async () => {
    await deleteFromMiddle(ctx, 6);
    await writeRows(ctx, admin, 2);

    for (let i = 0; i < 3; i++) expect(await ctx.container.audit.chain.sealPending()).toBe(0);
    expect(await countRows(ctx, 'seq IS NOT NULL')).toBe(5);
    const body = (await ctx.http().get('/api/v1/audit-events/verify').set(auditor.auth).expect(200)).body;
    expect(body).toMatchObject({ ok: false, firstBadId: null, checked: 5, head: { seq: 5 } });
    expect(body.reason).toMatch(new RegExp(`the trail ends at seq 5 but .* is at seq ${sealedBefore}: rows were removed and the chain head was rewound`));
    const alarms = events(ctx.capture, 'audit.checkpoint_mismatch');
    expect(alarms).toHaveLength(1);
    expect(alarms[0]).toMatchObject({ level: 'error', message: expect.stringMatching(new RegExp(`does not match its checkpoint, so nothing more is sealed onto it: the chain head \\(seq 5\\) is behind .* \\(seq ${sealedBefore}\\)`)) });
  });

  it('is reported by another process that only has the checkpoint file: its verify, its start-up check and `pkv audit verify`', async () => {
    await anchored();
    await deleteFromMiddle(ctx, 6);
    const { c, capture } = await freshContainer(ctx);
    expect(await c.audit.chain.checkAnchor()).toMatch(/behind the checkpoint/);
    expect(events(capture, 'audit.checkpoint_mismatch')).toEqual([expect.objectContaining({ level: 'error' })]);
    expect(await c.audit.chain.sealPending()).toBe(0);
    expect(await c.audit.chain.verify()).toMatchObject({ ok: false, reason: expect.stringMatching(/rows were removed and the chain head was rewound/) });

    const cli = await runPkv(['audit', 'verify'], ctx.env);
    expect(cli.code).toBe(1);
    expect(JSON.parse(cli.stdout)).toMatchObject({ ok: false, checked: 5, reason: expect.stringMatching(/rewound/) });
    expect(cli.stderr).toMatch(/audit\.checkpoint_mismatch/);
    expect(await countRows(ctx, 'seq IS NOT NULL')).toBe(5);
  });

  it('is missing at start-up while sealed rows exist: audit.checkpoint_missing is logged (rewind detection is disarmed until it is anchored afresh)', async () => {
    await anchored();
    fs.rmSync(path.join(ctx.config.dataDir, CHECKPOINT_FILE));
    const { c, capture } = await freshContainer(ctx);
    expect(await c.audit.chain.checkAnchor()).toBeUndefined();
    expect(events(capture, 'audit.checkpoint_missing')).toEqual([
      expect.objectContaining({ level: 'warn', headSeq: sealedBefore, message: expect.stringMatching(new RegExp(`checkpoint file .*${CHECKPOINT_FILE} is missing while the trail has ${sealedBefore} sealed row`)) }),
    ]);
    // With the file in place, nothing of the kind.
    await c.audit.chain.flush();
    const again = await freshContainer(ctx);
    await again.c.audit.chain.checkAnchor();
    expect(events(again.capture, 'audit.checkpoint_missing')).toEqual([]);
  });

  it('is logged at start-up as audit.checkpoint_mismatch; the server still starts and is ready, and verify fails', async () => {
    await anchored();
    await deleteFromMiddle(ctx, 6);
    const capture = new CaptureTransport();
    const running = await start(ctx.config, createLogger('debug', [capture]), { port: 0, host: '127.0.0.1' });
    try {
      expect(events(capture, 'audit.checkpoint_mismatch')).toEqual([expect.objectContaining({ level: 'error', message: expect.stringMatching(/does not match its checkpoint/) })]);
      expect((await fetch(`${running.url}/readyz`)).status).toBe(200);
      const login = await fetch(`${running.url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: auditor.username, password: auditor.password }) });
      const { accessToken } = (await login.json()) as { accessToken: string };
      const verified = await fetch(`${running.url}/api/v1/audit-events/verify`, { headers: { authorization: `Bearer ${accessToken}` } });
      expect(verified.status).toBe(200);
      expect(await verified.json()).toMatchObject({ ok: false, reason: expect.stringMatching(/rewound/) });
    } finally {
      await running.close();
    }
    // Shutting down did not anchor the rewound head either.
    expect(Math.max(...fileLines(ctx).map((l) => l.seq))).toBe(sealedBefore);
  });

  it('is reported when every row is wiped and the head reset to genesis', async () => {
    await anchored();
    await sql(ctx, 'DELETE FROM audit_events');
    await sql(ctx, 'UPDATE audit_chain_head SET seq = 0, hash = ? WHERE id = 1', [GENESIS]);
    const { c } = await freshContainer(ctx);
    expect(await c.audit.chain.verify()).toMatchObject({ ok: false, checked: 0, reason: expect.stringMatching(`the trail ends at seq 0 but the checkpoint written at .* is at seq ${sealedBefore}`) });
    expect(await ctx.container.audit.chain.verify()).toMatchObject({ ok: false, checked: 0 });
  });

  it('is reported when the audit key itself is replaced and the trail wiped: the checkpoint lines no longer verify', async () => {
    await anchored();
    await sql(ctx, 'DELETE FROM audit_events');
    await sql(ctx, 'UPDATE audit_chain_head SET seq = 0, hash = ? WHERE id = 1', [GENESIS]);
    await sql(ctx, "DELETE FROM system_keys WHERE name = 'audit_chain'");
    const { c, capture } = await freshContainer(ctx); // makes itself a new audit key
    await c.db.transaction((tx) => c.audit.record(tx, cliActor(null), 'project.create', 'success'));

    expect(await c.audit.chain.checkAnchor()).toMatch(/do not verify under this vault's audit key: the audit key in the database was replaced/);
    expect(await c.audit.chain.sealPending()).toBe(0);
    expect(events(capture, 'audit.checkpoint_mismatch')).toHaveLength(1);
    const body = await c.audit.chain.verify();
    expect(body).toMatchObject({ ok: false, checkpoint: null, reason: expect.stringMatching(/line\(s\) of the checkpoint file .* do not verify/) });
  });

  it('is reported to every instance sharing the database, each anchored in its own data dir', async () => {
    const otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pkv-other-'));
    try {
      const other = await freshContainer(ctx, otherDir);
      await writeRows(ctx, admin, 3);
      expect(await other.c.audit.chain.sealPending()).toBe(3);
      await other.c.audit.chain.flush();
      await writeRows(ctx, admin, 2);
      expect(await ctx.container.audit.chain.sealPending()).toBe(2);
      await ctx.container.audit.chain.flush();
      expect(fs.existsSync(path.join(otherDir, CHECKPOINT_FILE))).toBe(true);
      expect(await other.c.audit.chain.verify()).toMatchObject({ ok: true, unsealed: 0 });
      expect(await ctx.container.audit.chain.verify()).toMatchObject({ ok: true, unsealed: 0 });

      await deleteFromMiddle(ctx, 6);
      expect(await other.c.audit.chain.verify()).toMatchObject({ ok: false, reason: expect.stringMatching(/rewound/) });
      expect(await ctx.container.audit.chain.verify()).toMatchObject({ ok: false, reason: expect.stringMatching(/rewound/) });
      await other.c.audit.chain.stop();
    } finally {
      fs.rmSync(otherDir, { recursive: true, force: true });
    }
  });

  it('is refused by an instance that only saw the newer head another instance sealed: it re-links nothing below it', async () => {
    const otherDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pkv-other-'));
    try {
      const other = await freshContainer(ctx, otherDir);
      await writeRows(ctx, admin, 6);
      expect(await ctx.container.audit.chain.sealPending()).toBe(6);
      expect(await other.c.audit.chain.sealPending()).toBe(0); // its sealer ticks: nothing to seal, but it sees the head
      const top = (await ctx.container.audit.chain.head()).seq;

      // Rewind to a point above everything the other instance ever anchored from its own seals, with a hole below the top.
      const rows = await sealedRows(ctx);
      await sql(ctx, 'UPDATE audit_events SET seq = NULL, chain_hash = NULL WHERE seq > ?', [top - 4]);
      await sql(ctx, 'DELETE FROM audit_events WHERE id = ?', [rows[top - 2].id]);
      await sql(ctx, 'UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1', [top - 4, rows[top - 5].chainHash]);

      expect(await other.c.audit.chain.sealPending()).toBe(0);
      expect(await other.c.audit.chain.verify()).toMatchObject({ ok: false, reason: expect.stringMatching(new RegExp(`is at seq ${top}: rows were removed`)) });
      expect(events(other.capture, 'audit.checkpoint_mismatch')).toHaveLength(1);
      await other.c.audit.chain.stop();
    } finally {
      fs.rmSync(otherDir, { recursive: true, force: true });
    }
  });

  it('stops the sealer at a head moved onto a made-up hash instead of linking onto it', async () => {
    await sql(ctx, 'UPDATE audit_chain_head SET seq = seq + 3, hash = ? WHERE id = 1', ['ab'.repeat(32)]);
    await writeRows(ctx, admin, 1);
    const { c, capture } = await freshContainer(ctx);
    expect(await c.audit.chain.sealPending()).toBe(0);
    expect(await ctx.container.audit.chain.sealPending()).toBe(0);
    expect(events(capture, 'audit.checkpoint_mismatch')[0]).toMatchObject({ message: expect.stringMatching(new RegExp(`the chain head \\(seq ${sealedBefore + 3}\\) does not match row ${sealedBefore + 3}`)) });
    expect(await c.audit.chain.verify()).toMatchObject({ ok: false });
  });

  it('is not confused with a trail that grew: rows sealed since the checkpoint, by this or another instance, verify', async () => {
    const { c } = await freshContainer(ctx);
    await writeRows(ctx, admin, 4);
    expect(await c.audit.chain.sealPending()).toBe(4);
    expect(await c.audit.chain.checkAnchor()).toBeUndefined();
    expect(await c.audit.chain.verify()).toMatchObject({ ok: true, checked: sealedBefore + 4 });
    expect(await ctx.container.audit.chain.verify()).toMatchObject({ ok: true, checked: sealedBefore + 4 });
    await writeRows(ctx, admin, 1);
    expect(await ctx.container.audit.chain.sealPending()).toBe(1);
  });
});
