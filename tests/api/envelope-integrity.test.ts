import crypto from 'node:crypto';
import type { Response } from 'supertest';
import { createTestContext, randomMasterKey, TestContext, TestUser } from '../support/test-app';
import { auditRows, createKey, createProject, CreatedKey } from '../support/factories';
import {
  dekAadOf,
  flipBit,
  forgeGcmOpen,
  forgeOpenSecret,
  forgeUnwrapDek,
  nodeGcmOpen,
  nodeGcmSeal,
  SEALED_COLUMNS,
  SealedColumn,
  bindingOfRow,
  legacySecretAadOf,
  secretAadOf,
  setKeyColumns,
  storedKey,
  StoredKeyRow,
} from '../support/crypto-helpers';
import { loadConfig } from '../../src/config';
import { openDatabase } from '../../src/db/data-source';
import { buildContainer } from '../../src/container';
import { KeyringMismatchError } from '../../src/modules/keyring/keyring.service';
import { CaptureTransport, createLogger } from '../../src/logger';

type Auth = Record<string, string>;

describe('the stored envelope', () => {
  let ctx: TestContext;
  let admin: TestUser;
  let owner: TestUser;
  let project: { id: string };
  let masterKey: Buffer;

  const reveal = (id: string, auth: Auth, body: Record<string, unknown> = {}) => ctx.http().post(`/api/v1/provider-keys/${id}/reveal`).set(auth).send(body);
  const newKey = (fields: Partial<{ ownerId: string; projectId: string; secret: string; provider: string }> = {}) => createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, ...fields });
  const sealedOf = (row: StoredKeyRow) => Object.fromEntries(SEALED_COLUMNS.map((c) => [c, row.sealed[c]])) as Record<SealedColumn, Buffer>;

  /** Fails closed: 500 internal with the generic message, no secret, and an `error` row for that request. */
  const expectFailsClosed = async (res: Response, key: CreatedKey) => {
    expect({ status: res.status, body: res.body }).toEqual({
      status: 500,
      body: { error: { code: 'internal', message: 'Internal error', requestId: res.headers['x-request-id'], details: [] } },
    });
    expect(res.text).not.toContain(key.secret);
    const rows = await auditRows(ctx, { action: 'provider_key.reveal', keyId: key.id });
    const errors = rows.filter((r) => r.request_id === res.headers['x-request-id'] && r.outcome === 'error');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ actor_id: owner.id, key_id: key.id });
    expect(JSON.parse(String(errors[0].detail)).why).toBe('integrity_check_failed');
    // The trail says only what happened: no `success` row for a reveal that sent nothing, and no reveal counted.
    expect(rows.filter((r) => r.request_id === res.headers['x-request-id'] && r.outcome !== 'error')).toEqual([]);
    const counted = await ctx.db.read((m) => m.query('SELECT reveal_count FROM provider_keys WHERE id = ?', [key.id]));
    expect(Number(counted[0].reveal_count)).toBe(0);
    expect(ctx.logText()).not.toContain(key.secret);
  };

  beforeAll(async () => {
    ctx = await createTestContext({ PKV_REVEAL_RATE_LIMIT: '1000' });
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    project = await createProject(ctx, admin);
    masterKey = ctx.config.masterKeys[0].key;
  });
  afterAll(() => ctx.close());

  describe('format', () => {
    it('stores format 2, KEK version 1, a 32-byte wrapped data key, 96-bit IVs, 128-bit tags and a ciphertext that is not the secret', async () => {
      const key = await newKey();
      const row = await storedKey(ctx, key.id);
      expect(ctx.config.masterKeys[0].version).toBe(1);
      expect({ formatVersion: row.formatVersion, kekVersion: row.kekVersion }).toEqual({ formatVersion: 2, kekVersion: 1 });
      const s = sealedOf(row);
      expect([s.wrapped_dek.length, s.dek_iv.length, s.dek_tag.length, s.secret_iv.length, s.secret_tag.length]).toEqual([32, 12, 16, 12, 16]);
      expect(s.secret_ciphertext.length).toBe(Buffer.byteLength(key.secret));
      expect(s.secret_ciphertext.equals(Buffer.from(key.secret))).toBe(false);
      expect(s.dek_iv.equals(s.secret_iv)).toBe(false);
    });

    it('gives every key its own data key and IVs, even for two keys of one owner and project', async () => {
      const a = await storedKey(ctx, (await newKey()).id);
      const b = await storedKey(ctx, (await newKey()).id);
      const dekA = forgeUnwrapDek(masterKey, a)!;
      const dekB = forgeUnwrapDek(masterKey, b)!;
      expect(dekA).toHaveLength(32);
      expect(dekA.equals(dekB)).toBe(false);
      expect(a.sealed.secret_iv!.equals(b.sealed.secret_iv!)).toBe(false);
      expect(a.sealed.dek_iv!.equals(b.sealed.dek_iv!)).toBe(false);
    });

    it.each([
      ['an OpenAI key', 'openai', `sk-proj-${crypto.randomBytes(40).toString('base64url')}`],
      ['a multi-byte custom secret', 'custom', `clé-secrète-🔑-${crypto.randomBytes(20).toString('hex')}`],
    ])('decrypts %s with node-forge from the stored bytes and the master key alone, using the documented AADs', async (_label, provider, secret) => {
      const key = await newKey({ provider, secret });
      const row = await storedKey(ctx, key.id);
      const s = sealedOf(row);
      const dek = forgeGcmOpen(masterKey, s.dek_iv, s.wrapped_dek, s.dek_tag, Buffer.from(['pkv/v1/dek', key.id, String(row.kekVersion)].join('\0'), 'utf8'));
      expect(dek).not.toBeNull();
      expect(dek!).toHaveLength(32);
      const plaintext = forgeGcmOpen(dek!, s.secret_iv, s.secret_ciphertext, s.secret_tag, Buffer.from(['pkv/v2/secret', key.id, owner.id, project.id, provider, ''].join('\0'), 'utf8'));
      expect(plaintext?.toString('utf8')).toBe(secret);
      // And not with any other AAD or key: forge really checks the tag.
      expect(forgeGcmOpen(masterKey, s.dek_iv, s.wrapped_dek, s.dek_tag, dekAadOf(key.id, 2))).toBeNull();
      expect(forgeGcmOpen(crypto.randomBytes(32), s.dek_iv, s.wrapped_dek, s.dek_tag, dekAadOf(key.id, 1))).toBeNull();
      expect(forgeGcmOpen(dek!, s.secret_iv, s.secret_ciphertext, s.secret_tag, secretAadOf({ ...bindingOfRow(row), ownerId: admin.id }))).toBeNull();
      // Nor under the same row pointed at another upstream, nor as the format-1 AAD that bound no upstream.
      expect(forgeGcmOpen(dek!, s.secret_iv, s.secret_ciphertext, s.secret_tag, secretAadOf({ ...bindingOfRow(row), baseUrl: 'https://attacker.example/v1' }))).toBeNull();
      expect(forgeGcmOpen(dek!, s.secret_iv, s.secret_ciphertext, s.secret_tag, legacySecretAadOf(bindingOfRow(row)))).toBeNull();
    });
  });

  describe('tampering', () => {
    it.each(['secret_ciphertext', 'secret_tag', 'secret_iv', 'wrapped_dek', 'dek_iv', 'dek_tag'] as const)(
      'fails closed on one flipped bit in %s: 500 internal, no secret, an error audit row',
      async (column) => {
        const key = await newKey();
        const original = await storedKey(ctx, key.id);
        await setKeyColumns(ctx, key.id, { [column]: flipBit(original.sealed[column]!, 9) });
        await expectFailsClosed(await reveal(key.id, owner.auth), key);

        // The same row with its original bytes back opens again: the flipped bit alone was refused.
        await setKeyColumns(ctx, key.id, { [column]: original.sealed[column] });
        const ok = await reveal(key.id, owner.auth);
        expect(ok.status).toBe(200);
        expect(ok.body.secret).toBe(key.secret);
      },
    );

    it.each([
      ['an unknown format version', { format_version: 3 }],
      ['format 1 (no upstream bound) on a format-2 sealing', { format_version: 1 }],
      ['a KEK version that is not configured', { kek_version: 7 }],
      ['a truncated tag', { secret_tag: Buffer.alloc(8, 1) }],
    ])('fails closed on %s', async (_label, change) => {
      const key = await newKey();
      const original = await storedKey(ctx, key.id);
      await setKeyColumns(ctx, key.id, change);
      await expectFailsClosed(await reveal(key.id, owner.auth), key);

      await setKeyColumns(ctx, key.id, { ...original.sealed, format_version: original.formatVersion, kek_version: original.kekVersion });
      expect((await reveal(key.id, owner.auth)).body.secret).toBe(key.secret);
    });

    it('refuses a ciphertext copied from another row: the secret columns, or the whole envelope, do not open there', async () => {
      const a = await newKey();
      const b = await newKey();
      const rowA = await storedKey(ctx, a.id);
      const rowB = await storedKey(ctx, b.id);
      const secretCols = { secret_ciphertext: rowA.sealed.secret_ciphertext, secret_iv: rowA.sealed.secret_iv, secret_tag: rowA.sealed.secret_tag };

      await setKeyColumns(ctx, b.id, secretCols);
      await expectFailsClosed(await reveal(b.id, owner.auth), b);

      await setKeyColumns(ctx, b.id, { ...rowA.sealed, kek_version: rowA.kekVersion });
      await expectFailsClosed(await reveal(b.id, owner.auth), b);

      // Rewrap A's data key for B's row (as only a master-key holder could): the DEK now unwraps for B, so only the
      // secret's AAD, which names A's key id, stands between B's row and A's secret.
      const dekA = forgeUnwrapDek(masterKey, rowA)!;
      const forged = nodeGcmSeal(masterKey, dekA, dekAadOf(b.id, 1));
      await setKeyColumns(ctx, b.id, { ...secretCols, wrapped_dek: forged.ciphertext, dek_iv: forged.iv, dek_tag: forged.tag });
      await expectFailsClosed(await reveal(b.id, owner.auth), b);
      expect(nodeGcmOpen(dekA, rowA.sealed.secret_iv!, rowA.sealed.secret_ciphertext!, rowA.sealed.secret_tag!, secretAadOf({ ...bindingOfRow(rowA), keyId: b.id }))).toBeNull();

      // The control: B's own data key rewrapped the same way, with B's own secret, is accepted.
      const dekB = forgeUnwrapDek(masterKey, rowB)!;
      const rewrapped = nodeGcmSeal(masterKey, dekB, dekAadOf(b.id, 1));
      await setKeyColumns(ctx, b.id, { ...rowB.sealed, wrapped_dek: rewrapped.ciphertext, dek_iv: rewrapped.iv, dek_tag: rewrapped.tag });
      const ok = await reveal(b.id, owner.auth);
      expect(ok.status).toBe(200);
      expect(ok.body.secret).toBe(b.secret);
    });
  });

  describe('PATCH re-seals on a new owner, project or baseUrl', () => {
    it.each(['owner', 'project', 'baseUrl'] as const)('re-seals when the %s changes: new bytes, the key still reveals, and the old ciphertext no longer opens', async (what) => {
      const key = await newKey();
      const before = await storedKey(ctx, key.id);
      const newOwner = await ctx.user('member');
      const newProject = await createProject(ctx, admin);
      const change = what === 'owner' ? { ownerId: newOwner.id } : what === 'project' ? { projectId: newProject.id } : { baseUrl: 'https://api.example.com/v1' };
      const res = await ctx.http().patch(`/api/v1/provider-keys/${key.id}`).set(admin.auth).send({ ...change, ...(what !== 'project' ? { reason: 'moved to the EU endpoint' } : {}) });
      expect(res.status).toBe(200);
      expect(res.body).toMatchObject(change);

      const after = await storedKey(ctx, key.id);
      expect(after).toMatchObject({ ...change, fingerprint: before.fingerprint, hint: before.hint, kekVersion: 1 });
      for (const c of SEALED_COLUMNS) expect({ c, same: after.sealed[c]!.equals(before.sealed[c]!) }).toEqual({ c, same: false });
      expect(forgeOpenSecret(masterKey, after)?.toString('utf8')).toBe(key.secret);

      expect(forgeOpenSecret(masterKey, before)?.toString('utf8')).toBe(key.secret);
      expect(forgeOpenSecret(masterKey, before, bindingOfRow(after))).toBeNull();

      const revealer = what === 'owner' ? newOwner : owner;
      const ok = await reveal(key.id, revealer.auth);
      expect(ok.status).toBe(200);
      expect(ok.body.secret).toBe(key.secret);
      if (what === 'owner') {
        const old = await reveal(key.id, owner.auth);
        expect(old.status).toBe(404);
        const [row] = await auditRows(ctx, { action: 'provider_key.reveal', keyId: key.id });
        expect(row).toMatchObject({ outcome: 'denied', actor_id: owner.id });
      }
      const [update] = await auditRows(ctx, { action: 'provider_key.update', keyId: key.id });
      expect(update).toMatchObject({ outcome: 'success', owner_id: after.ownerId, project_id: after.projectId });

      // The old envelope put back under the new binding: its data key unwraps (same key id) but the secret's AAD refuses.
      await setKeyColumns(ctx, key.id, { ...before.sealed, kek_version: before.kekVersion });
      const refused = await reveal(key.id, revealer.auth);
      expect(refused.status).toBe(500);
      expect(refused.text).not.toContain(key.secret);
    });

    it('leaves the sealed bytes alone when nothing they are bound to changes', async () => {
      const key = await newKey();
      const before = await storedKey(ctx, key.id);
      await ctx.http().patch(`/api/v1/provider-keys/${key.id}`).set(admin.auth).send({ name: 'renamed', remark: 'r', ownerId: owner.id }).expect(200);
      expect((await storedKey(ctx, key.id)).sealed).toEqual(before.sealed);
    });

    it('refuses to move a key whose envelope is damaged, leaving it as it was', async () => {
      const key = await newKey();
      const original = await storedKey(ctx, key.id);
      await setKeyColumns(ctx, key.id, { secret_tag: flipBit(original.sealed.secret_tag!, 3) });
      const damaged = await storedKey(ctx, key.id);
      const newOwner = await ctx.user('member');
      const res = await ctx.http().patch(`/api/v1/provider-keys/${key.id}`).set(admin.auth).send({ ownerId: newOwner.id, reason: 'ticket OPS-2' });
      expect(res.status).toBe(500);
      expect(res.body.error.code).toBe('internal');
      expect(await storedKey(ctx, key.id)).toEqual(damaged);
    });
  });

  describe('PUT /provider-keys/:id/secret', () => {
    it('seals the new secret under a new data key with a new hint; the old secret is no longer stored', async () => {
      const oldSecret = `sk-${crypto.randomBytes(30).toString('base64url')}AAAA`;
      const newSecret = `sk-${crypto.randomBytes(30).toString('base64url')}BBBB`;
      const key = await newKey({ secret: oldSecret });
      const before = await storedKey(ctx, key.id);
      expect(before.hint).toBe('sk-…AAAA');

      const res = await ctx.http().put(`/api/v1/provider-keys/${key.id}/secret`).set(admin.auth).send({ secret: newSecret });
      expect(res.status).toBe(200);
      expect(res.body.hint).toBe('sk-…BBBB');

      const after = await storedKey(ctx, key.id);
      expect(after.hint).toBe('sk-…BBBB');
      expect(after.fingerprint).not.toBe(before.fingerprint);
      for (const c of SEALED_COLUMNS) expect({ c, same: after.sealed[c]!.equals(before.sealed[c]!) }).toEqual({ c, same: false });
      const oldDek = forgeUnwrapDek(masterKey, before)!;
      const newDek = forgeUnwrapDek(masterKey, after)!;
      expect(newDek.equals(oldDek)).toBe(false);
      expect(forgeOpenSecret(masterKey, after)?.toString('utf8')).toBe(newSecret);
      // The stored row no longer opens to the old secret under any of its keys.
      expect(nodeGcmOpen(oldDek, after.sealed.secret_iv!, after.sealed.secret_ciphertext!, after.sealed.secret_tag!, secretAadOf(bindingOfRow(after)))).toBeNull();

      expect((await reveal(key.id, owner.auth)).body.secret).toBe(newSecret);
      const [rotate] = await auditRows(ctx, { action: 'provider_key.rotate', keyId: key.id });
      expect(rotate).toMatchObject({ outcome: 'success', actor_id: admin.id });

      // The old secret's fingerprint is gone with it: it may be pasted again as a new key.
      const again = await ctx.http().post('/api/v1/provider-keys').set(admin.auth).send({ name: 'old again', provider: 'openai', ownerId: owner.id, projectId: project.id, secret: oldSecret });
      expect(again.status).toBe(201);
    });
  });

  describe('DELETE /provider-keys/:id', () => {
    it('destroys every sealed column and the fingerprint, keeping a deleted tombstone whose trail still resolves', async () => {
      const key = await newKey();
      await reveal(key.id, owner.auth).expect(200);
      await ctx.http().delete(`/api/v1/provider-keys/${key.id}`).set(admin.auth).expect(204);

      const row = await storedKey(ctx, key.id);
      expect(row).toMatchObject({ status: 'deleted', fingerprint: null, kekVersion: null, ownerId: owner.id, projectId: project.id, revealCount: 1 });
      expect(row.sealed).toEqual({ wrapped_dek: null, dek_iv: null, dek_tag: null, secret_ciphertext: null, secret_iv: null, secret_tag: null });

      const listed = await ctx.http().get(`/api/v1/provider-keys?projectId=${project.id}&limit=200`).set(admin.auth);
      expect(listed.body.items.map((k: { id: string }) => k.id)).not.toContain(key.id);
      const deleted = await ctx.http().get(`/api/v1/provider-keys?status=deleted&limit=200`).set(admin.auth);
      expect(deleted.body.items.find((k: { id: string }) => k.id === key.id)).toMatchObject({ status: 'deleted', hint: key.hint });
      const ownerDeleted = await ctx.http().get(`/api/v1/provider-keys?status=deleted`).set(owner.auth);
      expect(ownerDeleted.body.items.map((k: { id: string }) => k.id)).toContain(key.id);

      const res = await reveal(key.id, owner.auth);
      expect(res.status).toBe(404);
      expect(res.body.error.code).toBe('not_found');
      const [denied] = await auditRows(ctx, { action: 'provider_key.reveal', keyId: key.id });
      expect(denied).toMatchObject({ outcome: 'denied', actor_id: owner.id, request_id: res.headers['x-request-id'] });

      const trail = await ctx.http().get(`/api/v1/provider-keys/${key.id}/audit-events`).set(admin.auth);
      expect(trail.body.items.map((e: { action: string; outcome: string }) => `${e.action}:${e.outcome}`)).toEqual([
        'provider_key.reveal:denied',
        'provider_key.delete:success',
        'provider_key.reveal:success',
        'provider_key.create:success',
      ]);

      const again = await ctx.http().post('/api/v1/provider-keys').set(admin.auth).send({ name: 'again', provider: 'openai', ownerId: owner.id, projectId: project.id, secret: key.secret });
      expect(again.status).toBe(201);
    });
  });

  describe('the keyring at start-up', () => {
    const startWith = async (overrides: Record<string, string | undefined>) => {
      const config = loadConfig({ ...ctx.env, ...overrides }, { generateDevSecrets: false });
      const db = await openDatabase(config.database);
      try {
        return await buildContainer(config, createLogger('error', [new CaptureTransport()]), db).then(
          () => undefined,
          (err: unknown) => err,
        );
      } finally {
        await db.close();
      }
    };

    it('starts with the right master key (the control for the refusals below)', async () => {
      expect(await startWith({})).toBeUndefined();
    });

    it('refuses to start with a wrong master key, naming the version that does not match', async () => {
      const err = await startWith({ PKV_MASTER_KEY: randomMasterKey() });
      expect(err).toBeInstanceOf(KeyringMismatchError);
      expect((err as Error).message).toMatch(/version 1\b/);
      expect((err as Error).message).not.toContain(ctx.env.PKV_MASTER_KEY!);
    });

    it('refuses to start when a version still used by rows is missing from the keyring, naming it', async () => {
      await newKey();
      const err = await startWith({ PKV_MASTER_KEY: undefined, PKV_MASTER_KEYS: `2:${randomMasterKey()}` });
      expect(err).toBeInstanceOf(KeyringMismatchError);
      expect((err as Error).message).toMatch(/version 1\b/);
      expect((err as Error).message).toMatch(/missing/);
      // The refused start sealed nothing for its own version: a later start with the right key is unaffected.
      const canaries: Array<{ kek_version: number | string }> = await ctx.db.read((m) => m.query('SELECT kek_version FROM kek_canaries'));
      expect(canaries.map((c) => Number(c.kek_version))).toEqual([1]);
      expect(await startWith({})).toBeUndefined();
    });

    it('still reveals after the refused starts: nothing was rewritten', async () => {
      const key = await newKey();
      expect((await reveal(key.id, owner.auth)).body.secret).toBe(key.secret);
    });
  });
});
