import type { AuditEventEntity } from './audit-event.entity';

/** The rows that say which sealing of a key's secret is current: create, rotate, a move and the format upgrade re-seal it; delete destroys it. */
export const SEALING_ACTIONS = ['provider_key.create', 'provider_key.rotate', 'provider_key.update', 'provider_key.reseal', 'provider_key.delete'] as const;
const SEALING = new Set<string>(SEALING_ACTIONS);
/**
 * Rows are chained in id order, and ids come from each instance's clock: a reveal recorded this soon after a re-seal
 * may have been made just before it on another instance, so it is not judged.
 */
export const SKEW_MS = 5000;

export interface KeySeal {
  /** The current sealing's name (sealIdOf), or null once the key was deleted. */
  sealId: string | null;
  at: number;
  eventId: string;
}

/** The sealing a seal event names: a string, null for a delete, undefined when the row does not say (an update that did not move the key, a row from before seals were recorded). */
export function sealNamedBy(row: Pick<AuditEventEntity, 'action' | 'outcome' | 'detail'>): string | null | undefined {
  if (row.outcome !== 'success' || !SEALING.has(row.action)) return undefined;
  if (row.action === 'provider_key.delete') return null;
  return stringField(row.detail, 'sealId');
}

function stringField(detail: string | null, field: string): string | undefined {
  if (!detail) return undefined;
  try {
    const value = (JSON.parse(detail) as Record<string, unknown>)[field];
    return typeof value === 'string' ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Follows verified audit rows in chain order and remembers, per provider key, the sealing its trail last recorded.
 * A successful reveal that opened another sealing (or any sealing after a delete) means the key's sealed columns were
 * put back from an older copy: the product itself never opens a replaced or destroyed secret.
 */
export class KeySeals {
  private readonly current = new Map<string, KeySeal>();

  get(keyId: string): KeySeal | undefined {
    return this.current.get(keyId);
  }

  /** Takes one verified row; returns why it is a reveal of a sealing its key had already left, or undefined. */
  see(row: AuditEventEntity): string | undefined {
    if (!row.keyId || row.outcome !== 'success') return undefined;
    const named = sealNamedBy(row);
    if (row.action === 'provider_key.reseal' && named !== undefined) {
      // The upgrade re-seals the sealing the trail last recorded, never an older copy put back in the database.
      const from = stringField(row.detail, 'fromSealId');
      const state = this.current.get(row.keyId);
      if (state && from !== undefined && from !== state.sealId) {
        this.current.set(row.keyId, { sealId: named, at: row.at.getTime(), eventId: row.id });
        return `key ${row.keyId} was re-sealed from a sealing its trail had already replaced (audit row ${state.eventId}): its sealed columns were restored from an older copy`;
      }
    }
    if (named !== undefined) {
      this.current.set(row.keyId, { sealId: named, at: row.at.getTime(), eventId: row.id });
      return undefined;
    }
    if (row.action !== 'provider_key.reveal') return undefined;
    const state = this.current.get(row.keyId);
    if (!state || row.at.getTime() - state.at <= SKEW_MS) return undefined;
    if (state.sealId === null) return `key ${row.keyId} was revealed after it was deleted (audit row ${state.eventId}): its sealed columns were restored from an older copy`;
    const opened = stringField(row.detail, 'sealId');
    if (opened !== undefined && opened !== state.sealId) {
      return `key ${row.keyId} was revealed with a secret its trail had already replaced (audit row ${state.eventId}): its sealed columns were restored from an older copy`;
    }
    return undefined;
  }
}
