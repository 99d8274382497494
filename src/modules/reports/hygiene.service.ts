import type { Database } from '../../db/database';
import { ForbiddenError } from '../../errors';
import { isoTimeOfMs } from '../../iso-time';
import { Actor, can } from '../auth/actor';
import { csvTable, UTF8_BOM } from '../audit/audit-export';
import type { EmptyProjectRow, HygieneKeyRow, HygieneRepository } from './hygiene.repository';

const DAY_MS = 86_400_000;
/** Rows per finding; beyond it the finding is named in `truncated`. */
export const FINDING_LIMIT = 1000;
export const MOST_REVEALED = 10;
const REVEAL_WINDOW_DAYS = 30;

export const FINDINGS = ['unused', 'old', 'expiring', 'expired', 'owner_disabled', 'project_missing', 'project_empty', 'most_revealed', 'unhealthy'] as const;
export type Finding = (typeof FINDINGS)[number];

/** One row of the report: a finding about a key (or, for `project_empty`, a project). */
export interface HygieneItem {
  finding: Finding;
  keyId: string | null;
  keyName: string | null;
  provider: string | null;
  keyStatus: string | null;
  ownerId: string | null;
  ownerUsername: string | null;
  projectId: string;
  projectName: string | null;
  createdAt: string;
  secretSetAt: string | null;
  expiresAt: string | null;
  lastUsedAt: string | null;
  revealsLast30Days: number | null;
  health: string | null;
  detail: string;
}

export interface HygieneReport {
  generatedAt: string;
  days: number;
  items: HygieneItem[];
  /** Findings that had more than FINDING_LIMIT rows (only the first are listed). */
  truncated: Finding[];
}

export const REPORT_COLUMNS = [
  'finding', 'keyId', 'keyName', 'provider', 'keyStatus', 'ownerId', 'ownerUsername', 'projectId', 'projectName',
  'createdAt', 'secretSetAt', 'expiresAt', 'lastUsedAt', 'revealsLast30Days', 'health', 'detail',
] as const;

const iso = (ms: number | null) => (ms === null ? null : isoTimeOfMs(ms));
const daysBetween = (from: number, to: number) => Math.floor((to - from) / DAY_MS);

function keyItem(finding: Finding, k: HygieneKeyRow, detail: string, reveals: number | null = null): HygieneItem {
  return {
    finding,
    keyId: k.id,
    keyName: k.name,
    provider: k.provider,
    keyStatus: k.status,
    ownerId: k.ownerId,
    ownerUsername: k.ownerUsername,
    projectId: k.projectId,
    projectName: k.projectName,
    createdAt: isoTimeOfMs(k.createdAt),
    secretSetAt: iso(k.secretSetAt),
    expiresAt: iso(k.expiresAt),
    lastUsedAt: iso(k.lastUsedAt),
    revealsLast30Days: reveals,
    health: k.healthStatus,
    detail,
  };
}

function projectItem(p: EmptyProjectRow): HygieneItem {
  return {
    finding: 'project_empty',
    keyId: null,
    keyName: null,
    provider: null,
    keyStatus: null,
    ownerId: null,
    ownerUsername: null,
    projectId: p.id,
    projectName: p.name,
    createdAt: isoTimeOfMs(p.createdAt),
    secretSetAt: null,
    expiresAt: null,
    lastUsedAt: null,
    revealsLast30Days: null,
    health: null,
    detail: 'the project holds no live key',
  };
}

/**
 * GET /reports/hygiene: what to clean up, for admins and auditors (API tokens: audit:read, since it counts reveals
 * from the audit trail). N days is the horizon of "unused", "old" and "expiring".
 */
export class HygieneService {
  constructor(
    private readonly db: Database,
    private readonly repo: HygieneRepository,
    /** Writes this instance's gateway usage first, so "last used" includes the latest calls. */
    private readonly flushUsage: () => Promise<void>,
  ) {}

  async report(actor: Actor, days: number, now = Date.now()): Promise<HygieneReport> {
    if (actor.role === 'member' || !can(actor, 'audit:read')) throw new ForbiddenError('The hygiene report needs the audit:read right (admins and auditors)');
    await this.flushUsage();
    const cutoff = now - days * DAY_MS;
    const cap = FINDING_LIMIT + 1;
    const found = await this.db.read(async (m) => ({
      unused: await this.repo.unused(m, cutoff, cap),
      old: await this.repo.old(m, cutoff, cap),
      expiring: await this.repo.expiring(m, now, now + days * DAY_MS, cap),
      expired: await this.repo.expired(m, now, cap),
      owner_disabled: await this.repo.ownerDisabled(m, cap),
      project_missing: await this.repo.projectMissing(m, cap),
      project_empty: await this.repo.emptyProjects(m, cap),
      most_revealed: await this.repo.mostRevealed(m, now - REVEAL_WINDOW_DAYS * DAY_MS, MOST_REVEALED),
      unhealthy: await this.repo.unhealthy(m, cap),
    }));
    const truncated = (Object.entries(found) as Array<[Finding, unknown[]]>).filter(([, rows]) => rows.length > FINDING_LIMIT).map(([f]) => f);
    const take = <T>(rows: T[]) => rows.slice(0, FINDING_LIMIT);
    const items: HygieneItem[] = [
      ...take(found.unused).map((k) => keyItem('unused', k, k.lastUsedAt === null ? 'never revealed or used through the gateway' : `not revealed or used through the gateway for ${daysBetween(k.lastUsedAt, now)} days`)),
      ...take(found.old).map((k) => keyItem('old', k, `secret set ${daysBetween(k.secretSetAt, now)} days ago`)),
      ...take(found.expiring).map((k) => keyItem('expiring', k, `expires in ${Math.ceil((k.expiresAt! - now) / DAY_MS)} day(s)`)),
      ...take(found.expired).map((k) => keyItem('expired', k, `expired ${daysBetween(k.expiresAt!, now)} day(s) ago`)),
      ...take(found.owner_disabled).map((k) => keyItem('owner_disabled', k, k.ownerStatus ? `owner ${k.ownerUsername} is ${k.ownerStatus}` : 'the owner no longer exists')),
      ...take(found.project_missing).map((k) => keyItem('project_missing', k, 'the key’s project no longer exists')),
      ...take(found.project_empty).map(projectItem),
      ...found.most_revealed.map((k) => keyItem('most_revealed', k, `${k.reveals} reveal(s) in the last ${REVEAL_WINDOW_DAYS} days`, k.reveals)),
      ...take(found.unhealthy).map((k) => keyItem('unhealthy', k, k.healthDetail ? `${k.healthStatus}: ${k.healthDetail}` : k.healthStatus)),
    ];
    return { generatedAt: isoTimeOfMs(now), days, items, truncated };
  }

  /** The report as CSV, quoted and formula-guarded like the audit export (names and details are people's text), with its BOM for Excel. */
  toCsv(report: HygieneReport): string {
    return UTF8_BOM + csvTable(REPORT_COLUMNS, report.items);
  }
}
