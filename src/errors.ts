/** Semantic errors: a public message for the caller and an optional private cause for the log. No HTTP here. */
export abstract class AppError extends Error {
  abstract readonly code: string;
  readonly details: unknown[];
  constructor(message: string, options: { cause?: unknown; details?: unknown[] } = {}) {
    super(message, { cause: options.cause });
    this.name = new.target.name;
    this.details = options.details ?? [];
  }
}

export class ValidationError extends AppError {
  readonly code = 'validation_failed';
}
export class UnauthorizedError extends AppError {
  readonly code = 'unauthorized';
  constructor(message = 'Authentication required') {
    super(message);
  }
}
export class ForbiddenError extends AppError {
  readonly code = 'forbidden';
  constructor(message = 'You are not allowed to do this') {
    super(message);
  }
}
/** A session whose password someone else chose: it must change it first (POST /auth/password). */
export class PasswordChangeRequiredError extends AppError {
  readonly code = 'password_change_required';
  constructor(message = 'Your password was set by someone else: change it (POST /auth/password) before doing anything else') {
    super(message);
  }
}
export class NotFoundError extends AppError {
  readonly code = 'not_found';
  constructor(message = 'Not found') {
    super(message);
  }
}
export class ConflictError extends AppError {
  readonly code: string = 'conflict';
}
export class KeyDisabledError extends ConflictError {
  override readonly code = 'key_disabled';
  constructor() {
    super('This key is disabled');
  }
}
export class KeyExpiredError extends ConflictError {
  override readonly code = 'key_expired';
  constructor() {
    super('This key has expired');
  }
}
export class PayloadTooLargeError extends AppError {
  readonly code = 'payload_too_large';
}
export class RateLimitedError extends AppError {
  readonly code = 'rate_limited';
  constructor(
    readonly retryAfterSeconds: number,
    message = 'Too many requests; try again later',
  ) {
    super(message);
  }
}
export class UnavailableError extends AppError {
  readonly code = 'unavailable';
  constructor(message = 'The service is temporarily unavailable', cause?: unknown) {
    super(message, { cause });
  }
}
/** The provider behind the gateway could not be reached, or broke off its answer. */
export class BadGatewayError extends AppError {
  readonly code = 'bad_gateway';
  constructor(message = 'The provider could not be reached', cause?: unknown) {
    super(message, { cause });
  }
}
/** The provider behind the gateway did not connect or answer in time. */
export class GatewayTimeoutError extends AppError {
  readonly code = 'gateway_timeout';
  constructor(message = 'The provider did not answer in time', cause?: unknown) {
    super(message, { cause });
  }
}
/** A stored secret or wrapped key failed to authenticate: fail closed, never return garbage. */
export class IntegrityError extends AppError {
  readonly code = 'internal';
  constructor(message = 'A stored value failed its integrity check', cause?: unknown) {
    super(message, { cause });
  }
}
