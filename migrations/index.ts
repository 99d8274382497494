import { Initial1763900000000 } from './1763900000000-Initial';

/** Every migration, oldest first. Listed explicitly so the same set runs from ts (tests) and from dist. */
export const migrations = [Initial1763900000000];
