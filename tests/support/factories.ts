import crypto from 'node:crypto';
import type { TestContext, TestUser } from './test-app';

export const uniqueSecret = (prefix = 'sk-') => `${prefix}${crypto.randomBytes(24).toString('base64url')}`;

export async function createProject(ctx: TestContext, admin: TestUser, name = `proj-${crypto.randomBytes(4).toString('hex')}`): Promise<{ id: string; name: string }> {
  const res = await ctx.http().post('/api/v1/projects').set(admin.auth).send({ name });
  if (res.status !== 201) throw new Error(`createProject: ${res.status} ${JSON.stringify(res.body)}`);
  return res.body;
}

export interface CreatedKey {
  id: string;
  secret: string;
  ownerId: string;
  projectId: string;
  hint: string;
}

export async function createKey(
  ctx: TestContext,
  admin: TestUser,
  fields: { ownerId: string; projectId: string; secret?: string; provider?: string; name?: string; expiresAt?: string; remark?: string; baseUrl?: string },
): Promise<CreatedKey> {
  const secret = fields.secret ?? uniqueSecret();
  const res = await ctx
    .http()
    .post('/api/v1/provider-keys')
    .set(admin.auth)
    .send({ name: fields.name ?? 'key', provider: fields.provider ?? 'openai', ownerId: fields.ownerId, projectId: fields.projectId, secret, ...(fields.expiresAt ? { expiresAt: fields.expiresAt } : {}), ...(fields.remark ? { remark: fields.remark } : {}), ...(fields.baseUrl ? { baseUrl: fields.baseUrl } : {}) });
  if (res.status !== 201) throw new Error(`createKey: ${res.status} ${JSON.stringify(res.body)}`);
  return { id: res.body.id, secret, ownerId: fields.ownerId, projectId: fields.projectId, hint: res.body.hint };
}

export async function createApiToken(ctx: TestContext, as: TestUser, scopes: string[], extra: Record<string, unknown> = {}): Promise<{ id: string; token: string; auth: { Authorization: string } }> {
  const res = await ctx.http().post('/api/v1/api-tokens').set(as.auth).send({ name: 'test token', scopes, ...extra });
  if (res.status !== 201) throw new Error(`createApiToken: ${res.status} ${JSON.stringify(res.body)}`);
  return { id: res.body.id, token: res.body.token, auth: { Authorization: `Bearer ${res.body.token}` } };
}

/** Audit rows as stored, newest first, straight from the database. */
export async function auditRows(ctx: TestContext, where: { action?: string; keyId?: string } = {}): Promise<Array<Record<string, unknown>>> {
  const clauses: string[] = [];
  const params: unknown[] = [];
  if (where.action) clauses.push('action = ?'), params.push(where.action);
  if (where.keyId) clauses.push('key_id = ?'), params.push(where.keyId);
  const sql = `SELECT * FROM audit_events ${clauses.length ? 'WHERE ' + clauses.join(' AND ') : ''} ORDER BY id DESC`;
  return ctx.db.read((m) => m.query(sql, params));
}
