import type { HealthStatus } from '../provider-keys/provider-key.entity';
import { credentialHeaderOf, upstreamOf } from '../provider-keys/providers';

/** The key goes to its provider's own API (a `baseUrl` of null, or the default spelled out). */
function atDefaultUpstream(key: { provider: string; baseUrl: string | null }): boolean {
  const fallback = upstreamOf(key.provider, null);
  return fallback !== null && (key.baseUrl === null || key.baseUrl === fallback);
}

/** Azure OpenAI's GA data-plane version that lists models (GET /openai/models). */
export const AZURE_API_VERSION = '2024-10-21';
export const ANTHROPIC_VERSION = '2023-06-01';

/** One authenticated call that tells whether a key works, made by the vault itself (never a client's request). */
export interface CheckPlan {
  kind: 'models' | 'probe';
  method: 'GET' | 'POST';
  url: string;
  /** The credential's headers (the provider's way) and any the provider requires; the control call sends only `extra`. */
  credential: (secret: string) => Record<string, string>;
  extra: Record<string, string>;
  body?: string;
}

export type CheckKey = { provider: string; baseUrl: string | null; healthProbeModel: string | null };

/**
 * How a key is checked, or why it cannot be: a call that spends nothing where the provider has one (listing models),
 * else the probe an admin configured (one completion token), else none.
 */
export function checkPlanFor(key: CheckKey): CheckPlan | { none: string } {
  const base = upstreamOf(key.provider, key.baseUrl);
  if (!base) return { none: 'This key has no baseUrl, so there is nowhere to check it' };
  const header = credentialHeaderOf(key.provider);
  const credential = (secret: string): Record<string, string> => (header === 'bearer' ? { authorization: `Bearer ${secret}` } : { [header]: secret });
  const get = (path: string, extra: Record<string, string> = {}): CheckPlan => ({ kind: 'models', method: 'GET', url: `${base}${path}`, credential, extra });
  switch (key.provider) {
    case 'openai':
    case 'deepseek':
      return get('/models');
    case 'anthropic':
      return get('/v1/models?limit=1', { 'anthropic-version': ANTHROPIC_VERSION });
    case 'google':
      return get('/v1beta/models?pageSize=1');
    case 'azure-openai':
      return get(`/openai/models?api-version=${AZURE_API_VERSION}`);
    default:
      if (!key.healthProbeModel) return { none: 'This provider has no free check: an admin can set a probe (healthProbe.model), or rely on gateway traffic' };
      return {
        kind: 'probe',
        method: 'POST',
        url: `${base}/chat/completions`,
        credential,
        extra: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: key.healthProbeModel, max_tokens: 1, messages: [{ role: 'user', content: 'ping' }] }),
      };
  }
}

export interface Classified {
  status: HealthStatus;
  detail: string;
  /** The answer shows the upstream looks at keys: it refused this one, or the call without one. */
  keyRequired?: boolean;
}

/** Error codes and types that mean the account cannot pay, whatever the HTTP status they come with. */
const NO_CREDIT_CODES = new Set(['insufficient_quota', 'billing_hard_limit_reached', 'billing_error', 'insufficient_balance', 'accountoverdueerror', 'quotaexceeded']);
const NO_CREDIT_TEXT = /credit balance is too low|insufficient balance|insufficient_quota|exceeded your current quota, please check your plan and billing/i;
/** OpenAI: a restricted key lacking a permission is authenticated, and answers 401 naming the missing scopes. */
const MISSING_SCOPES = /missing scopes?:|insufficient permissions for this operation/i;
const GOOGLE_BAD_KEY = /API_KEY_INVALID|API key not valid|API key expired/i;

/** The error object of a provider's JSON answer: OpenAI/DeepSeek/Ark `{error: {…}}`, Anthropic `{type, error: {type}}`, Google `{error: {status, details}}`. */
function errorOf(body: string): { codes: string[]; message: string | undefined } {
  let value: unknown;
  try {
    value = JSON.parse(body);
  } catch {
    return { codes: [], message: undefined };
  }
  const o = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
  const e = (typeof o.error === 'object' && o.error !== null ? o.error : o) as Record<string, unknown>;
  const codes = [e.code, e.type, e.status, (e as { Code?: unknown }).Code].filter((c): c is string => typeof c === 'string').map((c) => c.toLowerCase());
  const message = [e.message, (e as { Message?: unknown }).Message, o.message].find((m): m is string => typeof m === 'string');
  return { codes, message };
}

/** One line for people: the status and the provider's own message, without control characters, at most 300 characters. */
export function describe(httpStatus: number, body: string): string {
  const { message } = errorOf(body);
  const text = (message ?? body).replace(/\p{Cc}+/gu, ' ').replace(/\s+/g, ' ').trim();
  const line = text ? `HTTP ${httpStatus}: ${text}` : `HTTP ${httpStatus}`;
  return line.length > 300 ? `${line.slice(0, 299)}…` : line;
}

/**
 * What an answer to a keyed call says about the key (the body already scrubbed of it). `undefined` for a success:
 * a success alone proves nothing until the same call without the key has been refused.
 */
export function classifyAnswer(provider: string, httpStatus: number, body: string): Classified | undefined {
  if (httpStatus >= 200 && httpStatus < 300) return undefined;
  const detail = describe(httpStatus, body);
  const { codes } = errorOf(body);
  if (codes.some((c) => NO_CREDIT_CODES.has(c)) || NO_CREDIT_TEXT.test(body)) return { status: 'no_credit', detail, keyRequired: true };
  if (httpStatus === 401 && provider === 'openai' && MISSING_SCOPES.test(body)) return { status: 'valid', detail: `authenticated, but the key lacks a permission: ${detail}`, keyRequired: true };
  if (httpStatus === 401 || httpStatus === 403) return { status: 'invalid', detail, keyRequired: true };
  if (httpStatus === 400 && provider === 'google' && GOOGLE_BAD_KEY.test(body)) return { status: 'invalid', detail, keyRequired: true };
  if (httpStatus === 402) return { status: 'no_credit', detail, keyRequired: true };
  if (httpStatus === 429) return { status: 'rate_limited', detail };
  if (httpStatus >= 500) return { status: 'upstream_error', detail };
  return { status: 'unknown', detail: `unexpected answer: ${detail}` };
}

/** Whether the same call without any key was refused as unauthenticated, as it must be for a success to mean anything. */
export function refusedWithoutKey(provider: string, httpStatus: number, body: string): boolean {
  if (httpStatus === 401 || httpStatus === 403) return true;
  return httpStatus === 400 && provider === 'google' && /API key|API_KEY|unregistered callers/i.test(body);
}

/**
 * A gateway answer as a health signal, or undefined when it says nothing about the key (a 404, a bad request, a
 * client that hung up). A success counts only where a success needs the key: the provider's own default upstream,
 * or an upstream already seen to refuse calls for want of the key. Any other `baseUrl` (a local model server, a
 * proxy that adds its own key) may answer without one.
 */
export function classifyPassive(key: { provider: string; baseUrl: string | null; healthKeyRequired: boolean }, httpStatus: number, bodyHead: string): Classified | undefined {
  const { provider } = key;
  if (httpStatus >= 200 && httpStatus < 300) return atDefaultUpstream(key) || key.healthKeyRequired ? { status: 'valid', detail: `gateway: the provider answered ${httpStatus}` } : undefined;
  if (httpStatus === 499) return undefined;
  // The gateway's own 502/504 carry no answer: the provider could not be reached or did not answer in time.
  if ((httpStatus === 502 || httpStatus === 504) && !bodyHead) return { status: 'upstream_error', detail: `gateway: the provider ${httpStatus === 504 ? 'did not answer in time' : 'could not be reached'}` };
  const c = classifyAnswer(provider, httpStatus, bodyHead);
  if (!c || c.status === 'unknown') return undefined;
  return { ...c, detail: `gateway: ${c.detail}` };
}
