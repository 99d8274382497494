/**
 * What the Add key form checks before saving, in the browser. hintFor and the default base URLs are copies of the server's
 * (src/modules/provider-keys/providers.ts), which the console must not import; tests/unit/web-providers.test.ts holds
 * the two equal. Pure: no DOM, no React.
 */

export const PROVIDERS = ['volcengine-ark', 'openai', 'anthropic', 'deepseek', 'azure-openai', 'google', 'custom'] as const;
export type Provider = (typeof PROVIDERS)[number];

/** The prefix every key of that provider starts with (shown in hints, so it reveals nothing). */
export const PROVIDER_PREFIX: Record<Provider, string> = {
  'volcengine-ark': '',
  openai: 'sk-',
  anthropic: 'sk-ant-',
  deepseek: 'sk-',
  'azure-openai': '',
  google: 'AIza',
  custom: '',
};

/** Where the gateway sends a key's calls when the key sets no baseUrl (null: the key must set one); as the server's. */
export const PROVIDER_BASE_URL: Record<Provider, string | null> = {
  'volcengine-ark': 'https://ark.cn-beijing.volces.com/api/v3',
  openai: 'https://api.openai.com/v1',
  anthropic: 'https://api.anthropic.com',
  deepseek: 'https://api.deepseek.com',
  'azure-openai': null,
  google: 'https://generativelanguage.googleapis.com',
  custom: null,
};

/** The key's own baseUrl, else its provider's default; null when neither is set. */
export const upstreamOf = (provider: Provider, baseUrl: string | null): string | null => baseUrl ?? PROVIDER_BASE_URL[provider] ?? null;

const MASK = '••••••••';
const TAIL = 4;

/** The server trims a pasted secret before storing it; so does the preview. */
export const normaliseSecret = (raw: string) => raw.trim();

export function hintFor(provider: Provider, secret: string): string {
  const chars = Array.from(secret);
  const budget = Math.floor(chars.length / 4);
  const prefix = PROVIDER_PREFIX[provider];
  const tail = chars.slice(-TAIL).join('');
  if (prefix && secret.startsWith(prefix) && budget >= Array.from(prefix).length + TAIL) return `${prefix}…${tail}`;
  if (budget >= TAIL) return `…${tail}`;
  return MASK;
}

export type ShapeIssue =
  | 'bearer'
  | 'quoted'
  | 'volcengine-aksk'
  | 'whitespace'
  | 'ark-shape'
  | 'openai-prefix'
  | 'looks-anthropic'
  | 'anthropic-prefix'
  | 'deepseek-prefix'
  | 'google-shape'
  | 'looks-openai';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
// Volcengine access key ids start with AKLT (long-term) or AKTP (temporary); their secret keys have no fixed prefix.
const VOLC_AK = /\bAK(LT|TP)[A-Za-z0-9]{8,}/;

/**
 * Whether a pasted value looks wrong for the provider chosen: a warning, never a refusal (providers change their
 * formats, and `custom` takes anything). Null when nothing looks off.
 */
export function shapeIssue(provider: Provider, raw: string): ShapeIssue | null {
  const s = normaliseSecret(raw);
  // A custom secret may be anything (a JSON credential, words with spaces): nothing to check it against.
  if (!s || provider === 'custom') return null;
  if (/^bearer\s/i.test(s)) return 'bearer';
  if (/^(["'`]).*\1$/s.test(s)) return 'quoted';
  if (VOLC_AK.test(s)) return 'volcengine-aksk';
  if (/\s/.test(s)) return 'whitespace';
  switch (provider) {
    case 'volcengine-ark':
      return UUID.test(s) ? null : 'ark-shape';
    case 'openai':
      if (s.startsWith('sk-ant-')) return 'looks-anthropic';
      return s.startsWith('sk-') ? null : 'openai-prefix';
    case 'anthropic':
      return s.startsWith('sk-ant-') ? null : 'anthropic-prefix';
    case 'deepseek':
      return s.startsWith('sk-') ? null : 'deepseek-prefix';
    case 'google':
      return /^AIza[0-9A-Za-z_-]{35}$/.test(s) ? null : 'google-shape';
    case 'azure-openai':
      return s.startsWith('sk-') ? 'looks-openai' : null;
  }
}
