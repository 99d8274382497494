import { z } from 'zod';
import { SCOPES } from '../modules/auth/actor';
import { ROLES, USER_STATUSES } from '../modules/users/user.entity';
import { HEALTH_STATUSES, KEY_STATUSES } from '../modules/provider-keys/provider-key.entity';
import { PROVIDER_NAMES } from '../modules/provider-keys/providers';
import { AUDIT_ACTIONS, AUDIT_OUTCOMES } from '../modules/audit/audit-event.entity';
import { HEALTH_SOURCES } from '../modules/health/health.repository';
import { FINDINGS, type HygieneReport } from '../modules/reports/hygiene.service';
import { NOTIFICATION_EVENTS } from '../notifications';
import { DELIVERY_STATUSES, WEBHOOK_STATUSES } from '../modules/webhooks/webhooks.repository';
import type { User } from '../modules/users/users.service';
import type { Project } from '../modules/projects/projects.service';
import type { ProviderKey, Revealed } from '../modules/provider-keys/provider-keys.service';
import type { ApiToken, IssuedToken } from '../modules/api-tokens/api-tokens.service';
import type { AuditEvent } from '../modules/audit/audit.service';
import type { VirtualKey, IssuedVirtualKey } from '../modules/gateway/virtual-keys.service';
import type { UsageBucket } from '../modules/gateway/usage';
import type { Health, HealthEvent } from '../modules/health/health.service';
import type { CreatedWebhook, Delivery, Webhook } from '../modules/webhooks/webhooks.service';
import type { VerifyResult } from '../modules/audit/audit-chain';

/**
 * What the API answers, as zod schemas: the source of the response bodies in the OpenAPI document (docs/openapi.json).
 * The services return plain TypeScript interfaces; the checks at the end of this file fail to compile when one of
 * them and its schema here drift apart (a field added, removed or retyped on either side).
 */

const id = z.string().describe('A UUID (v7: ids sort by creation)');
const time = z.string().describe('ISO-8601 UTC date-time');
const nullableTime = time.nullable();

export const UserView = z.object({
  id,
  username: z.string(),
  displayName: z.string().nullable(),
  role: z.enum(ROLES),
  status: z.enum(USER_STATUSES),
  mustChangePassword: z.boolean().describe('The password was set by someone else: the user must change it at the next sign-in'),
  createdAt: time,
  updatedAt: time,
});

export const ProjectView = z.object({ id, name: z.string(), description: z.string().nullable(), createdAt: time, updatedAt: time });

export const HealthView = z.object({
  status: z.enum(HEALTH_STATUSES),
  checkedAt: nullableTime,
  detail: z.string().nullable(),
});

export const ProviderKeyView = z.object({
  id,
  name: z.string(),
  provider: z.enum(PROVIDER_NAMES),
  hint: z.string().describe('The shared prefix and last characters, never more than a quarter of the secret'),
  status: z.enum(KEY_STATUSES),
  ownerId: id,
  projectId: id,
  remark: z.string().nullable(),
  baseUrl: z.string().nullable().describe("Where the gateway sends the key's calls; null: the provider's default"),
  createdBy: id,
  createdAt: time,
  updatedAt: time,
  expiresAt: nullableTime,
  lastRevealedAt: nullableTime,
  revealCount: z.number().int(),
  health: HealthView,
  healthProbe: z.object({ model: z.string() }).nullable(),
});

export const RevealedView = z.object({ id, secret: z.string().describe('The plaintext secret: never cache or log it'), hint: z.string(), revealedAt: time });

const scopes = z.array(z.enum(SCOPES));

export const ApiTokenView = z.object({
  id,
  name: z.string(),
  prefix: z.string().describe('The first 12 characters, for recognising a token'),
  userId: id,
  scopes,
  createdAt: time,
  expiresAt: time,
  lastUsedAt: nullableTime,
  lastUsedIp: z.string().nullable(),
  usageCount: z.number().int(),
  revokedAt: nullableTime,
});

export const IssuedTokenView = z.object({
  id,
  name: z.string(),
  prefix: z.string(),
  userId: id,
  scopes,
  expiresAt: time,
  token: z.string().describe('`pkv_` + 43 base64url characters, shown this once'),
});

export const AuditEventView = z.object({
  id,
  seq: z.number().int().nullable().describe('Position in the hash chain; null until sealed'),
  at: time,
  action: z.enum(AUDIT_ACTIONS),
  outcome: z.enum(AUDIT_OUTCOMES),
  actorId: id.nullable(),
  actorUsername: z.string().nullable(),
  actorRole: z.string().nullable(),
  via: z.string().nullable().describe('session, api_token or cli'),
  apiTokenId: id.nullable(),
  keyId: id.nullable(),
  projectId: id.nullable(),
  ownerId: id.nullable(),
  ip: z.string().nullable(),
  userAgent: z.string().nullable(),
  requestId: z.string().nullable(),
  reason: z.string().nullable(),
  detail: z.record(z.string(), z.unknown()).nullable(),
});

const chainHead = z.object({ seq: z.number().int(), hash: z.string() });
const checkpoint = z.object({ seq: z.number().int(), hash: z.string(), at: time }).nullable();
export const VerifyResultView = z.union([
  z.object({ ok: z.literal(true), checked: z.number().int(), head: chainHead, unsealed: z.number().int(), checkpoint }),
  z.object({ ok: z.literal(false), checked: z.number().int(), firstBadId: id.nullable(), reason: z.string(), head: chainHead, unsealed: z.number().int(), checkpoint }),
]);

const virtualKeyShape = {
  id,
  keyId: id,
  userId: id,
  name: z.string(),
  prefix: z.string(),
  models: z.array(z.string()).nullable().describe('null: any model'),
  dailyRequestLimit: z.number().int().nullable(),
  dailyTokenLimit: z.number().int().nullable(),
  createdAt: time,
  expiresAt: time,
  revokedAt: nullableTime,
  lastUsedAt: nullableTime,
  requestCount: z.number().int(),
};
export const VirtualKeyView = z.object(virtualKeyShape);
export const IssuedVirtualKeyView = z.object({ ...virtualKeyShape, virtualKey: z.string().describe('`pkv_vk_` + 43 base64url characters, shown this once') });

export const UsageBucketView = z.object({
  start: time,
  requests: z.number().int(),
  errors: z.number().int(),
  promptTokens: z.number().int(),
  completionTokens: z.number().int(),
});

export const HealthEventView = z.object({
  id,
  at: time,
  status: z.enum(HEALTH_STATUSES),
  previousStatus: z.enum(HEALTH_STATUSES).nullable(),
  detail: z.string().nullable(),
  source: z.enum(HEALTH_SOURCES),
  httpStatus: z.number().int().nullable(),
  actorId: id.nullable(),
});

export const HygieneReportView = z.object({
  generatedAt: time,
  days: z.number().int(),
  items: z.array(
    z.object({
      finding: z.enum(FINDINGS),
      keyId: id.nullable(),
      keyName: z.string().nullable(),
      provider: z.string().nullable(),
      keyStatus: z.string().nullable(),
      ownerId: id.nullable(),
      ownerUsername: z.string().nullable(),
      projectId: id,
      projectName: z.string().nullable(),
      createdAt: time,
      secretSetAt: nullableTime,
      expiresAt: nullableTime,
      lastUsedAt: nullableTime,
      revealsLast30Days: z.number().int().nullable(),
      health: z.string().nullable(),
      detail: z.string(),
    }),
  ),
  truncated: z.array(z.enum(FINDINGS)),
});

const webhookShape = {
  id,
  url: z.string(),
  events: z.array(z.string()).describe(`Of: ${NOTIFICATION_EVENTS.join(', ')}`),
  status: z.enum(WEBHOOK_STATUSES),
  disabledReason: z.string().nullable(),
  disabledAt: nullableTime,
  failingSince: nullableTime,
  createdBy: id,
  createdAt: time,
  updatedAt: time,
};
export const WebhookView = z.object(webhookShape);
export const CreatedWebhookView = z.object({ ...webhookShape, secret: z.string().optional().describe('Only when the vault generated it: shown this once') });

export const DeliveryView = z.object({
  id,
  webhookId: id,
  event: z.string(),
  status: z.enum(DELIVERY_STATUSES),
  attempts: z.number().int(),
  nextAttemptAt: nullableTime,
  lastStatusCode: z.number().int().nullable(),
  lastError: z.string().nullable(),
  createdAt: time,
  completedAt: nullableTime,
  body: z.unknown().describe('The JSON body sent (and signed) on every attempt'),
  attemptLog: z.array(z.object({ at: time, statusCode: z.number().int().nullable(), error: z.string().nullable(), durationMs: z.number().int() })),
});

export const LoginView = z.union([
  z.object({ accessToken: z.string(), tokenType: z.literal('Bearer'), expiresIn: z.number().int().describe('Seconds'), user: UserView }),
  z.object({
    tokenType: z.literal('Cookie').describe('`cookie: true`: the session is in the HttpOnly `pkv_session` cookie'),
    expiresIn: z.number().int(),
    user: UserView,
    csrfToken: z.string().describe('Send it as `X-CSRF-Token` on every unsafe request made with the cookie'),
  }),
]);

export const MeView = z.object({
  id,
  username: z.string(),
  role: z.enum(ROLES),
  status: z.literal('active'),
  via: z.enum(['session', 'api_token', 'cli']),
  mustChangePassword: z.literal(true).optional(),
  scopes: scopes.optional().describe('API tokens: the scopes granted'),
  effectiveScopes: scopes.optional().describe("API tokens: what the token may do now (its scopes ∩ the user's current role)"),
  apiTokenId: id.optional(),
  csrfToken: z.string().optional().describe('Cookie sessions: the CSRF token to send as `X-CSRF-Token`'),
});

export const page = <T extends z.ZodType>(item: T) =>
  z.object({ items: z.array(item), nextCursor: z.string().nullable().describe('Pass as `cursor` for the next page; null on the last') });

// Compile-time: each view above describes exactly what its service returns.
type SameKeys<A, B> = [Exclude<keyof A, keyof B>, Exclude<keyof B, keyof A>] extends [never, never] ? true : false;
type Describes<S extends z.ZodType, I> = I extends z.output<S> ? SameKeys<I, z.output<S>> : false;
type VerifyOk = Extract<VerifyResult, { ok: true }>;
type VerifyBad = Extract<VerifyResult, { ok: false }>;
export const viewsMatchServices: [
  Describes<typeof UserView, User>, Describes<typeof ProjectView, Project>, Describes<typeof ProviderKeyView, ProviderKey>,
  Describes<typeof RevealedView, Revealed>, Describes<typeof ApiTokenView, ApiToken>, Describes<typeof IssuedTokenView, IssuedToken>,
  Describes<typeof AuditEventView, AuditEvent>, Describes<typeof VerifyResultView.options[0], VerifyOk>, Describes<typeof VerifyResultView.options[1], VerifyBad>,
  Describes<typeof VirtualKeyView, VirtualKey>, Describes<typeof IssuedVirtualKeyView, IssuedVirtualKey>, Describes<typeof UsageBucketView, UsageBucket>,
  Describes<typeof HealthView, Health>, Describes<typeof HealthEventView, HealthEvent>, Describes<typeof HygieneReportView, HygieneReport>,
  Describes<typeof WebhookView, Webhook>, Describes<typeof CreatedWebhookView, CreatedWebhook>, Describes<typeof DeliveryView, Delivery>,
] = [true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true];
