/** The usage charts' arithmetic: whole-number axes that hold the data, dates that fit, stacks that add up. */
import fc from 'fast-check';
import { labelledBars, niceScale, stackTotals } from '../../src/web/chart';

describe('niceScale', () => {
  it('reaches the largest value in whole steps of 1, 2 or 5 × 10ⁿ, in at most 4 of them past it', () => {
    expect(niceScale(17)).toEqual({ top: 20, step: 5 });
    expect(niceScale(3)).toEqual({ top: 3, step: 1 });
    expect(niceScale(1234)).toEqual({ top: 1500, step: 500 });
    expect(niceScale(1)).toEqual({ top: 1, step: 1 });
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1e12 }), (max) => {
        const { top, step } = niceScale(max);
        expect(Number.isInteger(step) && step >= 1).toBe(true);
        expect(String(step / 10 ** Math.floor(Math.log10(step)))).toMatch(/^(1|2|5)$/);
        expect(top).toBeGreaterThanOrEqual(max);
        expect(top % step).toBe(0);
        expect(top / step).toBeLessThanOrEqual(4);
      }),
      { numRuns: 2000 },
    );
  });

  it('gives an empty chart an axis of its own (no division by zero)', () => {
    expect(niceScale(0)).toEqual({ top: 4, step: 1 });
    expect(niceScale(Number.NaN)).toEqual({ top: 4, step: 1 });
  });
});

describe('labelledBars', () => {
  it('dates today’s bar and evenly spaced ones before it, no more than fit', () => {
    expect([...labelledBars(30, 30)].length).toBe(30);
    const seven = labelledBars(30, 7);
    expect(seven.has(29)).toBe(true);
    expect(seven.size).toBeLessThanOrEqual(7);
    expect([...seven].sort((a, b) => a - b)).toEqual([4, 9, 14, 19, 24, 29]);
    expect([...labelledBars(30, 0)]).toEqual([29]);
    expect(labelledBars(0, 5).size).toBe(0);
  });
});

describe('stackTotals', () => {
  it('adds the series bar by bar', () => {
    expect(stackTotals([{ values: [1, 2, 3] }, { values: [10, 0, 5] }], 3)).toEqual([11, 2, 8]);
  });
});
