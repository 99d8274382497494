/** SQLite always; the same suite again on MySQL/MariaDB when PKV_TEST_MYSQL_URL is set. */
const base = {
  testEnvironment: 'node',
  transform: { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.json', diagnostics: false }] },
  moduleFileExtensions: ['ts', 'js', 'json'],
  testMatch: ['<rootDir>/tests/**/*.test.ts'],
  // The Galera cluster test has its own config (jest.galera.config.js, `npm run test:galera`).
  testPathIgnorePatterns: ['<rootDir>/tests/galera/'],
};

const projects = [{ ...base, displayName: 'sqlite', setupFiles: ['<rootDir>/tests/support/db-sqlite.ts'] }];
if (process.env.PKV_TEST_MYSQL_URL) {
  projects.push({ ...base, displayName: 'mariadb', setupFiles: ['<rootDir>/tests/support/db-mysql.ts'], testPathIgnorePatterns: ['<rootDir>/tests/galera/', '<rootDir>/tests/unit/', '<rootDir>/tests/e2e/'] });
}

module.exports = { projects, testTimeout: 60000, maxWorkers: 2 };
