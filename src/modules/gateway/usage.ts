import { StringDecoder } from 'node:string_decoder';
import type { EntityManager } from 'typeorm';
import type { Database } from '../../db/database';
import { RateLimitedError } from '../../errors';
import { newId } from '../../ids';
import type { Logger } from '../../logger';
import type { ModelEndpoint } from './endpoints';
import type { VirtualKeysRepository } from './virtual-keys.repository';

/** One forwarded call, as stored in gateway_usage. Never a header, a body or a key: counts and names only. */
export interface UsageRecord {
  at: Date;
  virtualKeyId: string;
  keyId: string;
  userId: string;
  model: string | null;
  /** The provider's status; 499 when the client went away first, 502/504 when the provider failed or timed out. */
  status: number;
  latencyMs: number;
  promptTokens: number | null;
  completionTokens: number | null;
  /** The tokens are the gateway's estimate, not the provider's report (see `charge`). */
  tokensEstimated?: boolean;
  requestBytes: number;
  responseBytes: number;
}

export interface Spent {
  requests: number;
  tokens: number;
}

export interface Budget {
  dailyRequestLimit: number | null;
  dailyTokenLimit: number | null;
}

export interface UsageBucket {
  start: string;
  requests: number;
  errors: number;
  promptTokens: number;
  completionTokens: number;
}

export const DAY_MS = 86_400_000;

/** A daily budget of a virtual key is spent (429 until midnight UTC): which one, and its limit. */
export class BudgetSpentError extends RateLimitedError {
  constructor(
    retryAfterSeconds: number,
    readonly budget: 'requests' | 'tokens',
    readonly limit: number,
    readonly day: number,
  ) {
    super(retryAfterSeconds, `This virtual key’s daily ${budget === 'requests' ? 'request' : 'token'} budget is spent; it renews at midnight UTC`);
  }
}
/** Midnight UTC of the day holding `t` (epoch ms). */
export const dayStart = (t: number) => t - (t % DAY_MS);

const INSERT_CHUNK = 500;
const USAGE_COLUMNS = ['id', 'at', 'virtual_key_id', 'key_id', 'user_id', 'model', 'status', 'latency_ms', 'prompt_tokens', 'completion_tokens', 'request_bytes', 'response_bytes', 'tokens_estimated'];
/** Calls kept in memory while the database refuses the flush; beyond this the oldest are dropped (and logged). */
const MAX_PENDING = 100_000;

export class UsageRepository {
  async insert(tx: EntityManager, records: UsageRecord[]): Promise<void> {
    for (let i = 0; i < records.length; i += INSERT_CHUNK) {
      const chunk = records.slice(i, i + INSERT_CHUNK);
      const row = `(${USAGE_COLUMNS.map(() => '?').join(', ')})`;
      const params = chunk.flatMap((r) => [newId(r.at.getTime()), r.at.getTime(), r.virtualKeyId, r.keyId, r.userId, r.model, r.status, r.latencyMs, r.promptTokens, r.completionTokens, r.requestBytes, r.responseBytes, r.tokensEstimated ? 1 : 0]);
      await tx.query(`INSERT INTO gateway_usage (${USAGE_COLUMNS.join(', ')}) VALUES ${chunk.map(() => row).join(', ')}`, params);
    }
  }

  /** Calls and tokens of one virtual key since `since` (the index covers it: no row is read). */
  async spentSince(m: EntityManager, virtualKeyId: string, since: number): Promise<Spent> {
    const [r]: Array<Record<string, unknown>> = await m.query(
      'SELECT COUNT(*) AS requests, COALESCE(SUM(COALESCE(prompt_tokens, 0) + COALESCE(completion_tokens, 0)), 0) AS tokens FROM gateway_usage WHERE virtual_key_id = ? AND at >= ?',
      [virtualKeyId, since],
    );
    return { requests: Number(r.requests), tokens: Number(r.tokens) };
  }

  /** One provider key's calls in [from, to), summed per bucket of `bucketMs` (buckets without calls are absent). */
  async buckets(m: EntityManager, keyId: string, from: number, to: number, bucketMs: number): Promise<Map<number, Omit<UsageBucket, 'start'>>> {
    const rows: Array<Record<string, unknown>> = await m.query(
      'SELECT (at - (at % ?)) AS bucket, COUNT(*) AS requests, SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS errors, ' +
        'COALESCE(SUM(prompt_tokens), 0) AS prompt, COALESCE(SUM(completion_tokens), 0) AS completion ' +
        'FROM gateway_usage WHERE key_id = ? AND at >= ? AND at < ? GROUP BY bucket',
      [bucketMs, keyId, from, to],
    );
    return new Map(rows.map((r) => [Number(r.bucket), { requests: Number(r.requests), errors: Number(r.errors), promptTokens: Number(r.prompt), completionTokens: Number(r.completion) }]));
  }
}

interface Tally {
  day: number;
  requests: number;
  tokens: number;
}

const tokensOf = (r: Pick<UsageRecord, 'promptTokens' | 'completionTokens'>) => (r.promptTokens ?? 0) + (r.completionTokens ?? 0);

/**
 * Usage without a durable write per call: calls are kept in memory and written in batches, about every second and at
 * shutdown (a crash loses at most the calls of the last second). Daily budgets are checked against what the database
 * holds (every instance's flushed calls) plus this instance's unflushed and in-flight calls. A flush and a budget read
 * never overlap (a flush waits for the reads under way, new reads wait for the flush), so each call is counted once.
 */
export class UsageRecorder {
  private queue: UsageRecord[] = [];
  /** Per virtual key: today's calls and tokens still in `queue`. */
  private unflushed = new Map<string, Tally>();
  /** Per virtual key: calls admitted and not yet recorded. */
  private inFlight = new Map<string, number>();
  private readers = 0;
  private readersDone: (() => void) | undefined;
  private gate: Promise<void> | undefined;
  private flushing: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private dropped = 0;
  /** The batch a flush is writing right now (still unwritten until it commits). */
  private writing: UsageRecord[] | undefined;

  constructor(
    private readonly db: Database,
    private readonly usage: UsageRepository,
    private readonly virtualKeys: Pick<VirtualKeysRepository, 'addUse'>,
    private readonly logger: Logger,
    private readonly intervalMs = 1000,
  ) {}

  start(): void {
    this.timer ??= setInterval(() => void this.flush(), this.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.flush();
  }

  /**
   * Admits one call of a virtual key within its daily budget, or refuses it with 429 and Retry-After until midnight
   * UTC. Today's spending is what the database holds (every instance's flushed calls) plus this instance's unflushed
   * and in-flight calls. The call counts as spent from here on; `record` (or `release`, if it never went out)
   * settles it.
   */
  async admit(virtualKeyId: string, budget: Budget, now = Date.now()): Promise<void> {
    if (budget.dailyRequestLimit === null && budget.dailyTokenLimit === null) return this.enter(virtualKeyId);
    while (this.gate) await this.gate;
    this.readers++;
    try {
      const day = dayStart(now);
      const stored = await this.db.read((m) => this.usage.spentSince(m, virtualKeyId, day));
      // From here to enter() nothing awaits: concurrent calls on this instance each see the ones admitted before them.
      const t = this.unflushed.get(virtualKeyId);
      const mine = t && t.day === day ? t : { requests: 0, tokens: 0 };
      const requests = stored.requests + mine.requests + (this.inFlight.get(virtualKeyId) ?? 0);
      const tokens = stored.tokens + mine.tokens;
      const retryAfter = Math.max(1, Math.ceil((day + DAY_MS - now) / 1000));
      if (budget.dailyRequestLimit !== null && requests >= budget.dailyRequestLimit) throw new BudgetSpentError(retryAfter, 'requests', budget.dailyRequestLimit, day);
      if (budget.dailyTokenLimit !== null && tokens >= budget.dailyTokenLimit) throw new BudgetSpentError(retryAfter, 'tokens', budget.dailyTokenLimit, day);
      this.enter(virtualKeyId);
    } finally {
      if (--this.readers === 0) this.readersDone?.();
    }
  }

  private enter(virtualKeyId: string): void {
    this.inFlight.set(virtualKeyId, (this.inFlight.get(virtualKeyId) ?? 0) + 1);
  }

  /** An admitted call that was never forwarded (refused before it went out): it spends nothing. */
  release(virtualKeyId: string): void {
    const n = (this.inFlight.get(virtualKeyId) ?? 1) - 1;
    if (n > 0) this.inFlight.set(virtualKeyId, n);
    else this.inFlight.delete(virtualKeyId);
  }

  /** An admitted call that went out, with what it spent. */
  record(r: UsageRecord): void {
    this.release(r.virtualKeyId);
    if (this.queue.length >= MAX_PENDING) {
      this.queue.shift();
      if (this.dropped++ % 1000 === 0) this.logger.error('gateway usage is not being written; dropping the oldest unwritten calls', { event: 'gateway.usage_dropped', dropped: this.dropped });
    }
    this.queue.push(r);
    const day = dayStart(r.at.getTime());
    const t = this.unflushed.get(r.virtualKeyId);
    if (t && t.day === day) {
      t.requests++;
      t.tokens += tokensOf(r);
    } else if (!t || t.day < day) this.unflushed.set(r.virtualKeyId, { day, requests: 1, tokens: tokensOf(r) });
  }

  /** Calls not yet written (queued, or in the batch being written), when the oldest of them was made, and calls dropped. */
  backlog(): { pending: number; oldestAt: Date | undefined; dropped: number } {
    return { pending: this.queue.length + (this.writing?.length ?? 0), oldestAt: this.writing?.[0]?.at ?? this.queue[0]?.at, dropped: this.dropped };
  }

  /** Writes what is queued (one transaction); serialized, so callers may await it to read their own calls. */
  flush(): Promise<void> {
    this.flushing = this.flushing.then(() => this.flushNow());
    return this.flushing;
  }

  private async flushNow(): Promise<void> {
    if (this.queue.length === 0) return;
    let open!: () => void;
    this.gate = new Promise((resolve) => (open = resolve));
    try {
      if (this.readers > 0) await new Promise<void>((resolve) => (this.readersDone = resolve));
      this.readersDone = undefined;
      const batch = this.queue;
      const tallies = this.unflushed;
      this.queue = [];
      this.unflushed = new Map();
      this.writing = batch;
      try {
        await this.db.transaction(async (tx) => {
          await this.usage.insert(tx, batch);
          for (const [id, use] of perVirtualKey(batch)) await this.virtualKeys.addUse(tx, id, use.count, use.lastUsedAt);
        });
      } catch (err) {
        // Kept for the next flush rather than lost (and still counted against budgets meanwhile).
        this.queue = [...batch, ...this.queue];
        for (const [id, t] of tallies) {
          const now = this.unflushed.get(id);
          this.unflushed.set(id, now && now.day === t.day ? { day: t.day, requests: now.requests + t.requests, tokens: now.tokens + t.tokens } : now && now.day > t.day ? now : t);
        }
        this.logger.warn('gateway usage flush failed; will retry', { event: 'gateway.usage_flush_failed', errorCode: (err as { code?: string }).code });
      } finally {
        this.writing = undefined;
      }
    } finally {
      this.gate = undefined;
      open();
    }
  }
}

function perVirtualKey(batch: UsageRecord[]): Map<string, { count: number; lastUsedAt: Date }> {
  const out = new Map<string, { count: number; lastUsedAt: Date }>();
  for (const r of batch) {
    const u = out.get(r.virtualKeyId);
    if (!u) out.set(r.virtualKeyId, { count: 1, lastUsedAt: r.at });
    else {
      u.count++;
      if (r.at > u.lastUsedAt) u.lastUsedAt = r.at;
    }
  }
  return out;
}

/** Tokens as a provider reports them, from a whole JSON answer or one server-sent event. */
export interface Tokens {
  prompt?: number;
  completion?: number;
}

const objectOf = (v: unknown): Record<string, unknown> | undefined => (typeof v === 'object' && v !== null ? (v as Record<string, unknown>) : undefined);
const count = (v: unknown) => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : undefined);
const sum = (...vs: unknown[]) => {
  const ns = vs.map(count);
  return ns[0] === undefined ? undefined : ns.reduce<number>((a, n) => a + (n ?? 0), 0);
};

/**
 * Reads the token counts of an answer or event: OpenAI (`usage.prompt_tokens`/`completion_tokens`, and the Responses
 * API's `response.usage`), Anthropic (`usage` or `message.usage` with `input_tokens`, cache tokens and
 * `output_tokens`) and Google (`usageMetadata`).
 */
export function tokensIn(value: unknown): Tokens | undefined {
  const o = objectOf(value);
  if (!o) return undefined;
  const u = [o.usage, objectOf(o.message)?.usage, objectOf(o.response)?.usage].map(objectOf).find((x) => x !== undefined);
  if (u) {
    const prompt = count(u.prompt_tokens) ?? sum(u.input_tokens, u.cache_creation_input_tokens, u.cache_read_input_tokens);
    const completion = count(u.completion_tokens) ?? count(u.output_tokens);
    return prompt === undefined && completion === undefined ? undefined : { prompt, completion };
  }
  const g = objectOf(o.usageMetadata);
  if (g) {
    const prompt = count(g.promptTokenCount);
    const completion = sum(g.candidatesTokenCount, g.thoughtsTokenCount);
    return prompt === undefined && completion === undefined ? undefined : { prompt, completion };
  }
  return undefined;
}

/** What a call is charged against token budgets (and recorded), and whether that is the gateway's estimate. */
export interface Charge {
  promptTokens: number | null;
  completionTokens: number | null;
  tokensEstimated: boolean;
}

/** What `charge` decides from: how the call went and what its answer reported. */
export interface CallFacts {
  method: string;
  /** The model endpoint it went to, if it is one (free ones are never estimated, embeddings have no output). */
  endpoint: ModelEndpoint | undefined;
  /** The answer arrived whole; false when it was cut off (the provider, a timeout, the client) or never came. */
  finished: boolean;
  status: number;
  reported: Tokens;
  requestBytes: number;
  responseBytes: number;
  /** The most output tokens the request allows, if it says (`maxOutputOf`). */
  maxOutput: number | undefined;
}

/** Methods that never make a provider generate anything. */
const NOT_SPENDING = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE']);

/**
 * The tokens a call counts. A finished answer counts what it reported (an error answer, or a free endpoint, nothing
 * more). A call that may have spent tokens without reporting them (its answer cut off, or whole but without usage)
 * never counts 0: it is charged an estimate, marked as such. Prompt: what it reported, else request bytes / 4.
 * Output: the request's limit (`maxOutputOf`) if it gives one, else response bytes / 4 (embeddings: none), and
 * never less than an output count it reported before it was cut off (Anthropic reports output as it goes).
 */
export function charge(c: CallFacts): Charge {
  const { prompt, completion } = c.reported;
  const reported: Charge = { promptTokens: prompt ?? null, completionTokens: completion ?? null, tokensEstimated: false };
  if (NOT_SPENDING.has(c.method) || c.endpoint?.free) return reported;
  if (c.finished && (c.status >= 400 || prompt !== undefined || completion !== undefined)) return reported;
  const output = c.endpoint?.noOutput ? 0 : c.maxOutput ?? Math.ceil(c.responseBytes / 4);
  return { promptTokens: prompt ?? Math.ceil(c.requestBytes / 4), completionTokens: Math.max(completion ?? 0, output), tokensEstimated: true };
}

/**
 * The most output tokens a JSON request allows: its largest `max_tokens`, `max_completion_tokens` (OpenAI),
 * `max_output_tokens` (Responses API) or `generationConfig.maxOutputTokens` (Google), times the choices it asks for
 * (`n`, `candidateCount`); undefined when it sets none.
 */
export function maxOutputOf(body: Record<string, unknown>): number | undefined {
  const g = objectOf(body.generationConfig);
  const limits = [body.max_tokens, body.max_completion_tokens, body.max_output_tokens, g?.maxOutputTokens].map(count).filter((n) => n !== undefined);
  if (limits.length === 0) return undefined;
  const choices = Math.min(Math.max(count(body.n) ?? count(g?.candidateCount) ?? 1, 1), 128);
  return Math.max(...limits) * choices;
}

const WHOLE_CAP = 1024 * 1024;
/** A `usage` (or Google's `usageMetadata`) that is an object. */
const REPORTS_USAGE = /"usage(?:Metadata)?"\s*:\s*\{/;
const TAIL = 64 * 1024;
const LINE_CAP = 1024 * 1024;

/**
 * Watches an answer go by for its token counts, keeping at most about 1 MiB of it. A JSON answer up to 1 MiB is read
 * whole; past that only its last 64 KiB are kept and the last `"usage"` object in them is read (providers put usage
 * last, after a long list of embeddings, say). A stream is read one line at a time: the last event that reports usage
 * wins, and Anthropic's input and output counts, reported in different events, are merged.
 */
export class UsageMeter {
  private readonly mode: 'json' | 'sse' | 'none';
  private parts: Buffer[] = [];
  private size = 0;
  private tailSize = 0;
  private line = '';
  private readonly decoder = new StringDecoder('utf8');
  private skipping = false;
  private found: Tokens = {};

  constructor(contentType: string | undefined) {
    const type = (contentType ?? '').toLowerCase();
    this.mode = type.includes('text/event-stream') ? 'sse' : /[/+]json\b/.test(type) ? 'json' : 'none';
  }

  observe(chunk: Buffer): void {
    if (this.mode === 'json') {
      this.size += chunk.length;
      this.parts.push(chunk);
      this.tailSize += chunk.length;
      // Past the cap, keep only enough of the newest chunks to hold the last TAIL bytes.
      while (this.size > WHOLE_CAP && this.parts.length > 1 && this.tailSize - this.parts[0].length >= TAIL) this.tailSize -= this.parts.shift()!.length;
    } else if (this.mode === 'sse') {
      const lines = (this.line + this.decoder.write(chunk)).split('\n');
      this.line = lines.pop() ?? '';
      for (const l of lines) {
        if (this.skipping) this.skipping = false;
        else this.event(l);
      }
      if (this.line.length > LINE_CAP) {
        this.line = '';
        this.skipping = true;
      }
    }
  }

  /** Whether the answer is a stream of server-sent events. */
  get streaming(): boolean {
    return this.mode === 'sse';
  }

  /** What the answer reported, once it is over. */
  finish(): Tokens {
    if (this.mode === 'json' && this.size > 0) {
      const text = Buffer.concat(this.parts).toString('utf8');
      if (this.size <= WHOLE_CAP) this.take(text);
      else {
        const usage = lastObjectAfter(text, '"usage"');
        if (usage) this.take(`{"usage":${usage}}`);
      }
    }
    if (this.mode === 'sse' && !this.skipping) this.event(this.line);
    this.parts = [];
    return this.found;
  }

  private event(line: string): void {
    // Only an event that reports usage is parsed: not the `"usage":null` of every chunk of an OpenAI-style stream.
    if (!line.startsWith('data:') || !line.includes('sage') || !REPORTS_USAGE.test(line)) return;
    this.take(line.slice(5));
  }

  private take(text: string): void {
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return;
    }
    const t = tokensIn(value);
    if (t?.prompt !== undefined) this.found.prompt = t.prompt;
    if (t?.completion !== undefined) this.found.completion = t.completion;
  }
}

/** The JSON object text that follows the last `name:` in `text` (strings and nesting respected), if it is complete. */
export function lastObjectAfter(text: string, name: string): string | undefined {
  const at = text.lastIndexOf(name);
  if (at === -1) return undefined;
  const open = text.indexOf('{', at + name.length);
  if (open === -1 || text.slice(at + name.length, open).trim() !== ':') return undefined;
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
    } else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return text.slice(open, i + 1);
  }
  return undefined;
}
