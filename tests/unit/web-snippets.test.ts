/**
 * The gateway snippets the key page shows: this vault's own address, the path each provider's SDK calls under
 * /gateway (docs/gateway.md §3), and a placeholder where the virtual key goes.
 */
import { PROVIDER_NAMES } from '../../src/modules/provider-keys/providers';
import { gatewaySnippets, VIRTUAL_KEY_PLACEHOLDER } from '../../src/web/snippets';

const ORIGIN = 'https://vault.example.com';

describe('gatewaySnippets', () => {
  it('points OpenAI-style providers’ OpenAI SDK at <origin>/gateway, and curl at /gateway/chat/completions', () => {
    for (const p of ['openai', 'deepseek', 'volcengine-ark', 'custom'] as const) {
      const s = gatewaySnippets(ORIGIN, p);
      expect(s.sdk).toBe('openai');
      expect(s.code).toContain(`new OpenAI({\n  baseURL: 'https://vault.example.com/gateway',\n  apiKey: 'pkv_vk_…',\n})`);
      expect(s.curl).toMatch(/^curl 'https:\/\/vault\.example\.com\/gateway\/chat\/completions' \\\n {2}-H 'Authorization: Bearer pkv_vk_…'/);
      expect(s.path).toBe('/chat/completions');
    }
  });

  it('uses each other provider’s own SDK and credential header', () => {
    const anthropic = gatewaySnippets(ORIGIN, 'anthropic');
    expect(anthropic.code).toContain(`new Anthropic({\n  baseURL: 'https://vault.example.com/gateway',`);
    expect(anthropic.curl).toContain(`'https://vault.example.com/gateway/v1/messages'`);
    expect(anthropic.curl).toContain(`-H 'x-api-key: pkv_vk_…'`);
    const azure = gatewaySnippets(ORIGIN, 'azure-openai');
    expect(azure.code).toContain(`new AzureOpenAI({\n  endpoint: 'https://vault.example.com/gateway',`);
    expect(azure.curl).toContain(`/gateway/openai/deployments/<deployment>/chat/completions?api-version=`);
    expect(azure.curl).toContain(`-H 'api-key: pkv_vk_…'`);
    const google = gatewaySnippets(ORIGIN, 'google');
    expect(google.code).toContain(`httpOptions: { baseUrl: 'https://vault.example.com/gateway' }`);
    expect(google.curl).toContain(`-H 'x-goog-api-key: pkv_vk_…'`);
  });

  it('never holds anything but the placeholder for the key, and its curl body is valid JSON', () => {
    for (const p of PROVIDER_NAMES) {
      const s = gatewaySnippets(`${ORIGIN}/`, p);
      expect(`${s.code}\n${s.curl}`.match(/pkv_vk_\S*/g)?.every((m) => m.startsWith(VIRTUAL_KEY_PLACEHOLDER))).toBe(true);
      expect(s.code).not.toContain('//gateway');
      const body = /-d '(.*)'$/s.exec(s.curl)?.[1];
      expect(() => JSON.parse(body ?? '')).not.toThrow();
    }
  });
});
