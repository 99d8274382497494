import crypto from 'node:crypto';
import { checkPlanFor, classifyAnswer, classifyPassive, describe as describeAnswer, refusedWithoutKey } from '../../src/modules/health/health-checks';
import { retryDelay } from '../../src/modules/webhooks/webhook-dispatcher';
import { webhookSignature } from '../../src/crypto/webhook-signature';

const body = (v: unknown) => JSON.stringify(v);

describe('checkPlanFor: the call that checks a key, per provider', () => {
  const plan = (provider: string, baseUrl: string | null = null, healthProbeModel: string | null = null) => checkPlanFor({ provider, baseUrl, healthProbeModel });

  it.each([
    ['openai', null, 'https://api.openai.com/v1/models', { authorization: 'Bearer K' }, {}],
    ['deepseek', null, 'https://api.deepseek.com/models', { authorization: 'Bearer K' }, {}],
    ['anthropic', null, 'https://api.anthropic.com/v1/models?limit=1', { 'x-api-key': 'K' }, { 'anthropic-version': '2023-06-01' }],
    ['google', null, 'https://generativelanguage.googleapis.com/v1beta/models?pageSize=1', { 'x-goog-api-key': 'K' }, {}],
    ['azure-openai', 'https://acme.openai.azure.com', 'https://acme.openai.azure.com/openai/models?api-version=2024-10-21', { 'api-key': 'K' }, {}],
  ])('%s lists models with GET and its own credential header', (provider, baseUrl, url, credential, extra) => {
    const p = plan(provider, baseUrl);
    if ('none' in p) throw new Error(p.none);
    expect({ kind: p.kind, method: p.method, url: p.url, credential: p.credential('K'), extra: p.extra, body: p.body }).toEqual({ kind: 'models', method: 'GET', url, credential, extra, body: undefined });
  });

  it('gives Volcengine Ark and custom keys a check only with a probe: one completion token of the probe model', () => {
    expect(plan('volcengine-ark')).toEqual({ none: expect.stringMatching(/no free check/) });
    expect(plan('custom', 'http://127.0.0.1:9/v1')).toEqual({ none: expect.stringMatching(/probe/) });
    const p = plan('volcengine-ark', null, 'doubao-lite');
    if ('none' in p) throw new Error(p.none);
    expect(p).toMatchObject({ kind: 'probe', method: 'POST', url: 'https://ark.cn-beijing.volces.com/api/v3/chat/completions' });
    expect(JSON.parse(p.body!)).toEqual({ model: 'doubao-lite', max_tokens: 1, messages: [{ role: 'user', content: 'ping' }] });
    expect(p.credential('K')).toEqual({ authorization: 'Bearer K' });
  });

  it('has no check for a key without baseUrl where the provider has no default', () => {
    expect(plan('azure-openai')).toEqual({ none: expect.stringMatching(/no baseUrl/) });
    expect(plan('custom', null, 'm')).toEqual({ none: expect.stringMatching(/no baseUrl/) });
  });
});

describe('classifyAnswer: what an answer to the keyed call says', () => {
  it.each([
    ['a 401', 'openai', 401, { error: { message: 'Incorrect API key provided' } }, 'invalid'],
    ['a 403', 'anthropic', 403, { type: 'error', error: { type: 'permission_error', message: 'no' } }, 'invalid'],
    ['a 402', 'deepseek', 402, { error: { message: 'Insufficient Balance' } }, 'no_credit'],
    ['a 429 with insufficient_quota', 'openai', 429, { error: { code: 'insufficient_quota', type: 'insufficient_quota', message: 'quota' } }, 'no_credit'],
    ['a 429 without a quota code', 'openai', 429, { error: { code: 'rate_limit_exceeded', message: 'slow down' } }, 'rate_limited'],
    ['Anthropic’s 400 for a low credit balance', 'anthropic', 400, { type: 'error', error: { type: 'invalid_request_error', message: 'Your credit balance is too low to access the Anthropic API.' } }, 'no_credit'],
    ['Anthropic’s billing_error', 'anthropic', 402, { type: 'error', error: { type: 'billing_error', message: 'x' } }, 'no_credit'],
    ['Ark’s AccountOverdueError (a 403)', 'volcengine-ark', 403, { error: { code: 'AccountOverdueError', message: 'overdue' } }, 'no_credit'],
    ['Google’s 400 API_KEY_INVALID', 'google', 400, { error: { code: 400, message: 'API key not valid. Please pass a valid API key.', status: 'INVALID_ARGUMENT' } }, 'invalid'],
    ['a 500', 'openai', 500, { error: { message: 'boom' } }, 'upstream_error'],
    ['Anthropic’s 529 overloaded', 'anthropic', 529, { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } }, 'upstream_error'],
    ['a 404', 'openai', 404, { error: { message: 'not here' } }, 'unknown'],
    ['a 400 from a provider that is not Google', 'openai', 400, { error: { message: 'API key not valid' } }, 'unknown'],
    ['OpenAI’s 401 for a restricted key that lacks a scope (it authenticated)', 'openai', 401, { error: { message: 'You have insufficient permissions for this operation. Missing scopes: api.model.read.' } }, 'valid'],
  ])('%s is %s', (_what, provider, status, answer, expected) => {
    expect(classifyAnswer(provider, status, body(answer))?.status).toBe(expected);
  });

  it('returns nothing for a success: it must first be shown that the call needs the key', () => {
    expect(classifyAnswer('openai', 200, '{"data":[]}')).toBeUndefined();
    expect(classifyAnswer('openai', 204, '')).toBeUndefined();
  });

  it('describes an answer in one line of the provider’s message, without control characters, at most 300 characters', () => {
    expect(describeAnswer(401, body({ error: { message: 'bad\u0000key\r\n\tnow' } }))).toBe('HTTP 401: bad key now');
    expect(describeAnswer(500, 'plain text')).toBe('HTTP 500: plain text');
    expect(describeAnswer(502, '')).toBe('HTTP 502');
    const long = describeAnswer(400, body({ error: { message: 'x'.repeat(1000) } }));
    expect(long.length).toBe(300);
    expect(long.endsWith('…')).toBe(true);
  });
});

describe('refusedWithoutKey: the control call', () => {
  it('counts 401 and 403 (and Google’s 400 for a missing key) as a refusal, anything else as not', () => {
    expect(refusedWithoutKey('openai', 401, '')).toBe(true);
    expect(refusedWithoutKey('azure-openai', 403, '')).toBe(true);
    expect(refusedWithoutKey('google', 400, body({ error: { message: 'Method doesn’t allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.' } }))).toBe(true);
    expect(refusedWithoutKey('openai', 400, '')).toBe(false);
    expect(refusedWithoutKey('custom', 200, '')).toBe(false);
    expect(refusedWithoutKey('openai', 500, '')).toBe(false);
  });
});

describe('classifyPassive: a gateway answer as a health signal', () => {
  const at = (provider: string, baseUrl: string | null = null, healthKeyRequired = false) => ({ provider, baseUrl, healthKeyRequired });

  it('takes a success as valid from the provider’s own default upstream, elsewhere only once the upstream was seen to need the key', () => {
    expect(classifyPassive(at('openai'), 200, '')?.status).toBe('valid');
    expect(classifyPassive(at('openai', 'https://api.openai.com/v1'), 200, '')?.status).toBe('valid');
    expect(classifyPassive(at('anthropic'), 200, '')?.status).toBe('valid');
    expect(classifyPassive(at('openai', 'http://127.0.0.1:11434/v1'), 200, '')).toBeUndefined();
    expect(classifyPassive(at('azure-openai', 'https://acme.openai.azure.com'), 200, '')).toBeUndefined();
    expect(classifyPassive(at('custom', 'https://llm.example.com/v1'), 200, '')).toBeUndefined();
    expect(classifyPassive(at('custom', 'https://llm.example.com/v1', true), 200, '')?.status).toBe('valid');
    expect(classifyPassive(at('azure-openai', 'https://acme.openai.azure.com', true), 204, '')?.status).toBe('valid');
  });

  it('marks the refusals that show the upstream looks at keys', () => {
    expect(classifyPassive(at('custom', 'http://127.0.0.1:9'), 401, '')).toMatchObject({ status: 'invalid', keyRequired: true });
    expect(classifyPassive(at('openai'), 402, '')).toMatchObject({ status: 'no_credit', keyRequired: true });
    expect(classifyPassive(at('openai'), 429, '')?.keyRequired).toBeUndefined();
    expect(classifyPassive(at('openai'), 500, '')?.keyRequired).toBeUndefined();
  });

  it('reads refusals like a check, and says nothing about a 404, a 400 or a client that hung up', () => {
    expect(classifyPassive(at('openai'), 401, body({ error: { message: 'x' } }))?.status).toBe('invalid');
    expect(classifyPassive(at('custom', 'http://127.0.0.1:9'), 401, '')?.status).toBe('invalid');
    expect(classifyPassive(at('openai'), 429, body({ error: { code: 'insufficient_quota' } }))?.status).toBe('no_credit');
    expect(classifyPassive(at('openai'), 429, '')?.status).toBe('rate_limited');
    expect(classifyPassive(at('openai'), 404, '')).toBeUndefined();
    expect(classifyPassive(at('openai'), 400, '')).toBeUndefined();
    expect(classifyPassive(at('openai'), 499, '')).toBeUndefined();
    expect(classifyPassive(at('openai'), 413, '')).toBeUndefined();
  });

  it('takes the gateway’s own 502 and 504 (no answer at all) as upstream_error', () => {
    expect(classifyPassive(at('openai'), 502, '')).toEqual({ status: 'upstream_error', detail: 'gateway: the provider could not be reached' });
    expect(classifyPassive(at('openai'), 504, '')).toEqual({ status: 'upstream_error', detail: 'gateway: the provider did not answer in time' });
    expect(classifyPassive(at('openai'), 503, body({ error: { message: 'busy' } }))).toEqual({ status: 'upstream_error', detail: 'gateway: HTTP 503: busy' });
  });
});

describe('webhook signatures and retries', () => {
  it('signs "<t>.<body>" with HMAC-SHA256 under the secret, as a receiver recomputes it', () => {
    const secret = 'whsec_test_secret_0123456789';
    const payload = '{"id":"x","event":"provider_key.expiring","at":"2025-01-01T00:00:00.000Z","data":{}}';
    const header = webhookSignature(secret, payload, 1_735_689_600);
    const [t, v1] = header.split(',');
    expect(t).toBe('t=1735689600');
    expect(v1).toBe(`v1=${crypto.createHmac('sha256', secret).update(`1735689600.${payload}`).digest('hex')}`);
    expect(webhookSignature(secret, payload.replace('x', 'y'), 1_735_689_600)).not.toBe(header);
    expect(webhookSignature(secret, payload, 1_735_689_601)).not.toBe(header);
  });

  it('doubles the wait after each failed attempt, from the base up to 4 hours', () => {
    const waits = Array.from({ length: 12 }, (_, i) => retryDelay(30_000, i + 1) / 1000);
    expect(waits).toEqual([30, 60, 120, 240, 480, 960, 1920, 3840, 7680, 14400, 14400, 14400]);
    expect(retryDelay(30_000, 10_000)).toBe(4 * 3_600_000);
  });
});
