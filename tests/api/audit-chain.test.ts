import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MoreThanOrEqual } from 'typeorm';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { createApiToken, createKey, createProject } from '../support/factories';
import { countRows, sealedRows, sql } from '../support/audit-helpers';
import { killAll, runPkv } from '../support/processes';
import { cliActor } from '../../src/modules/auth/actor';
import { AuditChain, chainLink, rowMac } from '../../src/modules/audit/audit-chain';
import { AuditEventEntity } from '../../src/modules/audit/audit-event.entity';

const hex = (bytes = 32) => crypto.randomBytes(bytes).toString('hex');
const newUuid = () => crypto.randomUUID();

/** A trail with a bit of everything: sign-ins, projects, a key, an allowed and a refused reveal, a token. */
async function writeTrail(ctx: TestContext): Promise<{ admin: TestUser; auditor: TestUser }> {
  const admin = await ctx.user('admin');
  const auditor = await ctx.user('auditor');
  const owner = await ctx.user('member');
  const stranger = await ctx.user('member');
  const project = await createProject(ctx, admin);
  const key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id });
  await ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(owner.auth).send({ reason: 'deploy' }).expect(200);
  await ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(stranger.auth).send({}).expect(404);
  await createApiToken(ctx, auditor, ['audit:read']);
  for (let i = 0; i < 6; i++) await createProject(ctx, admin);
  return { admin, auditor };
}

async function verifyOverHttp(ctx: TestContext, as: TestUser, head?: { seq: number; hash: string }) {
  const q = head ? `?headSeq=${head.seq}&headHash=${head.hash}` : '';
  const res = await ctx.http().get(`/api/v1/audit-events/verify${q}`).set(as.auth);
  expect(res.status).toBe(200);
  return res.body;
}

/** Moves every sealed row at or above `from` up by `by` positions without tripping the unique seq index midway. */
async function shiftSeqs(ctx: TestContext, from: number, by: number): Promise<void> {
  await sql(ctx, 'UPDATE audit_events SET seq = seq + 1000000 WHERE seq >= ?', [from]);
  await sql(ctx, 'UPDATE audit_events SET seq = seq - ? WHERE seq >= 1000000', [1000000 - by]);
}

function forgedRow(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: '01900000-0000-7000-8000-' + hex(6),
    seq: null,
    chain_hash: null,
    row_mac: hex(),
    at: Date.now(),
    action: 'provider_key.reveal',
    outcome: 'success',
    actor_id: newUuid(),
    actor_username: 'alice',
    actor_role: 'admin',
    via: 'session',
    ip: '127.0.0.1',
    detail: '{"why":"owner"}',
    ...overrides,
  };
}

async function insertRaw(ctx: TestContext, row: Record<string, unknown>): Promise<void> {
  const cols = Object.keys(row);
  await sql(ctx, `INSERT INTO audit_events (${cols.map((c) => `\`${c}\``).join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`, Object.values(row));
}

describe('GET /audit-events/verify on an untouched trail', () => {
  let ctx: TestContext;
  beforeEach(async () => {
    ctx = await createTestContext();
  });
  afterEach(() => ctx.close());

  it('seals every committed row into a contiguous chain that verifies and reports its head', async () => {
    const { auditor } = await writeTrail(ctx);
    const written = await countRows(ctx);
    expect(await ctx.container.audit.chain.sealPending()).toBe(written);
    await ctx.container.audit.chain.flush(); // the checkpoint is written in the background

    const rows = await sealedRows(ctx);
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: written }, (_, i) => i + 1));
    const body = await verifyOverHttp(ctx, auditor);
    const head = { seq: written, hash: rows[written - 1].chainHash };
    expect(body).toEqual({ ok: true, checked: written, head, unsealed: 0, checkpoint: { ...head, at: expect.any(String) } });
    expect(body.head.hash).toMatch(/^[0-9a-f]{64}$/);
  });

  it('reports rows written since the last sealing as an unsealed count, not as tampering, until the sealer links them', async () => {
    const { admin, auditor } = await writeTrail(ctx);
    const sealed = await ctx.container.audit.chain.sealPending();
    for (let i = 0; i < 3; i++) await createProject(ctx, admin);

    expect(await verifyOverHttp(ctx, auditor)).toMatchObject({ ok: true, checked: sealed, head: { seq: sealed }, unsealed: 3 });
    expect(await ctx.container.audit.chain.sealPending()).toBe(3);
    expect(await verifyOverHttp(ctx, auditor)).toMatchObject({ ok: true, checked: sealed + 3, head: { seq: sealed + 3 }, unsealed: 0 });
  });

  it('accepts a head written down earlier that is still part of the trail, and the current head', async () => {
    const { admin, auditor } = await writeTrail(ctx);
    await ctx.container.audit.chain.sealPending();
    const earlier = (await verifyOverHttp(ctx, auditor)).head;
    for (let i = 0; i < 4; i++) await createProject(ctx, admin);
    await ctx.container.audit.chain.sealPending();
    const now = (await verifyOverHttp(ctx, auditor)).head;

    expect(now.seq).toBe(earlier.seq + 4);
    expect(await verifyOverHttp(ctx, auditor, earlier)).toMatchObject({ ok: true, checked: now.seq });
    expect(await verifyOverHttp(ctx, auditor, now)).toMatchObject({ ok: true, checked: now.seq });
  });
});

describe('verifying a live trail', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext();
  });
  afterAll(() => ctx.close());

  it('passes while the sealer keeps extending the chain during the walk', async () => {
    const ROWS = 12_000;
    const chain = ctx.container.audit.chain;
    const actor = cliActor(null);
    // What the trail held before (a fresh database's first start records vault.credentials_sealed).
    await chain.sealPending();
    const before = (await chain.head()).seq;
    await ctx.db.transaction(async (tx) => {
      for (let i = 0; i < ROWS; i++) await ctx.container.audit.record(tx, actor, 'project.update', 'success', {}, { detail: { i } });
    });
    await chain.sealPending();

    let walking = true;
    const verifying = chain.verify().finally(() => (walking = false));
    let sealedMeanwhile = 0;
    while (walking) {
      await ctx.db.transaction((tx) => ctx.container.audit.record(tx, actor, 'project.update', 'success'));
      sealedMeanwhile += await chain.sealPending();
    }
    const result = await verifying;

    expect(sealedMeanwhile).toBeGreaterThan(0);
    expect(result).toMatchObject({ ok: true });
    expect(result.checked).toBeGreaterThanOrEqual(ROWS);
    expect(result.head.seq).toBe(result.checked);
    const [{ chain_hash }] = await ctx.db.read((m) => m.query('SELECT chain_hash FROM audit_events WHERE seq = ?', [result.checked]));
    expect(result.head.hash).toBe(chain_hash);
    expect(await chain.verify()).toMatchObject({ ok: true, checked: before + ROWS + sealedMeanwhile, unsealed: 0 });
  }, 120_000);

  it('accounts for every row that existed when it began, as checked or as unsealed, while a sealer links them meanwhile', async () => {
    const chain = ctx.container.audit.chain;
    const actor = cliActor(null);
    for (let round = 0; round < 20; round++) {
      await ctx.db.transaction(async (tx) => {
        for (let i = 0; i < 300; i++) await ctx.container.audit.record(tx, actor, 'project.update', 'success', {}, { detail: { round, i } });
      });
      const existing = await countRows(ctx);
      const [result] = await Promise.all([chain.verify(), chain.sealPending()]);
      expect(result.ok).toBe(true);
      expect({ round, accounted: result.checked + result.unsealed >= existing }).toEqual({ round, accounted: true });
    }
  }, 120_000);
});

describe('GET /audit-events/verify after someone with database access alone tampers with the trail', () => {
  let ctx: TestContext;
  let auditor: TestUser;
  let admin: TestUser;
  let rows: Array<{ id: string; seq: number; chainHash: string }>;
  beforeEach(async () => {
    ctx = await createTestContext();
    ({ admin, auditor } = await writeTrail(ctx));
    await ctx.container.audit.chain.sealPending();
    rows = await sealedRows(ctx);
    expect(rows.length).toBeGreaterThan(12);
    expect(await verifyOverHttp(ctx, auditor)).toMatchObject({ ok: true });
  });
  afterEach(() => ctx.close());

  const bySeq = (seq: number) => rows[seq - 1];

  it.each([
    ['outcome', "CASE outcome WHEN 'success' THEN 'denied' ELSE 'success' END"],
    ['actor_id', `'${newUuid()}'`],
    ['actor_username', "'somebody-else'"],
    ['at', '`at` + 1'],
    ['key_id', 'NULL'],
    ['reason', "'covered up'"],
    ['detail', '\'{"name":"evil"}\''],
    ['user_agent', "'curl/8.0'"],
  ])('names the sealed row whose %s was changed afterwards', async (column, value) => {
    const [{ id }] = await ctx.db.read((m) => m.query("SELECT id FROM audit_events WHERE action = 'provider_key.reveal' AND outcome = 'success'"));
    const target = rows.find((r) => r.id === id)!;
    await sql(ctx, `UPDATE audit_events SET \`${column}\` = ${value} WHERE id = ?`, [target.id]);

    const body = await verifyOverHttp(ctx, auditor);
    expect(body).toMatchObject({ ok: false, firstBadId: target.id, checked: target.seq - 1 });
    expect(body.reason).toMatch(new RegExp(`row ${target.seq} was changed after it was written`));
  });

  it('names the row whose chain_hash was replaced', async () => {
    const target = bySeq(5);
    await sql(ctx, 'UPDATE audit_events SET chain_hash = ? WHERE id = ?', [hex(), target.id]);

    const body = await verifyOverHttp(ctx, auditor);
    expect(body).toMatchObject({ ok: false, firstBadId: target.id, checked: 4 });
    expect(body.reason).toMatch(/row 5 does not link to row 4/);
  });

  it.each([
    ['the first', 1],
    ['a middle', 6],
  ])('names the row after %s row that was deleted', async (_where, seq) => {
    await sql(ctx, 'DELETE FROM audit_events WHERE id = ?', [bySeq(seq).id]);

    const body = await verifyOverHttp(ctx, auditor);
    expect(body).toMatchObject({ ok: false, firstBadId: bySeq(seq + 1).id, checked: seq - 1 });
    expect(body.reason).toMatch(new RegExp(`rows ${seq}–${seq} of the chain are missing`));
  });

  it('names the first row out of place when two sealed rows swap their positions (seq)', async () => {
    const [a, b] = [bySeq(4), bySeq(9)];
    await sql(ctx, 'UPDATE audit_events SET seq = -1 WHERE id = ?', [a.id]);
    await sql(ctx, 'UPDATE audit_events SET seq = ? WHERE id = ?', [a.seq, b.id]);
    await sql(ctx, 'UPDATE audit_events SET seq = ? WHERE id = ?', [b.seq, a.id]);

    const body = await verifyOverHttp(ctx, auditor);
    expect(body).toMatchObject({ ok: false, firstBadId: b.id, checked: 3 });
    expect(body.reason).toMatch(/row 4 does not link to row 3/);
  });

  it('names the first row when two sealed rows swap their content, MACs included', async () => {
    const [a, b] = [bySeq(4), bySeq(9)];
    const content = ['row_mac', 'at', 'action', 'outcome', 'actor_id', 'actor_username', 'actor_role', 'via', 'api_token_id', 'key_id', 'project_id', 'owner_id', 'ip', 'user_agent', 'request_id', 'reason', 'detail'];
    const [ra]: Array<Record<string, unknown>> = await ctx.db.read((m) => m.query('SELECT * FROM audit_events WHERE id = ?', [a.id]));
    const [rb]: Array<Record<string, unknown>> = await ctx.db.read((m) => m.query('SELECT * FROM audit_events WHERE id = ?', [b.id]));
    const set = content.map((c) => `\`${c}\` = ?`).join(', ');
    await sql(ctx, `UPDATE audit_events SET ${set} WHERE id = ?`, [...content.map((c) => rb[c]), a.id]);
    await sql(ctx, `UPDATE audit_events SET ${set} WHERE id = ?`, [...content.map((c) => ra[c]), b.id]);

    const body = await verifyOverHttp(ctx, auditor);
    expect(body).toMatchObject({ ok: false, firstBadId: a.id, checked: 3 });
    expect(body.reason).toMatch(/row 4 was changed after it was written/);
  });

  it('names a forged row appended after the head with a made-up seq and chain hash, and the head moved to it', async () => {
    const last = rows.length;
    const forged = forgedRow({ seq: last + 1, chain_hash: hex() });
    await insertRaw(ctx, forged);
    await sql(ctx, 'UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1', [last + 1, forged.chain_hash]);

    const body = await verifyOverHttp(ctx, auditor);
    expect(body).toMatchObject({ ok: false, firstBadId: forged.id, checked: last });
    expect(body.reason).toMatch(new RegExp(`row ${last + 1} was changed after it was written`));
  });

  it('names a forged row slipped into the middle of the chain, later rows renumbered to make room', async () => {
    await shiftSeqs(ctx, 6, 1);
    const forged = forgedRow({ seq: 6, chain_hash: hex(), action: 'provider_key.delete' });
    await insertRaw(ctx, forged);
    await sql(ctx, 'UPDATE audit_chain_head SET seq = seq + 1 WHERE id = 1');

    const body = await verifyOverHttp(ctx, auditor);
    expect(body).toMatchObject({ ok: false, firstBadId: forged.id, checked: 5 });
    expect(body.reason).toMatch(/row 6 was changed after it was written/);
  });

  it.each([0, -1])('names a forged row given seq %i, below the first link of the chain', async (seq) => {
    const forged = forgedRow({ seq, chain_hash: hex() });
    await insertRaw(ctx, forged);

    const body = await verifyOverHttp(ctx, auditor);
    expect(body).toMatchObject({ ok: false, firstBadId: forged.id });
    expect(body.reason).toMatch(new RegExp(`sequence number ${seq} is before the start of the chain`));
  });

  it('reports a chain head rewritten so that it no longer matches the last sealed row', async () => {
    await sql(ctx, 'UPDATE audit_chain_head SET hash = ? WHERE id = 1', [hex()]);

    const body = await verifyOverHttp(ctx, auditor);
    expect(body).toMatchObject({ ok: false, firstBadId: null, checked: rows.length });
    expect(body.reason).toMatch(/head does not match the last sealed row/);
  });

  it('reports a chain head moved back to an earlier link while the rows after it remain', async () => {
    const earlier = bySeq(rows.length - 2);
    await sql(ctx, 'UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1', [earlier.seq, earlier.chainHash]);

    const body = await verifyOverHttp(ctx, auditor);
    expect(body).toMatchObject({ ok: false, firstBadId: null, checked: rows.length });
    expect(body.reason).toMatch(/head does not match the last sealed row/);
  });

  it('names a forged unsealed row whose row_mac is wrong; the sealer never links it, nor what came after it, and says so once', async () => {
    const forged = forgedRow();
    await insertRaw(ctx, forged);
    await createProject(ctx, admin);

    const before = await verifyOverHttp(ctx, auditor);
    expect(before).toMatchObject({ ok: false, firstBadId: forged.id, checked: rows.length, unsealed: 2 });
    expect(before.reason).toMatch(/unsealed row was changed or forged/);

    for (let i = 0; i < 3; i++) expect(await ctx.container.audit.chain.sealPending()).toBe(0);
    const after = await verifyOverHttp(ctx, auditor);
    expect(after).toMatchObject({ ok: false, firstBadId: forged.id, checked: rows.length, unsealed: 2 });
    expect(await countRows(ctx, 'seq IS NULL')).toBe(2);
    const alarms = ctx.capture.lines.map((l) => JSON.parse(l)).filter((l) => l.event === 'audit.forged_row');
    expect(alarms).toEqual([expect.objectContaining({ level: 'error', auditId: forged.id })]);

    // Once the forged row is gone, sealing resumes where it stopped.
    await sql(ctx, 'DELETE FROM audit_events WHERE id = ?', [forged.id]);
    expect(await ctx.container.audit.chain.sealPending()).toBe(1);
    expect(await verifyOverHttp(ctx, auditor)).toMatchObject({ ok: true, checked: rows.length + 1, unsealed: 0 });
  });

  it('names the row an attacker rewrote and re-linked with any key but the vault’s own (which alone would pass)', async () => {
    const relink = async (key: Buffer) => {
      const tail = await ctx.db.read((m) => m.find(AuditEventEntity, { where: { seq: MoreThanOrEqual(6) }, order: { seq: 'ASC' } }));
      let prev = bySeq(5).chainHash;
      for (const row of tail) {
        if (row.seq === 6) row.detail = '{"why":"rewritten"}';
        row.rowMac = rowMac(key, row);
        row.chainHash = chainLink(key, prev, row.seq!, row.rowMac);
        prev = row.chainHash;
        await sql(ctx, 'UPDATE audit_events SET detail = ?, row_mac = ?, chain_hash = ? WHERE id = ?', [row.detail, row.rowMac, row.chainHash, row.id]);
      }
      await sql(ctx, 'UPDATE audit_chain_head SET hash = ? WHERE id = 1', [prev]);
    };

    await relink(crypto.randomBytes(32));
    const body = await verifyOverHttp(ctx, auditor);
    expect(body).toMatchObject({ ok: false, firstBadId: bySeq(6).id, checked: 5 });
    expect(body.reason).toMatch(/row 6 was changed after it was written/);

    // Control: the same rewrite under the real audit key (kept wrapped under the master keyring) passes the walk; only
    // the head anchored outside the database still tells it.
    const auditKey = await ctx.container.keyring.systemKey('audit_chain');
    await relink(auditKey);
    expect(await new AuditChain(ctx.db, auditKey, ctx.container.logger).verify()).toMatchObject({ ok: true, checked: rows.length });
    const anchored = await verifyOverHttp(ctx, auditor);
    expect(anchored).toMatchObject({ ok: false, firstBadId: null, checked: rows.length });
    expect(anchored.reason).toMatch(new RegExp(`row ${rows.length} no longer carries the hash of the checkpoint written at`));
  });

  it('reports rows cut off the tail below an untouched head', async () => {
    const last = rows.length;
    await sql(ctx, 'DELETE FROM audit_events WHERE seq > ?', [last - 3]);

    const body = await verifyOverHttp(ctx, auditor);
    expect(body).toMatchObject({ ok: false, firstBadId: null, checked: last - 3, head: { seq: last } });
    expect(body.reason).toMatch(/removed from the tail/);
  });

  describe('a tail truncated with audit_chain_head rewritten to an earlier link', () => {
    let recorded: { seq: number; hash: string };
    beforeEach(async () => {
      recorded = (await verifyOverHttp(ctx, auditor)).head;
      const keep = bySeq(recorded.seq - 3);
      await sql(ctx, 'DELETE FROM audit_events WHERE seq > ?', [keep.seq]);
      await sql(ctx, 'UPDATE audit_chain_head SET seq = ?, hash = ? WHERE id = 1', [keep.seq, keep.chainHash]);
    });

    it('fails plain verification (the trail is behind its checkpoint) and against the head recorded before', async () => {
      const plain = await verifyOverHttp(ctx, auditor);
      expect(plain).toMatchObject({ ok: false, firstBadId: null, checked: recorded.seq - 3, checkpoint: { seq: recorded.seq, hash: recorded.hash } });
      expect(plain.reason).toMatch(new RegExp(`the trail ends at seq ${recorded.seq - 3} but the checkpoint written at .* is at seq ${recorded.seq}`));

      const body = await verifyOverHttp(ctx, auditor, recorded);
      expect(body).toMatchObject({ ok: false, firstBadId: null, checked: recorded.seq - 3 });
      expect(body.reason).toMatch(new RegExp(`recorded head \\(seq ${recorded.seq}\\) is no longer in the trail`));
    });

    it('links no new row onto the rewound head: new rows stay unsealed and verify keeps failing', async () => {
      for (let i = 0; i < 5; i++) await createProject(ctx, admin);
      expect(await ctx.container.audit.chain.sealPending()).toBe(0);
      expect(await countRows(ctx, 'seq IS NULL')).toBe(5);
      const body = await verifyOverHttp(ctx, auditor);
      expect(body).toMatchObject({ ok: false, firstBadId: null, unsealed: 5 });
      expect(body.reason).toMatch(/rows were removed and the chain head was rewound/);
    });

    it('makes `pkv audit verify` exit 1 against the data dir’s checkpoint; without one only --head-seq/--head-hash tells', async () => {
      const plain = await runPkv(['audit', 'verify'], ctx.env);
      expect(plain.code).toBe(1);
      expect(JSON.parse(plain.stdout)).toMatchObject({ ok: false, firstBadId: null, reason: expect.stringMatching(/rows were removed and the chain head was rewound/) });
      expect(plain.stderr).toMatch(/verification FAILED/);
      expect(plain.stderr).toMatch(/audit.checkpoint_mismatch/);

      const elsewhere = fs.mkdtempSync(path.join(os.tmpdir(), 'pkv-nockpt-'));
      try {
        const env = { ...ctx.env, PKV_DATA_DIR: elsewhere };
        const unanchored = await runPkv(['audit', 'verify'], env);
        expect(unanchored.code).toBe(0);
        // With no checkpoint file the trail is anchored afresh from the head it shows (the rewound one): it verifies.
        expect(JSON.parse(unanchored.stdout)).toMatchObject({ ok: true, checked: recorded.seq - 3, checkpoint: { seq: recorded.seq - 3 } });

        const pinned = await runPkv(['audit', 'verify', '--head-seq', String(recorded.seq), '--head-hash', recorded.hash], env);
        expect(pinned.code).toBe(1);
        expect(JSON.parse(pinned.stdout)).toMatchObject({ ok: false, firstBadId: null, reason: expect.stringMatching(/truncated or rewritten/) });
        expect(pinned.stderr).toMatch(/verification FAILED/);
      } finally {
        fs.rmSync(elsewhere, { recursive: true, force: true });
      }
    }, 60_000);
  });
});

describe('pkv audit verify', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext();
  });
  afterAll(async () => {
    await killAll();
    await ctx.close();
  });

  it('seals pending rows and prints ok JSON with exit 0 on a clean trail, then exits 1 naming the row changed afterwards', async () => {
    await writeTrail(ctx);
    const written = await countRows(ctx);

    const clean = await runPkv(['audit', 'verify'], ctx.env);
    expect(clean.code).toBe(0);
    expect(JSON.parse(clean.stdout)).toMatchObject({ ok: true, checked: written, head: { seq: written }, unsealed: 0 });
    expect(await countRows(ctx, 'seq IS NULL')).toBe(0);

    const [target] = await sealedRows(ctx).then((r) => r.slice(3, 4));
    await sql(ctx, "UPDATE audit_events SET outcome = 'error' WHERE id = ?", [target.id]);
    const tampered = await runPkv(['audit', 'verify'], ctx.env);
    expect(tampered.code).toBe(1);
    expect(JSON.parse(tampered.stdout)).toMatchObject({ ok: false, firstBadId: target.id, reason: expect.stringMatching(/changed after it was written/) });
    expect(tampered.stderr).toContain(`verification FAILED at ${target.id}`);
  }, 60_000);

  it('refuses --head-seq without --head-hash, and a malformed hash, with exit 2', async () => {
    expect((await runPkv(['audit', 'verify', '--head-seq', '3'], ctx.env)).code).toBe(2);
    expect((await runPkv(['audit', 'verify', '--head-seq', '3', '--head-hash', 'xyz'], ctx.env)).code).toBe(2);
  }, 60_000);
});

describe('audit events in the structured log', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext();
  });
  afterAll(() => ctx.close());

  const auditLines = () =>
    ctx.capture.lines.map((l) => JSON.parse(l) as Record<string, any>).filter((l) => l.event === 'audit');

  it('writes exactly one "event":"audit" line per committed row, matching the row, and none for a rolled-back one', async () => {
    await writeTrail(ctx);
    let rolledBack = '';
    await expect(
      ctx.db.transaction(async (tx) => {
        rolledBack = (await ctx.container.audit.record(tx, cliActor(null), 'project.create', 'success', {}, { detail: { name: 'never-committed' } })).id;
        throw new Error('the work failed after its audit row was written');
      }),
    ).rejects.toThrow('the work failed');

    const stored: Array<Record<string, any>> = await ctx.db.read((m) => m.query('SELECT * FROM audit_events'));
    const lines = auditLines();
    expect(lines.map((l) => l.audit.id).sort()).toEqual(stored.map((r) => r.id).sort());
    expect(rolledBack).toMatch(/^[0-9a-f-]{36}$/);
    expect(stored.some((r) => r.id === rolledBack)).toBe(false);
    expect(ctx.logText()).not.toContain(rolledBack);
    expect(ctx.logText()).not.toContain('never-committed');

    for (const row of stored) {
      const line = lines.find((l) => l.audit.id === row.id)!;
      expect(line).toMatchObject({ level: 'info', message: 'audit', event: 'audit' });
      expect(line.audit).toMatchObject({
        action: row.action,
        outcome: row.outcome,
        actorId: row.actor_id,
        keyId: row.key_id,
        projectId: row.project_id,
        at: new Date(Number(row.at)).toISOString(),
        detail: row.detail ? JSON.parse(row.detail) : null,
      });
      expect(line.audit).not.toHaveProperty('rowMac');
    }
  });

  it('never carries a secret: not the provider key, passwords, session or API tokens, or the master key', async () => {
    const admin = await ctx.user('admin');
    const owner = await ctx.user('member');
    const project = await createProject(ctx, admin);
    const key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id });
    const revealed = await ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(owner.auth).send({ reason: 'rotate upstream' }).expect(200);
    expect(revealed.body.secret).toBe(key.secret);
    const token = await createApiToken(ctx, admin, ['audit:read']);
    await ctx.http().get('/api/v1/audit-events').set(token.auth).expect(200);
    await ctx.http().post('/api/v1/auth/login').send({ username: owner.username, password: 'not-the-password-1' }).expect(401);

    const reveals = auditLines().filter((l) => l.audit.action === 'provider_key.reveal' && l.audit.keyId === key.id);
    expect(reveals).toHaveLength(1);
    const text = ctx.logText();
    const auditKey = await ctx.container.keyring.systemKey('audit_chain');
    expect(text).not.toContain(auditKey.toString('hex'));
    expect(text).not.toContain(auditKey.toString('base64'));
    for (const secret of [key.secret, admin.password, owner.password, 'not-the-password-1', admin.token, owner.token, token.token, ctx.env.PKV_MASTER_KEY!, ctx.env.PKV_JWT_SECRET!]) {
      expect(text).not.toContain(secret);
    }
  });
});

describe('verify over a long unsealed tail (the sealer has been failing)', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext();
  });
  afterAll(() => ctx.close());

  it('walks it in pages: counts every unsealed row and still finds a changed one on a late page', async () => {
    const TOTAL = 4500; // more than two verify pages
    for (let i = 0; i < TOTAL; i += 500) {
      await ctx.db.transaction(async (tx) => {
        for (let j = i; j < Math.min(i + 500, TOTAL); j++) await ctx.container.audit.record(tx, cliActor(null), 'project.create', 'success', {}, { detail: { n: j } });
      });
    }
    const unsealed = await countRows(ctx, 'seq IS NULL');
    expect(unsealed).toBeGreaterThanOrEqual(TOTAL);
    expect(await ctx.container.audit.chain.verify()).toMatchObject({ ok: true, checked: 0, unsealed });

    const [late] = await sql(ctx, 'SELECT id FROM audit_events WHERE seq IS NULL ORDER BY id DESC LIMIT 1 OFFSET 10');
    await sql(ctx, "UPDATE audit_events SET actor_username = 'mallory' WHERE id = ?", [late.id]);
    expect(await ctx.container.audit.chain.verify()).toMatchObject({ ok: false, firstBadId: late.id, reason: 'an unsealed row was changed or forged' });
  }, 120_000);
});
