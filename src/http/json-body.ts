import express, { RequestHandler } from 'express';
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

/** express.json with a size limit, strict top level, and duplicate keys refused. */
export function jsonBody(limit: string): RequestHandler {
  return express.json({
    limit,
    strict: true,
    verify: (_req, _res, buf) => {
      const dup = findDuplicateKey(buf.toString('utf8'));
      if (dup !== undefined) throw new ValidationError('Duplicate key in JSON body', { details: [{ field: 'body', message: `key "${dup.slice(0, 64)}" appears twice in one object` }] });
    },
  });
}
