import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

// The web console: sources in src/web, built into dist/web, served by the API process at `/`.
// Everything is bundled (no CDN) and nothing is inlined, so the strict CSP (script-src 'self', style-src 'self') holds.
export default defineConfig({
  root: 'src/web',
  base: '/',
  publicDir: 'public',
  plugins: [react()],
  build: {
    outDir: '../../dist/web',
    emptyOutDir: true,
    // Never inline assets as data: URLs into scripts or styles; keeps every byte a separate 'self' file.
    assetsInlineLimit: 0,
    sourcemap: false,
    target: 'es2022',
    modulePreload: { polyfill: false },
  },
  server: {
    // `npx vite` for development: the API runs separately (npm start) and is proxied.
    proxy: { '/api': 'http://127.0.0.1:8080' },
  },
});
