import { isUtf8 } from 'node:buffer';

/**
 * Usage of OpenAI-style streams. Such a stream reports its tokens only in a last chunk (`choices: []` with `usage`),
 * and only when the request asked for it (`stream_options.include_usage`). The gateway asks on the client's behalf,
 * so that token budgets count what the provider reports, and takes that one chunk out of the answer again when the
 * client did not ask for it itself (a client may not expect a chunk without choices).
 */

const objectOf = (v: unknown): Record<string, unknown> | undefined => (typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined);

/**
 * The body to send instead of `bytes` so that a streamed completion reports its usage, or undefined when it needs no
 * change: not streamed, the client asked itself, or a `stream_options` that is not an object (the provider refuses
 * it). `value` is `bytes` parsed. Only `stream_options` changes: every other byte of the body stays as it was (a
 * body that is not UTF-8 is left alone, since it could not be spliced as text byte for byte; it is estimated).
 */
export function askForStreamUsage(bytes: Buffer, value: Record<string, unknown>): Buffer | undefined {
  if (value.stream !== true || !isUtf8(bytes)) return undefined;
  const options = value.stream_options;
  if (options !== undefined && options !== null && objectOf(options) === undefined) return undefined;
  if (objectOf(options)?.include_usage === true) return undefined;
  const asked = JSON.stringify({ ...objectOf(options), include_usage: true });
  const text = bytes.toString('utf8');
  const spans = topLevelValues(text, 'stream_options');
  if (spans.length === 0) {
    const open = text.indexOf('{');
    return Buffer.from(`${text.slice(0, open + 1)}"stream_options":${asked},${text.slice(open + 1)}`, 'utf8');
  }
  // Every occurrence (a body may name it twice; parsers differ on which one counts): each becomes the same object.
  let out = '';
  let at = 0;
  for (const [from, to] of spans) {
    out += text.slice(at, from) + asked;
    at = to;
  }
  return Buffer.from(out + text.slice(at), 'utf8');
}

/** Where the values of `key` in the top-level object of valid JSON `text` are, as [from, to) offsets. */
export function topLevelValues(text: string, key: string): Array<[number, number]> {
  const spans: Array<[number, number]> = [];
  let depth = 0;
  let expectKey = false;
  let valueFrom = -1;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      if (depth === 1 && expectKey) {
        expectKey = false;
        if ((JSON.parse(text.slice(i, j + 1)) as string) === key) {
          valueFrom = text.indexOf(':', j + 1) + 1;
          while (/\s/.test(text[valueFrom])) valueFrom++;
        }
      }
      i = j;
    } else if (c === '{' || c === '[') {
      depth++;
      if (depth === 1) expectKey = true;
    } else if ((c === ',' || c === '}' || c === ']') && depth === 1 && valueFrom !== -1) {
      let to = i;
      while (/\s/.test(text[to - 1])) to--;
      spans.push([valueFrom, to]);
      valueFrom = -1;
    }
    if (c === '}' || c === ']') depth--;
    else if (c === ',' && depth === 1) expectKey = true;
  }
  return spans;
}

const EMPTY = Buffer.alloc(0);
// Needles made once (a string needle is converted on every search).
const LFLF = Buffer.from('\n\n');
const LFCRLF = Buffer.from('\n\r\n');
/** The usage chunk's `choices: []`: a chunk without these two bytes holds no usage chunk. */
const EMPTY_ARRAY = Buffer.from('[]');
/** An event held this long without its end is no usage chunk (those are a few hundred bytes): it passes as it comes. */
const HOLD_MAX = 16 * 1024;

/** The end of the first event boundary (a blank line) at or after `from`, or -1. */
function boundaryEnd(buf: Buffer, from: number): number {
  const lf = buf.indexOf(LFLF, from);
  const crlf = buf.indexOf(LFCRLF, from);
  if (lf === -1) return crlf === -1 ? -1 : crlf + 3;
  return crlf === -1 || lf < crlf ? lf + 2 : crlf + 3;
}

/** The end of the last event boundary at or after `from`, or -1. */
function lastBoundaryEnd(buf: Buffer, from: number): number {
  const n = buf.length;
  // The usual case, looked at directly: the provider wrote whole events, so the chunk ends with one.
  if (n - from >= 2 && buf[n - 1] === 0x0a && (buf[n - 2] === 0x0a || (n - from >= 3 && buf[n - 2] === 0x0d && buf[n - 3] === 0x0a))) return n;
  const lf = buf.lastIndexOf(LFLF);
  const crlf = buf.lastIndexOf(LFCRLF);
  const end = Math.max(lf === -1 ? -1 : lf + 2, crlf === -1 ? -1 : crlf + 3);
  return end > from ? end : -1;
}

/** Whether one whole server-sent event is the usage chunk: its data a JSON object with `choices: []` and a `usage` object. */
export function isUsageChunk(event: Buffer): boolean {
  const data = event
    .toString('utf8')
    .split(/\r?\n/)
    .filter((l) => l.startsWith('data:'))
    .map((l) => l.slice(l.startsWith('data: ') ? 6 : 5))
    .join('\n');
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    return false;
  }
  const o = objectOf(value);
  return Array.isArray(o?.choices) && o.choices.length === 0 && objectOf(o.usage) !== undefined;
}

/**
 * Takes the usage chunk out of an OpenAI-style event stream, and nothing else: every other byte passes as it came,
 * in order. Whole events go out at once; only the unfinished event at the end of a chunk is held until its end
 * arrives (a client cannot act on half an event anyway), and not even that once it is longer than a usage chunk can
 * be. A chunk with no `[]` in its finished events (the usage chunk's empty `choices`) goes out without a look inside.
 */
export class UsageChunkFilter {
  private held: Buffer = EMPTY;
  /** The event under way is too long to be the usage chunk: its bytes pass as they come, up to its end. */
  private passing = false;

  push(chunk: Buffer): Buffer {
    const buf = this.held.length > 0 ? Buffer.concat([this.held, chunk]) : chunk;
    this.held = EMPTY;
    let at = 0;
    const out: Buffer[] = [];
    if (this.passing) {
      const end = boundaryEnd(buf, 0);
      if (end === -1) return buf;
      out.push(buf.subarray(0, end));
      this.passing = false;
      at = end;
    }
    const whole = lastBoundaryEnd(buf, at);
    if (whole !== -1) {
      const events = at === 0 && whole === buf.length ? buf : buf.subarray(at, whole);
      if (events.indexOf(EMPTY_ARRAY) === -1) out.push(events);
      else {
        for (let from = at; from < whole; ) {
          let end = boundaryEnd(buf, from);
          if (end === -1 || end > whole) end = whole;
          const event = buf.subarray(from, end);
          if (event.indexOf(EMPTY_ARRAY) === -1 || !isUsageChunk(event)) out.push(event);
          from = end;
        }
      }
      at = whole;
    }
    if (buf.length - at > HOLD_MAX) {
      out.push(at === 0 ? buf : buf.subarray(at));
      this.passing = true;
    } else if (at < buf.length) this.held = Buffer.from(buf.subarray(at));
    return out.length === 1 ? out[0] : Buffer.concat(out);
  }

  /** What is left at the end of the stream: an unfinished last event, unless it is the usage chunk. */
  end(): Buffer {
    const rest = this.held;
    this.held = EMPTY;
    this.passing = false;
    return rest.length > 0 && rest.indexOf(EMPTY_ARRAY) !== -1 && isUsageChunk(rest) ? EMPTY : rest;
  }
}
