import { EventEmitter } from 'node:events';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import { pipeline, Readable, Transform } from 'node:stream';
import zlib from 'node:zlib';
import type { Dispatcher } from 'undici';
import { AppError, BadGatewayError, ForbiddenError, GatewayTimeoutError, PayloadTooLargeError, ValidationError } from '../../errors';
import { findDuplicateKey } from '../../http/json-body';
import { answerError } from '../../http/error-handler';
import { logAccess } from '../../http/access-log';
import { requestIdFor } from '../../http/request-id';
import type { Logger } from '../../logger';
import { requestContext } from '../../request-context';
import type { GatewayService, Pass } from './gateway.service';
import { KeyScrubber } from './scrub';
import { BudgetSpentError, charge, maxOutputOf, UsageMeter } from './usage';
import { modelEndpointOf, type ModelEndpoint } from './endpoints';
import { askForStreamUsage, UsageChunkFilter } from './stream-usage';
import { answerHeaders, gatewayTarget, GatewayTarget, isJsonType, modelsInPath, presentedKey, upstreamHeaders, upstreamPathOf } from './upstream';

/**
 * Set on every gateway answer. They are API answers read by SDKs, so helmet's page policies do not apply; these are
 * the ones that matter should a browser ever render a provider's body from the vault's own origin: never cached,
 * never sniffed into HTML, no script, no framing, no referrer.
 */
const ANSWER_HEADERS: ReadonlyArray<[string, string]> = [
  ['Cache-Control', 'no-store'],
  ['X-Content-Type-Options', 'nosniff'],
  ['Content-Security-Policy', "default-src 'none'; frame-ancestors 'none'; sandbox"],
  ['Referrer-Policy', 'no-referrer'],
];
/** nginx's convention for "the client closed the connection before the answer was complete". */
const CLIENT_CLOSED = 499;
const ROUTE = '/gateway/*';
const MODEL_MAX = 128;
/** The refusal of any other endpoint to a virtual key with a model allowlist (the table is docs/gateway.md §4). */
const MODEL_ENDPOINTS_ONLY =
  'This virtual key is limited to some models, so it may call only the provider’s model endpoints (such as POST chat/completions, ' +
  'completions, embeddings, responses or v1/messages, and GET models): not this method and path';
/** A call whose body took longer than this to arrive has its virtual key looked up and decided again. */
const RECHECK_AFTER_MS = 1000;
/** The first bytes of an error answer, as the client got them (scrubbed), are read for what they say about the key. */
const ERROR_HEAD = 4096;

interface Tally {
  requestBytes: number;
  responseBytes: number;
  prompt?: number;
  completion?: number;
  /** The answer arrived whole (not cut off by the provider, a timeout or the client). */
  finished: boolean;
  /** An error answer's first bytes as the client got them (scrubbed of the key): what key health reads. */
  errorHead: Buffer[];
}

interface Call {
  requestId: string;
  actorId: string | undefined;
  /** The provider of the call's key, once its virtual key was accepted (a metrics label). */
  provider?: string;
}

const secondsSince = (started: bigint) => Number(process.hrtime.bigint() - started) / 1e9;

interface Body {
  /** A JSON body, read whole (to find its model). */
  bytes?: Buffer;
  /** Any other body, streamed through with its size checked on the way. */
  stream?: Readable;
  length?: number;
  /** How much of a streamed body has gone out so far. */
  sentBytes?: number;
  model?: string;
  /** The most output tokens a JSON body allows, if it says: what a call without reported usage is charged. */
  maxOutput?: number;
  /** The gateway asked for the stream's usage on the client's behalf: that chunk is taken out of the answer. */
  stripUsageChunk?: boolean;
}

/**
 * The data plane: `/gateway/<path>` on its own small node:http handler, not express. It shares the request id, the
 * error envelope and the access log with the API as functions. One call: check the path, the virtual key, the body's
 * model and the budget; open the provider key; forward; stream the answer back scrubbed of the key; record usage.
 */
export function gatewayHandler(gateway: GatewayService, logger: Logger): RequestListener {
  return (req, res) => {
    const started = process.hrtime.bigint();
    const call: Call = { requestId: requestIdFor(req.headers['x-request-id']), actorId: undefined };
    res.setHeader('X-Request-Id', call.requestId);
    for (const [name, value] of ANSWER_HEADERS) res.setHeader(name, value);
    res.once('close', () => {
      const status = res.headersSent ? res.statusCode : CLIENT_CLOSED;
      logAccess(logger, { method: req.method, route: ROUTE, status, started, actorId: call.actorId, requestId: call.requestId });
      gateway.observer?.call(call.provider, status, secondsSince(started));
    });
    requestContext.run({ requestId: call.requestId }, () => {
      serve(gateway, logger, req, res, call).catch((err: unknown) => refuse(logger, req, res, err, call));
    });
  };
}

async function serve(gateway: GatewayService, logger: Logger, req: IncomingMessage, res: ServerResponse, call: Call): Promise<void> {
  const target = gatewayTarget(req.method, req.url ?? '');
  const presented = presentedKey(req.headers);
  let pass = await gateway.authorize(presented);
  call.actorId = pass.grant.user.id;
  call.provider = pass.grant.key.provider;
  const checkedAt = Date.now();
  const endpoint = modelEndpointOf(pass.grant.key.provider, req.method, target);
  const body = await readBody(req, pass, target, endpoint, gateway.config.bodyLimitBytes);
  // A body that took its time (sent slowly, up to the server's request timeout) is checked again before the key is
  // opened: a virtual key revoked, a user disabled or a key deleted or moved meanwhile stops this call too.
  if (Date.now() - checkedAt > RECHECK_AFTER_MS) pass = await gateway.authorize(presented);
  const { vk } = pass.grant;
  try {
    await gateway.usage.admit(vk.id, vk);
  } catch (err) {
    if (err instanceof BudgetSpentError) gateway.budgetSpent(pass.grant, err);
    throw err;
  }
  const at = new Date();
  let sent = false;
  let status = CLIENT_CLOSED;
  const tally: Tally = { requestBytes: body.bytes?.length ?? 0, responseBytes: 0, finished: false, errorHead: [] };
  try {
    const secret = gateway.openSecret(pass);
    sent = true;
    status = await forward(gateway, logger, req, res, pass, target, body, secret, tally);
  } catch (err) {
    status = err instanceof PayloadTooLargeError ? 413 : err instanceof GatewayTimeoutError ? 504 : 502;
    throw err;
  } finally {
    tally.requestBytes += body.sentBytes ?? 0;
    if (!sent) gateway.usage.release(vk.id);
    else {
      gateway.health.observe(pass.grant.key, status, Buffer.concat(tally.errorHead).toString('utf8'));
      gateway.observer?.tokens(pass.grant.key.provider, tally.prompt, tally.completion);
      const reported = { prompt: tally.prompt, completion: tally.completion };
      const charged = charge({ method: req.method ?? '', endpoint, finished: tally.finished, status, reported, requestBytes: tally.requestBytes, responseBytes: tally.responseBytes, maxOutput: body.maxOutput });
      gateway.usage.record({
        at,
        virtualKeyId: vk.id,
        keyId: pass.grant.key.id,
        userId: pass.grant.user.id,
        model: body.model ?? null,
        status,
        latencyMs: Date.now() - at.getTime(),
        ...charged,
        requestBytes: tally.requestBytes,
        responseBytes: tally.responseBytes,
      });
    }
  }
}

/**
 * Sends the call upstream and streams the answer back; returns the status to record. Before the answer's headers a
 * failure is thrown (502/504, answered with the envelope); after them the client's connection is cut short, so a
 * truncated stream never looks complete.
 */
async function forward(
  gateway: GatewayService,
  logger: Logger,
  req: IncomingMessage,
  res: ServerResponse,
  pass: Pass,
  target: GatewayTarget,
  body: Body,
  secret: string,
  tally: Tally,
): Promise<number> {
  const scrubber = new KeyScrubber(secret);
  // undici takes an EventEmitter as the signal too (documented): 'abort' ends the call, as an AbortSignal would,
  // without an AbortController built for every call.
  const abort = new EventEmitter();
  let clientGone = false;
  res.once('close', () => {
    if (res.writableFinished) return;
    clientGone = true;
    abort.emit('abort');
  });
  let answer: Dispatcher.ResponseData;
  const sentAt = process.hrtime.bigint();
  const upstreamDone = () => gateway.observer?.upstream(pass.grant.key.provider, secondsSince(sentAt));
  try {
    answer = await gateway.dispatcher.request({
      origin: pass.upstream.origin,
      path: upstreamPathOf(pass.upstream, target),
      method: req.method as Dispatcher.HttpMethod,
      headers: upstreamHeaders(req.headers, pass.credential, secret, body.bytes ? body.bytes.length : body.length),
      body: body.bytes ?? body.stream ?? null,
      signal: abort,
    });
  } catch (err) {
    upstreamDone();
    if (clientGone) return CLIENT_CLOSED;
    throw upstreamFailure(err);
  }

  const encoding = String(answer.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  const decoder = decoderFor(encoding);
  if (decoder === null) {
    upstreamDone();
    answer.body.on('error', () => undefined).destroy(); // the connection goes; its abort is expected
    throw new BadGatewayError('The provider answered in a content encoding the gateway does not read');
  }
  const contentType = answer.headers['content-type'];
  const meter = new UsageMeter(Array.isArray(contentType) ? contentType[0] : contentType);
  const scrub = scrubber.stream();
  const keepHead = answer.statusCode >= 400;
  const strip = body.stripUsageChunk && answer.statusCode < 300 && meter.streaming ? new UsageChunkFilter() : undefined;
  /** What the client gets of one piece of the answer (or of its end): scrubbed, counted, its head kept if an error. */
  const sent = (out: Buffer) => {
    if (keepHead && tally.responseBytes < ERROR_HEAD) tally.errorHead.push(out.subarray(0, ERROR_HEAD - tally.responseBytes));
    tally.responseBytes += out.length;
    return out;
  };
  res.writeHead(answer.statusCode, answerHeaders(answer.headers, (v) => scrubber.scrubAll(v), decoder !== undefined));
  try {
    // A compressed answer is undone on its way (a rare answer: the gateway asks for identity).
    const source = decoder ? pipeline(answer.body, decoder, () => undefined) : answer.body;
    await relay(source, res, (chunk) => {
      meter.observe(chunk);
      return sent(scrub.push(strip ? strip.push(chunk) : chunk));
    }, () => sent(strip ? Buffer.concat([scrub.push(strip.end()), scrub.end()]) : scrub.end()));
    tally.finished = true;
    return answer.statusCode;
  } catch (err) {
    if (clientGone) return CLIENT_CLOSED;
    const failure = upstreamFailure(err);
    logger.warn('provider answer broke off', { event: 'gateway.answer_failed', code: failure.code, errorName: (err as Error)?.name, errorCode: (err as { code?: string })?.code });
    res.destroy();
    return failure instanceof GatewayTimeoutError ? 504 : 502;
  } finally {
    upstreamDone();
    const t = meter.finish();
    tally.prompt = t.prompt;
    tally.completion = t.completion;
  }
}

/**
 * Streams `source` to the client through `pass` (and `end`, for what it held back), with backpressure: stream.pipeline's
 * work for this one fixed pair, without the AbortController it builds and settles (a DOMException) on every call.
 * Resolves once the answer is finished; on a failure of either side it destroys the source and rejects (the caller cuts
 * the client's connection).
 */
function relay(source: Readable, res: ServerResponse, pass: (chunk: Buffer) => Buffer, end: () => Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const fail = (err: unknown) => {
      if (settled) return;
      settled = true;
      source.destroy();
      reject(err);
    };
    const step = (chunk: Buffer) => {
      if (settled) return;
      try {
        const out = pass(chunk);
        if (out.length > 0 && !res.write(out)) source.pause();
      } catch (err) {
        fail(err);
      }
    };
    source.on('data', step);
    source.once('end', () => {
      if (settled) return;
      try {
        const out = end();
        res.end(out.length > 0 ? out : undefined);
      } catch (err) {
        fail(err);
      }
    });
    source.on('error', fail);
    res.on('drain', () => source.resume());
    res.on('error', fail);
    res.once('finish', () => {
      settled = true;
      resolve();
    });
    res.once('close', () => {
      if (!res.writableFinished) fail(Object.assign(new Error('The client connection closed before the answer was complete'), { code: 'ERR_STREAM_PREMATURE_CLOSE' }));
    });
  });
}

/** undefined: nothing to undo; null: an encoding the gateway cannot undo (so it could not search the body for the key). */
function decoderFor(encoding: string): Transform | undefined | null {
  if (encoding === 'identity' || encoding === '') return undefined;
  if (encoding === 'gzip' || encoding === 'x-gzip') return zlib.createGunzip();
  if (encoding === 'deflate') return zlib.createInflate();
  if (encoding === 'br') return zlib.createBrotliDecompress();
  return null;
}

function upstreamFailure(err: unknown): AppError {
  if (err instanceof AppError) return err;
  const code = (err as { code?: string } | undefined)?.code;
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return new GatewayTimeoutError(undefined, err);
  return new BadGatewayError(undefined, err);
}

/**
 * The body as it will go upstream, and the model it names. A JSON body is read whole (within the limit) to find its
 * `model`; any other body streams through. With a model allowlist only the provider's model endpoints may be
 * called (endpoints.ts), and a model call only when it names its model, all of them allowed: in a JSON body's
 * `model` or, for Google and Azure, in the path. Anything else is refused.
 */
async function readBody(req: IncomingMessage, pass: Pass, target: GatewayTarget, endpoint: ModelEndpoint | undefined, limit: number): Promise<Body> {
  const declared = req.headers['content-length'] === undefined ? undefined : Number(req.headers['content-length']);
  if (declared !== undefined && declared > limit) throw new PayloadTooLargeError(`The request body is larger than ${limit} bytes`);
  const allowed = pass.grant.vk.models;
  if (allowed && !endpoint) throw new ForbiddenError(MODEL_ENDPOINTS_ONLY);
  // A model call under an allowlist must name its model; listing the models names none.
  const mustName = allowed !== null && endpoint?.kind === 'call';
  const pathModels = modelsInPath(pass.grant.key.provider, target);
  const json = isJsonType(req.headers['content-type']);
  const hasBody = req.headers['transfer-encoding'] !== undefined || (declared ?? 0) > 0;
  if (allowed && (mustName || hasBody) && !json && pathModels.length === 0) throw new ForbiddenError('This virtual key is limited to some models: send a JSON body that names its model');
  let result: Body = {};
  if (hasBody && json) {
    const bytes = await readAll(req, limit);
    const { model, value } = jsonBody(bytes, allowed !== null);
    result = { bytes, model, maxOutput: value && maxOutputOf(value) };
    // A streamed completion that did not ask for its usage is asked for it: budgets count what the provider reports.
    const asked = endpoint?.streamUsage && value ? askForStreamUsage(bytes, value) : undefined;
    if (asked) result = { ...result, bytes: asked, stripUsageChunk: true };
  } else if (hasBody) {
    result = { stream: req.pipe(sizeLimit(limit, (n) => (result.sentBytes = n))), length: declared };
  }
  const named = [...pathModels, ...(result.model === undefined ? [] : [result.model])];
  if (allowed && ((mustName && named.length === 0) || named.some((m) => !allowed.includes(m)))) {
    throw new ForbiddenError(named.length === 0 ? 'This virtual key is limited to some models: name the model' : 'This virtual key may not use this model');
  }
  result.model = (pathModels[0] ?? result.model)?.slice(0, MODEL_MAX);
  return result;
}

async function readAll(req: IncomingMessage, limit: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new PayloadTooLargeError(`The request body is larger than ${limit} bytes`);
    parts.push(chunk as Buffer);
  }
  return Buffer.concat(parts);
}

/**
 * A JSON object body, parsed, and the `model` it names. Under an allowlist the body must be that (and without
 * repeated keys, which two parsers could read differently); otherwise a body that is not one simply names no model.
 */
function jsonBody(bytes: Buffer, strict: boolean): { model?: string; value?: Record<string, unknown> } {
  const text = bytes.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    if (strict) throw new ForbiddenError('This virtual key is limited to some models: the body must be JSON naming its model');
    return {};
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    if (strict) throw new ForbiddenError('This virtual key is limited to some models: the body must be a JSON object naming its model');
    return {};
  }
  if (strict && findDuplicateKey(text) !== undefined) throw new ValidationError('Duplicate key in JSON body', { details: [{ field: 'body', message: 'a key appears twice in one object' }] });
  const object = value as Record<string, unknown>;
  // An upstream whose JSON decoder matches keys without regard to case (Go's encoding/json does) would read `Model`
  // where this reads `model` (or `Max_Tokens` where the meter reads `max_tokens`): under an allowlist, only the exact
  // spelling of the fields the vault judges may appear.
  const variant = strict ? Object.keys(object).find((k) => JUDGED_FIELDS.has(k.toLowerCase()) && !JUDGED_FIELDS.has(k)) : undefined;
  if (variant !== undefined) {
    throw new ValidationError('Another spelling of a field the vault reads in JSON body', { details: [{ field: 'body', message: `"${variant.slice(0, 64)}" differs only in case from a field the vault reads (model, stream, token limits): some providers read it as that field` }] });
  }
  const model = object.model;
  if (model === undefined || typeof model === 'string') return { model, value: object };
  if (strict) throw new ForbiddenError('This virtual key is limited to some models: model must be a string');
  return { value: object };
}

/** Top-level request fields the vault reads to judge or meter a call (in their exact spelling). */
const JUDGED_FIELDS = new Set(['model', 'stream', 'stream_options', 'max_tokens', 'max_completion_tokens', 'max_output_tokens', 'n']);

/** Passes a streamed body through, counting it, and fails it with 413 once it grows past the limit. */
function sizeLimit(limit: number, counted: (size: number) => void): Transform {
  let size = 0;
  return new Transform({
    transform(chunk: Buffer, _encoding, done) {
      size += chunk.length;
      counted(size);
      if (size > limit) done(new PayloadTooLargeError(`The request body is larger than ${limit} bytes`));
      else done(null, chunk);
    },
  });
}

/** A refusal in the API's error envelope; once an answer has begun, the connection is cut instead. */
function refuse(logger: Logger, req: IncomingMessage, res: ServerResponse, err: unknown, call: Call): void {
  if (res.headersSent || res.destroyed) {
    res.destroy(); // a client that went away, or an answer already begun: nobody to tell
    return;
  }
  const answer = answerError(logger, err, call.requestId, req.method);
  // A body left unread is not worth reading just to keep the connection.
  if (!req.complete) res.setHeader('Connection', 'close');
  for (const [name, value] of answer.headers) res.setHeader(name, value);
  const text = JSON.stringify(answer.body);
  res.writeHead(answer.status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}
