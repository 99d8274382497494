import http from 'node:http';
import type { AddressInfo } from 'node:net';
import v8 from 'node:v8';
import vm from 'node:vm';
import { trimWhenIdle, Trimmed } from '../../src/idle-trim';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
const committed = () => v8.getHeapStatistics().total_heap_size;

/** Grows the old generation (objects kept through scavenges) with what is garbage once this returns; in one turn, so no tick sees it half done. */
function growHeap(mb: number): void {
  const keep: unknown[] = [];
  for (let i = 0; i < mb; i++) keep.push(Array.from({ length: 16_384 }, (_, j) => ({ i, j, s: `garbage ${i}.${j}` })));
  expect(keep).toHaveLength(mb);
}

/**
 * Leaves the heap at its live size, so the growth a test measures is the test's own: the worker may come with a
 * heap grown by the test files it ran before, which the first collection during growHeap would give back, leaving
 * the heap under the trim's starting point plus the growth it waits for.
 */
async function compactFirst(server: http.Server): Promise<void> {
  // -Infinity: collect on the first quiet tick even if a scavenge since left the heap below where it started.
  const first = trimWhenIdle(server, { periodMs: 20, growthBytes: -Infinity });
  try {
    for (let i = 0; i < 100 && first.trims === 0; i++) await sleep(20);
    expect(first.trims).toBe(1);
  } finally {
    first.stop();
  }
}

describe('trimWhenIdle', () => {
  let server: http.Server;
  let url: string;
  const trimmed: Trimmed[] = [];

  beforeEach(async () => {
    trimmed.length = 0;
    server = http.createServer((_req, res) => res.end('ok'));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });
  afterEach(async () => {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('after a burst, once a whole period passed without a request, runs one compacting collection that gives the grown heap back', async () => {
    await compactFirst(server);
    const trim = trimWhenIdle(server, { periodMs: 100, growthBytes: 8 * 2 ** 20, onTrim: (t) => trimmed.push(t) });
    try {
      await fetch(url).then((r) => r.text());
      growHeap(64);
      const grown = committed();
      for (let i = 0; i < 50 && trim.trims === 0; i++) await sleep(50);
      expect(trim.trims).toBe(1);
      expect(trimmed).toHaveLength(1);
      expect(trimmed[0].heapBefore).toBeGreaterThanOrEqual(trimmed[0].heapAfter + 8 * 2 ** 20);
      expect(committed()).toBeLessThan(grown);
      // Nothing grew since: idle periods that follow do not collect again.
      await sleep(400);
      expect(trim.trims).toBe(1);
    } finally {
      trim.stop();
    }
  });

  it('never collects while requests keep coming, and collects once they stop', async () => {
    await compactFirst(server);
    const trim = trimWhenIdle(server, { periodMs: 400, growthBytes: 8 * 2 ** 20 });
    try {
      const until = Date.now() + 1200;
      while (Date.now() < until) {
        await fetch(url).then((r) => r.text());
        growHeap(8);
        await sleep(30);
      }
      expect(trim.trims).toBe(0);
      for (let i = 0; i < 50 && trim.trims === 0; i++) await sleep(50);
      expect(trim.trims).toBe(1);
    } finally {
      trim.stop();
    }
  });

  it('leaves a heap that did not grow alone, and stops when told', async () => {
    const trim = trimWhenIdle(server, { periodMs: 50, growthBytes: 512 * 2 ** 20 });
    growHeap(16);
    await sleep(300);
    expect(trim.trims).toBe(0);
    trim.stop();
    const stopped = trimWhenIdle(server, { periodMs: 50, growthBytes: 0 });
    stopped.stop();
    await sleep(200);
    expect(stopped.trims).toBe(0);
    expect(server.listenerCount('request')).toBe(1); // only the handler: both trims took their listener away
  });

  it('leaves no gc() behind on new contexts', () => {
    trimWhenIdle(server).stop();
    expect(vm.runInNewContext('typeof gc')).toBe('undefined');
  });
});
