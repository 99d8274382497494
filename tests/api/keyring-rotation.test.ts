import { createTestContext, Instance, openInstance, randomMasterKey, TestContext, TestUser } from '../support/test-app';
import { auditRows, createProject } from '../support/factories';
import { forgeOpenSecret, storedKey } from '../support/crypto-helpers';
import { cliActor } from '../../src/modules/auth/actor';
import type { RotationProgress, RotationResult } from '../../src/modules/keyring/rotation';
import { kekVersionCounts, keysThatDoNotOpen, loginTo, sampleOf, SeededKey, seedProviderKeys, systemKeyVersions, withKeyring } from '../support/keyring-helpers';
import { assertBuilt, killAll, lines, PkvResult, runPkv, spawnPkv, waitFor } from '../support/processes';

const BOTH_SYSTEM_KEYS_ON = (v: number) => ({ fingerprint: v, audit_chain: v });
const verbose = (line: string) => process.env.PKV_TEST_VERBOSE && process.stderr.write(`${line}\n`);

/** The `pkv keyring status` table as { version: [providerKeys, systemKeys, total] }. */
function statusTable(stdout: string): Record<number, [number, number, number]> {
  const out: Record<number, [number, number, number]> = {};
  for (const line of lines(stdout)) {
    const m = /^(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$/.exec(line.trim());
    if (m) out[Number(m[1])] = [Number(m[2]), Number(m[3]), Number(m[4])];
  }
  return out;
}

describe('rotating the master key of a vault holding 10,000 provider keys, online', () => {
  const TOTAL = 10_000;
  const REVEAL_WORKERS = 2;
  const MAX_REVEALS = 20_000;
  const BATCH = 250;
  const oldKey = randomMasterKey();
  const newKey = randomMasterKey();
  let ctx: TestContext;
  let admin: TestUser;
  let owner: TestUser;
  let keys: SeededKey[];
  let rotated: Instance;

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_MASTER_KEY: oldKey, PKV_REVEAL_RATE_LIMIT: '100000' });
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    const project = await createProject(ctx, admin);
    keys = await seedProviderKeys(ctx, TOTAL, { ownerId: owner.id, projectId: project.id, createdBy: admin.id });
    // The operator put a fresh key first and kept the old one after it: a second process on the same database.
    rotated = await openInstance(withKeyring(ctx.env, `2:${newKey},1:${oldKey}`));
  }, 120_000);

  afterAll(async () => {
    await rotated?.close();
    await ctx?.close();
  });

  it('rewraps every data key and both system keys to version 2 while concurrent reveals keep returning the right plaintext', async () => {
    expect(await kekVersionCounts(ctx.db)).toEqual({ 1: TOTAL });
    expect(await systemKeyVersions(ctx.db)).toEqual(BOTH_SYSTEM_KEYS_ON(1));

    const failures: string[] = [];
    const progress: Array<RotationProgress & { revealed: number }> = [];
    let revealed = 0;
    let rotating = true;
    const revealWhileRotating = async (worker: number) => {
      for (let i = worker; rotating && revealed < MAX_REVEALS; i += REVEAL_WORKERS) {
        const key = keys[(i * 7919) % TOTAL];
        const res = await rotated.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(owner.auth).send({});
        if (res.status !== 200) failures.push(`${key.id}: ${res.status} ${JSON.stringify(res.body)}`);
        else if (res.body.secret !== key.secret) failures.push(`${key.id}: wrong plaintext`);
        revealed++;
      }
    };

    const started = Date.now();
    const rotation = rotated.container.rotation
      .run(cliActor(null), { batchSize: BATCH, onProgress: (p) => progress.push({ ...p, revealed }) })
      .finally(() => (rotating = false));
    const [result] = (await Promise.all([rotation, ...Array.from({ length: REVEAL_WORKERS }, (_, w) => revealWhileRotating(w))])) as [RotationResult, ...void[]];
    const seconds = (Date.now() - started) / 1000;
    verbose(`[${ctx.kind}] rotated ${result.providerKeys} keys in ${seconds.toFixed(2)} s (${Math.round(result.providerKeys / seconds)}/s) with ${revealed} concurrent reveals; progress ${JSON.stringify(progress.map((p) => p.revealed))}`);

    expect(failures).toEqual([]);
    expect(result).toMatchObject({ toVersion: 2, providerKeys: TOTAL, systemKeys: 2, skipped: 0 });
    expect(revealed).toBeGreaterThan(0);
    const total = progress[0].total;
    const partway = progress.filter((p) => p.done > 0 && p.done < total);
    expect(partway.length).toBeGreaterThan(1);
    if (ctx.kind === 'mysql') {
      // Reveals completed between batches, i.e. while the table held keys under both versions.
      expect(partway[partway.length - 1].revealed).toBeGreaterThan(partway[0].revealed);
    }
    // On SQLite every query answers synchronously, so an in-process run never yields to the event loop and the reveals
    // wait for its end; reveals served while another process rotates are covered by the rerun test below.
  }, 240_000);

  it('leaves every key and both system keys under version 2, each opening under the new master key', async () => {
    expect(await kekVersionCounts(ctx.db)).toEqual({ 2: TOTAL });
    expect(await systemKeyVersions(ctx.db)).toEqual(BOTH_SYSTEM_KEYS_ON(2));
    expect(await keysThatDoNotOpen(rotated.container, rotated.db, sampleOf(keys, 500))).toEqual([]);

    // Independently of src/crypto: node-forge opens the stored bytes with the new master key alone.
    const newKeyBytes = Buffer.from(newKey, 'base64');
    for (const key of sampleOf(keys, 10)) {
      const row = await storedKey(ctx, key.id);
      expect(row.kekVersion).toBe(2);
      expect(forgeOpenSecret(newKeyBytes, row)?.toString('utf8')).toBe(key.secret);
    }

    for (const key of sampleOf(keys, 25)) {
      const res = await rotated.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(owner.auth).send({}).expect(200);
      expect(res.body.secret).toBe(key.secret);
    }
  }, 60_000);

  it('records one keyring.rotate audit row with the counts', async () => {
    const rows = await auditRows(ctx, { action: 'keyring.rotate' });
    expect(rows).toHaveLength(1);
    expect(rows[0].outcome).toBe('success');
    expect(JSON.parse(String(rows[0].detail))).toMatchObject({ toVersion: 2, providerKeys: TOTAL, systemKeys: 2, skipped: 0 });
  });

  it('starts with only version 2 configured and serves every key, the old master key gone; fingerprints and the audit chain survive', async () => {
    const only2 = await openInstance(withKeyring(ctx.env, `2:${newKey}`));
    try {
      expect(await keysThatDoNotOpen(only2.container, only2.db, keys)).toEqual([]);
      const ownerAuth = await loginTo(only2.http, owner.username, owner.password);
      for (const key of sampleOf(keys, 25)) {
        const res = await only2.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(ownerAuth).send({}).expect(200);
        expect(res.body.secret).toBe(key.secret);
      }
      // The fingerprint key was rewrapped, not replaced: pasting a stored secret again is still a duplicate.
      const adminAuth = await loginTo(only2.http, admin.username, admin.password);
      const again = keys[1234];
      const dup = await only2
        .http()
        .post('/api/v1/provider-keys')
        .set(adminAuth)
        .send({ name: 'again', provider: 'openai', ownerId: owner.id, projectId: again.projectId, secret: again.secret });
      expect(dup.status).toBe(409);
      expect(JSON.stringify(dup.body)).toContain(again.id);

      await only2.container.audit.chain.sealPending();
      const verify = await only2.http().get('/api/v1/audit-events/verify').set(adminAuth).expect(200);
      expect(verify.body).toMatchObject({ ok: true });
    } finally {
      await only2.close();
    }
  }, 120_000);
});

describe('pkv keyring rotate of 10,000 keys, SIGKILLed part-way through and run again in a child process while reveals go on', () => {
  const TOTAL = 10_000;
  const oldKey = randomMasterKey();
  let generated: PkvResult[];
  let newKey: string;
  let ctx: TestContext;
  let keys: SeededKey[];
  let owner: TestUser;
  let env: Record<string, string | undefined>;
  let leftOnVersion1 = 0;

  beforeAll(async () => {
    assertBuilt();
    ctx = await createTestContext({ PKV_MASTER_KEY: oldKey, PKV_REVEAL_RATE_LIMIT: '100000' });
    const admin = await ctx.user('admin');
    owner = await ctx.user('member');
    const project = await createProject(ctx, admin);
    keys = await seedProviderKeys(ctx, TOTAL, { ownerId: owner.id, projectId: project.id, createdBy: admin.id });
    generated = [await runPkv(['keyring', 'generate'], {}, { cwd: ctx.tdb.dir }), await runPkv(['keyring', 'generate'], {}, { cwd: ctx.tdb.dir })];
    newKey = generated[0].stdout.trim();
    env = { ...withKeyring(ctx.env, `2:${newKey},1:${oldKey}`), PKV_LOG_LEVEL: 'warn' };
  }, 120_000);

  afterAll(async () => {
    await killAll();
    await ctx?.close();
  });

  it('pkv keyring generate prints base64 of exactly 32 fresh random bytes, different each time: the new version 2', () => {
    for (const run of generated) {
      expect(run).toMatchObject({ code: 0, stderr: '' });
      expect(lines(run.stdout)).toHaveLength(1);
      expect(run.stdout.trim()).toMatch(/^[A-Za-z0-9+/]{43}=$/);
      expect(Buffer.from(run.stdout.trim(), 'base64')).toHaveLength(32);
    }
    expect(generated[0].stdout).not.toBe(generated[1].stdout);
  });

  it('pkv keyring status counts every provider key and both system keys under version 1 before the rotation', async () => {
    const run = await runPkv(['keyring', 'status'], env, { cwd: ctx.tdb.dir, timeoutMs: 30_000 });
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('active version: 2; configured: 2, 1');
    expect(statusTable(run.stdout)).toEqual({ 1: [TOTAL, 2, TOTAL + 2] });
  }, 60_000);

  it('leaves a mix of versions when killed after its first batches, and every key still opens with both versions configured', async () => {
    const proc = spawnPkv(['keyring', 'rotate', '--batch-size', '100'], env, { cwd: ctx.tdb.dir, timeoutMs: 60_000 });
    let killed;
    try {
      await waitFor('the first rewrapped batch', async () => ((await kekVersionCounts(ctx.db))[2] ?? 0) > 0 || proc.child.exitCode !== null, { timeoutMs: 30_000, intervalMs: 2 });
    } finally {
      killed = await proc.kill('SIGKILL');
    }
    expect({ signal: killed.signal, stderr: proc.stderr() }).toEqual({ signal: 'SIGKILL', stderr: '' });

    const counts = await kekVersionCounts(ctx.db);
    verbose(`[${ctx.kind}] killed rotation at ${JSON.stringify(counts)}`);
    expect(counts[1]).toBeGreaterThan(0);
    expect(counts[2]).toBeGreaterThan(0);
    expect(counts[1] + counts[2]).toBe(TOTAL);
    leftOnVersion1 = counts[1];
    // System keys go first, in their own transaction, before any provider key.
    expect(await systemKeyVersions(ctx.db)).toEqual(BOTH_SYSTEM_KEYS_ON(2));
    expect((await auditRows(ctx, { action: 'keyring.rotate' })).filter((r) => r.outcome === 'success')).toEqual([]);

    const status = await runPkv(['keyring', 'status'], env, { cwd: ctx.tdb.dir, timeoutMs: 30_000 });
    expect(status.code).toBe(0);
    expect(statusTable(status.stdout)).toEqual({ 1: [counts[1], 0, counts[1]], 2: [counts[2], 2, counts[2] + 2] });

    const both = await openInstance(env);
    try {
      expect(await keysThatDoNotOpen(both.container, both.db, keys)).toEqual([]);
    } finally {
      await both.close();
    }
  }, 120_000);

  it('finishes on a rerun while this process keeps serving reveals: every reveal right, nothing lost, every key on version 2', async () => {
    expect(leftOnVersion1).toBeGreaterThan(0);
    const serving = await openInstance(env);
    const failures: string[] = [];
    let revealedWhileRotating = 0;
    let run: PkvResult;
    try {
      const ownerAuth = await loginTo(serving.http, owner.username, owner.password);
      // The default batch (1000 rows per statement): large batches must stay within each database's SQL limits.
      const proc = spawnPkv(['keyring', 'rotate'], env, { cwd: ctx.tdb.dir, timeoutMs: 90_000 });
      const running = () => proc.child.exitCode === null && proc.child.signalCode === null;
      const revealWhileRotating = async (worker: number) => {
        for (let i = worker; running() && i < 50_000; i += 2) {
          const key = keys[(i * 7919) % TOTAL];
          const res = await serving.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(ownerAuth).send({});
          if (res.status !== 200) failures.push(`${key.id}: ${res.status} ${JSON.stringify(res.body)}`);
          else if (res.body.secret !== key.secret) failures.push(`${key.id}: wrong plaintext`);
          if (running()) revealedWhileRotating++;
        }
      };
      [run] = await Promise.all([proc.exited, revealWhileRotating(0), revealWhileRotating(1)]);
    } finally {
      await serving.close();
    }
    verbose(`[${ctx.kind}] rerun: ${run.stdout.trim()}; ${revealedWhileRotating} reveals meanwhile`);
    expect(failures).toEqual([]);
    expect(revealedWhileRotating).toBeGreaterThan(0);
    expect(run).toMatchObject({ code: 0, stderr: '' });
    const m = /rotated to version 2: (\d+) data key\(s\) and (\d+) system key\(s\) rewrapped, (\d+) already moved, in [\d.]+ s \((\d+)\/s\)/.exec(run.stdout);
    expect(m).not.toBeNull();
    expect(m!.slice(1, 4).map(Number)).toEqual([leftOnVersion1, 0, 0]);

    const [{ n }] = await ctx.db.read((mgr) => mgr.query('SELECT COUNT(*) AS n FROM provider_keys'));
    expect(Number(n)).toBe(TOTAL);
    expect(await kekVersionCounts(ctx.db)).toEqual({ 2: TOTAL });
    expect(await systemKeyVersions(ctx.db)).toEqual(BOTH_SYSTEM_KEYS_ON(2));
    const audit = await auditRows(ctx, { action: 'keyring.rotate' });
    expect(audit.map((r) => [r.outcome, JSON.parse(String(r.detail)).providerKeys])).toEqual([['success', leftOnVersion1]]);

    const only2 = await openInstance(withKeyring(ctx.env, `2:${newKey}`));
    try {
      expect(await keysThatDoNotOpen(only2.container, only2.db, keys)).toEqual([]);
    } finally {
      await only2.close();
    }

    const status = await runPkv(['keyring', 'status'], withKeyring(env, `2:${newKey}`), { cwd: ctx.tdb.dir, timeoutMs: 30_000 });
    expect(status.code).toBe(0);
    expect(status.stdout).toContain('active version: 2; configured: 2');
    expect(statusTable(status.stdout)).toEqual({ 2: [TOTAL, 2, TOTAL + 2] });
  }, 150_000);
});

describe('pkv keyring rotate past a damaged row', () => {
  const TOTAL = 300;
  const oldKey = randomMasterKey();
  const newKey = randomMasterKey();
  let ctx: TestContext;
  let keys: SeededKey[];

  beforeAll(async () => {
    assertBuilt();
    ctx = await createTestContext({ PKV_MASTER_KEY: oldKey });
    const admin = await ctx.user('admin');
    const owner = await ctx.user('member');
    const project = await createProject(ctx, admin);
    keys = await seedProviderKeys(ctx, TOTAL, { ownerId: owner.id, projectId: project.id, createdBy: admin.id });
  }, 60_000);
  afterAll(() => ctx?.close());

  it('rewraps every other key, leaves the damaged one under its old version, names it and exits 1; audited as error', async () => {
    const damaged = keys[17];
    const [row] = await ctx.db.read((m) => m.query('SELECT wrapped_dek FROM provider_keys WHERE id = ?', [damaged.id]));
    const bytes = Buffer.from(row.wrapped_dek);
    bytes[3] ^= 0x01;
    await ctx.db.transaction((tx) => tx.query('UPDATE provider_keys SET wrapped_dek = ? WHERE id = ?', [bytes, damaged.id]));

    const env = { ...withKeyring(ctx.env, `2:${newKey},1:${oldKey}`), PKV_LOG_LEVEL: 'warn' };
    const run = await runPkv(['keyring', 'rotate', '--batch-size', '50'], env, { cwd: ctx.tdb.dir, timeoutMs: 60_000 });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain('1 provider key(s) failed their integrity check');
    expect(run.stderr).toContain(damaged.id);
    expect(await kekVersionCounts(ctx.db)).toEqual({ 1: 1, 2: TOTAL - 1 });
    const [{ kek_version }] = await ctx.db.read((m) => m.query('SELECT kek_version FROM provider_keys WHERE id = ?', [damaged.id]));
    expect(Number(kek_version)).toBe(1);
    const audit = await auditRows(ctx, { action: 'keyring.rotate' });
    expect(audit).toHaveLength(1);
    expect(audit[0].outcome).toBe('error');
    expect(JSON.parse(String(audit[0].detail))).toMatchObject({ toVersion: 2, providerKeys: TOTAL - 1, remaining: 1, failed: [damaged.id] });

    const both = await openInstance(env);
    try {
      expect(await keysThatDoNotOpen(both.container, both.db, keys)).toEqual([damaged.id]);
    } finally {
      await both.close();
    }
  }, 90_000);
});
