import { coalescing, Settled, TurnBatcher } from '../../src/batcher';

const fulfilled = <T>(value: T): Settled<T> => ({ status: 'fulfilled', value });

describe('TurnBatcher', () => {
  it('hands the calls of one turn to one flush, in order, and each caller its own answer', async () => {
    const flushes: number[][] = [];
    const b = new TurnBatcher<number, number>(async (items) => {
      flushes.push(items);
      return items.map((i) => (i === 3 ? { status: 'rejected', reason: new Error('three') } : fulfilled(i * 10)));
    });
    const answers = await Promise.allSettled([1, 2, 3, 4].map((i) => b.submit(i)));
    expect(flushes).toEqual([[1, 2, 3, 4]]);
    expect(answers.map((a) => (a.status === 'fulfilled' ? a.value : (a.reason as Error).message))).toEqual([10, 20, 'three', 40]);
    // A call made in a later turn is a later batch.
    await b.submit(5);
    expect(flushes).toEqual([[1, 2, 3, 4], [5]]);
  });

  it('splits a turn into batches of at most maxBatch', async () => {
    const sizes: number[] = [];
    const b = new TurnBatcher<number, number>(async (items) => (sizes.push(items.length), items.map(fulfilled)), 4);
    await Promise.all(Array.from({ length: 10 }, (_, i) => b.submit(i)));
    expect(sizes).toEqual([4, 4, 2]);
  });

  it('fails every caller of a flush that throws, or that answers the wrong number of items, and goes on afterwards', async () => {
    let mode: 'throw' | 'short' | 'ok' = 'throw';
    const b = new TurnBatcher<number, number>(async (items) => {
      if (mode === 'throw') throw new Error('flush failed');
      return mode === 'short' ? items.slice(1).map(fulfilled) : items.map(fulfilled);
    });
    const thrown = await Promise.allSettled([b.submit(1), b.submit(2)]);
    expect(thrown.map((r) => r.status === 'rejected' && (r.reason as Error).message)).toEqual(['flush failed', 'flush failed']);
    mode = 'short';
    const short = await Promise.allSettled([b.submit(1), b.submit(2)]);
    expect(short.every((r) => r.status === 'rejected' && /answered 1 of 2/.test((r.reason as Error).message))).toBe(true);
    mode = 'ok';
    await expect(b.submit(7)).resolves.toBe(7);
  });

});

describe('coalescing', () => {
  it('runs identical lookups of one turn once and different ones apart, and never reuses an answer in a later turn', async () => {
    const fetched: string[] = [];
    const lookups = coalescing(
      (k: string) => k,
      async (k: string) => {
        fetched.push(k);
        return { k, n: fetched.length };
      },
    );
    const [a1, a2, b1] = await Promise.all([lookups.submit('a'), lookups.submit('a'), lookups.submit('b')]);
    expect(fetched).toEqual(['a', 'b']);
    expect(a1).toBe(a2);
    expect(b1.k).toBe('b');
    const again = await lookups.submit('a');
    expect(fetched).toEqual(['a', 'b', 'a']);
    expect(again).not.toBe(a1);
  });

  it('gives every caller of a failed lookup the error, and other lookups of the turn their answers', async () => {
    const lookups = coalescing(
      (k: string) => k,
      async (k: string) => {
        if (k === 'bad') throw new Error('lookup failed');
        return k.toUpperCase();
      },
    );
    const r = await Promise.allSettled([lookups.submit('bad'), lookups.submit('ok'), lookups.submit('bad')]);
    expect(r.map((x) => (x.status === 'fulfilled' ? x.value : (x.reason as Error).message))).toEqual(['lookup failed', 'OK', 'lookup failed']);
  });
});
