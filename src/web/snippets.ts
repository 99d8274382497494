/**
 * How to point an SDK and curl at the vault's gateway for a key of each provider (docs/gateway.md §3). Pure: no DOM, no
 * React; unit-tested in tests/unit/web-snippets.test.ts. The virtual key is always a placeholder, never a real one.
 */
import type { Provider } from './providers';

export const VIRTUAL_KEY_PLACEHOLDER = 'pkv_vk_…';

export interface GatewaySnippets {
  /** Which SDK the first snippet uses (shown as its label). */
  sdk: 'openai' | 'azure-openai' | 'anthropic' | 'google';
  code: string;
  curl: string;
  /** A call's path after `/gateway`: it goes to the key's base URL + this path. */
  path: string;
}

const AZURE_API_VERSION = '2024-10-21';
const MODEL: Record<Provider, string> = {
  'volcengine-ark': 'doubao-seed-1-6-250615',
  openai: 'gpt-4o-mini',
  anthropic: 'claude-sonnet-4-5',
  deepseek: 'deepseek-chat',
  'azure-openai': '<deployment>',
  google: 'gemini-2.5-flash',
  custom: '<model>',
};

/** A single-quoted shell word. */
const sh = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

function curl(url: string, headers: string[], body: unknown): string {
  return [`curl ${sh(url)}`, ...headers.map((h) => `-H ${sh(h)}`), `-d ${sh(JSON.stringify(body))}`].join(' \\\n  ');
}

/** The SDK and curl snippets for a key of `provider` on the vault at `origin` (e.g. `https://vault.example.com`). */
export function gatewaySnippets(origin: string, provider: Provider): GatewaySnippets {
  const gateway = `${origin.replace(/\/+$/, '')}/gateway`;
  const vk = VIRTUAL_KEY_PLACEHOLDER;
  const model = MODEL[provider];
  const hello = [{ role: 'user', content: 'Hello' }];
  switch (provider) {
    case 'anthropic':
      return {
        sdk: 'anthropic',
        path: '/v1/messages',
        code: [
          `import Anthropic from '@anthropic-ai/sdk';`,
          ``,
          `const client = new Anthropic({`,
          `  baseURL: '${gateway}',`,
          `  apiKey: '${vk}',`,
          `});`,
          `const reply = await client.messages.create({`,
          `  model: '${model}',`,
          `  max_tokens: 1024,`,
          `  messages: [{ role: 'user', content: 'Hello' }],`,
          `});`,
        ].join('\n'),
        curl: curl(`${gateway}/v1/messages`, [`x-api-key: ${vk}`, 'anthropic-version: 2023-06-01', 'content-type: application/json'], { model, max_tokens: 1024, messages: hello }),
      };
    case 'google':
      return {
        sdk: 'google',
        path: `/v1beta/models/${model}:generateContent`,
        code: [
          `import { GoogleGenAI } from '@google/genai';`,
          ``,
          `const ai = new GoogleGenAI({`,
          `  apiKey: '${vk}',`,
          `  httpOptions: { baseUrl: '${gateway}' },`,
          `});`,
          `const reply = await ai.models.generateContent({ model: '${model}', contents: 'Hello' });`,
        ].join('\n'),
        curl: curl(`${gateway}/v1beta/models/${model}:generateContent`, [`x-goog-api-key: ${vk}`, 'content-type: application/json'], { contents: [{ parts: [{ text: 'Hello' }] }] }),
      };
    case 'azure-openai':
      return {
        sdk: 'azure-openai',
        path: `/openai/deployments/${model}/chat/completions`,
        code: [
          `import { AzureOpenAI } from 'openai';`,
          ``,
          `const client = new AzureOpenAI({`,
          `  endpoint: '${gateway}',`,
          `  apiKey: '${vk}',`,
          `  apiVersion: '${AZURE_API_VERSION}',`,
          `  deployment: '${model}',`,
          `});`,
          `const reply = await client.chat.completions.create({`,
          `  model: '${model}',`,
          `  messages: [{ role: 'user', content: 'Hello' }],`,
          `});`,
        ].join('\n'),
        curl: curl(`${gateway}/openai/deployments/${model}/chat/completions?api-version=${AZURE_API_VERSION}`, [`api-key: ${vk}`, 'content-type: application/json'], { messages: hello }),
      };
    default:
      // OpenAI and the providers that speak its API (Ark, DeepSeek, custom): the SDK appends /chat/completions.
      return {
        sdk: 'openai',
        path: '/chat/completions',
        code: [
          `import OpenAI from 'openai';`,
          ``,
          `const client = new OpenAI({`,
          `  baseURL: '${gateway}',`,
          `  apiKey: '${vk}',`,
          `});`,
          `const reply = await client.chat.completions.create({`,
          `  model: '${model}',`,
          `  messages: [{ role: 'user', content: 'Hello' }],`,
          `});`,
        ].join('\n'),
        curl: curl(`${gateway}/chat/completions`, [`Authorization: Bearer ${vk}`, 'content-type: application/json'], { model, messages: hello }),
      };
  }
}
