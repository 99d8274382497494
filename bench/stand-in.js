'use strict';
// A stand-in provider for the gateway points of the bench (shared/BENCH.md, baseline 3): plain node:http, no product
// code. `POST /v1/chat/completions` with `Authorization: Bearer <PKV_BENCH_STANDIN_KEY>` answers a small OpenAI-style
// chat completion with `usage`; with `"stream":true` in the body, a server-sent event stream of a few chunks, the
// last one carrying `usage`, then `data: [DONE]`. Anything else: 401 without the key, 404 elsewhere.
// `node bench/stand-in.js [PORT]`; prints `stand-in listening on http://127.0.0.1:PORT`.
const http = require('node:http');

const KEY = process.env.PKV_BENCH_STANDIN_KEY;
if (!KEY) {
  process.stderr.write('stand-in: set PKV_BENCH_STANDIN_KEY\n');
  process.exit(2);
}
const EXPECTED = `Bearer ${KEY}`;
const MODEL = 'gpt-4o-mini-2024-07-18';
const USAGE = { prompt_tokens: 9, completion_tokens: 12, total_tokens: 21 };

let n = 0;
const nextId = () => `chatcmpl-bench${(n++).toString(36)}`;

function completion() {
  return JSON.stringify({
    id: nextId(),
    object: 'chat.completion',
    created: Math.floor(Date.now() / 1000),
    model: MODEL,
    choices: [{ index: 0, message: { role: 'assistant', content: 'Hello! How can I help you today?', refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: USAGE,
    system_fingerprint: 'fp_bench',
  });
}

/** The events of one streamed answer, as OpenAI sends them with stream_options.include_usage. */
function events() {
  const id = nextId();
  const created = Math.floor(Date.now() / 1000);
  const chunk = (delta, finish, usage) => `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: MODEL, system_fingerprint: 'fp_bench', choices: delta ? [{ index: 0, delta, logprobs: null, finish_reason: finish }] : [], usage })}\n\n`;
  return [
    chunk({ role: 'assistant', content: '' }, null, null),
    chunk({ content: 'Hello!' }, null, null),
    chunk({ content: ' How can I' }, null, null),
    chunk({ content: ' help you today?' }, null, null),
    chunk({}, 'stop', null),
    chunk(null, null, USAGE),
    'data: [DONE]\n\n',
  ];
}

const server = http.createServer((req, res) => {
  if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
    req.resume();
    return res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"not found"}}');
  }
  if (req.headers.authorization !== EXPECTED) {
    req.resume();
    return res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}');
  }
  const parts = [];
  req.on('data', (c) => parts.push(c));
  req.on('end', () => {
    const body = Buffer.concat(parts).toString('utf8');
    const requestId = `req_bench${n.toString(36)}`;
    if (!/"stream"\s*:\s*true/.test(body)) {
      const text = completion();
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-request-id': requestId, 'openai-processing-ms': '1' });
      return res.end(text);
    }
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'x-request-id': requestId, 'openai-processing-ms': '1' });
    // One event per turn of the event loop, so that they leave as separate writes, as a provider's do.
    const queue = events();
    const next = () => {
      if (res.destroyed) return;
      const e = queue.shift();
      if (queue.length === 0) return res.end(e);
      res.write(e);
      setImmediate(next);
    };
    next();
  });
});
server.keepAliveTimeout = 65000;
server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => process.stdout.write(`stand-in listening on http://127.0.0.1:${server.address().port}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
