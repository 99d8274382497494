/** How the gateway presents a key upstream: `Authorization: Bearer <key>`, or the key alone in a header of this name. */
export type CredentialHeader = 'bearer' | 'x-api-key' | 'api-key' | 'x-goog-api-key';

/**
 * The provider catalogue. `prefix` is what every key of that provider starts with, so showing it reveals nothing.
 * `baseUrl` is where the gateway sends a key's calls when the key sets none (null: the key must set one).
 */
export const PROVIDERS = {
  'volcengine-ark': { label: 'Volcengine Ark', prefix: '', baseUrl: 'https://ark.cn-beijing.volces.com/api/v3', credential: 'bearer' },
  openai: { label: 'OpenAI', prefix: 'sk-', baseUrl: 'https://api.openai.com/v1', credential: 'bearer' },
  anthropic: { label: 'Anthropic', prefix: 'sk-ant-', baseUrl: 'https://api.anthropic.com', credential: 'x-api-key' },
  deepseek: { label: 'DeepSeek', prefix: 'sk-', baseUrl: 'https://api.deepseek.com', credential: 'bearer' },
  'azure-openai': { label: 'Azure OpenAI', prefix: '', baseUrl: null, credential: 'api-key' },
  google: { label: 'Google', prefix: 'AIza', baseUrl: 'https://generativelanguage.googleapis.com', credential: 'x-goog-api-key' },
  custom: { label: 'Custom', prefix: '', baseUrl: null, credential: 'bearer' },
} as const satisfies Record<string, { label: string; prefix: string; baseUrl: string | null; credential: CredentialHeader }>;

export type Provider = keyof typeof PROVIDERS;
export const PROVIDER_NAMES = Object.keys(PROVIDERS) as [Provider, ...Provider[]];

const MASK = '••••••••';
const TAIL = 4;

/**
 * A hint that identifies a key without weakening it: the provider's shared prefix (when the key has it) and
 * the last 4 characters, never more than a quarter of the characters in all; short secrets get only a mask.
 */
export function hintFor(provider: Provider, secret: string): string {
  const chars = Array.from(secret);
  const budget = Math.floor(chars.length / 4);
  const prefix = PROVIDERS[provider].prefix;
  const tail = chars.slice(-TAIL).join('');
  if (prefix && secret.startsWith(prefix) && budget >= Array.from(prefix).length + TAIL) return `${prefix}…${tail}`;
  if (budget >= TAIL) return `…${tail}`;
  return MASK;
}

export const MAX_SECRET_BYTES = 16 * 1024;

/** Providers with no free authenticated call: their keys are checked only by an admin's probe (one completion token). */
export const PROBE_PROVIDERS = ['volcengine-ark', 'custom'] as const;

/** The key's own baseUrl, else its provider's default; null when neither is set (azure-openai, custom). */
export function upstreamOf(provider: string, baseUrl: string | null): string | null {
  if (baseUrl) return baseUrl;
  return (PROVIDERS as Record<string, { baseUrl: string | null }>)[provider]?.baseUrl ?? null;
}

export function credentialHeaderOf(provider: string): CredentialHeader {
  return (PROVIDERS as Record<string, { credential: CredentialHeader }>)[provider]?.credential ?? 'bearer';
}

/** `https://`, or `http://` to a loopback address literal (local models, tests): the key never crosses a network in clear. */
export function baseUrlProblem(raw: string): string | undefined {
  let u: URL;
  try {
    u = new URL(raw);
  } catch {
    return 'must be an absolute http(s) URL';
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return 'must start with https:// (or http:// to a loopback address)';
  if (u.username || u.password) return 'must not carry credentials';
  if (u.search || u.hash || raw.includes('?') || raw.includes('#')) return 'must not have a query or fragment';
  if (u.protocol === 'http:' && !isLoopback(u.hostname)) return 'http:// is allowed only to a loopback address (127.0.0.0/8 or [::1]); use https://';
  return undefined;
}

/** The form stored: as parsed (lower-case scheme and host, dot segments resolved), without a trailing slash. */
export function normalizeBaseUrl(raw: string): string {
  const u = new URL(raw);
  return `${u.origin}${u.pathname.replace(/\/+$/, '')}`;
}

function isLoopback(hostname: string): boolean {
  if (hostname === '[::1]') return true;
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}
