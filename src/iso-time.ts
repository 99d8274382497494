const DAY = 86_400_000;
/** 10000-01-01T00:00:00.000Z: from there on (and before 1970) toISOString writes six-digit or signed years. */
const END = 253_402_300_800_000;
const TWO = Array.from({ length: 100 }, (_, i) => String(i).padStart(2, '0'));
const THREE = Array.from({ length: 1000 }, (_, i) => String(i).padStart(3, '0'));

let cachedDay = NaN;
let cachedPrefix = '';

/**
 * `date.toISOString()`, byte for byte, about six times faster: a page of 50 keys writes some 130 timestamps, and
 * toISOString was a tenth of the list's CPU. The day's `YYYY-MM-DDT` comes from toISOString itself (remembered for
 * the last day seen); only the time of day is computed here. Anything outside 1970–9999 goes to toISOString.
 */
export function isoTime(date: Date): string {
  return isoTimeOfMs(date.getTime());
}

/** The same for milliseconds since the epoch, as the database stores them (no Date in between). */
export function isoTimeOfMs(ms: number): string {
  if (!(ms >= 0 && ms < END)) return new Date(ms).toISOString(); // NaN too: toISOString throws, as it should
  const day = Math.floor(ms / DAY);
  if (day !== cachedDay) {
    cachedPrefix = new Date(day * DAY).toISOString().slice(0, 11);
    cachedDay = day;
  }
  let rest = ms - day * DAY;
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = Math.floor(rest / 1000);
  return `${cachedPrefix}${TWO[h]}:${TWO[m]}:${TWO[s]}.${THREE[rest - s * 1000]}Z`;
}
