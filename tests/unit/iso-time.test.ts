import fc from 'fast-check';
import { isoTime, isoTimeOfMs } from '../../src/iso-time';

describe('isoTime', () => {
  it('writes what toISOString writes, for any instant from 1970 to 9999 (the ones it computes itself)', () => {
    const instant = fc.integer({ min: 0, max: 253_402_300_799_999 });
    fc.assert(fc.property(instant, (ms) => isoTime(new Date(ms)) === new Date(ms).toISOString()), { numRuns: 20_000 });
  });

  it('writes the same from milliseconds as from a Date (isoTimeOfMs, for times read from the database)', () => {
    const instant = fc.integer({ min: -8_640_000_000_000_000, max: 8_640_000_000_000_000 });
    fc.assert(fc.property(instant, (ms) => isoTimeOfMs(ms) === new Date(ms).toISOString()), { numRuns: 20_000 });
    expect(() => isoTimeOfMs(NaN)).toThrow(RangeError);
  });

  it('writes what toISOString writes outside that range too (it hands those to toISOString)', () => {
    const instant = fc.oneof(fc.integer({ min: -8_640_000_000_000_000, max: -1 }), fc.integer({ min: 253_402_300_800_000, max: 8_640_000_000_000_000 }));
    fc.assert(fc.property(instant, (ms) => isoTime(new Date(ms)) === new Date(ms).toISOString()), { numRuns: 2_000 });
  });

  it('agrees at the edges: the epoch, day and year boundaries, leap days, the year 10000', () => {
    const edges = [0, 1, 999, 1000, 86_399_999, 86_400_000, Date.UTC(2024, 1, 29, 23, 59, 59, 999), Date.UTC(2024, 2, 1), Date.UTC(2100, 1, 28, 12), Date.UTC(9999, 11, 31, 23, 59, 59, 999), Date.UTC(10000, 0, 1), -1, -86_400_001];
    for (const ms of edges) expect(isoTime(new Date(ms))).toBe(new Date(ms).toISOString());
  });

  it('is right after a jump back to an earlier day (the remembered day is not stale)', () => {
    const days = [Date.UTC(2026, 11, 3, 10), Date.UTC(2026, 11, 2, 10), Date.UTC(2026, 11, 3, 10), Date.UTC(1999, 0, 1)];
    for (const ms of days) expect(isoTime(new Date(ms))).toBe(new Date(ms).toISOString());
  });

  it('throws on an invalid date, as toISOString does', () => {
    expect(() => isoTime(new Date(NaN))).toThrow(RangeError);
  });

  it('keeps to recent instants too (most of what it formats)', () => {
    const recent = fc.integer({ min: Date.UTC(2020, 0, 1), max: Date.UTC(2040, 0, 1) });
    fc.assert(fc.property(recent, (ms) => isoTime(new Date(ms)) === new Date(ms).toISOString()), { numRuns: 20_000 });
  });
});
