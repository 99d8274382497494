'use strict';
// What each of a gateway call's own duties costs, alone, in-process, on the built code (dist/): the floor under the
// gateway's CPU per call that no relay, socket or HTTP work can go below. `npm run build && node bench/gateway-duties.js`
// [--rounds 5] [--iterations 20000]; prints µs per call for each duty (median of the rounds) and their sum. The
// virtual key's database lookup and the batched usage write are not here: their share is in the --profile figures.
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { Writable } = require('node:stream');
const { program } = require('commander');

program
  .option('--rounds <n>', 'rounds (the median is reported)', (v) => Number(v), 5)
  .option('--iterations <n>', 'calls per duty per round', (v) => Number(v), 20000)
  .parse();
const opts = program.opts();

const dist = (p) => require(path.join(__dirname, '..', 'dist', 'src', p));
const { hashApiToken } = dist('crypto/tokens');
const { CredentialMac } = dist('crypto/credential-mac');
const { Keyring } = dist('crypto/keyring');
const { Envelope } = dist('crypto/envelope');
const { KeyScrubber } = dist('modules/gateway/scrub');
const { UsageMeter } = dist('modules/gateway/usage');
const { gatewayTarget, upstreamHeaders, answerHeaders, presentedKey } = dist('modules/gateway/upstream');
const { requestIdFor } = dist('http/request-id');
const { logAccess } = dist('http/access-log');
const { createLogger } = dist('logger');
const winston = require('winston');

const secret = `sk-proj-${crypto.randomBytes(60).toString('base64url')}`;
const virtualKey = `pkv_vk_${crypto.randomBytes(32).toString('base64url')}`;
const envelope = new Envelope(new Keyring([{ version: 1, key: crypto.randomBytes(32) }]));
const binding = { keyId: crypto.randomUUID(), ownerId: crypto.randomUUID(), projectId: crypto.randomUUID(), provider: 'openai', baseUrl: 'http://127.0.0.1:9/v1' };
const sealed = envelope.seal(binding, Buffer.from(secret));
const mac = new CredentialMac(crypto.randomBytes(32));
const fields = ['vk', hashApiToken(virtualKey), binding.keyId, binding.ownerId, null, null, null, binding.ownerId, binding.projectId, 'http://127.0.0.1:9', Date.now(), Date.now() + 86_400_000, null];
const storedMac = mac.of('virtual_key', fields);
// The scrubber is built once per call (its cost is under "scrub the answer") and serves the headers too.
const headerScrubber = new KeyScrubber(secret);
const requestBody = Buffer.from(JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'Say hello.' }] }));
const answer = Buffer.from(
  JSON.stringify({
    id: 'chatcmpl-bench0', object: 'chat.completion', created: 1764800000, model: 'gpt-4o-mini-2024-07-18',
    choices: [{ index: 0, message: { role: 'assistant', content: 'Hello! How can I help you today?', refusal: null }, logprobs: null, finish_reason: 'stop' }],
    usage: { prompt_tokens: 9, completion_tokens: 12, total_tokens: 21 }, system_fingerprint: 'fp_bench',
  }),
);
const clientHeaders = { host: '127.0.0.1:8080', authorization: `Bearer ${virtualKey}`, 'content-type': 'application/json', 'content-length': String(requestBody.length), connection: 'keep-alive' };
const providerHeaders = { 'content-type': 'application/json', 'content-length': String(answer.length), date: new Date().toUTCString(), connection: 'keep-alive', 'keep-alive': 'timeout=5' };
// The access line goes through the product's logger and formats, into a stream that drops it (not a terminal).
const sink = new Writable({ write: (_c, _e, done) => done() });
const logger = createLogger('info', [new winston.transports.Stream({ stream: sink })]);

const duties = {
  'virtual key hash (SHA-256)': () => hashApiToken(virtualKey),
  'virtual key row MAC check (HMAC-SHA256)': () => mac.verifies('virtual_key', fields, storedMac),
  'open the provider key (unwrap + decrypt, AES-256-GCM)': () => envelope.open(binding, sealed).fill(0),
  'request: path check, credential, body parse': () => {
    gatewayTarget('POST', '/gateway/chat/completions');
    presentedKey(clientHeaders);
    JSON.parse(requestBody.toString('utf8'));
  },
  'upstream and answer headers (filtered, the answer’s scrubbed)': () => {
    upstreamHeaders(clientHeaders, 'bearer', secret, requestBody.length);
    answerHeaders(providerHeaders, (v) => headerScrubber.scrubAll(v), false);
  },
  'scrub the answer (scrubber built per call)': () => {
    const s = new KeyScrubber(secret).stream();
    s.push(answer);
    s.end();
  },
  'usage meter (parse the answer for its tokens)': () => {
    const m = new UsageMeter('application/json');
    m.observe(answer);
    m.finish();
  },
  'request id': () => requestIdFor(undefined),
  'access log line (winston, the product formats)': () => logAccess(logger, { method: 'POST', route: '/gateway/*', status: 200, started: process.hrtime.bigint(), actorId: binding.ownerId, requestId: 'r' }),
};

function time(fn, n) {
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn();
  return Number(process.hrtime.bigint() - t) / 1e3 / n;
}

async function main() {
  if (!fs.existsSync(path.join(__dirname, '..', 'dist', 'src', 'logger.js'))) throw new Error('dist/ is missing: run `npm run build`');
  const results = Object.fromEntries(Object.keys(duties).map((k) => [k, []]));
  for (let r = 0; r < opts.rounds; r++) {
    for (const [name, fn] of Object.entries(duties)) {
      time(fn, Math.min(2000, opts.iterations)); // warm
      results[name].push(time(fn, opts.iterations));
    }
    await new Promise((resolve) => setImmediate(resolve)); // let the log sink drain
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  let sum = 0;
  console.log(`gateway duties, in-process, µs per call (median of ${opts.rounds} rounds of ${opts.iterations}); Node ${process.version}`);
  for (const [name, xs] of Object.entries(results)) {
    const m = median(xs);
    sum += m;
    console.log(`${m.toFixed(2).padStart(8)}  ${name}`);
  }
  console.log(`${sum.toFixed(2).padStart(8)}  sum (without the database lookup and the usage write)`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
