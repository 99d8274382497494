import crypto from 'node:crypto';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createKey, createProject, CreatedKey, uniqueSecret } from '../support/factories';
import { expectError } from '../support/auth-helpers';
import { StandInProvider } from '../support/stand-in-provider';
import { FakeClock } from '../support/fake-clock';
import { bindingOfRow, forgeGcmSeal, legacySecretAadOf, setKeyColumns, storedKey, StoredKeyRow } from '../support/crypto-helpers';
import { cliActor } from '../../src/modules/auth/actor';
import { sealIdOf } from '../../src/crypto/envelope';
import { ProviderKeysRepository } from '../../src/modules/provider-keys/provider-keys.repository';
import { upgradeLegacySealings } from '../../src/modules/provider-keys/sealing-upgrade';

const sealIdOfRow = (row: StoredKeyRow) => sealIdOf({ secretIv: row.sealed.secret_iv, secretTag: row.sealed.secret_tag });

jest.setTimeout(60_000);

/**
 * A key's sealing is bound to its provider and baseUrl (format 2): someone with database access alone who points a
 * key at their own server gets nothing sent there — not by a check, the scheduler, the gateway or a reveal.
 * Keys sealed before that (format 1) are re-sealed once at start-up, each on the record.
 */
describe('a key’s upstream is bound into its sealing', () => {
  const clock = new FakeClock();
  let ctx: TestContext;
  let provider: StandInProvider;
  let attacker: StandInProvider;
  let admin: TestUser;
  let owner: TestUser;
  let project: { id: string };

  const plant = async (): Promise<CreatedKey> => {
    const secret = uniqueSecret('sk-');
    const key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, provider: 'openai', secret, baseUrl: `${provider.url}/v1` });
    provider.validKeys.add(secret);
    ctx.secrets.add('provider secret', secret);
    return key;
  };
  const sentTo = (p: StandInProvider, key: CreatedKey) => p.seen.filter((r) => JSON.stringify(r.headers).includes(key.secret));
  const check = (id: string) => ctx.http().post(`/api/v1/provider-keys/${id}/check`).set(owner.auth);
  const reveal = (id: string) => ctx.http().post(`/api/v1/provider-keys/${id}/reveal`).set(owner.auth).send({});
  const virtualKeyOf = async (key: CreatedKey) => {
    const res = await ctx.http().post(`/api/v1/provider-keys/${key.id}/virtual-keys`).set(owner.auth).send({ name: 'binding' });
    expect(res.status).toBe(201);
    ctx.secrets.add('virtual key', res.body.virtualKey);
    return res.body.virtualKey as string;
  };
  const gatewayCall = (vk: string) => ctx.http().post('/gateway/chat/completions').set('authorization', `Bearer ${vk}`).send({ model: 'gpt-test', messages: [] });

  beforeAll(async () => {
    provider = await new StandInProvider().start();
    attacker = await new StandInProvider().start();
    ctx = await createTestContext({ PKV_HEALTH_CHECK_TIMEOUT: '500ms' }, { clock });
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    project = await createProject(ctx, admin);
  });
  afterAll(async () => {
    await provider?.close();
    await attacker?.close();
    await ctx?.close();
  });

  describe('a database writer re-points a key', () => {
    it.each([
      ['base_url to their server', (_k: CreatedKey) => ({ base_url: `${attacker.url}/v1` })],
      ['base_url to another path of the same upstream', (_k: CreatedKey) => ({ base_url: `${provider.url}/v2` })],
      ['provider to another credential style', (_k: CreatedKey) => ({ provider: 'anthropic' })],
    ])('(%s): check, scheduler, gateway and reveal all fail closed and nothing is sent', async (_label, change) => {
      const key = await plant();
      const vk = await virtualKeyOf(key);
      expect((await gatewayCall(vk)).status).toBe(200);
      expect((await check(key.id)).status).toBe(200);
      const sentBefore = sentTo(provider, key).length;

      await setKeyColumns(ctx, key.id, { ...change(key), health_next_check_at: 0 });

      // The manual check: allowed and audited, then the sealing does not open for this upstream: 500, nothing sent.
      expectError(await check(key.id), 500, 'internal');
      // The scheduler finds it due, and sends nothing either.
      await ctx.container.scheduler.tick();
      // The gateway: the virtual key may still pass its own checks, but the key does not open.
      const res = await gatewayCall(vk);
      expect([401, 500]).toContain(res.status);
      expect(res.text).not.toContain(key.secret);
      // A reveal of a row whose binding was changed fails closed too, with an `error` row.
      expectError(await reveal(key.id), 500, 'internal');
      const [revealRow] = await auditRows(ctx, { action: 'provider_key.reveal', keyId: key.id });
      expect(revealRow).toMatchObject({ outcome: 'error' });

      expect(sentTo(attacker, key)).toEqual([]);
      expect(sentTo(provider, key)).toHaveLength(sentBefore);
      expect(ctx.logText()).not.toContain(key.secret);
    });
  });

  describe('format-1 sealings (before provider and baseUrl were bound)', () => {
    /** Rewrites a key's sealing as format 1 would have made it, with the master key (as the older release did). */
    const sealAsFormat1 = async (key: CreatedKey) => {
      const row = await storedKey(ctx, key.id);
      const dek = crypto.randomBytes(32);
      const iv = crypto.randomBytes(12);
      const sealed = forgeGcmSeal(dek, iv, Buffer.from(key.secret, 'utf8'), legacySecretAadOf(bindingOfRow(row)));
      const wrapped = ctx.container.keyring.keyring.wrap(dek, key.id);
      await setKeyColumns(ctx, key.id, {
        format_version: 1,
        kek_version: wrapped.kekVersion,
        wrapped_dek: wrapped.ciphertext,
        dek_iv: wrapped.iv,
        dek_tag: wrapped.tag,
        secret_ciphertext: sealed.ciphertext,
        secret_iv: iv,
        secret_tag: sealed.tag,
      });
    };

    /** What the older release wrote when it sealed (create or rotate): a genuine audit row naming the sealing. */
    const recordSealing = async (key: CreatedKey) => {
      const row = await storedKey(ctx, key.id);
      await ctx.db.transaction((tx) =>
        ctx.container.audit.record(tx, { ...cliActor(null), username: 'older-release' }, 'provider_key.rotate', 'success', { keyId: key.id, ownerId: row.ownerId, projectId: row.projectId }, { detail: { sealId: sealIdOfRow(row) } }),
      );
    };
    const upgrade = () => upgradeLegacySealings({ ...ctx.container, keys: new ProviderKeysRepository() });

    it('reveal but are never sent upstream; the one-time upgrade re-seals only what the trail backs, each on the record, and verify holds', async () => {
      // good: a format-1 key as the older release left it. repointed: its base_url then changed in the database.
      // replayed: an older format-1 copy of its sealed columns put back. broken: its sealing does not open.
      const [good, repointed, replayed, broken] = [await plant(), await plant(), await plant(), await plant()];
      const vk = await virtualKeyOf(good);
      for (const k of [good, repointed, replayed, broken]) {
        await sealAsFormat1(k);
        await recordSealing(k);
      }
      const older = await storedKey(ctx, replayed.id);
      await sealAsFormat1(replayed);
      await recordSealing(replayed);
      const newer = await storedKey(ctx, replayed.id);
      await setKeyColumns(ctx, replayed.id, { ...older.sealed });
      await setKeyColumns(ctx, repointed.id, { base_url: `${attacker.url}/v1`, health_next_check_at: 0 });
      const tag = (await storedKey(ctx, broken.id)).sealed.secret_tag!;
      await setKeyColumns(ctx, broken.id, { secret_tag: Buffer.alloc(16, 7) });
      await recordSealing(broken); // the trail names the (broken) sealing it holds: only the open fails

      const sentBefore = sentTo(provider, good).length;
      expect((await reveal(good.id)).body.secret).toBe(good.secret);
      expectError(await check(good.id), 500, 'internal');
      expectError(await gatewayCall(vk), 500, 'internal');
      expect(sentTo(provider, good)).toHaveLength(sentBefore);

      // Two instances starting together: one upgrade.
      const results = await Promise.all([upgrade(), upgrade()]);
      const ran = results.filter((r) => r !== undefined);
      expect(ran).toHaveLength(1);
      expect(ran[0]).toMatchObject({ upgraded: 1, refused: 3 });
      expect(Object.fromEntries(ran[0]!.refusedIds.map((r) => [r.id, r.why]))).toEqual({
        [repointed.id]: 'baseUrl differs from the audit trail',
        [replayed.id]: 'the sealed columns are not the sealing the audit trail last recorded',
        [broken.id]: 'the sealing does not open',
      });
      expect(ctx.logText()).toMatch(/provider_keys\.reseal_refused/);
      for (const k of [repointed, replayed, broken]) expect((await storedKey(ctx, k.id)).formatVersion).toBe(1);
      expect((await storedKey(ctx, good.id)).formatVersion).toBe(2);
      const rows = await auditRows(ctx, { action: 'provider_key.reseal' });
      expect(rows.map((r) => r.key_id)).toEqual([good.id]);
      expect(rows[0]).toMatchObject({ outcome: 'success', actor_username: 'upgrade' });
      expect(JSON.parse(String(rows[0].detail))).toMatchObject({ fromFormat: 1, toFormat: 2, provider: 'openai', baseUrl: `${provider.url}/v1`, fromSealId: expect.any(String), sealId: expect.any(String) });
      expect(await auditRows(ctx, { action: 'vault.sealings_upgraded' })).toHaveLength(1);

      expect((await reveal(good.id)).body.secret).toBe(good.secret);
      expect((await check(good.id)).body.status).toBe('valid');
      expect((await gatewayCall(vk)).status).toBe(200);
      // What stayed format 1 is never sent: not to the server it was re-pointed at, not by the scheduler.
      await ctx.container.scheduler.tick();
      expectError(await check(repointed.id), 500, 'internal');
      expect(sentTo(attacker, repointed)).toEqual([]);

      // One-shot: a format-1 sealing that turns up later (a restored copy, an old release still running) is never
      // re-bound, even with a trail row naming it.
      await setKeyColumns(ctx, broken.id, { secret_tag: tag });
      await recordSealing(broken);
      expect(await upgrade()).toBeUndefined();
      expect((await storedKey(ctx, broken.id)).formatVersion).toBe(1);
      expect((await reveal(broken.id)).body.secret).toBe(broken.secret);

      // The trail verifies once the replayed copy is gone (verify names a key holding a sealing its trail replaced):
      // the upgrade's re-seal is a sealing verify follows, and the reveals after it open it.
      await ctx.container.audit.chain.sealPending();
      expect(await ctx.container.audit.chain.verify()).toMatchObject({ ok: false, reason: expect.stringContaining(replayed.id) });
      await setKeyColumns(ctx, replayed.id, { ...newer.sealed });
      expect(await ctx.container.audit.chain.verify()).toMatchObject({ ok: true });
    });

    it('never re-seals a key twice: with the flag row gone, a format-1 copy of an upgraded key put back stays format 1', async () => {
      const dropFlag = () => ctx.db.transaction((m) => m.query("DELETE FROM audit_events WHERE action = 'vault.sealings_upgraded'"));
      const key = await plant();
      await sealAsFormat1(key);
      await recordSealing(key);
      const copy = await storedKey(ctx, key.id);
      await dropFlag();
      expect(await upgrade()).toBeDefined(); // (what the test above left backed is upgraded too)
      expect((await storedKey(ctx, key.id)).formatVersion).toBe(2);
      await dropFlag();
      await setKeyColumns(ctx, key.id, { format_version: 1, ...copy.sealed });
      const again = await upgrade();
      expect(again).toMatchObject({ upgraded: 0 });
      expect(again!.refusedIds).toContainEqual({ id: key.id, why: 'the audit trail says the key was already re-sealed' });
      expect((await storedKey(ctx, key.id)).formatVersion).toBe(1);
      expect(await auditRows(ctx, { action: 'provider_key.reseal', keyId: key.id })).toHaveLength(1);
    });
  });
});
