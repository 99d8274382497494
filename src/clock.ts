/** Time as the background jobs see it (the health scheduler, the webhook dispatcher): injected, so tests can move it. */
export interface Clock {
  now(): number;
}

export const systemClock: Clock = { now: () => Date.now() };
