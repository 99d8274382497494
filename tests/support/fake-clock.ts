import type { Clock } from '../../src/clock';

/** A clock the test moves by hand, for the health scheduler and the webhook dispatcher. */
export class FakeClock implements Clock {
  constructor(public t = Date.now()) {}

  now(): number {
    return this.t;
  }

  advance(ms: number): number {
    this.t += ms;
    return this.t;
  }
}
