import { useEffect, useState } from 'react';
import { call, client, HEALTH_STATUSES, PROVIDERS, qs, query, type ProviderKey } from '../api';
import { useDirectory } from '../directory';
import { errorText } from '../errors';
import { useOpenFromQuery, useTitle } from '../hooks';
import { useI18n, type MessageKey } from '../i18n';
import { Link } from '../router';
import { useMe } from '../session';
import { Alert } from '../components/Alert';
import { HealthBadge, StatusBadge } from '../components/Badges';
import { DataTable } from '../components/DataTable';
import { SetupGuide } from './SetupGuide';
import { Pager, usePaged } from '../components/Pager';
import { useKeyActions, type Notice } from './KeyActions';

interface Filters {
  projectId: string;
  ownerId: string;
  provider: string;
  status: string;
  health: string;
}

const FILTER_NAMES: Array<keyof Filters> = ['projectId', 'ownerId', 'provider', 'status', 'health'];

/** Filters (never the free-text search, which someone might paste a secret into) are kept in the URL. */
function filtersFromUrl(): Filters {
  const q = new URLSearchParams(window.location.search);
  return { projectId: q.get('projectId') ?? '', ownerId: q.get('ownerId') ?? '', provider: q.get('provider') ?? '', status: q.get('status') ?? '', health: q.get('health') ?? '' };
}

export function KeysPage() {
  const { t, dateTime, number } = useI18n();
  const me = useMe();
  const { users, projects, userName, projectName } = useDirectory();
  useTitle(t('nav.keys'));
  const [filters, setFilters] = useState<Filters>(filtersFromUrl);
  const [search, setSearch] = useState('');
  const [q, setQ] = useState('');
  const [notice, setNotice] = useState<Notice>(null);

  // Search as you type, once typing pauses.
  useEffect(() => {
    const timer = window.setTimeout(() => setQ(search.trim()), 300);
    return () => window.clearTimeout(timer);
  }, [search]);

  useEffect(() => {
    const params: Record<string, string> = {};
    for (const n of FILTER_NAMES) if (filters[n]) params[n] = filters[n];
    window.history.replaceState(null, '', `/keys${qs(params)}`);
  }, [filters]);

  const key = JSON.stringify([filters, q]);
  const pager = usePaged<ProviderKey>((cursor, limit) => call(client.GET('/api/v1/provider-keys', { params: { query: query('/api/v1/provider-keys', { ...filters, q, limit, cursor }) } })), key);
  const actions = useKeyActions({ onChanged: pager.reload, onNotice: setNotice });
  const set = (name: keyof Filters) => (e: { target: { value: string } }) => setFilters((f) => ({ ...f, [name]: e.target.value }));
  const filtered = q !== '' || FILTER_NAMES.some((n) => filters[n]);
  // An empty vault (no filter, nothing listed): the admin gets the setup path instead of a bare "nothing here".
  const showGuide = me.role === 'admin' && !filtered && !pager.loading && pager.error == null && pager.page === 1 && pager.items.length === 0;

  useOpenFromQuery(me.role === 'admin', actions.openAdd);

  return (
    <div className="page">
      <div className="page-head">
        <h1>{t('keys.title')}</h1>
        {me.role === 'admin' && (
          <button type="button" className="primary" onClick={actions.openAdd} data-testid="add-key">
            + {t('keys.add')}
          </button>
        )}
      </div>
      {me.role === 'member' && <p className="muted">{t('keys.memberNote')}</p>}

      <div className="filters" role="search">
        <input type="search" className="search" placeholder={t('keys.searchPlaceholder')} aria-label={t('keys.searchLabel')} value={search} onChange={(e) => setSearch(e.target.value)} maxLength={128} autoComplete="off" spellCheck={false} data-testid="key-search" />
        <label>
          <span>{t('keys.filterProject')}</span>
          <select value={filters.projectId} onChange={set('projectId')} data-testid="filter-project">
            <option value="">{t('common.all')}</option>
            {projects.map((p) => (
              <option key={p.id} value={p.id}>
                {p.name}
              </option>
            ))}
          </select>
        </label>
        {me.role !== 'member' && (
          <label>
            <span>{t('keys.filterOwner')}</span>
            <select value={filters.ownerId} onChange={set('ownerId')} data-testid="filter-owner">
              <option value="">{t('common.all')}</option>
              {users
                .filter((u) => u.role !== 'auditor')
                .map((u) => (
                  <option key={u.id} value={u.id}>
                    {u.username}
                  </option>
                ))}
            </select>
          </label>
        )}
        <label>
          <span>{t('keys.filterProvider')}</span>
          <select value={filters.provider} onChange={set('provider')} data-testid="filter-provider">
            <option value="">{t('common.all')}</option>
            {PROVIDERS.map((p) => (
              <option key={p} value={p}>
                {t(`provider.${p}` as MessageKey)}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>{t('keys.filterStatus')}</span>
          <select value={filters.status} onChange={set('status')} data-testid="filter-status">
            <option value="">{t('keys.statusCurrent')}</option>
            <option value="active">{t('status.active')}</option>
            <option value="disabled">{t('status.disabled')}</option>
            <option value="deleted">{t('status.deleted')}</option>
          </select>
        </label>
        <label>
          <span>{t('keys.filterHealth')}</span>
          <select value={filters.health} onChange={set('health')} data-testid="filter-health">
            <option value="">{t('common.all')}</option>
            {HEALTH_STATUSES.map((h) => (
              <option key={h} value={h}>
                {t(`health.status.${h}` as MessageKey)}
              </option>
            ))}
          </select>
        </label>
      </div>

      {notice && (
        <Alert kind={notice.kind} onDismiss={() => setNotice(null)} testId="page-notice">
          {notice.text}
        </Alert>
      )}
      {pager.error != null && <Alert kind="error">{errorText(t, pager.error)}</Alert>}

      {showGuide && <SetupGuide onAddKey={actions.openAdd} />}
      <DataTable
        rows={pager.items}
        rowKey={(k) => k.id}
        rowAttrs={(k) => ({ 'data-testid': 'key-row', 'data-key-id': k.id })}
        loading={pager.loading}
        label={t('keys.title')}
        testId="keys-table"
        empty={filtered ? t('common.noMatch') : t(`keys.empty.${me.role}` as MessageKey)}
        columns={[
          {
            id: 'name',
            header: t('keys.col.name'),
            cell: (k) => (
              <>
                <Link to={`/keys/${k.id}`} className="key-name">
                  {k.name}
                </Link>
                {k.remark && <div className="muted small clamp">{k.remark}</div>}
              </>
            ),
          },
          { id: 'provider', header: t('keys.col.provider'), cell: (k) => t(`provider.${k.provider}` as MessageKey) },
          {
            id: 'hint',
            header: t('keys.col.hint'),
            cell: (k) => (
              <code className="hint" data-testid="key-hint">
                {k.hint}
              </code>
            ),
          },
          { id: 'owner', header: t('keys.col.owner'), cell: (k) => (k.ownerId === me.id ? `${userName(k.ownerId)} (${t('common.you')})` : userName(k.ownerId)) },
          { id: 'project', header: t('keys.col.project'), cell: (k) => projectName(k.projectId) },
          { id: 'status', header: t('keys.col.status'), cell: (k) => <StatusBadge status={k.status} expiresAt={k.expiresAt} /> },
          {
            id: 'health',
            header: t('keys.col.health'),
            cell: (k) => (
              <span title={k.health.checkedAt ? t('health.checkedAtTitle', { at: dateTime(k.health.checkedAt) }) : t('health.neverChecked')}>
                <HealthBadge status={k.health.status} />
              </span>
            ),
          },
          { id: 'revealed', header: t('keys.col.lastRevealed'), className: 'nowrap', cell: (k) => (k.lastRevealedAt ? dateTime(k.lastRevealedAt) : <span className="muted">{t('common.never')}</span>) },
          { id: 'count', header: t('keys.col.revealCount'), className: 'num', cell: (k) => number(k.revealCount) },
        ]}
        actions={(k) => actions.buttons(k, { detailLink: true })}
      />
      <Pager pager={pager} />
      {actions.dialogs}
    </div>
  );
}
