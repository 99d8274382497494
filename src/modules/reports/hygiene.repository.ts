import type { EntityManager } from 'typeorm';

/** One live key as the hygiene report sees it: metadata, its owner and project as they are, and its last use. */
export interface HygieneKeyRow {
  id: string;
  name: string;
  provider: string;
  status: string;
  ownerId: string;
  ownerUsername: string | null;
  ownerStatus: string | null;
  projectId: string;
  projectName: string | null;
  createdAt: number;
  secretSetAt: number;
  expiresAt: number | null;
  /** The later of the last reveal and the last gateway call (null: neither, ever). */
  lastUsedAt: number | null;
  healthStatus: string;
  healthDetail: string | null;
}

export interface EmptyProjectRow {
  id: string;
  name: string;
  createdAt: number;
}

type Raw = Record<string, unknown>;
const n = (v: unknown) => (v == null ? null : Number(v));
const s = (v: unknown) => (v == null ? null : String(v));

/** Live keys with their owner, project and last gateway use (virtual keys' last_used_at, flushed about every second). */
const KEYS =
  'SELECT k.id, k.name, k.provider, k.status, k.owner_id, k.project_id, k.created_at, k.secret_set_at, k.expires_at, k.last_revealed_at, ' +
  'k.health_status, k.health_detail, u.username AS owner_username, u.status AS owner_status, p.name AS project_name, v.last_used AS gateway_last_used ' +
  'FROM provider_keys k LEFT JOIN users u ON u.id = k.owner_id LEFT JOIN projects p ON p.id = k.project_id ' +
  'LEFT JOIN (SELECT key_id, MAX(last_used_at) AS last_used FROM virtual_keys GROUP BY key_id) v ON v.key_id = k.id ' +
  "WHERE k.status <> 'deleted'";

function keyOf(r: Raw): HygieneKeyRow {
  const revealed = n(r.last_revealed_at);
  const called = n(r.gateway_last_used);
  return {
    id: String(r.id),
    name: String(r.name),
    provider: String(r.provider),
    status: String(r.status),
    ownerId: String(r.owner_id),
    ownerUsername: s(r.owner_username),
    ownerStatus: s(r.owner_status),
    projectId: String(r.project_id),
    projectName: s(r.project_name),
    createdAt: Number(r.created_at),
    secretSetAt: n(r.secret_set_at) ?? Number(r.created_at),
    expiresAt: n(r.expires_at),
    lastUsedAt: revealed === null ? called : called === null ? revealed : Math.max(revealed, called),
    healthStatus: String(r.health_status),
    healthDetail: s(r.health_detail),
  };
}

export const UNHEALTHY = ['invalid', 'no_credit', 'rate_limited', 'upstream_error'] as const;

/** The report's questions, one statement each, each capped at `limit` rows. */
export class HygieneRepository {
  private async keys(m: EntityManager, where: string, params: unknown[], order: string, limit: number): Promise<HygieneKeyRow[]> {
    const rows: Raw[] = await m.query(`SELECT * FROM (${KEYS}) AS base WHERE ${where} ORDER BY ${order} LIMIT ?`, [...params, limit]);
    return rows.map(keyOf);
  }

  /** Active keys older than `cutoff` neither revealed nor used through the gateway since. */
  unused(m: EntityManager, cutoff: number, limit: number): Promise<HygieneKeyRow[]> {
    return this.keys(
      m,
      "status = 'active' AND created_at < ? AND (last_revealed_at IS NULL OR last_revealed_at < ?) AND (gateway_last_used IS NULL OR gateway_last_used < ?)",
      [cutoff, cutoff, cutoff],
      'created_at, id',
      limit,
    );
  }

  /** Keys whose secret was set (pasted or last replaced) before `cutoff`. */
  old(m: EntityManager, cutoff: number, limit: number): Promise<HygieneKeyRow[]> {
    return this.keys(m, 'COALESCE(secret_set_at, created_at) < ?', [cutoff], 'COALESCE(secret_set_at, created_at), id', limit);
  }

  expiring(m: EntityManager, now: number, until: number, limit: number): Promise<HygieneKeyRow[]> {
    return this.keys(m, 'expires_at > ? AND expires_at <= ?', [now, until], 'expires_at, id', limit);
  }

  expired(m: EntityManager, now: number, limit: number): Promise<HygieneKeyRow[]> {
    return this.keys(m, 'expires_at <= ?', [now], 'expires_at, id', limit);
  }

  ownerDisabled(m: EntityManager, limit: number): Promise<HygieneKeyRow[]> {
    return this.keys(m, "(owner_status IS NULL OR owner_status <> 'active')", [], 'id', limit);
  }

  /** Live keys whose project row is gone (projects holding live keys cannot be deleted through the product). */
  projectMissing(m: EntityManager, limit: number): Promise<HygieneKeyRow[]> {
    return this.keys(m, 'project_name IS NULL', [], 'id', limit);
  }

  unhealthy(m: EntityManager, limit: number): Promise<HygieneKeyRow[]> {
    return this.keys(m, `status = 'active' AND health_status IN (${UNHEALTHY.map(() => '?').join(', ')})`, [...UNHEALTHY], 'health_status, id', limit);
  }

  /** Live keys by successful reveals since `since` (from the audit trail), most first. */
  async mostRevealed(m: EntityManager, since: number, limit: number): Promise<Array<HygieneKeyRow & { reveals: number }>> {
    const counts: Raw[] = await m.query(
      "SELECT key_id, COUNT(*) AS reveals FROM audit_events WHERE action = 'provider_key.reveal' AND outcome = 'success' AND at >= ? AND key_id IS NOT NULL GROUP BY key_id ORDER BY reveals DESC, key_id LIMIT ?",
      [since, limit * 2],
    );
    if (counts.length === 0) return [];
    const ids = counts.map((r) => String(r.key_id));
    const keys = new Map((await this.keys(m, `id IN (${ids.map(() => '?').join(', ')})`, ids, 'id', ids.length)).map((k) => [k.id, k]));
    return counts
      .filter((r) => keys.has(String(r.key_id)))
      .slice(0, limit)
      .map((r) => ({ ...keys.get(String(r.key_id))!, reveals: Number(r.reveals) }));
  }

  /** Projects that hold no live key. */
  async emptyProjects(m: EntityManager, limit: number): Promise<EmptyProjectRow[]> {
    const rows: Raw[] = await m.query(
      "SELECT p.id, p.name, p.created_at FROM projects p WHERE NOT EXISTS (SELECT 1 FROM provider_keys k WHERE k.project_id = p.id AND k.status <> 'deleted') ORDER BY p.id LIMIT ?",
      [limit],
    );
    return rows.map((r) => ({ id: String(r.id), name: String(r.name), createdAt: Number(r.created_at) }));
  }
}
