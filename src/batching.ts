import DataLoader from 'dataloader';

/**
 * Gathers the calls made during one turn of the event loop and hands them to `batch` together, in the loop's check
 * phase (setImmediate): by then every request that arrived in this turn has made its call, so concurrent requests
 * share one round trip or one transaction. Nothing is cached: a batch starts after every one of its callers
 * arrived. `batch` answers each item in order, a value or an Error; if it throws, every caller gets that error.
 */
export function perTurn<K, V>(batch: (items: readonly K[]) => Promise<Array<V | Error>>, maxBatchSize: number): DataLoader<K, V> {
  return new DataLoader<K, V>(batch, { cache: false, maxBatchSize, batchScheduleFn: (run) => setImmediate(run) });
}

/**
 * Single flight within one turn: identical lookups (same `key`) made during one turn run once, and every caller gets
 * that one answer (shared: callers must not mutate it). A lookup still starts after every one of its callers
 * arrived, so nobody is answered from before their own request: a revocation committed earlier is seen.
 */
export function coalesced<K, V>(key: (item: K) => string, fetch: (item: K) => Promise<V>): DataLoader<K, V> {
  return perTurn<K, V>(async (items) => {
    const flights = new Map<string, Promise<V | Error>>();
    return Promise.all(
      items.map((item) => {
        const k = key(item);
        let flight = flights.get(k);
        if (!flight) {
          flight = fetch(item).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
          flights.set(k, flight);
        }
        return flight;
      }),
    );
  }, 256);
}
