/** The provider catalogue. `prefix` is what every key of that provider starts with, so showing it reveals nothing. */
export const PROVIDERS = {
  'volcengine-ark': { label: 'Volcengine Ark', prefix: '' },
  openai: { label: 'OpenAI', prefix: 'sk-' },
  anthropic: { label: 'Anthropic', prefix: 'sk-ant-' },
  deepseek: { label: 'DeepSeek', prefix: 'sk-' },
  'azure-openai': { label: 'Azure OpenAI', prefix: '' },
  google: { label: 'Google', prefix: 'AIza' },
  custom: { label: 'Custom', prefix: '' },
} as const;

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
