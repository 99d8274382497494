import type { ErrorRequestHandler, RequestHandler } from 'express';
import { AppError, BadGatewayError, GatewayTimeoutError, IntegrityError, NotFoundError, PayloadTooLargeError, RateLimitedError, UnavailableError, ValidationError } from '../errors';
import type { Logger } from '../logger';
import { isUnavailable } from '../db/errors';

export const STATUS: Record<string, number> = {
  validation_failed: 400,
  unauthorized: 401,
  forbidden: 403,
  password_change_required: 403,
  not_found: 404,
  conflict: 409,
  key_disabled: 409,
  key_expired: 409,
  payload_too_large: 413,
  rate_limited: 429,
  unavailable: 503,
  internal: 500,
  bad_gateway: 502,
  gateway_timeout: 504,
};

/** Every `code` of the error envelope. */
export const ERROR_CODES = Object.keys(STATUS);

/** Body-parser and other library errors become our own, where they enter. */
function normalize(err: unknown): AppError | undefined {
  if (err instanceof AppError) return err;
  const e = err as { type?: string; status?: number };
  switch (e?.type) {
    case 'entity.parse.failed':
      return new ValidationError('Malformed JSON body');
    case 'entity.too.large':
      return new PayloadTooLargeError('Request body is too large');
    case 'encoding.unsupported':
    case 'charset.unsupported':
    case 'request.aborted':
    case 'request.size.invalid':
    case 'stream.encoding.set':
      return new ValidationError('Unreadable request body');
  }
  if (e?.status === 400 || (err instanceof URIError)) return new ValidationError('Malformed request');
  if (isUnavailable(err)) return new UnavailableError(undefined, err);
  return undefined;
}

export interface ErrorAnswer {
  status: number;
  headers: Array<[string, string]>;
  body: { error: { code: string; message: string; requestId: string; details: unknown[] } };
}

/** The one place errors become HTTP statuses. Public message only; causes go to the log, without values. */
export function answerError(logger: Logger, err: unknown, requestId: string, method: string | undefined): ErrorAnswer {
  const known = normalize(err);
  const status = known ? STATUS[known.code] ?? 500 : 500;
  if (!known || known instanceof IntegrityError || known instanceof UnavailableError || known instanceof BadGatewayError || known instanceof GatewayTimeoutError) {
    const cause = known ? known.cause : err;
    logger.error('request failed', {
      event: 'request.error',
      code: known?.code ?? 'internal',
      errorName: (cause as Error | undefined)?.name,
      errorCode: (cause as { code?: string } | undefined)?.code,
      // Driver messages can quote bound values (a duplicate entry names the value): log them only for our own errors.
      errorMessage: cause instanceof AppError ? cause.message : undefined,
      method,
    });
  }
  const headers: Array<[string, string]> = [];
  if (known instanceof RateLimitedError) headers.push(['Retry-After', String(known.retryAfterSeconds)]);
  if (status === 401) headers.push(['WWW-Authenticate', 'Bearer realm="pkv"']);
  const message = known && !(known instanceof IntegrityError) ? known.message : 'Internal error';
  return { status, headers, body: { error: { code: known?.code ?? 'internal', message, requestId, details: known?.details ?? [] } } };
}

export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const answer = answerError(logger, err, String(res.locals.requestId ?? ''), req.method);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    for (const [name, value] of answer.headers) res.setHeader(name, value);
    res.status(answer.status).json(answer.body);
  };
}

export const notFoundRoute: RequestHandler = (_req, _res, next) => next(new NotFoundError('No such route'));
