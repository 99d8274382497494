import crypto from 'node:crypto';
import { hintFor, PROVIDER_NAMES, PROVIDERS, Provider } from '../../src/modules/provider-keys/providers';

const MASK_CHARS = /[•…]/g;
/** The characters of the secret a hint shows: everything but the mask and ellipsis. */
const shown = (hint: string) => Array.from(hint.replace(MASK_CHARS, ''));

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
function randomChars(n: number): string {
  const bytes = crypto.randomBytes(n);
  return Array.from(bytes, (b) => ALPHABET[b % ALPHABET.length]).join('');
}

/** A secret of exactly `length` characters, starting with the provider's prefix when it fits and `withPrefix` says so. */
function secretOf(provider: Provider, length: number, withPrefix: boolean): string {
  const prefix = PROVIDERS[provider].prefix;
  if (withPrefix && prefix && length >= prefix.length) return prefix + randomChars(length - prefix.length);
  return randomChars(length);
}

describe('the provider catalogue', () => {
  it('names exactly the providers the product supports', () => {
    expect([...PROVIDER_NAMES].sort()).toEqual(['anthropic', 'azure-openai', 'custom', 'deepseek', 'google', 'openai', 'volcengine-ark']);
  });

  it('gives each provider only a prefix every key of that provider shares', () => {
    expect(PROVIDERS.openai.prefix).toBe('sk-');
    expect(PROVIDERS.anthropic.prefix).toBe('sk-ant-');
    expect(PROVIDERS.deepseek.prefix).toBe('sk-');
    expect(PROVIDERS.google.prefix).toBe('AIza');
    expect(PROVIDERS['volcengine-ark'].prefix).toBe('');
    expect(PROVIDERS['azure-openai'].prefix).toBe('');
    expect(PROVIDERS.custom.prefix).toBe('');
  });
});

describe('hintFor', () => {
  it('shows an Anthropic key as its shared prefix and last four characters', () => {
    const secret = `sk-ant-api03-${randomChars(80)}Xy9Q`;
    expect(hintFor('anthropic', secret)).toBe('sk-ant-…Xy9Q');
  });

  it('shows an OpenAI key as sk- and its last four characters', () => {
    const secret = `sk-proj-${randomChars(40)}abcd`;
    expect(hintFor('openai', secret)).toBe('sk-…abcd');
  });

  it('shows a Google key as AIza and its last four characters', () => {
    const secret = `AIza${randomChars(35)}WXYZ`;
    expect(hintFor('google', secret)).toBe('AIza…WXYZ');
  });

  it('shows only the last four characters for providers without a shared prefix', () => {
    const secret = `${randomChars(32)}1234`;
    for (const p of ['volcengine-ark', 'azure-openai', 'custom'] as const) expect(hintFor(p, secret)).toBe('…1234');
  });

  it('does not show a prefix the key does not start with (it would not be shared)', () => {
    const secret = `pk-${randomChars(40)}tail`;
    expect(hintFor('openai', secret)).toBe('…tail');
    expect(hintFor('anthropic', `sk-${randomChars(60)}zzzz`)).toBe('…zzzz');
  });

  it('drops the prefix when prefix plus tail would exceed a quarter of the key', () => {
    // 'sk-ant-' + 4 = 11 characters: a 40-character key may show 10, so only the tail.
    const secret = `sk-ant-${randomChars(29)}Q9x1`;
    expect(Array.from(secret)).toHaveLength(40);
    expect(hintFor('anthropic', secret)).toBe('…Q9x1');
    const longer = `sk-ant-${randomChars(33)}Q9x1`;
    expect(hintFor('anthropic', longer)).toBe('sk-ant-…Q9x1');
  });

  it('shows nothing but a mask for short secrets', () => {
    for (const length of [1, 2, 3, 5, 8, 12, 15]) {
      const hint = hintFor('custom', randomChars(length));
      expect(shown(hint)).toEqual([]);
      expect(hint).toMatch(/^•+$/);
    }
    expect(shown(hintFor('openai', 'sk-abcdefghijkl'))).toEqual([]);
  });

  it('shows the last four characters from sixteen characters on (exactly a quarter)', () => {
    expect(hintFor('custom', 'abcdefghijklmnop')).toBe('…mnop');
    expect(hintFor('custom', 'abcdefghijklmno')).toMatch(/^•+$/);
  });

  it('counts characters, not bytes, so multi-byte secrets are held to the same quarter', () => {
    const secret = '🔑'.repeat(15) + 'abcd';
    const hint = hintFor('custom', secret);
    expect(hint).toBe('…abcd');
    expect(shown(hintFor('custom', '🔑'.repeat(15)))).toEqual([]);
  });

  it('never shows more than a quarter of the characters, nor more than prefix plus last four, for any length (property)', () => {
    let checked = 0;
    for (let i = 0; i < 3000; i++) {
      const provider = PROVIDER_NAMES[i % PROVIDER_NAMES.length];
      const length = 1 + crypto.randomInt(300);
      const secret = secretOf(provider, length, i % 3 !== 0);
      const hint = hintFor(provider, secret);
      const chars = Array.from(secret);
      const visible = shown(hint);
      const prefix = PROVIDERS[provider].prefix;
      const context = `${provider} length ${length}: ${hint}`;

      expect({ context, ok: visible.length <= Math.floor(chars.length / 4) }).toEqual({ context, ok: true });
      expect({ context, ok: visible.length <= Array.from(prefix).length + 4 }).toEqual({ context, ok: true });
      if (visible.length > 0) {
        // What is shown is the shared prefix (when present) and the key's own last four characters, nothing else.
        const tail = chars.slice(-4).join('');
        expect([`…${tail}`, `${prefix}…${tail}`]).toContain(hint);
        if (hint.startsWith(prefix) && prefix && hint !== `…${tail}`) expect(secret.startsWith(prefix)).toBe(true);
      } else {
        expect(chars.length).toBeLessThan(16);
      }
      expect(hint.length).toBeLessThanOrEqual(64); // fits the hint column
      checked++;
    }
    expect(checked).toBe(3000);
  });
});
