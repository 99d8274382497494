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

  constructor(
    private readonly flush: (items: I[]) => Promise<Array<Settled<O>>>,
    private readonly maxBatch = 64,
  ) {}

  submit(item: I): Promise<O> {
    return new Promise<O>((resolve, reject) => {
      if (this.pending.length === 0) setImmediate(() => this.drain());
      this.pending.push({ item, resolve, reject });
    });
  }

  private drain(): void {
    const all = this.pending;
    this.pending = [];
    for (let i = 0; i < all.length; i += this.maxBatch) void this.run(all.slice(i, i + this.maxBatch));
  }

  private async run(batch: Array<Entry<I, O>>): Promise<void> {
    let outcomes: Array<Settled<O>>;
    try {
      outcomes = await this.flush(batch.map((e) => e.item));
      if (outcomes.length !== batch.length) throw new Error(`batch answered ${outcomes.length} of ${batch.length} items`);
    } catch (err) {
      for (const e of batch) e.reject(err);
      return;
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
