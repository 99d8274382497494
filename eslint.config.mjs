import js from '@eslint/js';
import reactHooks from 'eslint-plugin-react-hooks';
import globals from 'globals';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/', 'coverage/', 'data/', 'bench/.work/', 'bench/results/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    rules: {
      // `if (changed) (patch.f = v), changes.push(…)`: one line per field is this codebase's deliberate idiom.
      '@typescript-eslint/no-unused-expressions': 'off',
      // A leading underscore marks an argument or binding kept on purpose (express's 4-argument error handler, rest omission).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', ignoreRestSiblings: true }],
      // autocannon ships no types: tests/api/load requires it with the one signature it uses.
      '@typescript-eslint/no-require-imports': ['error', { allow: ['^autocannon$'] }],
    },
  },
  {
    files: ['tests/**/*.ts'],
    // Response bodies and raw rows are asserted field by field, typed as supertest types them.
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
  {
    files: ['src/http/validate.ts'],
    // Matching control characters is what its "no control characters" check is for.
    rules: { 'no-control-regex': 'off' },
  },
  {
    files: ['**/*.js', '**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: globals.node },
    rules: {
      '@typescript-eslint/no-require-imports': 'off',
      // `const crypto = require('node:crypto')` is module-scoped in CommonJS; it shadows no global.
      'no-redeclare': ['error', { builtinGlobals: false }],
    },
  },
  {
    files: ['**/*.mjs', '**/*.mts'],
    languageOptions: { globals: globals.node },
  },
  {
    files: ['src/web/**/*.{ts,tsx}'],
    plugins: { 'react-hooks': reactHooks },
    languageOptions: { globals: globals.browser },
    // The classic hook rules; the React Compiler's rules (purity, refs, set-state-in-effect) judge code for a compiler this console does not use.
    rules: { 'react-hooks/rules-of-hooks': 'error', 'react-hooks/exhaustive-deps': 'error' },
  },
);
