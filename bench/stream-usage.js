'use strict';
// Micro-benchmark of what the gateway adds per call to meter streamed usage (docs/gateway.md §4, "Budgets"): asking
// a streamed OpenAI-style call for its usage (rewriting stream_options), taking the usage chunk out of the answer,
// and metering a stream whose every chunk carries `"usage":null`. Compared with the per-call work already there
// (JSON.parse of the request body, the key scrubber over the answer). Needs `npm run build` (reads dist/).
// `node bench/stream-usage.js [chunks]`
const path = require('node:path');
const dist = path.join(__dirname, '..', 'dist', 'src', 'modules', 'gateway');
const { askForStreamUsage, UsageChunkFilter } = require(path.join(dist, 'stream-usage.js'));
const { UsageMeter } = require(path.join(dist, 'usage.js'));
const { KeyScrubber } = require(path.join(dist, 'scrub.js'));
const { modelEndpointOf } = require(path.join(dist, 'endpoints.js'));
const { charge, maxOutputOf } = require(path.join(dist, 'usage.js'));

const CHUNKS = Number(process.argv[2] ?? 200);
const body = Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', stream: true, max_tokens: 512, messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'x'.repeat(2000) }] }));
const chunk = (content, usage) => `data: ${JSON.stringify({ id: 'chatcmpl-AbCdEf0123456789', object: 'chat.completion.chunk', created: 1733300000, model: 'gpt-4o-mini-2024-07-18', system_fingerprint: 'fp_0123456789', choices: [{ index: 0, delta: { content }, logprobs: null, finish_reason: null }], ...usage })}\n\n`;
const usageChunk = `data: ${JSON.stringify({ id: 'chatcmpl-AbCdEf0123456789', object: 'chat.completion.chunk', created: 1733300000, model: 'gpt-4o-mini-2024-07-18', choices: [], usage: { prompt_tokens: 512, completion_tokens: CHUNKS, total_tokens: 512 + CHUNKS } })}\n\n`;
// What the provider sends: before (client did not ask) and now (the gateway asked: `"usage":null` on each chunk, one more chunk).
const plain = Array.from({ length: CHUNKS }, (_, i) => Buffer.from(chunk(` tok${i}`, {})));
const asked = [...Array.from({ length: CHUNKS }, (_, i) => Buffer.from(chunk(` tok${i}`, { usage: null }))), Buffer.from(usageChunk)];
for (const s of [plain, asked]) s.push(Buffer.from('data: [DONE]\n\n'));
const scrubber = new KeyScrubber(`sk-proj-${'A1b2C3d4'.repeat(20)}`);

/** The best of 5 rounds (after a warm-up), in µs per call. */
function time(label, fn, iterations) {
  for (let i = 0; i < iterations; i++) fn(); // warm up
  let us = Infinity;
  for (let round = 0; round < 5; round++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < iterations; i++) fn();
    us = Math.min(us, Number(process.hrtime.bigint() - t0) / 1e3 / iterations);
  }
  process.stdout.write(`${label.padEnd(72)} ${us.toFixed(2).padStart(9)} µs/call\n`);
  return us;
}
const meter = (stream) => () => {
  const m = new UsageMeter('text/event-stream');
  for (const c of stream) m.observe(c);
  return m.finish();
};
// The meter as it was: every data line holding "sage" was parsed (so every chunk of a stream that asked for usage).
const oldMeter = (stream) => () => {
  let found;
  for (const c of stream) for (const line of c.toString().split('\n')) if (line.startsWith('data:') && line.includes('sage')) try { found = JSON.parse(line.slice(5)); } catch { /* not JSON */ }
  return found;
};

const n = 2000;
process.stdout.write(`${CHUNKS}-chunk chat stream (${asked.reduce((a, c) => a + c.length, 0)} bytes), ${body.length}-byte request body\n\nalready there per call:\n`);
const parse = time('JSON.parse of the request body', () => JSON.parse(body.toString()), 20 * n);
const scrub = time('key scrubber over the answer', () => { const s = scrubber.stream(); for (const c of asked) s.push(c); s.end(); }, n);
time('meter, stream as before (no usage asked: nothing to parse)', meter(plain), n);
process.stdout.write('\nadded per call:\n');
const every = time('every call: endpoint lookup, output limit, charge', () => {
  const endpoint = modelEndpointOf('openai', 'POST', { path: '/chat/completions', query: '' });
  return charge({ method: 'POST', endpoint, finished: true, status: 200, reported: {}, requestBytes: 2000, responseBytes: 5000, maxOutput: maxOutputOf({ max_tokens: 512 }) });
}, 20 * n);
const ask = time('askForStreamUsage (rewrite the body)', () => askForStreamUsage(body, JSON.parse(body.toString())), 20 * n) - parse;
const strip = time('UsageChunkFilter over the answer (take the usage chunk out)', () => { const f = new UsageChunkFilter(); for (const c of asked) f.push(c); f.end(); }, n);
const m = time('meter, stream that asked for usage (parses the usage chunk only)', meter(asked), n) - time('meter, stream as before', meter(plain), n);
time('(for comparison) the old meter on that stream: parses all "usage":null chunks', oldMeter(asked), n);
process.stdout.write(`\nadded: ~${(every + ask + strip + m).toFixed(1)} µs per streamed call (lookup ${every.toFixed(1)}, body rewrite ${ask.toFixed(1)}, filter ${strip.toFixed(1)}, meter ${m.toFixed(1)}); the scrubber costs ${scrub.toFixed(1)}\n`);
