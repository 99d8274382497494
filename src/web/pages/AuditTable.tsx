import { Fragment, useState } from 'react';
import type { AuditEvent } from '../api';
import { useDirectory } from '../directory';
import { useI18n, type MessageKey } from '../i18n';
import { Link } from '../router';
import { OutcomeBadge } from '../components/Badges';

/** Audit rows: who, what, outcome, from where, why — with a details row (user agent, request id, detail). */
export function AuditTable({ events, showKey, loading, emptyText, keyNames }: { events: AuditEvent[]; showKey: boolean; loading: boolean; emptyText: string; keyNames?: Map<string, string> }) {
  const { t, dateTime } = useI18n();
  const { projectName } = useDirectory();
  const [open, setOpen] = useState<string | null>(null);
  const cols = showKey ? 9 : 7;
  const via = (e: AuditEvent) => (e.via === 'api_token' ? t('audit.viaToken') : e.via === 'cli' ? t('audit.viaCli') : null);
  return (
    <div className="table-wrap">
      <table className="table audit-table" data-testid="audit-table" aria-busy={loading}>
        <thead>
          <tr>
            <th>{t('audit.col.at')}</th>
            <th>{t('audit.col.action')}</th>
            <th>{t('audit.col.outcome')}</th>
            <th>{t('audit.col.user')}</th>
            {showKey && <th>{t('audit.col.key')}</th>}
            {showKey && <th>{t('audit.col.project')}</th>}
            <th>{t('audit.col.ip')}</th>
            <th>{t('audit.col.reason')}</th>
            <th>
              <span className="sr-only">{t('audit.details')}</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {events.map((e) => (
            <Fragment key={e.id}>
              <tr data-testid="audit-row" data-action={e.action} data-outcome={e.outcome}>
                <td className="nowrap">{dateTime(e.at)}</td>
                <td>{t(`action.${e.action}` as MessageKey)}</td>
                <td>
                  <OutcomeBadge outcome={e.outcome} />
                </td>
                <td>
                  {e.actorUsername ?? t('common.none')}
                  {e.actorRole && <span className="muted small"> · {t(`role.${e.actorRole}` as MessageKey)}</span>}
                </td>
                {showKey && <td>{e.keyId ? <Link to={`/keys/${e.keyId}`}>{keyNames?.get(e.keyId) ?? e.keyId.slice(0, 8)}</Link> : t('common.none')}</td>}
                {showKey && <td>{e.projectId ? projectName(e.projectId) : t('common.none')}</td>}
                <td className="nowrap">
                  {e.ip ?? t('common.none')}
                  {via(e) && <span className="muted small"> · {via(e)}</span>}
                </td>
                <td className="reason">{e.reason ?? ''}</td>
                <td>
                  <button type="button" className="link small" aria-expanded={open === e.id} onClick={() => setOpen(open === e.id ? null : e.id)}>
                    {t('audit.details')}
                  </button>
                </td>
              </tr>
              {open === e.id && (
                <tr className="details-row">
                  <td colSpan={cols}>
                    <dl className="kv small">
                      <dt>ID</dt>
                      <dd>
                        <code>{e.id}</code>
                      </dd>
                      <dt>{t('audit.col.seq')}</dt>
                      <dd>{e.seq ?? t('common.none')}</dd>
                      <dt>{t('audit.userAgent')}</dt>
                      <dd>{e.userAgent ?? t('common.none')}</dd>
                      <dt>{t('audit.requestId')}</dt>
                      <dd>
                        <code>{e.requestId ?? t('common.none')}</code>
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
                  </td>
                </tr>
              )}
            </Fragment>
          ))}
          {!loading && events.length === 0 && (
            <tr>
              <td colSpan={cols} className="empty">
                {emptyText}
              </td>
            </tr>
          )}
        </tbody>
      </table>
    </div>
  );
}
