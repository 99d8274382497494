import crypto from 'node:crypto';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createKey, createProject, CreatedKey, uniqueSecret } from '../support/factories';
import { sql } from '../support/audit-helpers';
import { buildContainer } from '../../src/container';
import { CaptureTransport, createLogger } from '../../src/logger';
import { sealIdOf } from '../../src/crypto/envelope';
import { cliActor } from '../../src/modules/auth/actor';
import { SKEW_MS } from '../../src/modules/audit/key-seals';

/**
 * Point 10 of issue 25: someone with database write access puts back an older copy of a key's sealed columns (from a
 * backup or an earlier dump), bringing back a secret that was replaced or deleted. The AAD binds a ciphertext to its
 * key, owner and project, not to a moment, so the product opens it (the documented limit: telling it at reveal time
 * would cost a trail lookup on every reveal). Every re-seal and every reveal records which sealing it made or opened,
 * and verify compares: the restored copy, and any reveal of it, is named.
 */
jest.setTimeout(60_000);

const SEALED = ['kek_version', 'wrapped_dek', 'dek_iv', 'dek_tag', 'secret_ciphertext', 'secret_iv', 'secret_tag', 'hint', 'fingerprint', 'status'] as const;
type Snapshot = Record<(typeof SEALED)[number], unknown>;

async function snapshot(ctx: TestContext, keyId: string): Promise<Snapshot> {
  const [row] = await ctx.db.read((m) => m.query(`SELECT ${SEALED.join(', ')} FROM provider_keys WHERE id = ?`, [keyId]));
  return row as Snapshot;
}

/** Writes the columns back "with database access alone". */
async function putBack(ctx: TestContext, keyId: string, s: Snapshot): Promise<void> {
  await sql(ctx, `UPDATE provider_keys SET ${SEALED.map((c) => `${c} = ?`).join(', ')} WHERE id = ?`, [...SEALED.map((c) => s[c]), keyId]);
}

const pastSkew = () => new Promise((resolve) => setTimeout(resolve, SKEW_MS + 200));

describe('a provider key whose older sealed columns are put back in the database', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let owner: TestUser;
  let auditor: TestUser;
  let project: { id: string };
  let key: CreatedKey;
  beforeEach(async () => {
    ctx = await createTestContext();
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    auditor = await ctx.user('auditor');
    project = await createProject(ctx, admin);
    key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id });
  });
  afterEach(() => ctx.close());

  const reveal = () => ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(owner.auth).send({});
  const verify = async () => (await ctx.http().get('/api/v1/audit-events/verify').set(auditor.auth).expect(200)).body;
  const rotate = async (secret = uniqueSecret()) => {
    await ctx.http().put(`/api/v1/provider-keys/${key.id}/secret`).set(admin.auth).send({ secret }).expect(200);
    return secret;
  };

  it('records the sealing in the create, rotate and reveal rows: an opaque id of the stored IV and tag, nothing of the secret', async () => {
    const created = await snapshot(ctx, key.id);
    await reveal().expect(200);
    await rotate();
    const rotated = await snapshot(ctx, key.id);
    const detail = (action: string) => auditRows(ctx, { action, keyId: key.id }).then((rows) => JSON.parse(rows[0].detail as string));

    const ids = [sealIdOf({ secretIv: created.secret_iv as Buffer, secretTag: created.secret_tag as Buffer }), sealIdOf({ secretIv: rotated.secret_iv as Buffer, secretTag: rotated.secret_tag as Buffer })];
    expect(ids[0]).toMatch(/^[0-9a-f]{32}$/);
    expect(ids[0]).not.toBe(ids[1]);
    expect(await detail('provider_key.create')).toMatchObject({ sealId: ids[0] });
    expect(await detail('provider_key.reveal')).toEqual({ why: 'owner', sealId: ids[0] });
    expect(await detail('provider_key.rotate')).toMatchObject({ sealId: ids[1] });
    expect(await verify()).toMatchObject({ ok: true });
  });

  it('after a rotation: the old secret opens again (the documented limit), and verify names the key', async () => {
    const before = await snapshot(ctx, key.id);
    await rotate();
    await putBack(ctx, key.id, before);

    expect(await verify()).toMatchObject({ ok: false, firstBadId: null, reason: `key ${key.id} holds a sealed secret other than the one its trail last recorded (audit row ${(await auditRows(ctx, { action: 'provider_key.rotate', keyId: key.id }))[0].id}): its sealed columns were restored from an older copy` });
    expect((await reveal().expect(200)).body.secret).toBe(key.secret);
  });

  it('after a delete: verify names the key brought back', async () => {
    const before = await snapshot(ctx, key.id);
    await ctx.http().delete(`/api/v1/provider-keys/${key.id}`).set(admin.auth).expect(204);
    await putBack(ctx, key.id, before);

    const body = await verify();
    expect(body).toMatchObject({ ok: false, firstBadId: null });
    expect(body.reason).toMatch(new RegExp(`key ${key.id} holds a sealed secret although its trail deleted it`));
  });

  it('restored, revealed, then put back again: verify names the reveal of the replaced secret', async () => {
    const before = await snapshot(ctx, key.id);
    await rotate();
    const current = await snapshot(ctx, key.id);
    await pastSkew();
    await putBack(ctx, key.id, before);
    const leaked = await reveal().expect(200);
    expect(leaked.body.secret).toBe(key.secret);
    await putBack(ctx, key.id, current);

    const [revealRow] = await auditRows(ctx, { action: 'provider_key.reveal', keyId: key.id });
    const body = await verify();
    expect(body).toMatchObject({ ok: false, firstBadId: revealRow.id });
    expect(body.reason).toMatch(new RegExp(`key ${key.id} was revealed with a secret its trail had already replaced`));
    // Sealed or not yet, the same answer.
    await ctx.container.audit.chain.sealPending();
    expect(await verify()).toMatchObject({ ok: false, firstBadId: revealRow.id });
  });

  it('deleted, brought back, revealed, and deleted again: verify names the reveal after the delete', async () => {
    const before = await snapshot(ctx, key.id);
    await ctx.http().delete(`/api/v1/provider-keys/${key.id}`).set(admin.auth).expect(204);
    const gone = await snapshot(ctx, key.id);
    await pastSkew();
    await putBack(ctx, key.id, before);
    await reveal().expect(200);
    await putBack(ctx, key.id, gone);

    const [revealRow] = await auditRows(ctx, { action: 'provider_key.reveal', keyId: key.id });
    expect(await verify()).toMatchObject({ ok: false, firstBadId: revealRow.id, reason: expect.stringMatching(/was revealed after it was deleted/) });
  });

  it('raises no alarm for what the product itself does: reveals, rotations, moves, renames, a keyring rotation, rotations while verify runs', async () => {
    const other = await ctx.user('member');
    await reveal().expect(200);
    await rotate();
    await reveal().expect(200);
    await ctx.http().patch(`/api/v1/provider-keys/${key.id}`).set(admin.auth).send({ name: 'renamed', status: 'disabled' }).expect(200);
    await ctx.http().patch(`/api/v1/provider-keys/${key.id}`).set(admin.auth).send({ status: 'active', ownerId: other.id, reason: 'ticket OPS-2' }).expect(200);
    const moved = JSON.parse((await auditRows(ctx, { action: 'provider_key.update', keyId: key.id }))[0].detail as string);
    const now = await snapshot(ctx, key.id);
    expect(moved.sealId).toBe(sealIdOf({ secretIv: now.secret_iv as Buffer, secretTag: now.secret_tag as Buffer }));
    await ctx.http().post(`/api/v1/provider-keys/${key.id}/reveal`).set(other.auth).send({}).expect(200);
    expect(await verify()).toMatchObject({ ok: true });

    // A master key rotation rewraps the data key only: the sealing stays the same.
    const v2 = { version: 2, key: crypto.randomBytes(32) };
    const rotated = await buildContainer({ ...ctx.config, masterKeys: [v2, ...ctx.config.masterKeys] }, createLogger('warn', [new CaptureTransport()]), ctx.db);
    expect((await rotated.rotation.run(cliActor(null))).providerKeys).toBeGreaterThan(0);
    expect((await snapshot(ctx, key.id)).kek_version).toBe(2);
    expect(await rotated.audit.chain.verify()).toMatchObject({ ok: true });
    expect(await verify()).toMatchObject({ ok: true });
    await rotated.audit.chain.stop();

    // The key re-sealed while verify walks the trail is looked at again, against the trail as it is by then.
    for (let round = 0; round < 5; round++) {
      const [result] = await Promise.all([ctx.container.audit.chain.verify(), rotate(), ctx.container.audit.chain.sealPending()]);
      expect({ round, ok: result.ok, reason: result.ok ? undefined : result.reason }).toEqual({ round, ok: true, reason: undefined });
    }
    expect(await verify()).toMatchObject({ ok: true });
  });
});
