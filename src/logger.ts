import winston from 'winston';
import Transport from 'winston-transport';
import { requestContext } from './request-context';

export type Logger = winston.Logger;

const SENSITIVE = /^(authorization|cookie|set-cookie|x-api-key|password|newpassword|currentpassword|secret|token|accesstoken|parameters|params|query|sql|sqlmessage|body|headers|ciphertext|wrappeddek|fingerprint|key)$/i;

function redact(value: unknown, depth = 0): unknown {
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (Array.isArray(value)) return value.map((v) => redact(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = SENSITIVE.test(k) ? '[redacted]' : redact(v, depth + 1);
  return out;
}

/** Replaces values under sensitive keys; the first defence is never passing a secret to a log call at all. */
const redaction = winston.format((info) => {
  for (const k of Object.keys(info)) {
    if (k === 'level' || k === 'message') continue;
    info[k] = SENSITIVE.test(k) ? '[redacted]' : redact(info[k]);
  }
  return info;
});

const withRequestId = winston.format((info) => {
  const ctx = requestContext.getStore();
  if (ctx && info.requestId === undefined) info.requestId = ctx.requestId;
  return info;
});

export function createLogger(level: string, transports: Transport[] = [new winston.transports.Console()]): Logger {
  return winston.createLogger({
    level,
    format: winston.format.combine(withRequestId(), redaction(), winston.format.timestamp(), winston.format.json()),
    defaultMeta: { service: 'pkv' },
    transports,
  });
}

/** Keeps every formatted line in memory; tests search it for secrets. */
export class CaptureTransport extends Transport {
  readonly lines: string[] = [];
  override log(info: Record<string | symbol, unknown>, next: () => void): void {
    this.lines.push(String(info[Symbol.for('message')] ?? JSON.stringify(info)));
    next();
  }
}
