import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { createKey, createProject, CreatedKey, uniqueSecret } from '../support/factories';
import { isEnvelope, listen, rawCall, Reply } from '../support/resilience-helpers';
import { ANTHROPIC_STREAM_USAGE, OPENAI_STREAM_USAGE, StandInProvider } from '../support/stand-in-provider';

jest.setTimeout(60_000);

/** Token budgets against streamed calls, and what a virtual key with a model allowlist may call (docs/gateway.md §4). */
describe('gateway policy: usage of streamed calls, estimates, and model-only endpoints', () => {
  let ctx: TestContext;
  let vault: { url: string; close(): Promise<void> };
  let provider: StandInProvider;
  let admin: TestUser;
  let owner: TestUser;
  let project: { id: string };

  const plant = async (kind: 'openai' | 'anthropic' = 'openai'): Promise<CreatedKey> => {
    const secret = uniqueSecret(kind === 'anthropic' ? 'sk-ant-' : 'sk-');
    const key = await createKey(ctx, admin, { ownerId: owner.id, projectId: project.id, provider: kind, secret, baseUrl: kind === 'anthropic' ? provider.url : `${provider.url}/v1` });
    provider.validKeys.add(secret);
    return key;
  };
  const virtualKey = async (keyId: string, body: Record<string, unknown> = {}): Promise<{ id: string; virtualKey: string }> => {
    const res = await ctx.http().post(`/api/v1/provider-keys/${keyId}/virtual-keys`).set(owner.auth).send({ name: 'vk', ...body });
    if (res.status !== 201) throw new Error(`virtual key: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };
  const gw = (vk: string, method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> =>
    rawCall(vault.url, method, `/gateway${path}`, {
      headers: { Authorization: `Bearer ${vk}`, ...(body === undefined ? {} : { 'Content-Type': 'application/json' }), ...headers },
      body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
    });
  const usageRows = (virtualKeyId: string): Promise<Array<Record<string, unknown>>> =>
    ctx.container.gateway.usage.flush().then(() => ctx.db.read((m) => m.query('SELECT * FROM gateway_usage WHERE virtual_key_id = ? ORDER BY at, id', [virtualKeyId])));
  /** The usage rows once there are `n` of them (a call cut off is recorded just after its client saw the cut). */
  const rowsOnce = async (virtualKeyId: string, n: number): Promise<Array<Record<string, unknown>>> => {
    const deadline = Date.now() + 5000;
    let rows = await usageRows(virtualKeyId);
    while (rows.length < n && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25));
      rows = await usageRows(virtualKeyId);
    }
    return rows;
  };
  const tokensOf = (row: Record<string, unknown>) => ({ prompt: Number(row.prompt_tokens), completion: Number(row.completion_tokens), estimated: Number(row.tokens_estimated) });
  const openaiFor = (vk: string) => new OpenAI({ apiKey: vk, baseURL: `${vault.url}/gateway`, maxRetries: 0 });

  beforeAll(async () => {
    provider = await new StandInProvider().start();
    ctx = await createTestContext();
    vault = await listen(ctx.handler);
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    project = await createProject(ctx, admin);
  });

  afterAll(async () => {
    await vault?.close();
    await provider?.close();
    await ctx?.close();
  });

  describe('streamed calls report their usage', () => {
    it('asks the provider for usage when the client did not, meters it, and the client (OpenAI SDK) sees no extra chunk', async () => {
      const vk = await virtualKey((await plant()).id);
      const stream = await openaiFor(vk.virtualKey).chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], stream: true });
      const chunks = [];
      for await (const chunk of stream) chunks.push(chunk);
      expect(chunks.map((c) => c.choices.length)).toEqual([1, 1, 1]);
      expect(chunks.map((c) => c.choices[0].delta.content).join('')).toBe('Hello!');
      expect(chunks.filter((c) => c.usage)).toEqual([]);
      // The provider was asked (and the rest of the body went as the client sent it).
      const sent = JSON.parse(provider.last().body);
      expect(sent).toEqual({ stream_options: { include_usage: true }, model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], stream: true });
      const [row] = await usageRows(vk.id);
      expect(tokensOf(row)).toEqual({ prompt: OPENAI_STREAM_USAGE.prompt_tokens, completion: OPENAI_STREAM_USAGE.completion_tokens, estimated: 0 });
    });

    it('takes exactly the usage chunk out: every other byte reaches the client as the provider wrote it; stream_options of the client’s own is kept', async () => {
      const vk = await virtualKey((await plant()).id);
      const res = await gw(vk.virtualKey, 'POST', '/chat/completions', '{ "model" : "gpt-test", "stream":true, "stream_options": {"include_usage": false, "x": 1}, "seed": 12345678901234567890 }');
      expect(res.status).toBe(200);
      const written = [...provider.streamWritten];
      expect(written.filter((e) => e.includes('"choices":[]'))).toHaveLength(1);
      expect(res.text).toBe(written.filter((e) => !e.includes('"choices":[]')).join(''));
      // Only stream_options changed; the big seed is byte for byte what the client sent.
      expect(provider.last().body).toBe('{ "model" : "gpt-test", "stream":true, "stream_options": {"include_usage":true,"x":1}, "seed": 12345678901234567890 }');
      const [row] = await usageRows(vk.id);
      expect(tokensOf(row)).toEqual({ prompt: OPENAI_STREAM_USAGE.prompt_tokens, completion: OPENAI_STREAM_USAGE.completion_tokens, estimated: 0 });
    });

    it('a client that asks for include_usage itself gets the usage chunk, and its body goes unchanged', async () => {
      const vk = await virtualKey((await plant()).id);
      const body = { model: 'gpt-test', messages: [], stream: true as const, stream_options: { include_usage: true } };
      const stream = await openaiFor(vk.virtualKey).chat.completions.create(body);
      const usages = [];
      for await (const chunk of stream) if (chunk.usage) usages.push({ usage: chunk.usage, choices: chunk.choices.length });
      expect(usages).toEqual([{ usage: OPENAI_STREAM_USAGE, choices: 0 }]);
      expect(JSON.parse(provider.last().body)).toEqual(body);
      const raw = await gw(vk.virtualKey, 'POST', '/chat/completions', body);
      expect(raw.text).toBe(provider.streamWritten.join(''));
    });

    it('reads Anthropic’s stream usage from message_start and message_delta (nothing asked, nothing estimated)', async () => {
      const vk = await virtualKey((await plant('anthropic')).id);
      const anthropic = new Anthropic({ apiKey: vk.virtualKey, baseURL: `${vault.url}/gateway`, maxRetries: 0 });
      const stream = anthropic.messages.stream({ model: 'claude-test', max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] });
      await stream.finalMessage();
      expect(JSON.parse(provider.last().body).stream_options).toBeUndefined();
      const [row] = await usageRows(vk.id);
      expect(tokensOf(row)).toEqual({ prompt: ANTHROPIC_STREAM_USAGE.input_tokens, completion: ANTHROPIC_STREAM_USAGE.output_tokens, estimated: 0 });
    });
  });

  describe('a call whose usage is unknown is charged an estimate', () => {
    it('a stream the provider cuts off is charged max_tokens plus request bytes / 4, marked estimated, and the token budget refuses the next call', async () => {
      const vk = await virtualKey((await plant()).id, { dailyTokenLimit: 1000 });
      const body = JSON.stringify({ model: 'gpt-cut-off', max_tokens: 1200, stream: true, messages: [{ role: 'user', content: 'hi' }] });
      await expect(gw(vk.virtualKey, 'POST', '/chat/completions', body)).rejects.toThrow();
      const [row] = await rowsOnce(vk.id, 1);
      expect(Number(row.status)).toBe(502);
      const forwarded = provider.last().body; // with stream_options added
      expect(tokensOf(row)).toEqual({ prompt: Math.ceil(Buffer.byteLength(forwarded) / 4), completion: 1200, estimated: 1 });
      const refused = await gw(vk.virtualKey, 'POST', '/chat/completions', { model: 'gpt-test', messages: [] });
      expect({ status: refused.status, code: refused.body?.error?.code }).toEqual({ status: 429, code: 'rate_limited' });
      expect(isEnvelope(refused.body, 'rate_limited')).toBe(true);
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
      expect(refused.body.error.message).toContain('token');
    });

    it('a finished answer that reports no usage (a provider that ignores stream_options) is charged response bytes / 4 without max_tokens', async () => {
      const vk = await virtualKey((await plant()).id);
      const res = await gw(vk.virtualKey, 'POST', '/chat/completions', { model: 'gpt-no-usage', stream: true, messages: [] });
      expect(res.status).toBe(200);
      const [row] = await usageRows(vk.id);
      expect(Number(row.response_bytes)).toBe(Buffer.byteLength(res.text));
      expect(tokensOf(row)).toEqual({ prompt: Math.ceil(Number(row.request_bytes) / 4), completion: Math.ceil(Number(row.response_bytes) / 4), estimated: 1 });
    });

    it('estimates nothing for what costs nothing: a GET, the provider’s own refusal, Anthropic count_tokens', async () => {
      const key = await plant();
      const vk = await virtualKey(key.id);
      expect((await gw(vk.virtualKey, 'GET', '/files')).status).toBe(200);
      expect((await gw(vk.virtualKey, 'POST', '/no-such-route', { model: 'gpt-test' })).status).toBe(404);
      const a = await virtualKey((await plant('anthropic')).id);
      const anthropic = new Anthropic({ apiKey: a.virtualKey, baseURL: `${vault.url}/gateway`, maxRetries: 0 });
      expect((await anthropic.messages.countTokens({ model: 'claude-test', messages: [{ role: 'user', content: 'hi' }] })).input_tokens).toBe(12);
      const rows = [...(await usageRows(vk.id)), ...(await usageRows(a.id))];
      expect(rows.map((r) => [r.prompt_tokens, r.completion_tokens, Number(r.tokens_estimated)])).toEqual([
        [null, null, 0],
        [null, null, 0],
        [null, null, 0],
      ]);
    });
  });

  describe('a virtual key with a model allowlist calls model endpoints only', () => {
    it('refuses files, batches, fine-tuning, stored completions and deletions with 403 naming the rule, even with an allowed model in the body; nothing goes out', async () => {
      const vk = await virtualKey((await plant()).id, { models: ['gpt-allowed'] });
      const before = provider.seen.length;
      const cases: Array<[string, string, unknown?]> = [
        ['GET', '/files'],
        ['POST', '/files', { model: 'gpt-allowed', purpose: 'batch' }],
        ['DELETE', '/files/file-1'],
        ['GET', '/batches'],
        ['POST', '/batches', { model: 'gpt-allowed', input_file_id: 'file-1', endpoint: '/v1/chat/completions' }],
        ['POST', '/fine_tuning/jobs', { model: 'gpt-allowed', training_file: 'file-1' }],
        ['DELETE', '/models/ft:gpt-allowed:org:x'],
        ['GET', '/chat/completions'],
        ['DELETE', '/chat/completions/chatcmpl-1'],
        ['GET', '/responses/resp_1'],
        ['POST', '/chat/completions/chatcmpl-1', { model: 'gpt-allowed', metadata: {} }],
        ['POST', '/Chat/Completions', { model: 'gpt-allowed' }],
      ];
      for (const [method, path, body] of cases) {
        const res = await gw(vk.virtualKey, method, path, body);
        expect({ method, path, status: res.status, code: res.body?.error?.code }).toEqual({ method, path, status: 403, code: 'forbidden' });
        expect(res.body.error.message).toContain('only the provider’s model endpoints');
      }
      expect(provider.seen.length).toBe(before);
      expect(await usageRows(vk.id)).toEqual([]);
    });

    it('refuses a body that names its model twice in spellings a case-blind decoder merges (Model, MODEL), and never forwards method overrides', async () => {
      const vk = await virtualKey((await plant()).id, { models: ['gpt-allowed'] });
      const seen = provider.seen.length;
      for (const other of ['Model', 'MODEL', 'mOdel', 'Max_Tokens', 'Stream', 'N']) {
        const res = await gw(vk.virtualKey, 'POST', '/chat/completions', `{"model":"gpt-allowed","${other}":"gpt-expensive","messages":[]}`);
        expect({ other, status: res.status, code: res.body?.error?.code }).toEqual({ other, status: 400, code: 'validation_failed' });
      }
      expect(provider.seen.length).toBe(seen);
      // A nested `Model` names nothing to the upstream: it passes.
      expect((await gw(vk.virtualKey, 'POST', '/chat/completions', { model: 'gpt-allowed', messages: [], metadata: { Model: 'x' } })).status).toBe(200);
      const res = await gw(vk.virtualKey, 'POST', '/chat/completions', { model: 'gpt-allowed', messages: [] }, {
        'X-HTTP-Method-Override': 'DELETE', 'X-HTTP-Method': 'DELETE', 'X-Method-Override': 'DELETE', 'X-Original-URL': '/v1/files', 'X-Rewrite-URL': '/v1/files', 'X-Forwarded-Prefix': '/admin',
      });
      expect(res.status).toBe(200);
      expect(Object.keys(provider.last().headers).filter((h) => /method|original|rewrite|prefix/i.test(h))).toEqual([]);
    });

    it('allows the inference endpoints (chat, completions, embeddings, responses) with an allowed model, and listing models', async () => {
      const vk = await virtualKey((await plant()).id, { models: ['gpt-allowed'] });
      const openai = openaiFor(vk.virtualKey);
      expect((await openai.chat.completions.create({ model: 'gpt-allowed', messages: [] })).model).toBe('gpt-allowed');
      expect((await openai.models.list()).data.map((m) => m.id)).toEqual(['gpt-test']);
      for (const path of ['/completions', '/embeddings', '/responses']) {
        const res = await gw(vk.virtualKey, 'POST', path, { model: 'gpt-allowed', input: 'x' });
        expect({ path, status: res.status, seen: provider.last().url }).toEqual({ path, status: 200, seen: `/v1${path}` });
        expect((await gw(vk.virtualKey, 'POST', path, { model: 'gpt-other', input: 'x' })).status).toBe(403);
      }
    });

    it('Anthropic: messages (streamed too), count_tokens and the model list go through; files and message batches do not', async () => {
      const vk = await virtualKey((await plant('anthropic')).id, { models: ['claude-ok'] });
      const anthropic = new Anthropic({ apiKey: vk.virtualKey, baseURL: `${vault.url}/gateway`, maxRetries: 0 });
      expect((await anthropic.messages.create({ model: 'claude-ok', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] })).model).toBe('claude-ok');
      expect((await anthropic.messages.stream({ model: 'claude-ok', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }).finalMessage()).model).toBe('claude-ok');
      expect((await anthropic.messages.countTokens({ model: 'claude-ok', messages: [{ role: 'user', content: 'hi' }] })).input_tokens).toBe(12);
      expect((await gw(vk.virtualKey, 'GET', '/v1/models', undefined, { 'anthropic-version': '2023-06-01' })).status).toBe(200);
      const before = provider.seen.length;
      for (const [method, path, body] of [
        ['GET', '/v1/files'],
        ['POST', '/v1/messages/batches', { model: 'claude-ok', requests: [] }],
        ['DELETE', '/v1/files/file_1'],
      ] as Array<[string, string, unknown?]>) {
        expect({ method, path, status: (await gw(vk.virtualKey, method, path, body)).status }).toEqual({ method, path, status: 403 });
      }
      expect(provider.seen.length).toBe(before);
    });

    it('a virtual key without models keeps full access to the key’s API (files, batches, deletions), as documented', async () => {
      const vk = await virtualKey((await plant()).id);
      for (const [method, path, body] of [
        ['GET', '/files'],
        ['POST', '/batches', { input_file_id: 'file-1' }],
        ['DELETE', '/files/file-1'],
      ] as Array<[string, string, unknown?]>) {
        const res = await gw(vk.virtualKey, method, path, body);
        expect({ method, path, status: res.status, seen: `${provider.last().method} ${provider.last().url}` }).toEqual({ method, path, status: 200, seen: `${method} /v1${path}` });
      }
    });
  });
});
