import type { Server } from 'node:http';
import v8 from 'node:v8';
import vm from 'node:vm';

/** Called with no argument it is a full, synchronous collection (an options object from this context would not be read). */
type Collect = () => void;

/**
 * The function `--expose-gc` would put on the global object, taken without leaving the flag set: only a context
 * created while it is set gets `gc`, so the product's own contexts never see it. Undefined where V8 refuses.
 */
function takeCollector(): Collect | undefined {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc: unknown = vm.runInNewContext('gc');
    return typeof gc === 'function' ? (gc as Collect) : undefined;
  } catch {
    return undefined;
  } finally {
    v8.setFlagsFromString('--no-expose-gc');
  }
}

export interface Trimmed {
  heapBefore: number;
  heapAfter: number;
  pauseMs: number;
}

export interface TrimOptions {
  periodMs?: number;
  growthBytes?: number;
  onTrim?: (t: Trimmed) => void;
}

export interface IdleTrim {
  stop(): void;
  /** Full collections run so far (tests read it). */
  readonly trims: number;
}

/**
 * Gives back the heap a burst of load grew, once the burst is over. Under load V8 grows its heap; once the load
 * stops nothing allocates, so nothing collects, and the burst's garbage stays resident (about 100 MB after the
 * bench). When a whole period passed without a request and the heap has grown by more than `growthBytes` since
 * the last trim, one full collection runs, compacting (V8 only compacts fragmented pages by default, so half-empty
 * pages would stay), and V8 unmaps the pages it emptied. It never runs under load (a request in the period defers
 * it) and at most once per burst; its pause (tens of milliseconds for the ~25 MB live heap) falls in idle time.
 */
export function trimWhenIdle(server: Server, { periodMs = 1000, growthBytes = 16 * 2 ** 20, onTrim }: TrimOptions = {}): IdleTrim {
  const collect = takeCollector();
  let trims = 0;
  let requests = 0;
  let seenAtLastTick = 0;
  let heapAfterTrim = v8.getHeapStatistics().total_heap_size;
  const onRequest = () => void requests++;
  server.on('request', onRequest);
  const timer = setInterval(() => {
    const quiet = requests === seenAtLastTick;
    seenAtLastTick = requests;
    const heapBefore = v8.getHeapStatistics().total_heap_size;
    if (!collect || !quiet || heapBefore < heapAfterTrim + growthBytes) return;
    const t0 = performance.now();
    compacting(collect);
    trims++;
    heapAfterTrim = v8.getHeapStatistics().total_heap_size;
    onTrim?.({ heapBefore, heapAfter: heapAfterTrim, pauseMs: performance.now() - t0 });
  }, periodMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      server.off('request', onRequest);
    },
    get trims() {
      return trims;
    },
  };
}

/** One full collection that compacts every page; the flag is V8's own and is set only for this synchronous call. */
function compacting(collect: Collect): void {
  try {
    v8.setFlagsFromString('--compact-on-every-full-gc');
    collect();
  } finally {
    v8.setFlagsFromString('--no-compact-on-every-full-gc');
  }
}
