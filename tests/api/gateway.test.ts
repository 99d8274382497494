import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import OpenAI from 'openai';
import Anthropic from '@anthropic-ai/sdk';
import { createTestContext, TestContext, TestUser } from '../support/test-app';
import { auditRows, createKey, createProject, CreatedKey, uniqueSecret } from '../support/factories';
import { isEnvelope, listen, rawCall, rawSocket, Reply } from '../support/resilience-helpers';
import { ANTHROPIC_STREAM_USAGE, ANTHROPIC_USAGE, OPENAI_STREAM_USAGE, OPENAI_USAGE, StandInProvider } from '../support/stand-in-provider';
import { RUN } from '../../src/modules/gateway/scrub';
import { setCredentialAsTheVault } from '../support/crypto-helpers';

jest.setTimeout(60_000);

type Headers = Record<string, string>;

/** Every run of RUN or more characters of `secret` that appears in `text`. */
function runsOf(secret: string, text: string): string[] {
  const hits = new Set<string>();
  for (let i = 0; i + RUN <= secret.length; i++) if (text.includes(secret.slice(i, i + RUN))) hits.add(secret.slice(i, i + RUN));
  return [...hits];
}

describe('the gateway (/gateway/…)', () => {
  let ctx: TestContext;
  let vault: { url: string; port: number; close(): Promise<void> };
  let provider: StandInProvider;
  let admin: TestUser;
  let owner: TestUser;
  let other: TestUser;
  let project: { id: string };
  /** Every provider secret planted in this file: no run of 8 of them may reach a client or a log. */
  const planted: string[] = [];
  /** Every byte the raw clients of this file received, headers included. */
  const received: string[] = [];

  const plant = async (fields: { provider?: string; baseUrl?: string; ownerId?: string; secret?: string } = {}): Promise<CreatedKey> => {
    const secret = fields.secret ?? uniqueSecret(fields.provider === 'anthropic' ? 'sk-ant-' : 'sk-');
    const provider_ = fields.provider ?? 'openai';
    const baseUrl = fields.baseUrl ?? (provider_ === 'anthropic' || provider_ === 'google' ? provider.url : `${provider.url}/v1`);
    const key = await createKey(ctx, admin, { ownerId: fields.ownerId ?? owner.id, projectId: project.id, provider: provider_, secret, baseUrl });
    provider.validKeys.add(secret);
    planted.push(secret);
    return key;
  };

  const virtualKey = async (as: TestUser, keyId: string, body: Record<string, unknown> = {}): Promise<{ id: string; virtualKey: string }> => {
    const res = await ctx.http().post(`/api/v1/provider-keys/${keyId}/virtual-keys`).set(as.auth).send({ name: 'vk', ...body });
    if (res.status !== 201) throw new Error(`virtual key: ${res.status} ${JSON.stringify(res.body)}`);
    return res.body;
  };

  /** A raw call through the gateway, kept for the leak search. */
  const gw = async (method: string, path: string, opts: { headers?: Headers; body?: unknown; raw?: string | Buffer } = {}): Promise<Reply> => {
    const body = opts.raw ?? (opts.body === undefined ? undefined : JSON.stringify(opts.body));
    const headers = { ...(opts.body !== undefined ? { 'Content-Type': 'application/json' } : {}), ...opts.headers };
    const res = await rawCall(vault.url, method, `/gateway${path}`, { headers, body });
    received.push(JSON.stringify(res.headers), res.text);
    return res;
  };

  /** A body sent with Transfer-Encoding: chunked (no Content-Length), in 8 KiB pieces. */
  const chunked = (path: string, headers: Headers, text: string): Promise<Reply> =>
    new Promise((resolve, reject) => {
      const req = http.request(`${vault.url}/gateway${path}`, { method: 'POST', headers }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const body = Buffer.concat(parts).toString('utf8');
          received.push(JSON.stringify(res.headers), body);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, text: body, body: body ? JSON.parse(body) : undefined, requestId: String(res.headers['x-request-id']) });
        });
      });
      req.on('error', reject);
      for (let i = 0; i < text.length; i += 8192) req.write(text.slice(i, i + 8192));
      req.end();
    });

  const usageRows = (virtualKeyId: string): Promise<Array<Record<string, unknown>>> =>
    ctx.container.gateway.usage.flush().then(() => ctx.db.read((m) => m.query('SELECT * FROM gateway_usage WHERE virtual_key_id = ? ORDER BY at, id', [virtualKeyId])));

  const expectRefusal = (res: Reply, status: number, code: string) => {
    expect({ status: res.status, code: res.body?.error?.code }).toEqual({ status, code });
    expect(isEnvelope(res.body, code)).toBe(true);
    expect(res.body.error.requestId).toBe(res.headers['x-request-id']);
    expect(res.headers['cache-control']).toBe('no-store');
  };

  beforeAll(async () => {
    provider = await new StandInProvider().start();
    ctx = await createTestContext({ PKV_GATEWAY_CONNECT_TIMEOUT: '500ms', PKV_GATEWAY_FIRST_BYTE_TIMEOUT: '700ms', PKV_GATEWAY_IDLE_TIMEOUT: '1500ms', PKV_GATEWAY_BODY_LIMIT: '64k' });
    vault = await listen(ctx.handler);
    admin = await ctx.user('admin');
    owner = await ctx.user('member');
    other = await ctx.user('member');
    project = await createProject(ctx, admin);
  });

  afterAll(async () => {
    await vault?.close();
    await provider?.close();
    await ctx?.close();
  });

  describe('with the official SDKs, unchanged', () => {
    it('answers the OpenAI SDK (chat, not streamed) through a virtual key; the provider saw the real key as Bearer and never the virtual one', async () => {
      const key = await plant();
      const vk = await virtualKey(owner, key.id);
      const openai = new OpenAI({ apiKey: vk.virtualKey, baseURL: `${vault.url}/gateway`, maxRetries: 0 });
      const done = await openai.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }] });
      expect(done.choices[0].message.content).toBe('Hello from the stand-in');
      expect(done.usage).toEqual(OPENAI_USAGE);
      const seen = provider.last();
      expect(seen.url).toBe('/v1/chat/completions');
      expect(seen.headers.authorization).toBe(`Bearer ${key.secret}`);
      expect(JSON.stringify(seen.headers)).not.toContain(vk.virtualKey);
      const [row] = await usageRows(vk.id);
      expect(row).toMatchObject({ key_id: key.id, user_id: owner.id, model: 'gpt-test', status: 200 });
      expect([Number(row.prompt_tokens), Number(row.completion_tokens)]).toEqual([OPENAI_USAGE.prompt_tokens, OPENAI_USAGE.completion_tokens]);
      expect(Number(row.request_bytes)).toBeGreaterThan(0);
      expect(Number(row.response_bytes)).toBeGreaterThan(0);
    });

    it('streams to the OpenAI SDK chunk by chunk, and records the usage of the final chunk (stream_options.include_usage)', async () => {
      const key = await plant();
      const vk = await virtualKey(owner, key.id);
      const openai = new OpenAI({ apiKey: vk.virtualKey, baseURL: `${vault.url}/gateway`, maxRetries: 0 });
      provider.chunkPauseMs = 150;
      try {
        const stream = await openai.chat.completions.create({ model: 'gpt-test', messages: [{ role: 'user', content: 'hi' }], stream: true, stream_options: { include_usage: true } });
        const arrived: number[] = [];
        let text = '';
        let usage: unknown;
        for await (const chunk of stream) {
          arrived.push(Date.now());
          text += chunk.choices[0]?.delta?.content ?? '';
          if (chunk.usage) usage = chunk.usage;
        }
        expect(text).toBe('Hello!');
        expect(usage).toEqual(OPENAI_STREAM_USAGE);
        // Unbuffered: the first chunk reached the client before the provider had written the second.
        expect(arrived[0]).toBeLessThan(provider.chunkSentAt[1]);
      } finally {
        provider.chunkPauseMs = 0;
      }
      const [row] = await usageRows(vk.id);
      expect([Number(row.prompt_tokens), Number(row.completion_tokens), Number(row.status)]).toEqual([OPENAI_STREAM_USAGE.prompt_tokens, OPENAI_STREAM_USAGE.completion_tokens, 200]);
    });

    it('lists models for the OpenAI SDK (GET, no body)', async () => {
      const key = await plant();
      const vk = await virtualKey(owner, key.id);
      const openai = new OpenAI({ apiKey: vk.virtualKey, baseURL: `${vault.url}/gateway`, maxRetries: 0 });
      const page = await openai.models.list();
      expect(page.data.map((m) => m.id)).toEqual(['gpt-test']);
      expect(provider.last()).toMatchObject({ method: 'GET', url: '/v1/models' });
    });

    it('answers the Anthropic SDK (not streamed and streamed): x-api-key upstream, its anthropic-version passed on, usage from message_start and message_delta', async () => {
      const key = await plant({ provider: 'anthropic' });
      const vk = await virtualKey(owner, key.id);
      const anthropic = new Anthropic({ apiKey: vk.virtualKey, baseURL: `${vault.url}/gateway`, maxRetries: 0 });
      const message = await anthropic.messages.create({ model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
      expect(message.content[0]).toMatchObject({ type: 'text', text: 'Hello from the stand-in' });
      const seen = provider.last();
      expect(seen.url).toBe('/v1/messages');
      expect(seen.headers['x-api-key']).toBe(key.secret);
      expect(seen.headers['anthropic-version']).toEqual(expect.any(String));
      expect(seen.headers.authorization).toBeUndefined();

      const stream = anthropic.messages.stream({ model: 'claude-test', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] });
      let text = '';
      stream.on('text', (t) => (text += t));
      const final = await stream.finalMessage();
      expect(text).toBe('Hello');
      expect(final.usage.output_tokens).toBe(ANTHROPIC_STREAM_USAGE.output_tokens);

      const rows = await usageRows(vk.id);
      expect(rows.map((r) => [r.model, Number(r.prompt_tokens), Number(r.completion_tokens)])).toEqual([
        ['claude-test', ANTHROPIC_USAGE.input_tokens, ANTHROPIC_USAGE.output_tokens],
        ['claude-test', ANTHROPIC_STREAM_USAGE.input_tokens, ANTHROPIC_STREAM_USAGE.output_tokens],
      ]);
    });
  });

  describe('what goes upstream and what comes back', () => {
    let key: CreatedKey;
    let vk: { id: string; virtualKey: string };
    beforeAll(async () => {
      key = await plant();
      vk = await virtualKey(owner, key.id);
    });

    it('forwards method, path, query and body to baseUrl + path, with the provider credential and none of the client’s credentials, cookies, hop-by-hop or forwarding headers', async () => {
      const res = await gw('POST', '/echo?a=1&b=%2Fx&c', {
        body: { hello: 'world', model: 'gpt-test' },
        headers: {
          'x-api-key': vk.virtualKey,
          Cookie: 'pkv_session=abc; other=1',
          'X-CSRF-Token': 'csrf',
          Connection: 'keep-alive, x-private',
          'X-Private': 'hop',
          'X-Forwarded-For': '203.0.113.9',
          Forwarded: 'for=203.0.113.9',
          'Accept-Encoding': 'gzip, br',
          'OpenAI-Beta': 'assistants=v2',
          'User-Agent': 'sdk/1.0',
          'X-Request-Id': 'client-trace-0001',
        },
      });
      expect(res.status).toBe(200);
      const seen = provider.last();
      expect(seen).toMatchObject({ method: 'POST', url: '/v1/echo?a=1&b=%2Fx&c' });
      expect(JSON.parse(seen.body)).toEqual({ hello: 'world', model: 'gpt-test' });
      const h = seen.headers;
      expect(h.authorization).toBe(`Bearer ${key.secret}`);
      expect(h.host).toBe(`127.0.0.1:${provider.port}`);
      for (const gone of ['x-api-key', 'api-key', 'x-goog-api-key', 'cookie', 'x-csrf-token', 'x-private', 'x-forwarded-for', 'forwarded', 'x-request-id']) expect({ gone, value: h[gone] }).toEqual({ gone, value: undefined });
      expect(h['accept-encoding']).toBe('identity');
      expect(h['openai-beta']).toBe('assistants=v2');
      expect(h['user-agent']).toBe('sdk/1.0');
      // The echo holds the upstream Authorization header: the client gets it masked.
      expect(res.text).not.toContain(key.secret);
      expect(res.body.headers.authorization).toMatch(/^Bearer \*+$/);
      expect(res.headers['x-request-id']).toBe('client-trace-0001');
      expect(res.headers['x-upstream-request-id']).toBe('upstream-req-123');
    });

    it('sets no-store, nosniff and a sandboxing CSP on answers, and drops the provider’s cookies, HSTS, CORS, caching, Alt-Svc, Clear-Site-Data and hop-by-hop headers', async () => {
      const res = await gw('GET', '/headers', { headers: { Authorization: `Bearer ${vk.virtualKey}` } });
      expect(res.status).toBe(200);
      expect(res.headers).toMatchObject({ 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'x-upstream-request-id': 'upstream-req-456', 'x-ratelimit-remaining-requests': '99' });
      expect(res.headers['content-security-policy']).toContain("default-src 'none'");
      for (const gone of ['set-cookie', 'strict-transport-security', 'access-control-allow-origin', 'alt-svc', 'x-hop', 'clear-site-data']) expect({ gone, value: res.headers[gone] }).toEqual({ gone, value: undefined });
      expect(res.headers['x-request-id']).not.toBe('upstream-req-456');
    });

    it('passes a redirect’s status through but never its Location (the client would follow it with its virtual key)', async () => {
      const res = await gw('GET', '/redirect', { headers: { Authorization: `Bearer ${vk.virtualKey}` } });
      expect(res.status).toBe(302);
      expect(res.headers.location).toBeUndefined();
      expect(provider.seen.filter((r) => r.url.includes('steal'))).toEqual([]);
    });

    it('reads a gzip answer itself (so it can search it for the key) and sends it decoded, masked, without Content-Encoding', async () => {
      const res = await gw('GET', '/gzip', { headers: { Authorization: `Bearer ${vk.virtualKey}` } });
      expect(res.status).toBe(200);
      expect(res.headers['content-encoding']).toBeUndefined();
      expect(res.body.echoed).toMatch(/^\*+$/);
      expect(res.body.echoed).toHaveLength(key.secret.length);
    });

    it('refuses with 502 an answer in an encoding it cannot read', async () => {
      expectRefusal(await gw('GET', '/zstd', { headers: { Authorization: `Bearer ${vk.virtualKey}` } }), 502, 'bad_gateway');
    });

    it('relays a provider 401 that echoes the key (whole, a run of it, in the body and in headers) with every run masked', async () => {
      const res = await gw('POST', '/leaky-401', { headers: { Authorization: `Bearer ${vk.virtualKey}` }, body: {} });
      expect(res.status).toBe(401);
      expect(res.body.error.message).toMatch(/^Incorrect API key provided: \*+\. Part: \*+$/);
      expect(res.headers['x-echo-key']).toMatch(/^\*+$/);
      expect(res.headers['www-authenticate']).toBe(`Bearer realm="${'*'.repeat(12)}"`);
      expect(runsOf(key.secret, res.text + JSON.stringify(res.headers))).toEqual([]);
    });

    it('masks the key in a stream even where the provider’s writes cut it into pieces', async () => {
      const res = await gw('GET', '/leaky-stream', { headers: { Authorization: `Bearer ${vk.virtualKey}` } });
      expect(res.status).toBe(200);
      expect(res.text).toContain('the key is ');
      expect(res.text).toContain(`the key is ${'*'.repeat(key.secret.length)}, again ${'*'.repeat(11)}, and that's all`);
    });

    it('sends the credential the provider’s way: api-key for Azure, x-goog-api-key for Google (and the path names the model)', async () => {
      const azure = await plant({ provider: 'azure-openai', baseUrl: `${provider.url}/azure` });
      const azureVk = await virtualKey(owner, azure.id);
      expect((await gw('GET', '/openai/deployments/gpt-4o/echo?api-version=2024-10-21', { headers: { 'api-key': azureVk.virtualKey } })).status).toBe(200);
      expect(provider.last().url).toBe('/azure/openai/deployments/gpt-4o/echo?api-version=2024-10-21');
      expect(provider.last().headers).toMatchObject({ 'api-key': azure.secret });
      expect(provider.last().headers.authorization).toBeUndefined();

      const google = await plant({ provider: 'google' });
      const googleVk = await virtualKey(owner, google.id);
      expect((await gw('GET', '/v1beta/models/gemini-test:echo', { headers: { 'x-goog-api-key': googleVk.virtualKey } })).status).toBe(200);
      expect(provider.last().headers).toMatchObject({ 'x-goog-api-key': google.secret });
      const rows = await usageRows(googleVk.id);
      expect(rows[0].model).toBe('gemini-test');
    });

    it('streams a non-JSON upload through and counts it', async () => {
      const payload = crypto.randomBytes(40 * 1024);
      const res = await gw('POST', '/upload', { headers: { Authorization: `Bearer ${vk.virtualKey}`, 'Content-Type': 'application/octet-stream' }, raw: payload });
      expect(res.status).toBe(200);
      expect(res.body.received).toBe(payload.length);
    });
  });

  describe('refusals by the vault (error envelope; nothing reaches the provider)', () => {
    let key: CreatedKey;
    let vk: { id: string; virtualKey: string };
    const chat = (headers: Headers, body: unknown = { model: 'gpt-test', messages: [] }) => gw('POST', '/chat/completions', { headers, body });
    const expectUnreached = async (fn: () => Promise<void>) => {
      const before = provider.seen.length;
      await fn();
      expect(provider.seen.length).toBe(before);
    };
    beforeAll(async () => {
      key = await plant();
      vk = await virtualKey(owner, key.id);
    });

    it('401 with WWW-Authenticate for no key, a malformed or unknown one, an API token, a non-Bearer scheme, and two different keys at once', async () => {
      const token = (await ctx.http().post('/api/v1/api-tokens').set(owner.auth).send({ name: 't', scopes: ['provider-keys:reveal'] })).body.token as string;
      const forged = `pkv_vk_${crypto.randomBytes(32).toString('base64url')}`;
      const other = await virtualKey(owner, key.id);
      await expectUnreached(async () => {
        for (const headers of <Headers[]>[
          {},
          { Authorization: 'Bearer nope' },
          { Authorization: `Bearer ${forged}` },
          { 'x-api-key': forged },
          { Authorization: `Bearer ${token}` },
          { Authorization: `Basic ${Buffer.from(`x:${vk.virtualKey}`).toString('base64')}` },
          { Authorization: `Bearer ${vk.virtualKey}`, 'x-api-key': other.virtualKey },
          { 'api-key': vk.virtualKey, 'x-goog-api-key': other.virtualKey },
          { Authorization: `Bearer ${vk.virtualKey.slice(0, -1)}` },
        ]) {
          const res = await chat(headers);
          expectRefusal(res, 401, 'unauthorized');
          expect(res.headers['www-authenticate']).toMatch(/^Bearer/);
        }
      });
      expect((await chat({ 'x-api-key': vk.virtualKey })).status).toBe(200);
    });

    it('never accepts a virtual key on the API', async () => {
      const res = await ctx.http().get(`/api/v1/provider-keys/${key.id}`).set('Authorization', `Bearer ${vk.virtualKey}`);
      expect(res.status).toBe(401);
      const viaHeader = await ctx.http().get(`/api/v1/provider-keys/${key.id}`).set('X-API-Key', vk.virtualKey);
      expect(viaHeader.status).toBe(401);
    });

    it('refuses TRACE (it would echo the credential) and any path that could leave the base path, with 400', async () => {
      await expectUnreached(async () => {
        expectRefusal(await gw('TRACE', '/models', { headers: { Authorization: `Bearer ${vk.virtualKey}` } }), 400, 'validation_failed');
        // Sent byte for byte (an HTTP client would resolve the dot segments itself).
        for (const path of ['/../api/v1/users', '/..', '/%2e%2e/api/v1/users', '/.%2E/x', '/v1/./models', '/a%2fb', '/a%5Cb', '/a\\b', '//evil.example/x', '/http://evil.example/x', '/%zz', '/ok?x=%zz', '/x#frag']) {
          const raw = await rawSocket(vault.port, Buffer.from(`GET /gateway${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${vk.virtualKey}\r\nConnection: close\r\n\r\n`, 'latin1'));
          received.push(raw);
          const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1]);
          const body = raw.slice(raw.indexOf('\r\n\r\n') + 4);
          expect({ path, status, refused: status === 400 && (body === '' || isEnvelope(JSON.parse(body), 'validation_failed')) }).toEqual({ path, status: 400, refused: true });
        }
      });
    });

    it('cannot be steered by the client’s Host, an absolute-form target or a smuggled request (Content-Length with Transfer-Encoding)', async () => {
      const raw = async (head: string, body = '') => {
        const text = await rawSocket(vault.port, Buffer.from(`${head}\r\n\r\n${body}`, 'latin1'));
        received.push(text);
        return { status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1]), text };
      };
      const auth = `Authorization: Bearer ${vk.virtualKey}`;
      const before = provider.seen.length;
      // Host is the vault's business only: upstream gets the baseUrl's.
      expect((await raw(`GET /gateway/echo HTTP/1.1\r\nHost: evil.example\r\n${auth}\r\nConnection: close`)).status).toBe(200);
      expect(provider.last().headers.host).toBe(`127.0.0.1:${provider.port}`);
      // Absolute-form targets are not the gateway's (express answers 404), whatever host they name.
      expect((await raw(`GET http://127.0.0.1:${provider.port}/v1/echo HTTP/1.1\r\nHost: x\r\n${auth}\r\nConnection: close`)).status).toBe(404);
      expect((await raw(`GET http://evil.example/gateway/echo HTTP/1.1\r\nHost: x\r\n${auth}\r\nConnection: close`)).status).toBe(404);
      // Both framings at once: refused by the vault's HTTP parser before anything is read.
      const smuggled = 'GET /v1/echo?smuggled=1 HTTP/1.1\r\nHost: x\r\n\r\n';
      const both = await raw(`POST /gateway/echo HTTP/1.1\r\nHost: x\r\n${auth}\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\nConnection: close`, `0\r\n\r\n${smuggled}`);
      expect(both.status).toBe(400);
      expect(provider.seen.length).toBe(before + 1);
      // A chunked body that holds a second request is one body upstream, framed anew by the gateway.
      const inner = `0\r\n\r\n${smuggled}`;
      const chunk = `${inner.length.toString(16)}\r\n${inner}\r\n0\r\n\r\n`;
      const one = await raw(`POST /gateway/echo HTTP/1.1\r\nHost: x\r\n${auth}\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\nConnection: close`, chunk);
      expect(one.status).toBe(200);
      expect(provider.seen.length).toBe(before + 2);
      expect(provider.last().body).toBe(inner);
      expect(provider.seen.some((r) => r.url.includes('smuggled'))).toBe(false);
    });

    it('keeps upstream connections alive and pooled (two calls, one connection)', async () => {
      await gw('GET', '/models', { headers: { Authorization: `Bearer ${vk.virtualKey}` } });
      const first = provider.last().remotePort;
      await gw('GET', '/models', { headers: { Authorization: `Bearer ${vk.virtualKey}` } });
      expect(provider.last().remotePort).toBe(first);
    });

    it('413 for a body over PKV_GATEWAY_BODY_LIMIT, declared, chunked, or streamed', async () => {
      await expectUnreached(async () => {
        const big = JSON.stringify({ model: 'gpt-test', pad: 'x'.repeat(70 * 1024) });
        expectRefusal(await gw('POST', '/chat/completions', { headers: { Authorization: `Bearer ${vk.virtualKey}`, 'Content-Type': 'application/json' }, raw: big }), 413, 'payload_too_large');
        expectRefusal(await chunked('/chat/completions', { Authorization: `Bearer ${vk.virtualKey}`, 'Content-Type': 'application/json' }, big), 413, 'payload_too_large');
      });
      const streamed = await chunked('/upload', { Authorization: `Bearer ${vk.virtualKey}`, 'Content-Type': 'application/octet-stream' }, 'x'.repeat(70 * 1024));
      expectRefusal(streamed, 413, 'payload_too_large');
    });

    it('stops a virtual key at the next request once it is revoked (DELETE), and for good', async () => {
      const mine = await virtualKey(owner, key.id);
      expect((await chat({ Authorization: `Bearer ${mine.virtualKey}` })).status).toBe(200);
      expect((await ctx.http().delete(`/api/v1/virtual-keys/${mine.id}`).set(owner.auth)).status).toBe(204);
      await expectUnreached(async () => expectRefusal(await chat({ Authorization: `Bearer ${mine.virtualKey}` }), 401, 'unauthorized'));
    });

    it('checks a virtual key again when its body took over a second: one revoked while the body was still coming is refused, and nothing goes out', async () => {
      const mine = await virtualKey(owner, key.id);
      const body = JSON.stringify({ model: 'gpt-test', messages: [{ role: 'user', content: 'x'.repeat(64) }] });
      const half = Math.floor(body.length / 2);
      await expectUnreached(async () => {
        const reply = new Promise<Reply>((resolve, reject) => {
          const req = http.request(`${vault.url}/gateway/chat/completions`, { method: 'POST', headers: { Authorization: `Bearer ${mine.virtualKey}`, 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) } }, (res) => {
            const parts: Buffer[] = [];
            res.on('data', (c: Buffer) => parts.push(c));
            res.on('end', () => {
              const text = Buffer.concat(parts).toString('utf8');
              received.push(JSON.stringify(res.headers), text);
              resolve({ status: res.statusCode ?? 0, headers: res.headers, text, body: JSON.parse(text), requestId: String(res.headers['x-request-id']) });
            });
          });
          req.on('error', reject);
          req.write(body.slice(0, half));
          setTimeout(() => {
            void ctx.http().delete(`/api/v1/virtual-keys/${mine.id}`).set(owner.auth).then((r) => {
              expect(r.status).toBe(204);
              setTimeout(() => req.end(body.slice(half)), 1200);
            }, reject);
          }, 100);
        });
        expectRefusal(await reply, 401, 'unauthorized');
      });
    });

    it('stops a virtual key past its own expiry', async () => {
      const mine = await virtualKey(owner, key.id, { expiresInDays: 1 });
      await setCredentialAsTheVault(ctx, 'virtual_keys', mine.id, { expires_at: Date.now() - 1000 });
      await expectUnreached(async () => expectRefusal(await chat({ Authorization: `Bearer ${mine.virtualKey}` }), 401, 'unauthorized'));
    });

    it('ends it for good when its user is disabled (401, revoked and audited): enabling the user again revives none', async () => {
      const member = await ctx.user('member');
      const own = await plant({ ownerId: member.id });
      const mine = await virtualKey(member, own.id);
      const patchUser = (status: string) => ctx.http().patch(`/api/v1/users/${member.id}`).set(admin.auth).send({ status });
      expect((await patchUser('disabled')).status).toBe(200);
      await expectUnreached(async () => expectRefusal(await chat({ Authorization: `Bearer ${mine.virtualKey}` }), 401, 'unauthorized'));
      expect((await patchUser('active')).status).toBe(200);
      await expectUnreached(async () => expectRefusal(await chat({ Authorization: `Bearer ${mine.virtualKey}` }), 401, 'unauthorized'));
      const [row] = await ctx.db.read((m) => m.query('SELECT revoked_at FROM virtual_keys WHERE id = ?', [mine.id]));
      expect(row.revoked_at).not.toBeNull();
      const revokes = await auditRows(ctx, { action: 'virtual_key.revoke', keyId: own.id });
      expect(revokes.map((r) => [r.outcome, JSON.parse(String(r.detail)).virtualKeyId, JSON.parse(String(r.detail)).why])).toEqual([['success', mine.id, 'user_disabled']]);
    });

    it('409 key_disabled while its provider key is disabled, 409 key_expired once the key has expired', async () => {
      const own = await plant();
      const mine = await virtualKey(owner, own.id);
      const patchKey = (body: object) => ctx.http().patch(`/api/v1/provider-keys/${own.id}`).set(admin.auth).send(body);
      expect((await patchKey({ status: 'disabled' })).status).toBe(200);
      await expectUnreached(async () => expectRefusal(await chat({ Authorization: `Bearer ${mine.virtualKey}` }), 409, 'key_disabled'));
      expect((await patchKey({ status: 'active' })).status).toBe(200);
      expect((await chat({ Authorization: `Bearer ${mine.virtualKey}` })).status).toBe(200);
      await ctx.db.read((m) => m.query('UPDATE provider_keys SET expires_at = ? WHERE id = ?', [Date.now() - 1000, own.id]));
      await expectUnreached(async () => expectRefusal(await chat({ Authorization: `Bearer ${mine.virtualKey}` }), 409, 'key_expired'));
    });

    it('stops it for good when its provider key is deleted, moved to another owner or project, or pointed elsewhere (even another path on the same host)', async () => {
      const second = await createProject(ctx, admin);
      const cases: Array<[string, (id: string) => Promise<unknown>]> = [
        ['deleted', (id) => ctx.http().delete(`/api/v1/provider-keys/${id}`).set(admin.auth)],
        ['moved to another owner', (id) => ctx.http().patch(`/api/v1/provider-keys/${id}`).set(admin.auth).send({ ownerId: other.id, reason: 'ticket OPS-2' })],
        ['moved to another project', (id) => ctx.http().patch(`/api/v1/provider-keys/${id}`).set(admin.auth).send({ projectId: second.id })],
        ['pointed at another host', (id) => ctx.http().patch(`/api/v1/provider-keys/${id}`).set(admin.auth).send({ baseUrl: `http://127.0.0.2:${provider.port}/v1`, reason: 'ticket OPS-1' })],
        ['pointed at another path on the same host', (id) => ctx.http().patch(`/api/v1/provider-keys/${id}`).set(admin.auth).send({ baseUrl: `${provider.url}/v2`, reason: 'ticket OPS-1' })],
      ];
      for (const [what, change] of cases) {
        const own = await plant();
        const mine = await virtualKey(owner, own.id);
        expect((await chat({ Authorization: `Bearer ${mine.virtualKey}` })).status).toBe(200);
        await change(own.id);
        await expectUnreached(async () => {
          const res = await chat({ Authorization: `Bearer ${mine.virtualKey}` });
          expect({ what, status: res.status, code: res.body?.error?.code }).toEqual({ what, status: 401, code: 'unauthorized' });
        });
        const [row] = await ctx.db.read((m) => m.query('SELECT revoked_at FROM virtual_keys WHERE id = ?', [mine.id]));
        expect({ what, revoked: row.revoked_at !== null }).toEqual({ what, revoked: true });
      }
    });

    it('403 once its user can no longer reveal the key: a member demoted to auditor, an admin (who gave a reason) demoted to member', async () => {
      const member = await ctx.user('member');
      const own = await plant({ ownerId: member.id });
      const memberVk = await virtualKey(member, own.id);
      const boss = await ctx.user('admin');
      const bossVk = await virtualKey(boss, own.id, { reason: 'on-call for the owner' });
      expect((await chat({ Authorization: `Bearer ${bossVk.virtualKey}` })).status).toBe(200);
      expect((await ctx.http().patch(`/api/v1/users/${member.id}`).set(admin.auth).send({ role: 'auditor' })).status).toBe(200);
      expect((await ctx.http().patch(`/api/v1/users/${boss.id}`).set(admin.auth).send({ role: 'member' })).status).toBe(200);
      await expectUnreached(async () => {
        expectRefusal(await chat({ Authorization: `Bearer ${memberVk.virtualKey}` }), 403, 'forbidden');
        expectRefusal(await chat({ Authorization: `Bearer ${bossVk.virtualKey}` }), 403, 'forbidden');
      });
    });
  });

  describe('model allowlist', () => {
    let vk: { id: string; virtualKey: string };
    const auth = () => ({ Authorization: `Bearer ${vk.virtualKey}` });
    beforeAll(async () => {
      const key = await plant();
      vk = await virtualKey(owner, key.id, { models: ['gpt-allowed', 'gpt-also'] });
    });

    it('forwards a JSON body that names an allowed model', async () => {
      const openai = new OpenAI({ apiKey: vk.virtualKey, baseURL: `${vault.url}/gateway`, maxRetries: 0 });
      const done = await openai.chat.completions.create({ model: 'gpt-also', messages: [] });
      expect(done.model).toBe('gpt-also');
    });

    it('403 for another model, and (the safe default) for a model call that names none: no body, not JSON, not an object, no model, a model that is not a string', async () => {
      const before = provider.seen.length;
      const cases: Array<[string, Promise<Reply>]> = [
        ['another model', gw('POST', '/chat/completions', { headers: auth(), body: { model: 'gpt-other' } })],
        ['no body', gw('POST', '/chat/completions', { headers: auth() })],
        ['not JSON', gw('POST', '/chat/completions', { headers: { ...auth(), 'Content-Type': 'text/plain' }, raw: '{"model":"gpt-allowed"}' })],
        ['malformed JSON', gw('POST', '/chat/completions', { headers: { ...auth(), 'Content-Type': 'application/json' }, raw: '{"model":"gpt-allowed"' })],
        ['an array', gw('POST', '/chat/completions', { headers: auth(), body: [{ model: 'gpt-allowed' }] })],
        ['no model', gw('POST', '/chat/completions', { headers: auth(), body: { messages: [] } })],
        ['a number', gw('POST', '/chat/completions', { headers: auth(), body: { model: 5 } })],
      ];
      for (const [what, pending] of cases) {
        const res = await pending;
        expect({ what, status: res.status, code: res.body?.error?.code }).toEqual({ what, status: 403, code: 'forbidden' });
      }
      expect(provider.seen.length).toBe(before);
    });

    it('400 for a body naming the model twice (two parsers could pick different ones)', async () => {
      const before = provider.seen.length;
      const res = await gw('POST', '/chat/completions', { headers: { ...auth(), 'Content-Type': 'application/json' }, raw: '{"model":"gpt-allowed","model":"gpt-other"}' });
      expectRefusal(res, 400, 'validation_failed');
      expect(provider.seen.length).toBe(before);
    });

    it('reads the model from the path for Google', async () => {
      const google = await plant({ provider: 'google' });
      const g = await virtualKey(owner, google.id, { models: ['gemini-ok'] });
      expect((await gw('POST', '/v1beta/models/gemini-ok:generateContent', { headers: { 'x-goog-api-key': g.virtualKey }, body: { contents: [] } })).status).toBe(200);
      expectRefusal(await gw('POST', '/v1beta/models/gemini-other:generateContent', { headers: { 'x-goog-api-key': g.virtualKey }, body: { contents: [] } }), 403, 'forbidden');
      // The path as Google decodes it, every model it names, whatever an allowed one in the body says.
      for (const path of ['/v1beta/%6dodels/gemini-other:generateContent', '/v1beta/models/gemini-ok:x/models/gemini-other:generateContent']) {
        expectRefusal(await gw('POST', path, { headers: { 'x-goog-api-key': g.virtualKey }, body: { model: 'gemini-ok', contents: [] } }), 403, 'forbidden');
      }
    });
  });

  describe('daily budgets', () => {
    const secondsToMidnight = () => Math.ceil((86_400_000 - (Date.now() % 86_400_000)) / 1000);

    it('refuses the call past dailyRequestLimit with 429 and Retry-After until midnight UTC, flushed or not', async () => {
      const key = await plant();
      const vk = await virtualKey(owner, key.id, { dailyRequestLimit: 2 });
      const call = () => gw('POST', '/chat/completions', { headers: { Authorization: `Bearer ${vk.virtualKey}` }, body: { model: 'gpt-test' } });
      expect([(await call()).status, (await call()).status]).toEqual([200, 200]);
      const before = provider.seen.length;
      const refused = await call();
      expectRefusal(refused, 429, 'rate_limited');
      expect(Math.abs(Number(refused.headers['retry-after']) - secondsToMidnight())).toBeLessThanOrEqual(2);
      await ctx.container.gateway.usage.flush();
      expectRefusal(await call(), 429, 'rate_limited');
      expect(provider.seen.length).toBe(before);
    });

    it('holds dailyRequestLimit for concurrent calls on one instance', async () => {
      const key = await plant();
      const vk = await virtualKey(owner, key.id, { dailyRequestLimit: 3 });
      const results = await Promise.all(Array.from({ length: 8 }, () => gw('POST', '/chat/completions', { headers: { Authorization: `Bearer ${vk.virtualKey}` }, body: { model: 'gpt-test' } })));
      expect(results.map((r) => r.status).sort()).toEqual([200, 200, 200, 429, 429, 429, 429, 429]);
    });

    it('refuses once dailyTokenLimit is reached, counting the tokens the provider reported', async () => {
      const key = await plant();
      const vk = await virtualKey(owner, key.id, { dailyTokenLimit: OPENAI_USAGE.total_tokens + 1 });
      const call = () => gw('POST', '/chat/completions', { headers: { Authorization: `Bearer ${vk.virtualKey}` }, body: { model: 'gpt-test' } });
      expect((await call()).status).toBe(200); // 18 of 19 spent
      expect((await call()).status).toBe(200); // under the limit when it started: a call is never cut short
      const refused = await call();
      expectRefusal(refused, 429, 'rate_limited');
      expect(refused.body.error.message).toContain('token');
    });
  });

  describe('when the provider fails, or the client goes', () => {
    let vk: { id: string; virtualKey: string };
    beforeAll(async () => {
      const key = await plant();
      vk = await virtualKey(owner, key.id);
    });

    it('502 bad_gateway when the provider cannot be reached', async () => {
      const closed = http.createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const port = (closed.address() as { port: number }).port;
      await new Promise((resolve) => closed.close(resolve));
      const key = await plant({ baseUrl: `http://127.0.0.1:${port}/v1` });
      const down = await virtualKey(owner, key.id);
      const res = await gw('POST', '/chat/completions', { headers: { Authorization: `Bearer ${down.virtualKey}` }, body: { model: 'gpt-test' } });
      expectRefusal(res, 502, 'bad_gateway');
      const [row] = await usageRows(down.id);
      expect(Number(row.status)).toBe(502);
    });

    it('504 gateway_timeout when the provider does not answer within PKV_GATEWAY_FIRST_BYTE_TIMEOUT', async () => {
      const started = Date.now();
      const res = await gw('GET', '/slow?ms=3000', { headers: { Authorization: `Bearer ${vk.virtualKey}` } });
      expectRefusal(res, 504, 'gateway_timeout');
      expect(Date.now() - started).toBeLessThan(2500);
      const rows = await usageRows(vk.id);
      expect(Number(rows[rows.length - 1].status)).toBe(504);
    });

    it('504 gateway_timeout when the provider does not finish connecting within PKV_GATEWAY_CONNECT_TIMEOUT (a TLS handshake that never comes)', async () => {
      const silent = net.createServer((socket) => socket.on('error', () => undefined));
      await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
      try {
        const key = await plant({ baseUrl: `https://127.0.0.1:${(silent.address() as net.AddressInfo).port}/v1` });
        const stuck = await virtualKey(owner, key.id);
        const started = Date.now();
        expectRefusal(await gw('POST', '/chat/completions', { headers: { Authorization: `Bearer ${stuck.virtualKey}` }, body: { model: 'gpt-test' } }), 504, 'gateway_timeout');
        expect(Date.now() - started).toBeLessThan(3000);
      } finally {
        silent.close();
      }
    });

    it('cuts the client’s connection when a stream falls silent for PKV_GATEWAY_IDLE_TIMEOUT, and records 504', async () => {
      const started = Date.now();
      const outcome = await new Promise<string>((resolve) => {
        const req = http.request(`${vault.url}/gateway/hang`, { headers: { Authorization: `Bearer ${vk.virtualKey}` } }, (res) => {
          res.on('data', () => undefined);
          res.once('end', () => resolve('ended cleanly'));
          res.once('error', () => resolve('cut'));
          res.once('aborted', () => resolve('cut'));
        });
        req.on('error', () => resolve('cut'));
        req.end();
      });
      expect(outcome).toBe('cut');
      expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
      expect(Date.now() - started).toBeLessThan(5000);
      const deadline = Date.now() + 5000;
      let rows: Array<Record<string, unknown>> = [];
      while (Date.now() < deadline && !(rows = await usageRows(vk.id)).some((r) => Number(r.status) === 504)) await new Promise((r) => setTimeout(r, 50));
      expect(rows.some((r) => Number(r.status) === 504)).toBe(true);
    });

    it('cancels the provider’s request when the client hangs up mid-stream, and records 499', async () => {
      const got = await new Promise<string>((resolve, reject) => {
        const req = http.request(`${vault.url}/gateway/hang`, { headers: { Authorization: `Bearer ${vk.virtualKey}` } }, (res) => {
          res.once('data', (c: Buffer) => {
            req.destroy();
            resolve(c.toString());
          });
        });
        req.on('error', () => undefined);
        req.once('error', reject);
        req.end();
      });
      expect(got).toContain('first');
      const seen = provider.last();
      expect(seen.url).toBe('/v1/hang');
      await Promise.race([seen.cancelled, new Promise((_, reject) => setTimeout(() => reject(new Error('the provider’s request was not cancelled')), 5000))]);
      expect(seen.wasCancelled).toBe(true);
      const deadline = Date.now() + 5000;
      let rows: Array<Record<string, unknown>> = [];
      while (Date.now() < deadline && !(rows = await usageRows(vk.id)).some((r) => Number(r.status) === 499)) await new Promise((r) => setTimeout(r, 50));
      expect(rows.some((r) => Number(r.status) === 499)).toBe(true);
    });

    it('cuts the client’s connection (never a clean end) when the provider breaks off mid-stream, and records 502', async () => {
      const outcome = await new Promise<string>((resolve) => {
        const req = http.request(`${vault.url}/gateway/break`, { headers: { Authorization: `Bearer ${vk.virtualKey}` } }, (res) => {
          res.on('data', () => undefined);
          res.once('end', () => resolve('ended cleanly'));
          res.once('error', () => resolve('cut'));
          res.once('aborted', () => resolve('cut'));
        });
        req.on('error', () => resolve('cut'));
        req.end();
      });
      expect(outcome).toBe('cut');
      const deadline = Date.now() + 5000;
      let rows: Array<Record<string, unknown>> = [];
      while (Date.now() < deadline && !(rows = await usageRows(vk.id)).some((r) => Number(r.status) === 502)) await new Promise((r) => setTimeout(r, 50));
      expect(rows.some((r) => Number(r.status) === 502)).toBe(true);
    });
  });

  describe('bookkeeping and quiet failures', () => {
    let key: CreatedKey;
    let vk: { id: string; virtualKey: string };
    beforeAll(async () => {
      key = await plant();
      vk = await virtualKey(owner, key.id);
    });

    it('counts calls on the virtual key (requestCount, lastUsedAt) and writes one access line per call: the route pattern, never the path, query or key', async () => {
      const marker = `m${crypto.randomBytes(6).toString('hex')}`;
      const res = await gw('GET', `/echo?trace=${marker}`, { headers: { Authorization: `Bearer ${vk.virtualKey}`, 'X-Request-Id': `req-${marker}` } });
      expect(res.status).toBe(200);
      await gw('GET', '/models', { headers: { Authorization: `Bearer ${vk.virtualKey}` } });
      const got = await ctx.http().get(`/api/v1/virtual-keys/${vk.id}`).set(owner.auth);
      expect(got.body.requestCount).toBe(2);
      expect(Date.parse(got.body.lastUsedAt)).toBeGreaterThan(Date.now() - 60_000);
      const lines = ctx.capture.lines.filter((l) => l.includes(`req-${marker}`)).map((l) => JSON.parse(l));
      expect(lines).toEqual([expect.objectContaining({ event: 'http.access', route: '/gateway/*', status: 200, actorId: owner.id, method: 'GET' })]);
      expect(ctx.logText()).not.toContain(`trace=${marker}`);
      expect(ctx.logText()).not.toContain(vk.virtualKey.slice(7));
    });

    it('passes the provider’s own refusals through with their status and body (a 404)', async () => {
      const res = await gw('GET', '/no-such-thing', { headers: { Authorization: `Bearer ${vk.virtualKey}` } });
      expect(res.status).toBe(404);
      expect(res.body).toEqual({ error: { message: 'no route /v1/no-such-thing' } });
    });

    it('answers HEAD and a CORS preflight without a virtual key with 401 (browsers cannot call it cross-origin)', async () => {
      expect((await gw('HEAD', '/models', { headers: { Authorization: `Bearer ${vk.virtualKey}` } })).status).toBe(200);
      const preflight = await gw('OPTIONS', '/chat/completions', { headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization' } });
      expect(preflight.status).toBe(401);
      expect(preflight.headers['access-control-allow-origin']).toBeUndefined();
    });

    it('shrugs off a client that hangs up halfway through its body: no answer, no error line, nothing forwarded', async () => {
      const before = provider.seen.length;
      const errorsBefore = ctx.capture.lines.filter((l) => l.includes('"level":"error"')).length;
      await new Promise<void>((resolve) => {
        const req = http.request(`${vault.url}/gateway/chat/completions`, { method: 'POST', headers: { Authorization: `Bearer ${vk.virtualKey}`, 'Content-Type': 'application/json', 'Content-Length': '50000' } });
        req.on('error', () => resolve());
        req.on('close', () => resolve());
        req.write('{"model":"gpt-test","pad":"');
        setTimeout(() => req.destroy(), 100);
      });
      await new Promise((r) => setTimeout(r, 200));
      expect(provider.seen.length).toBe(before);
      expect(ctx.capture.lines.filter((l) => l.includes('"level":"error"')).length).toBe(errorsBefore);
    });
  });

  it('never lets a client or a log line see a run of 8 characters of any planted key', async () => {
    const seen = [...received, ctx.secrets.gatewayAnswerText(), ctx.logText()].join('\n');
    expect(planted.length).toBeGreaterThan(0);
    for (const secret of planted) expect({ secret: secret.slice(0, 6), runs: runsOf(secret, seen) }).toEqual({ secret: secret.slice(0, 6), runs: [] });
  });
});
