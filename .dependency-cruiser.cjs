/** The shape of src/ as rules: `npm run lint` (and so `npm test` and CI) fails on a violation. */
module.exports = {
  forbidden: [
    {
      name: 'crypto-is-pure',
      comment: 'src/crypto holds pure primitives: it knows nothing of features, storage, HTTP or the process around it.',
      severity: 'error',
      from: { path: '^src/crypto/' },
      to: { path: ['^src/(modules|db|http|cli|web)/', '^src/(app|main|container)\\.ts$'] },
    },
    {
      name: 'web-is-client-only',
      comment: 'src/web is bundled for the browser: it talks to the server over HTTP only, never by importing it.',
      severity: 'error',
      from: { path: '^src/web/' },
      to: { path: '^src/', pathNot: '^src/web/' },
    },
    {
      name: 'migrations-are-frozen',
      comment: 'A migration describes the schema of its date; entities and services change after it, so it imports none of src/.',
      severity: 'error',
      from: { path: '^migrations/' },
      to: { path: '^src/' },
    },
    {
      name: 'no-circular',
      comment: 'No cycles, type-only imports included: each module can be read (and loaded) after what it imports.',
      severity: 'error',
      from: { path: '^(src|migrations)/' },
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // Type-only imports count: a cycle through types is still a cycle in the reader's head.
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.tsx', '.js', '.json'], exportsFields: ['exports'], conditionNames: ['require', 'node', 'default'] },
  },
};
