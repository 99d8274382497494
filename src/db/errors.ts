import { AppError } from '../errors';

/** What a database error means for the caller: unreachable (503), a conflict worth retrying, a unique violation. */

/** The database could not be reached or could not answer now: the caller gets 503, not 500. */
const UNAVAILABLE_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENOTFOUND', 'PROTOCOL_CONNECTION_LOST',
  'PROTOCOL_SEQUENCE_TIMEOUT', 'ER_CON_COUNT_ERROR', 'ER_SERVER_SHUTDOWN', 'ER_LOCK_WAIT_TIMEOUT', 'ER_QUERY_INTERRUPTED',
  'ER_CONNECTION_KILLED', 'ER_ACCESS_DENIED_ERROR', 'ER_BAD_DB_ERROR', 'ER_LOCK_DEADLOCK', 'ER_UNKNOWN_COM_ERROR',
  'ER_TRANSACTION_ROLLBACK_DURING_COMMIT',
  'ER_STATEMENT_TIMEOUT', 'ER_QUERY_TIMEOUT', 'SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_FULL', 'SQLITE_CANTOPEN',
  'SQLITE_READONLY', 'SQLITE_IOERR', 'SQLITE_PROTOCOL',
]);

/** The server refused before changing anything, and the same transaction run again may well succeed. */
const RETRYABLE_CODES = new Set([
  // A deadlock, or (MariaDB Galera) a certification conflict with a write committed on another node.
  'ER_LOCK_DEADLOCK',
  // MariaDB Galera 1047: "WSREP has not yet prepared node for application use" (a node joining or resyncing).
  'ER_UNKNOWN_COM_ERROR',
  // MySQL Group Replication (InnoDB Cluster) 3101: the transaction failed certification against another member's.
  'ER_TRANSACTION_ROLLBACK_DURING_COMMIT',
]);

/** The connection went away: a transaction not yet committed was rolled back by the server. */
const CONNECTION_LOST_CODES = new Set(['ECONNRESET', 'EPIPE', 'PROTOCOL_CONNECTION_LOST', 'ER_SERVER_SHUTDOWN', 'ER_CONNECTION_KILLED', 'ECONNREFUSED']);

export function errorCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; driverError?: { code?: unknown } };
  const code = e?.driverError?.code ?? e?.code;
  return typeof code === 'string' ? code : undefined;
}

const CLOSED = /Pool is closed|Connection is not established|connection is in closed state|Can't add new command when connection is in closed state|database connection is not open/i;

/** True when the database could not be reached or answered: the caller gets 503, not 500. */
export function isUnavailable(err: unknown): boolean {
  const code = errorCode(err);
  if (code && (UNAVAILABLE_CODES.has(code) || /^SQLITE_(IOERR|BUSY|LOCKED)/.test(code))) return true;
  return CLOSED.test(err instanceof Error ? err.message : '');
}

/**
 * True when a transaction that failed this way was certainly rolled back and may be run again. `committing`: the
 * error answered the COMMIT itself, where a lost connection leaves the outcome unknown (so never retried).
 */
export function isRetryable(err: unknown, committing: boolean): boolean {
  const code = driverCode(err);
  if (!code) return false;
  return RETRYABLE_CODES.has(code) || (!committing && CONNECTION_LOST_CODES.has(code));
}

/** The driver's code, also when a semantic error wraps it (an audit insert refused inside a transaction, say). */
function driverCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e && depth < 4; e = (e as { cause?: unknown }).cause, depth++) {
    if (!(e instanceof AppError)) return errorCode(e);
  }
  return undefined;
}

/**
 * Another transaction won a race for the same rows: a deadlock, or on Galera a write committed first on another node
 * (certification conflict, reported as a deadlock). Looks through an UnavailableError to its cause.
 */
export function isConflict(err: unknown): boolean {
  return driverCode(err) === 'ER_LOCK_DEADLOCK';
}

export function isUniqueViolation(err: unknown): boolean {
  const code = errorCode(err);
  return code === 'ER_DUP_ENTRY' || code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}
