/** The Galera cluster test (tests/galera): slow, needs root and Debian's galera-4; run by `npm run test:galera` and CI, never by `npm test`. */
module.exports = {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json', diagnostics: false }] },
  moduleFileExtensions: ['ts', 'js', 'json'],
  testMatch: ['<rootDir>/tests/galera/**/*.test.ts'],
  testTimeout: 180000,
  maxWorkers: 1,
};
