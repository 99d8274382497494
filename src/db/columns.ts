import type { ValueTransformer } from 'typeorm';

/** Timestamps are stored as UTC epoch milliseconds (BIGINT): identical on SQLite and MySQL, exact, index-friendly. */
export const epochMs: ValueTransformer = {
  to: (value?: Date | null) => (value == null ? value : value.getTime()),
  from: (value?: number | string | null) => (value == null ? null : new Date(Number(value))),
};

/** BIGINT counters come back as strings from mysql2; they stay far below 2^53. */
export const bigintNumber: ValueTransformer = {
  to: (value?: number | null) => value,
  from: (value?: number | string | null) => (value == null ? value : Number(value)),
};

/** A flag stored as SMALLINT 0/1: the same column type and values on SQLite and MySQL. */
export const flag: ValueTransformer = {
  to: (value?: boolean | null) => (value == null ? value : value ? 1 : 0),
  from: (value?: number | string | null) => Number(value) === 1,
};
