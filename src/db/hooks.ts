import type { EntityManager } from 'typeorm';

const pending = new WeakMap<EntityManager, Array<() => void>>();

/** Runs fn once the transaction commits (never if it rolls back): for side effects like log shipping. */
export function afterCommit(tx: EntityManager, fn: () => void): void {
  const list = pending.get(tx);
  if (list) list.push(fn);
  else pending.set(tx, [fn]);
}

export function takeAfterCommit(tx: EntityManager): Array<() => void> {
  const list = pending.get(tx) ?? [];
  pending.delete(tx);
  return list;
}
