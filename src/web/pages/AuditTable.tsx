import { useState } from 'react';
import type { AuditEvent } from '../api';
import { useDirectory } from '../directory';
import { useI18n, type MessageKey } from '../i18n';
import { Link } from '../router';
import { OutcomeBadge } from '../components/Badges';
import { DataTable } from '../components/DataTable';

/** A reveal by anyone but the key's owner: what an auditor looks at first. */
export const revealedByOther = (e: AuditEvent) => e.action === 'provider_key.reveal' && !!e.ownerId && e.actorId !== e.ownerId;

/** Audit rows: when, what, outcome, who, whose key, from where, why — with details (user agent, request id, detail). */
export function AuditTable({ events, showKey, loading, emptyText, keyNames }: { events: AuditEvent[]; showKey: boolean; loading: boolean; emptyText: string; keyNames?: Map<string, string> }) {
  const { t, dateTime } = useI18n();
  const { projectName, userName } = useDirectory();
  const [open, setOpen] = useState<string | null>(null);
  const via = (e: AuditEvent) => (e.via === 'api_token' ? t('audit.viaToken') : e.via === 'cli' ? t('audit.viaCli') : null);
  const none = t('common.none');
  return (
    <DataTable
      rows={events}
      rowKey={(e) => e.id}
      rowAttrs={(e) => ({ 'data-testid': 'audit-row', 'data-action': e.action, 'data-outcome': e.outcome, 'data-other': String(revealedByOther(e)) })}
      loading={loading}
      label={t('audit.title')}
      testId="audit-table"
      className="audit-table"
      empty={emptyText}
      columns={[
        { id: 'at', header: t('audit.col.at'), className: 'nowrap', cell: (e) => dateTime(e.at) },
        { id: 'action', header: t('audit.col.action'), cell: (e) => t(`action.${e.action}` as MessageKey) },
        { id: 'outcome', header: t('audit.col.outcome'), cell: (e) => <OutcomeBadge outcome={e.outcome} /> },
        {
          id: 'user',
          header: t('audit.col.user'),
          cell: (e) => (
            <>
              {e.actorUsername ?? none}
              {e.actorRole && <span className="muted small"> · {t(`role.${e.actorRole}` as MessageKey)}</span>}
            </>
          ),
        },
        showKey && { id: 'key', header: t('audit.col.key'), cell: (e) => (e.keyId ? <Link to={`/keys/${e.keyId}`}>{keyNames?.get(e.keyId) ?? e.keyId.slice(0, 8)}</Link> : none) },
        {
          id: 'owner',
          header: t('audit.col.owner'),
          cell: (e) =>
            e.ownerId ? (
              <>
                {userName(e.ownerId)}
                {revealedByOther(e) && (
                  <span className="badge badge-other" data-testid="not-owner">
                    {t('audit.notOwner')}
                  </span>
                )}
              </>
            ) : (
              none
            ),
        },
        showKey && { id: 'project', header: t('audit.col.project'), cell: (e) => (e.projectId ? projectName(e.projectId) : none) },
        {
          id: 'ip',
          header: t('audit.col.ip'),
          className: 'nowrap',
          cell: (e) => (
            <>
              {e.ip ?? none}
              {via(e) && <span className="muted small"> · {via(e)}</span>}
            </>
          ),
        },
        { id: 'reason', header: t('audit.col.reason'), className: 'reason', cell: (e) => e.reason ?? '' },
      ]}
      actions={(e) => (
        <button type="button" className="link small" aria-expanded={open === e.id} aria-label={t('audit.detailsOf', { action: t(`action.${e.action}` as MessageKey), at: dateTime(e.at) })} onClick={() => setOpen(open === e.id ? null : e.id)}>
          {t('audit.details')}
        </button>
      )}
      extra={(e) =>
        open === e.id && (
          <dl className="kv small audit-details">
            <dt>ID</dt>
            <dd>
              <code>{e.id}</code>
            </dd>
            <dt>{t('audit.col.seq')}</dt>
            <dd>{e.seq ?? none}</dd>
            <dt>{t('audit.userAgent')}</dt>
            <dd>{e.userAgent ?? none}</dd>
            <dt>{t('audit.requestId')}</dt>
            <dd>
              <code>{e.requestId ?? none}</code>
            </dd>
            {e.detail && (
              <>
                <dt>{t('audit.details')}</dt>
                <dd>
                  <code className="wrap">{JSON.stringify(e.detail)}</code>
                </dd>
              </>
            )}
          </dl>
        )
      }
    />
  );
}
