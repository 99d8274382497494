export type Settled<T> = PromiseSettledResult<T>;

interface Entry<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (err: unknown) => void;
}

/**
 * Gathers the calls made during one turn of the event loop and hands them to `flush` together, in the loop's check
 * phase (setImmediate): by then every request that arrived in this turn has made its call, so concurrent requests
 * share one round trip or one transaction instead of paying for their own. Nothing is cached: a batch starts after
 * every one of its callers arrived. Batches run independently (no batch waits for another), at most `maxBatch`
 * items each. `flush` answers every item in order; if it throws, every caller of that batch gets the error.
 */
export class TurnBatcher<I, O> {
  private pending: Array<Entry<I, O>> = [];
  private scheduled = false;
  private readonly running = new Set<number>();
  /** Batches flushed and items carried, for tests and diagnostics. */
  batches = 0;
  items = 0;

  constructor(
    private readonly flush: (items: I[]) => Promise<Array<Settled<O>>>,
    private readonly maxBatch = 64,
    private readonly maxInFlight = Infinity,
    private readonly stallMs = 20,
  ) {}

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      this.pending.push({ item, resolve, reject });
      this.schedule();
    });
  }

  private schedule(): void {
    if (this.scheduled || this.pending.length === 0) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.drain();
    });
  }

  private drain(): void {
    const now = performance.now();
    let busy = 0;
    for (const started of this.running) if (now - started < this.stallMs) busy++;
    while (this.pending.length > 0 && busy < this.maxInFlight) {
      void this.run(this.pending.splice(0, this.maxBatch));
      busy++;
    }
    if (this.pending.length > 0 && this.running.size > 0) {
      // Waiting for a batch in flight: the next starts when one ends, or when the oldest has stalled past stallMs.
      const oldest = Math.min(...this.running);
      setTimeout(() => this.schedule(), Math.max(1, oldest + this.stallMs - now)).unref();
    }
  }

  private async run(batch: Array<Entry<I, O>>): Promise<void> {
    this.batches++;
    this.items += batch.length;
    let started = performance.now();
    while (this.running.has(started)) started += 1e-6;
    this.running.add(started);
    let outcomes: Array<Settled<O>>;
    try {
      outcomes = await this.flush(batch.map((e) => e.item));
      if (outcomes.length !== batch.length) throw new Error(`batch answered ${outcomes.length} of ${batch.length} items`);
    } catch (err) {
      for (const e of batch) e.reject(err);
      return;
    } finally {
      this.running.delete(started);
      this.schedule();
    }
    batch.forEach((e, i) => {
      const o = outcomes[i];
      if (o.status === 'fulfilled') e.resolve(o.value);
      else e.reject(o.reason);
    });
  }
}

/**
 * Single flight within one turn: identical lookups (same `key`) made during one turn of the event loop run once, and
 * every caller gets that one answer (shared: callers must not mutate it). Each lookup still starts after every one
 * of its callers arrived, so nobody is answered from before their own request: a revocation committed earlier is seen.
 */
export function coalescing<I, O>(key: (item: I) => string, fetch: (item: I) => Promise<O>, maxBatch = 256): TurnBatcher<I, O> {
  return new TurnBatcher<I, O>(async (items) => {
    const flights = new Map<string, Promise<O>>();
    const answers = items.map((item) => {
      const k = key(item);
      let flight = flights.get(k);
      if (!flight) {
        flight = fetch(item);
        flights.set(k, flight);
      }
      return flight;
    });
    return Promise.allSettled(answers);
  }, maxBatch);
}
