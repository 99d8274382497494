import fs from 'node:fs';
import path from 'node:path';
import { openApiJson } from './document';

/** `npm run openapi`: writes the generated document to docs/openapi.json (checked in, so a diff shows every contract change). */
export const OPENAPI_FILE = path.resolve(__dirname, '..', '..', ...(__dirname.includes(`${path.sep}dist${path.sep}`) ? ['..'] : []), 'docs', 'openapi.json');

if (require.main === module) {
  fs.writeFileSync(OPENAPI_FILE, openApiJson());
  process.stdout.write(`wrote ${path.relative(process.cwd(), OPENAPI_FILE)}\n`); // a build script's one line, not a server log
}
