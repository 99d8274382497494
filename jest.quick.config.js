/**
 * The inner loop (`npm run test:quick`): SQLite only, without the files that run for minutes on spawned servers
 * (load, several instances, two audit writers, faults with its killed servers) and without the browser. `npm test` runs them all.
 */
const full = require('./jest.config');

const sqlite = full.projects.find((p) => p.displayName === 'sqlite');
const slow = ['load', 'multi-instance', 'audit-multiprocess', 'faults'];

module.exports = {
  ...full,
  projects: [{ ...sqlite, testPathIgnorePatterns: ['<rootDir>/tests/e2e/', ...slow.map((f) => `<rootDir>/tests/api/${f}\\.test\\.ts$`)] }],
};
