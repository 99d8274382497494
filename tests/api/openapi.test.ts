import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createTestContext, TestContext } from '../support/test-app';
import { openApiJson } from '../../src/openapi/document';
import { OPENAPI_FILE } from '../../src/openapi/write';
import { checkAgainstOpenApi } from '../support/openapi-check';

const ROOT = path.resolve(__dirname, '..', '..');
const STALE = 'is stale against the code: run `npm run openapi` and commit the result';

describe('the OpenAPI document', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext();
  });
  afterAll(() => ctx.close());

  it('is served at GET /api/v1/openapi.json without credentials, as docs/openapi.json holds it', async () => {
    const res = await ctx.http().get('/api/v1/openapi.json');
    expect(res.status).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/json/);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body.openapi).toBe('3.1.0');
    expect(res.text).toBe(fs.readFileSync(OPENAPI_FILE, 'utf8'));
  });

  it('docs/openapi.json is what the code generates', () => {
    const written = fs.readFileSync(OPENAPI_FILE, 'utf8');
    if (written !== openApiJson()) throw new Error(`docs/openapi.json ${STALE}`);
  });

  it("the console's generated types (src/web/api-schema.d.ts) are those of docs/openapi.json", () => {
    const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'pkv-openapi-')), 'api-schema.d.ts');
    const run = spawnSync(path.join(ROOT, 'node_modules', '.bin', 'openapi-typescript'), [OPENAPI_FILE, '-o', out], { cwd: ROOT, encoding: 'utf8' });
    expect(run.status).toBe(0);
    if (fs.readFileSync(out, 'utf8') !== fs.readFileSync(path.join(ROOT, 'src', 'web', 'api-schema.d.ts'), 'utf8')) throw new Error(`src/web/api-schema.d.ts ${STALE}`);
    fs.rmSync(path.dirname(out), { recursive: true, force: true });
  });

  it('describes every route with its security, scopes and error answers', () => {
    const doc = JSON.parse(openApiJson());
    const reveal = doc.paths['/api/v1/provider-keys/{id}/reveal'].post;
    expect(reveal.security).toEqual([{ bearerSession: [] }, { cookieSession: [], csrfToken: [] }, { apiToken: ['provider-keys:reveal'] }, { apiKeyHeader: ['provider-keys:reveal'] }]);
    expect(Object.keys(reveal.responses).sort()).toEqual(['200', '400', '401', '403', '404', '409', '413', '429', '500', '503']);
    expect(doc.components.responses.Conflict.content['application/json'].schema.properties.error.properties.code.enum).toEqual(['conflict', 'key_disabled', 'key_expired']);
    expect(doc.paths['/api/v1/webhooks'].post.security).toEqual([{ bearerSession: [] }, { cookieSession: [], csrfToken: [] }]);
    expect(doc.paths['/api/v1/auth/login'].post.security).toEqual([]);
    expect(doc.paths['/gateway/{path}'].post.responses['502'].$ref).toBe('#/components/responses/BadGateway');
  });

  it('has an operation for every route the routers declare (read from their source: app.ts mounts, r.get(…) lines)', () => {
    const doc = JSON.parse(openApiJson());
    const app = fs.readFileSync(path.join(ROOT, 'src', 'app.ts'), 'utf8');
    const mountOf = new Map<string, string>();
    for (const m of app.matchAll(/api\.use\('([^']+)',([^\n]+)\);/g)) for (const f of m[2].matchAll(/(\w+Routes)\(/g)) mountOf.set(f[1], m[1]);
    const declared: string[] = [];
    const dir = path.join(ROOT, 'src', 'modules');
    for (const file of fs.readdirSync(dir, { recursive: true }).map(String).filter((f) => f.endsWith('.routes.ts'))) {
      for (const fn of fs.readFileSync(path.join(dir, file), 'utf8').split(/^export function /m).slice(1)) {
        const prefix = mountOf.get(/^(\w+)/.exec(fn)![1]);
        for (const r of fn.matchAll(/\br\.(get|post|put|patch|delete)\('([^']+)'/g)) {
          declared.push(`${r[1]} /api/v1${prefix}${r[2] === '/' ? '' : r[2].replace(/:(\w+)/g, '{$1}')}`);
        }
      }
    }
    expect(declared.length).toBeGreaterThanOrEqual(40);
    const documented = new Set(Object.entries(doc.paths).flatMap(([p, item]: [string, any]) => Object.keys(item).map((m) => `${m} ${p}`)));
    expect(declared.filter((r) => !documented.has(r))).toEqual([]);
  });

  describe('the check every API test runs on every answer (tests/support/openapi-check.ts)', () => {
    const answer = (method: string, url: string, status: number, body: unknown, headers: Record<string, string> = {}) =>
      ({ req: { method, path: url }, status, headers: { 'content-type': 'application/json; charset=utf-8', ...headers }, body, text: JSON.stringify(body) }) as any;
    const envelope = (code: string, requestId = 'r-1') => ({ error: { code, message: 'm', requestId, details: [] } });

    it('passes a real answer, and fails it once its body or status stray from the document', async () => {
      const admin = await ctx.user('admin');
      const res = await ctx.http().get('/api/v1/auth/me').set(admin.auth);
      expect(res.status).toBe(200);
      const me = answer('GET', '/api/v1/auth/me', 200, res.body);
      expect(() => checkAgainstOpenApi(me)).not.toThrow();
      expect(() => checkAgainstOpenApi({ ...me, body: { ...res.body, role: 'root' } })).toThrow(/does not match the schema of GET \/api\/v1\/auth\/me 200/);
      expect(() => checkAgainstOpenApi({ ...me, body: { ...res.body, passwordHash: 'x' } })).toThrow(/does not match/);
      expect(() => checkAgainstOpenApi({ ...me, status: 418 })).toThrow(/status not listed/);
      expect(() => checkAgainstOpenApi(answer('GET', '/api/v1/auth/me', 401, envelope('forbidden')))).toThrow(/does not match/);
      expect(() => checkAgainstOpenApi(answer('DELETE', `/api/v1/projects/${admin.id}`, 204, undefined))).not.toThrow();
      expect(() => checkAgainstOpenApi({ ...answer('DELETE', `/api/v1/projects/${admin.id}`, 204, undefined), text: '{}' })).toThrow(/no body/);
    });

    it('allows an undocumented route only the 404 envelope, and checks only the vault’s own gateway answers', () => {
      expect(() => checkAgainstOpenApi(answer('GET', '/api/v1/nope', 404, envelope('not_found')))).not.toThrow();
      expect(() => checkAgainstOpenApi(answer('GET', '/api/v1/nope', 200, {}))).toThrow(/no such operation/);
      expect(() => checkAgainstOpenApi(answer('GET', '/', 200, '<html>', { 'content-type': 'text/html' }))).not.toThrow();
      // The provider's own 401 passes through (`default`); the vault's refusal carries the answer's request id and is checked.
      expect(() => checkAgainstOpenApi(answer('POST', '/gateway/v1/chat/completions', 401, { error: { message: 'bad key' } }, { 'x-request-id': 'r-1' }))).not.toThrow();
      expect(() => checkAgainstOpenApi(answer('POST', '/gateway/v1/chat/completions', 401, envelope('unauthorized'), { 'x-request-id': 'r-1' }))).not.toThrow();
      expect(() => checkAgainstOpenApi(answer('POST', '/gateway/v1/chat/completions', 401, envelope('forbidden'), { 'x-request-id': 'r-1' }))).toThrow(/does not match/);
      expect(() => checkAgainstOpenApi(answer('POST', '/gateway/v1/chat/completions', 418, envelope('unauthorized'), { 'x-request-id': 'r-1' }))).toThrow(/status not listed/);
    });
  });
});
