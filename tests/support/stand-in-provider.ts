import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import zlib from 'node:zlib';

/** One request as the stand-in received it. */
export interface SeenRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The gateway's side of the connection: the same port twice means a kept-alive, pooled connection. */
  remotePort: number | undefined;
  /** Resolves when the request's connection closed before the answer was complete (the gateway cancelled it). */
  cancelled: Promise<void>;
  wasCancelled: boolean;
}

export const OPENAI_USAGE = { prompt_tokens: 11, completion_tokens: 7, total_tokens: 18 };
export const OPENAI_STREAM_USAGE = { prompt_tokens: 13, completion_tokens: 3, total_tokens: 16 };
export const ANTHROPIC_USAGE = { input_tokens: 21, output_tokens: 9 };
export const ANTHROPIC_STREAM_USAGE = { input_tokens: 25, output_tokens: 4 };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** How the stand-in answers every request made with one key: a status and JSON body (after a pause), or never. */
export type ProgrammedAnswer = { status: number; body?: unknown; delayMs?: number; headers?: Record<string, string> } | 'hang';

/** Provider-style error bodies, for programmed answers. */
export const ERRORS = {
  insufficientQuota: { error: { message: 'You exceeded your current quota, please check your plan and billing details.', type: 'insufficient_quota', param: null, code: 'insufficient_quota' } },
  rateLimited: { error: { message: 'Rate limit reached for requests', type: 'requests', param: null, code: 'rate_limit_exceeded' } },
  serverError: { error: { message: 'The server had an error while processing your request.', type: 'server_error' } },
  googleBadKey: { error: { code: 400, message: 'API key not valid. Please pass a valid API key.', status: 'INVALID_ARGUMENT', details: [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID' }] } },
  anthropicCredit: { type: 'error', error: { type: 'invalid_request_error', message: 'Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing to upgrade or purchase credits.' } },
  arkOverdue: { error: { code: 'AccountOverdueError', message: 'The request failed because your account has an overdue balance.', type: 'Forbidden' } },
};

/**
 * A provider on 127.0.0.1 that checks the upstream credential the provider's way (Bearer for OpenAI-style paths,
 * x-api-key with anthropic-version for /v1/messages) and answers like it: JSON, and SSE streams that end with
 * usage. Extra paths misbehave on purpose (echo the key, stall, redirect, compress, stream 50 MB…).
 */
export class StandInProvider {
  url = '';
  port = 0;
  readonly validKeys = new Set<string>();
  readonly seen: SeenRequest[] = [];
  /** Pause between the chunks of a chat stream (to see them arrive one by one). */
  chunkPauseMs = 0;
  /** When each chunk of the last chat stream was written. */
  readonly chunkSentAt: number[] = [];
  /** The events of the last chat stream, exactly as written. */
  readonly streamWritten: string[] = [];
  /** Per key: how every request made with it is answered, whatever the path (health checks, gateway calls). */
  readonly answers = new Map<string, ProgrammedAnswer>();
  /** When set, model lists answer 200 to requests without any key (an endpoint that proves nothing about a key). */
  openModels = false;
  /** Requests being answered right now, and the most there ever were at once. */
  inFlight = 0;
  maxInFlight = 0;
  private server: http.Server | undefined;

  async start(): Promise<this> {
    this.server = http.createServer((req, res) => void this.handle(req, res).catch(() => res.destroy()));
    this.server.keepAliveTimeout = 5000;
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
    this.url = `http://127.0.0.1:${this.port}`;
    return this;
  }

  async close(): Promise<void> {
    if (!this.server) return;
    this.server.closeAllConnections();
    await new Promise((resolve) => this.server!.close(resolve));
  }

  last(): SeenRequest {
    const r = this.seen[this.seen.length - 1];
    if (!r) throw new Error('the stand-in saw no request');
    return r;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    let markCancelled!: () => void;
    const seen: SeenRequest = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: '', remotePort: req.socket.remotePort, cancelled: new Promise<void>((resolve) => (markCancelled = resolve)), wasCancelled: false };
    this.seen.push(seen);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    res.once('close', () => {
      this.inFlight--;
      if (res.writableFinished) return;
      seen.wasCancelled = true;
      markCancelled();
    });
    const parts: Buffer[] = [];
    let size = 0;
    for await (const c of req) {
      size += (c as Buffer).length;
      if (size <= 1 << 20) parts.push(c as Buffer);
    }
    seen.body = Buffer.concat(parts).toString('utf8');
    const url = new URL(req.url ?? '/', 'http://stand-in');
    const path = url.pathname;
    const json = (status: number, body: unknown, headers: Record<string, string> = {}) => {
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)), ...headers });
      res.end(text);
    };

    const key = this.presented(req.headers);
    const programmed = key === undefined ? undefined : this.answers.get(key);
    if (programmed === 'hang') return; // never answers: the caller must give up on its own
    if (programmed) {
      if (programmed.delayMs) await sleep(programmed.delayMs);
      if (res.destroyed) return;
      return json(programmed.status, programmed.body ?? {}, programmed.headers);
    }
    if (key === undefined && this.openModels && path.endsWith('/models')) return json(200, { object: 'list', data: [] });

    if (path.endsWith('/v1/messages') || path.endsWith('/v1/messages/count_tokens')) {
      const key = String(req.headers['x-api-key'] ?? '');
      if (!this.validKeys.has(key) || !req.headers['anthropic-version']) {
        return json(401, { type: 'error', error: { type: 'authentication_error', message: `invalid x-api-key: ${key}` } });
      }
      if (path.endsWith('/count_tokens')) return json(200, { input_tokens: 12 });
      return this.anthropicMessages(JSON.parse(seen.body || '{}'), res);
    }

    const presented = this.presented(req.headers);
    if (!presented || !this.validKeys.has(presented)) {
      // Like some providers, only worse: the whole key, and a run of it, in the message and a header.
      return json(401, { error: { message: `Incorrect API key provided: ${presented}. Part: ${presented?.slice(4, 16)}`, type: 'invalid_request_error', code: 'invalid_api_key' } }, { 'x-echo-key': String(presented) });
    }

    switch (true) {
      case path.endsWith('/chat/completions'):
        return this.chatCompletions(JSON.parse(seen.body || '{}'), res);
      case path.endsWith('/models'):
        return json(200, { object: 'list', data: [{ id: 'gpt-test', object: 'model', created: 0, owned_by: 'stand-in' }] });
      case /\/(completions|embeddings|responses)$/.test(path):
        return json(200, { object: 'stand-in', path, model: (JSON.parse(seen.body || '{}') as { model?: string }).model, usage: OPENAI_USAGE });
      case /:(generateContent|countTokens)$/.test(path):
        return json(200, { candidates: [], usageMetadata: { promptTokenCount: 5, candidatesTokenCount: 6 }, url: req.url });
      case /\/(files|batches|fine_tuning)(\/|$)/.test(path):
        return json(200, { object: 'list', data: [], method: req.method, path });
      case /[/:]echo$/.test(path):
        return json(200, { method: req.method, url: req.url, headers: req.headers, body: seen.body }, { 'x-request-id': 'upstream-req-123' });
      case path.endsWith('/leaky-401'):
        return json(401, { error: { message: `Incorrect API key provided: ${presented}. Part: ${presented.slice(4, 16)}` } }, { 'x-echo-key': presented, 'www-authenticate': `Bearer realm="${presented.slice(2, 14)}"` });
      case path.endsWith('/leaky-stream'):
        return this.leakyStream(presented, res);
      case path.endsWith('/gzip'): {
        const body = zlib.gzipSync(Buffer.from(JSON.stringify({ echoed: presented, usage: OPENAI_USAGE })));
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': String(body.length) });
        return void res.end(body);
      }
      case path.endsWith('/zstd'):
        res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'zstd' });
        return void res.end('(bytes the gateway cannot read)');
      case path.endsWith('/headers'):
        res.writeHead(200, {
          'content-type': 'application/json',
          'set-cookie': 'pkv_session=planted; Path=/; HttpOnly',
          'strict-transport-security': 'max-age=63072000; includeSubDomains',
          'access-control-allow-origin': '*',
          'alt-svc': 'h3=":443"',
          'cache-control': 'public, max-age=3600',
          'x-request-id': 'upstream-req-456',
          'x-ratelimit-remaining-requests': '99',
          connection: 'x-hop',
          'x-hop': 'must not pass',
          'clear-site-data': '"cookies"',
        });
        return void res.end('{"ok":true}');
      case path.endsWith('/redirect'):
        res.writeHead(302, { location: 'http://127.0.0.2:9/steal', 'content-type': 'application/json' });
        return void res.end('{"moved":true}');
      case path.endsWith('/slow'):
        await sleep(Number(url.searchParams.get('ms') ?? 2000));
        if (res.destroyed) return;
        return json(200, { slow: true });
      case path.endsWith('/hang'):
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"first":true}\n\n');
        return; // never ends: the gateway must cancel it when its client goes
      case path.endsWith('/break'):
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write('data: {"first":true}\n\n');
        await sleep(50);
        return void res.destroy();
      case path.endsWith('/big'):
        return this.big(Number(url.searchParams.get('mb') ?? 50), res);
      case path.endsWith('/upload'):
        return json(200, { received: size });
      default:
        return json(404, { error: { message: `no route ${path}` } });
    }
  }

  /** The key from whichever credential header carries one. */
  private presented(h: http.IncomingHttpHeaders): string | undefined {
    const bearer = /^Bearer (.+)$/.exec(String(h.authorization ?? ''))?.[1];
    return bearer ?? (h['x-api-key'] as string | undefined) ?? (h['api-key'] as string | undefined) ?? (h['x-goog-api-key'] as string | undefined);
  }

  /**
   * Like OpenAI: a streamed answer reports usage only when asked (`stream_options.include_usage`), in a last chunk
   * with `choices: []`, every other chunk then carrying `"usage":null`. Model `gpt-no-usage` never reports it (a
   * provider that ignores the option); `gpt-cut-off` breaks the stream off after its second chunk.
   */
  private async chatCompletions(body: { model?: string; stream?: boolean; stream_options?: { include_usage?: boolean } }, res: http.ServerResponse): Promise<void> {
    const model = body.model ?? 'gpt-test';
    if (!body.stream) {
      const text = JSON.stringify({
        id: 'chatcmpl-1',
        object: 'chat.completion',
        created: 1,
        model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'Hello from the stand-in' }, finish_reason: 'stop' }],
        usage: OPENAI_USAGE,
      });
      res.writeHead(200, { 'content-type': 'application/json', 'x-request-id': 'upstream-chat-1' });
      return void res.end(text);
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    this.chunkSentAt.length = 0;
    this.streamWritten.length = 0;
    const usage = body.stream_options?.include_usage === true && model !== 'gpt-no-usage';
    const chunk = (delta: object) => `data: ${JSON.stringify({ id: 'chatcmpl-2', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta, finish_reason: null }], ...(usage ? { usage: null } : {}) })}\n\n`;
    const events = [chunk({ role: 'assistant', content: 'Hel' }), chunk({ content: 'lo' }), chunk({ content: '!' })];
    if (usage) events.push(`data: ${JSON.stringify({ id: 'chatcmpl-2', object: 'chat.completion.chunk', created: 1, model, choices: [], usage: OPENAI_STREAM_USAGE })}\n\n`);
    events.push('data: [DONE]\n\n');
    for (const [i, e] of events.entries()) {
      if (res.destroyed) return;
      if (model === 'gpt-cut-off' && i === 2) {
        await sleep(30);
        return void res.destroy();
      }
      this.chunkSentAt.push(Date.now());
      this.streamWritten.push(e);
      res.write(e);
      if (this.chunkPauseMs) await sleep(this.chunkPauseMs);
    }
    res.end();
  }

  private async anthropicMessages(body: { model?: string; stream?: boolean }, res: http.ServerResponse): Promise<void> {
    const model = body.model ?? 'claude-test';
    if (!body.stream) {
      const text = JSON.stringify({ id: 'msg_1', type: 'message', role: 'assistant', model, content: [{ type: 'text', text: 'Hello from the stand-in' }], stop_reason: 'end_turn', stop_sequence: null, usage: ANTHROPIC_USAGE });
      res.writeHead(200, { 'content-type': 'application/json', 'request-id': 'req_anthropic_1' });
      return void res.end(text);
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const ev = (type: string, data: object) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    const events = [
      ev('message_start', { message: { id: 'msg_2', type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: ANTHROPIC_STREAM_USAGE.input_tokens, output_tokens: 1 } } }),
      ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
      ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'Hel' } }),
      ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'lo' } }),
      ev('content_block_stop', { index: 0 }),
      ev('message_delta', { delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: ANTHROPIC_STREAM_USAGE.output_tokens } }),
      ev('message_stop', {}),
    ];
    for (const e of events) res.write(e);
    res.end();
  }

  /** An SSE stream that carries the key cut across writes (and so, likely, across the gateway's chunks). */
  private async leakyStream(key: string, res: http.ServerResponse): Promise<void> {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const text = `data: {"note":"the key is ${key}, again ${key.slice(3, 14)}, and that's all"}\n\n`;
    // Small writes with pauses, so that each travels on its own and the key is cut at several places.
    let sent = 0;
    for (const size of [20, 7, 1, 1, 3, 9, 2, 13]) {
      res.write(text.slice(sent, sent + size));
      sent += size;
      await sleep(15);
    }
    res.write(text.slice(sent));
    res.end('data: [DONE]\n\n');
  }

  /** `mb` MiB of SSE events, written as fast as the reader takes them (backpressure respected). */
  private async big(mb: number, res: http.ServerResponse): Promise<void> {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const payload = 'x'.repeat(16 * 1024 - 40);
    const event = Buffer.from(`data: {"chunk":"${payload}"}\n\n`);
    let sent = 0;
    const total = mb * 1024 * 1024;
    while (sent < total) {
      if (res.destroyed) return;
      sent += event.length;
      if (!res.write(event)) await once(res, 'drain');
    }
    res.end(`data: ${JSON.stringify({ usage: { prompt_tokens: 1, completion_tokens: 2 } })}\n\ndata: [DONE]\n\n`);
  }
}
