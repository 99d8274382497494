import { isUtf8 } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import express from 'express';
import typeis from 'type-is';
import { ValidationError } from '../errors';

/**
 * Finds a key repeated within one JSON object. JSON.parse silently keeps the last one, and two parsers that
 * disagree about which one counts is how checks get bypassed, so such bodies are refused outright.
 * Scans the raw text once; assumes it is otherwise valid JSON (JSON.parse runs after).
 */
export function findDuplicateKey(text: string): string | undefined {
  const stack: Array<Set<string> | null> = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (j < text.length && text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top && expectKey) {
        let key: string;
        try {
          key = JSON.parse(text.slice(i, j + 1)) as string;
        } catch {
          return undefined;
        }
        if (top.has(key)) return key;
        top.add(key);
        expectKey = false;
      }
      i = j;
    } else if (c === '{') {
      stack.push(new Set());
      expectKey = true;
    } else if (c === '[') {
      stack.push(null);
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
      expectKey = stack[stack.length - 1] instanceof Set;
    }
  }
  return undefined;
}

/** An unpaired UTF-16 surrogate (an escaped `\ud800` with no partner): not text; both database drivers would store it as U+FFFD. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** A request that carries body bytes (an empty Content-Length: 0 body is no body). */
const carriesBody = (headers: Record<string, string | string[] | undefined>) => headers['transfer-encoding'] !== undefined || Number(headers['content-length']) > 0;

/**
 * express.json with a size limit, strict top level, and duplicate keys refused. A body that is not UTF-8 JSON is
 * refused too, never silently altered or ignored: invalid UTF-8 or an escaped lone surrogate would be stored as
 * U+FFFD (a pasted secret changed without a word), and a text/plain or form body would be skipped (a reveal's reason
 * dropped from its audit row).
 */
export type BodyParser = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

/** Works on a bare node request as well as an express one (body-parser needs nothing of express), so the fast lane shares it. */
export function jsonBody(limit: string): BodyParser {
  const parse = express.json({
    limit,
    strict: true,
    // A SyntaxError: body-parser strips the fields of whatever is thrown here and reports it as a parse failure (400).
    reviver: (key: string, value: unknown) => {
      if (LONE_SURROGATE.test(key) || (typeof value === 'string' && LONE_SURROGATE.test(value))) throw new SyntaxError('unpaired UTF-16 surrogate in a JSON string');
      return value;
    },
    verify: (_req, _res, buf, encoding) => {
      if (/^utf-?8$/i.test(encoding) && !isUtf8(buf)) throw new ValidationError('Request body is not valid UTF-8', { details: [{ field: 'body', message: 'must be UTF-8' }] });
      const dup = findDuplicateKey(buf.toString('utf8'));
      if (dup !== undefined) throw new ValidationError('Duplicate key in JSON body', { details: [{ field: 'body', message: `key "${dup.slice(0, 64)}" appears twice in one object` }] });
    },
  });
  return (req, res, next) => {
    if (carriesBody(req.headers) && !typeis(req, ['application/json'])) {
      next(new ValidationError('Request body must be JSON (Content-Type: application/json)', { details: [{ field: 'body', message: 'Content-Type must be application/json' }] }));
      return;
    }
    parse(req, res, next);
  };
}
