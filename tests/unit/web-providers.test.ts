/**
 * The console computes the hint it previews with its own copy of hintFor (src/web must not import server code):
 * the copy must answer exactly as the server's, for every provider and any pasted text.
 */
import fc from 'fast-check';
import { hintFor as serverHint, PROVIDERS as SERVER_PROVIDERS, PROVIDER_NAMES } from '../../src/modules/provider-keys/providers';
import { hintFor as webHint, normaliseSecret, PROVIDER_BASE_URL, PROVIDER_PREFIX, PROVIDERS as WEB_PROVIDERS, shapeIssue } from '../../src/web/providers';

describe('the console’s copy of hintFor', () => {
  it('knows the same providers and prefixes as the server', () => {
    expect([...WEB_PROVIDERS]).toEqual(PROVIDER_NAMES);
    for (const p of PROVIDER_NAMES) expect(PROVIDER_PREFIX[p]).toBe(SERVER_PROVIDERS[p].prefix);
  });

  it('knows the server’s default base URLs (the gateway snippet and the key page show them)', () => {
    for (const p of PROVIDER_NAMES) expect({ p, url: PROVIDER_BASE_URL[p] }).toEqual({ p, url: SERVER_PROVIDERS[p].baseUrl });
  });

  it('gives the server’s hint for any text, including prefixed keys, short ones and astral characters', () => {
    const prefixed = fc.tuple(fc.constantFrom('', 'sk-', 'sk-ant-', 'AIza', 'sk-proj-'), fc.string({ unit: 'grapheme', maxLength: 80 })).map(([p, s]) => p + s);
    fc.assert(
      fc.property(fc.constantFrom(...PROVIDER_NAMES), fc.oneof(prefixed, fc.string({ unit: 'binary', maxLength: 60 })), (provider, raw) => {
        // The server trims what is pasted before it computes the hint; the preview does the same.
        const secret = raw.trim();
        expect(normaliseSecret(raw)).toBe(secret);
        expect(webHint(provider, secret)).toBe(serverHint(provider, secret));
      }),
      { numRuns: 3000 },
    );
  });
});

describe('shapeIssue: a warning, never a refusal', () => {
  const uuid = '3f2b8c1e-9a4d-4e7f-b1c2-0d9e8f7a6b5c';
  it.each([
    ['volcengine-ark', uuid, null],
    ['volcengine-ark', `AKLTNjQ3ZWZmYjA1MDc0NGY4YzkyMTk0NTFiZjE2MjlmNDg\nTmpRM1pXWm1ZakExTURjME5HWTRZemt5TVRrME5URmlaakUyTWpsbU5EZw==`, 'volcengine-aksk'],
    ['volcengine-ark', 'AKLTNjQ3ZWZmYjA1MDc0NGY4YzkyMTk0NTFiZjE2MjlmNDg', 'volcengine-aksk'],
    ['volcengine-ark', 'sk-abcdefabcdefabcdefabcdef', 'ark-shape'],
    ['openai', 'sk-proj-abcdefghijklmnop', null],
    ['openai', 'abcdefghijklmnopqrstuvwx', 'openai-prefix'],
    ['openai', 'sk-ant-api03-abcdefghijkl', 'looks-anthropic'],
    ['anthropic', 'sk-ant-api03-abcdefghijkl', null],
    ['anthropic', 'sk-abcdefghijkl', 'anthropic-prefix'],
    ['deepseek', 'sk-0123456789abcdef0123456789abcdef', null],
    ['google', `AIza${'a'.repeat(35)}`, null],
    ['google', 'AIzaShort', 'google-shape'],
    ['azure-openai', '0123456789abcdef0123456789abcdef', null],
    ['azure-openai', 'sk-abcdefghijkl', 'looks-openai'],
    ['custom', 'anything at all', null],
    ['openai', 'Bearer sk-abcdefghijkl', 'bearer'],
    ['openai', '"sk-abcdefghijkl"', 'quoted'],
    ['openai', 'sk-abc def', 'whitespace'],
    ['openai', '  sk-abcdefghijkl\n', null],
    ['openai', '', null],
  ] as const)('%s, %j → %s', (provider, value, issue) => {
    expect(shapeIssue(provider, value)).toBe(issue);
  });
});
