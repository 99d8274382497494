import type { GatewayTarget } from './upstream';

/** A provider endpoint the gateway knows: a model call, or the list of models. */
export interface ModelEndpoint {
  /** `call`: names its model (in the body, or for Google and Azure in the path); `list`: lists models, names none. */
  kind: 'call' | 'list';
  /** The provider charges no tokens for it (counting tokens): a call whose usage is unknown is not estimated. */
  free?: boolean;
  /** Generates no output tokens (embeddings): an estimate charges the prompt only. */
  noOutput?: boolean;
  /**
   * An OpenAI-style completion (OpenAI, DeepSeek, Volcengine Ark, custom) whose stream reports usage only when asked
   * (`stream_options.include_usage`): the gateway asks. Not Azure's (older API versions refuse the field).
   */
  streamUsage?: boolean;
}

type Route = [method: string, path: RegExp, endpoint: ModelEndpoint];

const CHAT: ModelEndpoint = { kind: 'call', streamUsage: true };
const CALL: ModelEndpoint = { kind: 'call' };
const EMBED: ModelEndpoint = { kind: 'call', noOutput: true };
const LIST: ModelEndpoint = { kind: 'list' };

/** OpenAI's API and those that copy it (DeepSeek, Volcengine Ark, custom), under an optional version segment. */
const openAiStyle = (extra: Route[] = []): Route[] => [
  ['POST', /^(\/v\d+)?\/chat\/completions$/, CHAT],
  ['POST', /^(\/v\d+)?\/completions$/, CHAT],
  ['POST', /^(\/v\d+)?\/embeddings$/, EMBED],
  ['POST', /^(\/v\d+)?\/responses$/, CALL],
  ['GET', /^(\/v\d+)?\/models$/, LIST],
  ...extra,
];

/**
 * The model endpoints of each provider, as paths under the key's `baseUrl` (percent-decoded, as the provider reads
 * them). A virtual key with a `models` allowlist may call these and nothing else. The table is docs/gateway.md §4.
 */
const MODEL_ENDPOINTS: Record<string, Route[]> = {
  openai: openAiStyle(),
  // DeepSeek's beta endpoints: FIM completion and chat prefix completion.
  deepseek: openAiStyle([['POST', /^(\/v\d+)?\/beta\/(chat\/)?completions$/, CHAT]]),
  'volcengine-ark': openAiStyle([['POST', /^(\/v\d+)?\/embeddings\/multimodal$/, EMBED]]),
  custom: openAiStyle(),
  anthropic: [
    ['POST', /^\/v1\/messages$/, CALL],
    ['POST', /^\/v1\/messages\/count_tokens$/, { kind: 'call', free: true }],
    ['GET', /^\/v1\/models$/, LIST],
  ],
  google: [
    ['POST', /^\/v1(alpha|beta)?\/models\/[^/:]+:(generateContent|streamGenerateContent)$/, CALL],
    ['POST', /^\/v1(alpha|beta)?\/models\/[^/:]+:(embedContent|batchEmbedContents)$/, EMBED],
    ['POST', /^\/v1(alpha|beta)?\/models\/[^/:]+:countTokens$/, { kind: 'call', free: true }],
    ['GET', /^\/v1(alpha|beta)?\/models$/, LIST],
    // Google's OpenAI-compatible endpoints (the model in the body).
    ['POST', /^\/v1beta\/openai\/chat\/completions$/, CALL],
    ['POST', /^\/v1beta\/openai\/embeddings$/, EMBED],
    ['GET', /^\/v1beta\/openai\/models$/, LIST],
  ],
  'azure-openai': [
    ['POST', /^\/openai\/deployments\/[^/]+\/(chat\/completions|completions)$/, CALL],
    ['POST', /^\/openai\/deployments\/[^/]+\/embeddings$/, EMBED],
    ['POST', /^\/openai(\/v1)?\/(chat\/completions|responses)$/, CALL],
    ['POST', /^\/openai(\/v1)?\/embeddings$/, EMBED],
    ['GET', /^\/openai(\/v1)?\/models$/, LIST],
  ],
};

/** The model endpoint a call goes to, or undefined for any other method and path of the provider's API. */
export function modelEndpointOf(provider: string, method: string | undefined, target: GatewayTarget): ModelEndpoint | undefined {
  // Safe to decode whole: gatewayTarget refused encoded slashes and anything but printable ASCII.
  const path = decodeURIComponent(target.path);
  for (const [m, pattern, endpoint] of MODEL_ENDPOINTS[provider] ?? []) {
    if (m === method && pattern.test(path)) return endpoint;
  }
  return undefined;
}
