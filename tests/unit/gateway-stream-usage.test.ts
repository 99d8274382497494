import { askForStreamUsage, topLevelValues, UsageChunkFilter } from '../../src/modules/gateway/stream-usage';
import { charge, CallFacts, maxOutputOf, UsageMeter } from '../../src/modules/gateway/usage';
import { modelEndpointOf } from '../../src/modules/gateway/endpoints';

const ask = (text: string) => askForStreamUsage(Buffer.from(text), JSON.parse(text))?.toString();

describe('askForStreamUsage', () => {
  it('adds stream_options.include_usage to a streamed body that has none, changing nothing else', () => {
    expect(ask(' {"model":"m","stream":true,"seed":12345678901234567890}')).toBe(' {"stream_options":{"include_usage":true},"model":"m","stream":true,"seed":12345678901234567890}');
  });

  it('sets include_usage in the client’s own stream_options (every occurrence), keeping its other options', () => {
    expect(ask('{"stream":true,"stream_options":{"include_obfuscation":false}}')).toBe('{"stream":true,"stream_options":{"include_obfuscation":false,"include_usage":true}}');
    expect(ask('{"stream":true,"stream_options": null }')).toBe('{"stream":true,"stream_options": {"include_usage":true} }');
    expect(ask('{"stream_options":{"include_usage":false},"stream":true,"stream_options":{"include_usage":false}}')).toBe(
      '{"stream_options":{"include_usage":true},"stream":true,"stream_options":{"include_usage":true}}',
    );
  });

  it('leaves alone a body that is not streamed, already asks, has a stream_options the provider would refuse, or is not UTF-8', () => {
    for (const text of ['{"model":"m"}', '{"stream":"true"}', '{"stream":true,"stream_options":{"include_usage":true}}', '{"stream":true,"stream_options":"yes"}']) expect(ask(text)).toBeUndefined();
    const notUtf8 = Buffer.concat([Buffer.from('{"stream":true,"m":"'), Buffer.from([0xff]), Buffer.from('"}')]);
    expect(askForStreamUsage(notUtf8, JSON.parse(notUtf8.toString()))).toBeUndefined();
  });

  it('finds top-level keys only, escaped or not, past strings and nested objects that look like them', () => {
    const text = '{"a":{"stream_options":1},"s":"\\"stream_options\\":2","stream\\u005foptions" : [1, {"x":"}"}] ,"z":3}';
    expect(topLevelValues(text, 'stream_options').map(([f, t]) => text.slice(f, t))).toEqual(['[1, {"x":"}"}]']);
  });
});

describe('UsageChunkFilter', () => {
  const events = [
    'data: {"id":"c","choices":[{"index":0,"delta":{"content":"He"}}],"usage":null}\n\n',
    ': a comment\n\n',
    'data: {"id":"c","choices":[{"index":0,"delta":{"content":"llo []"},"finish_reason":"stop"}],"usage":null}\n\n',
    'data: {"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2}}\n\n',
    'data: [DONE]\n\n',
  ];
  const stream = events.join('');
  const expected = events.filter((_, i) => i !== 3).join('');

  const run = (parts: Buffer[]) => {
    const f = new UsageChunkFilter();
    return Buffer.concat([...parts.map((p) => f.push(p)), f.end()]).toString();
  };

  it('takes out exactly the usage chunk, wherever the stream is cut into chunks', () => {
    const bytes = Buffer.from(stream);
    for (let a = 0; a <= bytes.length; a++) {
      for (let b = a; b <= bytes.length; b += 7) expect(run([bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)])).toBe(expected);
    }
    expect(run([...bytes].map((c) => Buffer.from([c])))).toBe(expected);
  });

  it('reads CRLF events, and a usage chunk left unfinished at the end', () => {
    expect(run([Buffer.from(stream.replaceAll('\n', '\r\n'))])).toBe(expected.replaceAll('\n', '\r\n'));
    expect(run([Buffer.from(events[0] + events[3].trimEnd())])).toBe(events[0]);
  });

  it('passes a chunk of whole events without an empty array as the same buffer, at once, and a long unfinished event without holding it', () => {
    const f = new UsageChunkFilter();
    const chunk = Buffer.from(events[0] + events[2].replace(' []', ''));
    expect(f.push(chunk)).toBe(chunk);
    const long = Buffer.from(`data: {"choices":[{"delta":{"content":"${'x'.repeat(20_000)}`);
    expect(f.push(long)).toBe(long);
    expect(f.push(Buffer.from('"}}],"usage":null}\n\ndata: [DON')).toString()).toBe('"}}],"usage":null}\n\n');
    expect(f.end().toString()).toBe('data: [DON');
  });
});

describe('charge: the tokens a call counts', () => {
  const facts = (over: Partial<CallFacts>): CallFacts => ({ method: 'POST', endpoint: { kind: 'call' }, finished: true, status: 200, reported: {}, requestBytes: 400, responseBytes: 800, maxOutput: undefined, ...over });

  it('counts what a finished answer reported, and nothing more for errors, GETs and free endpoints', () => {
    expect(charge(facts({ reported: { prompt: 5, completion: 7 } }))).toEqual({ promptTokens: 5, completionTokens: 7, tokensEstimated: false });
    expect(charge(facts({ reported: { prompt: 5 } }))).toEqual({ promptTokens: 5, completionTokens: null, tokensEstimated: false });
    expect(charge(facts({ status: 400 }))).toEqual({ promptTokens: null, completionTokens: null, tokensEstimated: false });
    expect(charge(facts({ method: 'GET', finished: false }))).toEqual({ promptTokens: null, completionTokens: null, tokensEstimated: false });
    expect(charge(facts({ endpoint: { kind: 'call', free: true }, finished: false }))).toEqual({ promptTokens: null, completionTokens: null, tokensEstimated: false });
  });

  it('estimates a call without usage, or cut off: request bytes / 4, and max output or response bytes / 4', () => {
    expect(charge(facts({}))).toEqual({ promptTokens: 100, completionTokens: 200, tokensEstimated: true });
    expect(charge(facts({ maxOutput: 1000 }))).toEqual({ promptTokens: 100, completionTokens: 1000, tokensEstimated: true });
    expect(charge(facts({ endpoint: undefined, status: 201 }))).toEqual({ promptTokens: 100, completionTokens: 200, tokensEstimated: true });
    expect(charge(facts({ endpoint: { kind: 'call', noOutput: true } }))).toEqual({ promptTokens: 100, completionTokens: 0, tokensEstimated: true });
    // Cut off after Anthropic's message_start: its prompt count stands, its output is at least the estimate.
    expect(charge(facts({ finished: false, status: 502, reported: { prompt: 30, completion: 1 }, maxOutput: 64 }))).toEqual({ promptTokens: 30, completionTokens: 64, tokensEstimated: true });
    expect(charge(facts({ finished: false, status: 499, reported: { prompt: 30, completion: 900 }, maxOutput: 64 }))).toEqual({ promptTokens: 30, completionTokens: 900, tokensEstimated: true });
  });

  it('reads the output limit of OpenAI, the Responses API and Google, times the choices asked for', () => {
    expect(maxOutputOf({ max_tokens: 10 })).toBe(10);
    expect(maxOutputOf({ max_tokens: 10, max_completion_tokens: 30, n: 2 })).toBe(60);
    expect(maxOutputOf({ max_output_tokens: 7 })).toBe(7);
    expect(maxOutputOf({ generationConfig: { maxOutputTokens: 8, candidateCount: 3 } })).toBe(24);
    expect(maxOutputOf({ max_tokens: -1, n: 4 })).toBeUndefined();
    expect(maxOutputOf({ max_tokens: '10' })).toBeUndefined();
  });
});

describe('UsageMeter on a stream that asked for usage', () => {
  it('reads the usage chunk and not the `"usage":null` of the others', () => {
    const m = new UsageMeter('text/event-stream');
    m.observe(Buffer.from('data: {"choices":[{"delta":{}}],"usage":null}\n\ndata: {"choices":[],"usage": {"prompt_tokens":3,"completion_tokens":2}}\n\ndata: [DONE]\n\n'));
    expect(m.finish()).toEqual({ prompt: 3, completion: 2 });
  });
});

describe('modelEndpointOf', () => {
  const at = (provider: string, method: string, path: string) => modelEndpointOf(provider, method, { path, query: '' });

  it('knows each provider’s model endpoints, by method and path as the provider decodes it', () => {
    for (const p of ['openai', 'deepseek', 'volcengine-ark', 'custom']) {
      expect(at(p, 'POST', '/chat/completions')).toEqual({ kind: 'call', streamUsage: true });
      expect(at(p, 'POST', '/v1/chat/completions')?.kind).toBe('call');
      expect(at(p, 'POST', '/chat/complet%69ons')?.kind).toBe('call');
      expect(at(p, 'GET', '/models')?.kind).toBe('list');
      for (const [m, path] of [['GET', '/chat/completions'], ['POST', '/files'], ['DELETE', '/models/x'], ['POST', '/batches'], ['POST', '/x/chat/completions'], ['GET', '/models/x']]) expect(at(p, m, path)).toBeUndefined();
    }
    expect(at('deepseek', 'POST', '/beta/completions')?.streamUsage).toBe(true);
    expect(at('openai', 'POST', '/beta/completions')).toBeUndefined();
    expect(at('anthropic', 'POST', '/v1/messages')?.kind).toBe('call');
    expect(at('anthropic', 'POST', '/v1/messages/count_tokens')?.free).toBe(true);
    expect(at('anthropic', 'POST', '/v1/messages/batches')).toBeUndefined();
    expect(at('google', 'POST', '/v1beta/models/gemini-x:streamGenerateContent')?.kind).toBe('call');
    expect(at('google', 'POST', '/v1beta/models/gemini-x:embedContent')?.noOutput).toBe(true);
    expect(at('google', 'POST', '/v1beta/tunedModels/x:generateContent')).toBeUndefined();
    expect(at('azure-openai', 'POST', '/openai/deployments/d1/chat/completions')?.streamUsage).toBeUndefined();
    expect(at('azure-openai', 'POST', '/openai/files')).toBeUndefined();
    expect(at('nope', 'POST', '/chat/completions')).toBeUndefined();
  });
});
