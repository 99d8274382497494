import fc from 'fast-check';
import { KeyScrubber, RUN } from '../../src/modules/gateway/scrub';
import { tokensIn, UsageMeter } from '../../src/modules/gateway/usage';
import { answerHeaders, gatewayTarget, isGatewayUrl, modelsInPath, presentedKey, upstreamHeaders, upstreamPathOf } from '../../src/modules/gateway/upstream';
import { baseUrlProblem, normalizeBaseUrl } from '../../src/modules/provider-keys/providers';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_';

/** Every window of RUN bytes of `secret` that occurs in `text`. */
const runsIn = (secret: string, text: string) => {
  const found: string[] = [];
  for (let i = 0; i + RUN <= secret.length; i++) if (text.includes(secret.slice(i, i + RUN))) found.push(secret.slice(i, i + RUN));
  return found;
};

/** Feeds `text` to a stream scrubber cut at `cuts`, and returns what came out. */
function scrubInChunks(k: KeyScrubber, text: string, cuts: number[]): string {
  const s = k.stream();
  const bytes = Buffer.from(text, 'latin1');
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
  const out: Buffer[] = [];
  let at = 0;
  for (const p of [...points, bytes.length]) {
    out.push(s.push(bytes.subarray(at, p)));
    at = p;
  }
  out.push(s.end());
  return Buffer.concat(out).toString('latin1');
}

describe('KeyScrubber', () => {
  const secret = fc.string({ unit: fc.constantFrom(...ALPHABET), minLength: 12, maxLength: 80 });
  /** Filler around pieces of the secret: the whole of it, runs of it (some shorter than RUN), nothing. */
  const textWith = (s: string) =>
    fc
      .array(
        fc.oneof(
          fc.string({ maxLength: 20 }).map((f) => f.replace(/[^\x20-\x7e\n]/g, '.')),
          fc.constant(s),
          fc.tuple(fc.nat(s.length), fc.integer({ min: 1, max: s.length })).map(([a, n]) => s.slice(a, a + n)),
        ),
        { maxLength: 12 },
      )
      .map((parts) => parts.join(''));

  it('leaves no run of RUN bytes of the secret, changes nothing else, keeps the length, whatever the chunking', () => {
    fc.assert(
      fc.property(
        secret.chain((s) => fc.tuple(fc.constant(s), textWith(s), fc.array(fc.nat(400), { maxLength: 30 }))),
        ([s, text, cuts]) => {
          const k = new KeyScrubber(s);
          const whole = k.scrubAll(text);
          const chunked = scrubInChunks(k, text, cuts);
          expect(chunked).toBe(whole);
          expect(whole).toHaveLength(text.length);
          expect(runsIn(s, whole)).toEqual([]);
          // Only bytes inside a run of the secret are masked.
          const inRun = new Array<boolean>(text.length).fill(false);
          for (let i = 0; i + RUN <= text.length; i++) if (s.includes(text.slice(i, i + RUN))) inRun.fill(true, i, i + RUN);
          for (let i = 0; i < text.length; i++) expect(whole[i] === text[i] || (inRun[i] && whole[i] === '*')).toBe(true);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('passes text that holds no part of the secret through untouched and at once (nothing held back after a newline)', () => {
    const k = new KeyScrubber('sk-proj-Abc123Def456Ghi789');
    const s = k.stream();
    const event = Buffer.from('data: {"choices":[{"delta":{"content":"hi"}}]}\n\n');
    expect(s.push(event).equals(event)).toBe(true);
    expect(s.end().length).toBe(0);
  });

  it('masks a whole key shorter than RUN, and only that', () => {
    const k = new KeyScrubber('abc12');
    expect(k.scrubAll('x abc12 abc1 y')).toBe('x ***** abc1 y');
  });

  it('masks keys whose windows repeat, and keys of a realistic length, in a value and across chunks', () => {
    const repeating = 'abcdefgh'.repeat(6) + 'zzzzzzzzzzzz';
    const long = `sk-proj-${'Ab3_x9-Qz'.repeat(17)}`;
    for (const key of [repeating, long]) {
      const k = new KeyScrubber(key);
      const text = `{"error":"bad key ${key.slice(3, 40)}","echo":"${key}","tail":"${key.slice(-9)}"}`;
      const whole = k.scrubAll(text);
      expect(runsIn(key, whole)).toEqual([]);
      expect(whole).toHaveLength(text.length);
      expect(scrubInChunks(k, text, [5, 30, 31, 60, 61, 62, 100])).toBe(whole);
      expect(k.scrubAll('application/json')).toBe('application/json');
    }
  });

  it('never writes into the buffer it was handed', () => {
    const k = new KeyScrubber('sk-secret-value-123456');
    const input = Buffer.from('leak: sk-secret-value-123456!');
    const copy = Buffer.from(input);
    const s = k.stream();
    Buffer.concat([s.push(input), s.end()]);
    expect(input.equals(copy)).toBe(true);
  });
});

describe('UsageMeter and tokensIn', () => {
  it('reads OpenAI, Anthropic (with cache tokens), the Responses API and Google', () => {
    expect(tokensIn({ usage: { prompt_tokens: 3, completion_tokens: 4 } })).toEqual({ prompt: 3, completion: 4 });
    expect(tokensIn({ usage: { input_tokens: 3, cache_read_input_tokens: 10, cache_creation_input_tokens: 2, output_tokens: 4 } })).toEqual({ prompt: 15, completion: 4 });
    expect(tokensIn({ type: 'message_start', message: { usage: { input_tokens: 9, output_tokens: 1 } } })).toEqual({ prompt: 9, completion: 1 });
    expect(tokensIn({ type: 'response.completed', response: { usage: { input_tokens: 5, output_tokens: 6 } } })).toEqual({ prompt: 5, completion: 6 });
    expect(tokensIn({ usageMetadata: { promptTokenCount: 7, candidatesTokenCount: 8, thoughtsTokenCount: 2 } })).toEqual({ prompt: 7, completion: 10 });
    for (const nothing of [null, 5, 'x', { usage: null }, { usage: { prompt_tokens: -1 } }, { usage: { prompt_tokens: 1.5 } }, { usage: { prompt_tokens: '3' } }]) expect(tokensIn(nothing)).toBeUndefined();
  });

  it('takes the last usage of a stream cut anywhere, merging input and output reported apart (Anthropic)', () => {
    const stream =
      'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":25,"output_tokens":1}}}\n\n' +
      'event: content_block_delta\ndata: {"type":"content_block_delta","delta":{"text":"usage is fine"}}\n\n' +
      'event: message_delta\r\ndata: {"type":"message_delta","usage":{"output_tokens":4}}\r\n\r\n';
    fc.assert(
      fc.property(fc.array(fc.nat(stream.length), { maxLength: 10 }), (cuts) => {
        const m = new UsageMeter('text/event-stream; charset=utf-8');
        let at = 0;
        for (const p of [...new Set(cuts)].sort((a, b) => a - b)) {
          m.observe(Buffer.from(stream.slice(at, p)));
          at = p;
        }
        m.observe(Buffer.from(stream.slice(at)));
        expect(m.finish()).toEqual({ prompt: 25, completion: 4 });
      }),
      { numRuns: 200 },
    );
  });

  it('reads the usage at the end of a JSON answer too long to keep whole (embeddings), keeping only its tail', () => {
    const m = new UsageMeter('application/json');
    const row = Buffer.from(`{"object":"embedding","embedding":[${Array.from({ length: 200 }, (_, i) => (i / 7).toFixed(6)).join(',')}],"note":"usage: {not this}"},`);
    m.observe(Buffer.from('{"object":"list","data":['));
    for (let i = 0; i < 2000; i++) m.observe(row);
    m.observe(Buffer.from('{}],"model":"text-embedding-3-small","usage":{"prompt_tokens":8000,"total_tokens":8000}}'));
    expect(m.finish()).toEqual({ prompt: 8000 });
  });

  it('reads a JSON answer whole, and nothing from other types', () => {
    const json = new UsageMeter('application/json');
    json.observe(Buffer.from('{"usage":{"prompt_tokens":1,'));
    json.observe(Buffer.from('"completion_tokens":2}}'));
    expect(json.finish()).toEqual({ prompt: 1, completion: 2 });
    const other = new UsageMeter('application/octet-stream');
    other.observe(Buffer.from('{"usage":{"prompt_tokens":1}}'));
    expect(other.finish()).toEqual({});
  });
});

describe('gateway paths and headers', () => {
  const base = new URL('https://api.example.com/v1');

  it('routes /gateway, /gateway/… and /gateway?… only', () => {
    for (const url of ['/gateway', '/gateway/', '/gateway/v1/x', '/gateway?x=1']) expect(isGatewayUrl(url)).toBe(true);
    for (const url of ['/gatewayx', '/api/v1/gateway', 'http://h/gateway/x', '/Gateway/x', undefined]) expect(isGatewayUrl(url)).toBe(false);
  });

  it('appends the path under the base path, byte for byte', () => {
    expect(upstreamPathOf(base, gatewayTarget('POST', '/gateway/chat/completions?a=1&b=%20'))).toBe('/v1/chat/completions?a=1&b=%20');
    expect(upstreamPathOf(new URL('https://h.example'), gatewayTarget('GET', '/gateway'))).toBe('/');
    expect(upstreamPathOf(new URL('https://h.example/'), gatewayTarget('GET', '/gateway/v1/models'))).toBe('/v1/models');
    expect(upstreamPathOf(base, gatewayTarget('GET', '/gateway/models/'))).toBe('/v1/models/');
  });

  it('refuses every way out of the base path and TRACE', () => {
    for (const url of ['/gateway/..;/x', '/gateway/.;x', '/gateway/a%00b', '/gateway/%EF%BC%8E%EF%BC%8E/x', '/gateway/..', '/gateway/../x', '/gateway/%2e%2E/x', '/gateway/.%2e', '/gateway/./x', '/gateway/a/%2F/b', '/gateway/a%5cb', '/gateway/a\\b', '/gateway//x', '/gateway/x#y', '/gateway/%', '/gateway/x?%zz', '/gateway/caf\u00e9']) {
      expect(() => gatewayTarget('GET', url)).toThrow(/not forwarded|Malformed/);
    }
    expect(() => gatewayTarget('TRACE', '/gateway/x')).toThrow(/not forwarded/);
  });

  it('reads the virtual key from Bearer, x-api-key, api-key or x-goog-api-key, and refuses two different ones', () => {
    expect(presentedKey({ authorization: 'Bearer k1' })).toBe('k1');
    expect(presentedKey({ 'x-api-key': 'k1' })).toBe('k1');
    expect(presentedKey({ 'api-key': 'k1', authorization: 'Bearer k1' })).toBe('k1');
    expect(presentedKey({})).toBeUndefined();
    expect(() => presentedKey({ authorization: 'Basic x' })).toThrow();
    expect(() => presentedKey({ authorization: 'Bearer k1', 'x-goog-api-key': 'k2' })).toThrow();
  });

  it('sends upstream the client’s headers minus credentials, cookies, hop-by-hop and forwarding ones, plus the provider’s credential', () => {
    const h = upstreamHeaders(
      { authorization: 'Bearer vk', 'x-api-key': 'vk', cookie: 'c', connection: 'keep-alive, x-secret-hop', 'x-secret-hop': '1', host: 'vault', 'content-type': 'application/json', 'accept-encoding': 'br', 'transfer-encoding': 'chunked', te: 'trailers', 'x-forwarded-for': '1.2.3.4', 'anthropic-version': '2023-06-01' },
      'x-api-key',
      'sk-real',
      12,
    );
    expect(h).toEqual({ 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'accept-encoding': 'identity', 'content-length': '12', 'x-api-key': 'sk-real' });
    expect(upstreamHeaders({}, 'bearer', 'sk-real', undefined)).toEqual({ 'accept-encoding': 'identity', authorization: 'Bearer sk-real' });
  });

  it('returns the provider’s headers minus cookies, redirects, HSTS, CORS, caching and hop-by-hop ones, scrubbed', () => {
    const h = answerHeaders({ 'content-type': 'application/json', 'set-cookie': ['a=1'], location: '/x', 'access-control-allow-origin': '*', connection: 'x-h', 'x-h': '1', 'x-request-id': 'up-1', 'x-note': 'key sk-real here' }, (v) => v.replace('sk-real', '*******'), false);
    expect(h).toEqual({ 'content-type': 'application/json', 'x-note': 'key ******* here', 'x-upstream-request-id': 'up-1' });
    expect(answerHeaders({ 'content-encoding': 'gzip', 'content-length': '10' }, (v) => v, true)).toEqual({});
  });

  it('finds every model a Google or Azure path names, as the provider decodes it', () => {
    const at = (path: string) => gatewayTarget('POST', `/gateway${path}`);
    expect(modelsInPath('google', at('/v1beta/models/gemini-2.0-flash:generateContent'))).toEqual(['gemini-2.0-flash']);
    expect(modelsInPath('google', at('/v1beta/%6dodels/gemini-pro:generateContent'))).toEqual(['gemini-pro']);
    expect(modelsInPath('google', at('/v1beta/models/ok:x/models/other:generateContent'))).toEqual(['ok', 'other']);
    expect(modelsInPath('azure-openai', at('/openai/deployments/my%20gpt/chat/completions'))).toEqual(['my gpt']);
    expect(modelsInPath('openai', at('/v1/models/gpt-4o'))).toEqual([]);
  });

  it('takes https:// base URLs, and http:// only to loopback literals', () => {
    for (const ok of ['https://api.example.com/v1', 'http://127.0.0.1:8080', 'http://127.1.2.3/x', 'http://[::1]/']) expect(baseUrlProblem(ok)).toBeUndefined();
    for (const bad of ['http://example.com', 'http://localhost', 'http://0x7f000001.example.com', 'https://u:p@h.example', 'https://h.example/?q', 'file:///etc/passwd', 'data:,x', 'x']) expect(baseUrlProblem(bad)).toEqual(expect.any(String));
    expect(normalizeBaseUrl('HTTPS://H.Example:443/v1//')).toBe('https://h.example/v1');
  });
});
