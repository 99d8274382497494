import { useEffect, useState } from 'react';
import { api, PROVIDERS, qs, type PageOf, type ProviderKey } from '../api';
import { useDirectory } from '../directory';
import { errorText } from '../errors';
import { useTitle } from '../hooks';
import { useI18n, type MessageKey } from '../i18n';
import { Link } from '../router';
import { useMe } from '../session';
import { Alert } from '../components/Alert';
import { StatusBadge } from '../components/Badges';
import { Pager, usePaged } from '../components/Pager';
import { useKeyActions, type Notice } from './KeyActions';

interface Filters {
  projectId: string;
  ownerId: string;
  provider: string;
  status: string;
}

const FILTER_NAMES: Array<keyof Filters> = ['projectId', 'ownerId', 'provider', 'status'];

/** Filters (never the free-text search, which someone might paste a secret into) are kept in the URL. */
function filtersFromUrl(): Filters {
  const q = new URLSearchParams(window.location.search);
  return { projectId: q.get('projectId') ?? '', ownerId: q.get('ownerId') ?? '', provider: q.get('provider') ?? '', status: q.get('status') ?? '' };
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
  const pager = usePaged<ProviderKey>((cursor, limit) => api<PageOf<ProviderKey>>('GET', `/provider-keys${qs({ ...filters, q, limit, cursor })}`), key);
  const actions = useKeyActions({ onChanged: pager.reload, onNotice: setNotice });
  const set = (name: keyof Filters) => (e: { target: { value: string } }) => setFilters((f) => ({ ...f, [name]: e.target.value }));
  const filtered = q !== '' || FILTER_NAMES.some((n) => filters[n]);

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
        <input type="search" className="search" placeholder={t('keys.searchPlaceholder')} aria-label={t('common.search')} value={search} onChange={(e) => setSearch(e.target.value)} maxLength={128} autoComplete="off" spellCheck={false} data-testid="key-search" />
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
      </div>

      {notice && (
        <Alert kind={notice.kind} onDismiss={() => setNotice(null)} testId="page-notice">
          {notice.text}
        </Alert>
      )}
      {pager.error != null && <Alert kind="error">{errorText(t, pager.error)}</Alert>}

      <div className="table-wrap">
        <table className="table" data-testid="keys-table" aria-busy={pager.loading}>
          <thead>
            <tr>
              <th>{t('keys.col.name')}</th>
              <th>{t('keys.col.provider')}</th>
              <th>{t('keys.col.hint')}</th>
              <th>{t('keys.col.owner')}</th>
              <th>{t('keys.col.project')}</th>
              <th>{t('keys.col.status')}</th>
              <th>{t('keys.col.lastRevealed')}</th>
              <th className="num">{t('keys.col.revealCount')}</th>
              <th>
                <span className="sr-only">{t('common.actions')}</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {pager.items.map((k) => (
              <tr key={k.id} data-testid="key-row" data-key-id={k.id}>
                <td>
                  <Link to={`/keys/${k.id}`} className="key-name">
                    {k.name}
                  </Link>
                  {k.remark && <div className="muted small clamp">{k.remark}</div>}
                </td>
                <td>{t(`provider.${k.provider}` as MessageKey)}</td>
                <td>
                  <code className="hint" data-testid="key-hint">
                    {k.hint}
                  </code>
                </td>
                <td>{k.ownerId === me.id ? `${userName(k.ownerId)} (${t('common.you')})` : userName(k.ownerId)}</td>
                <td>{projectName(k.projectId)}</td>
                <td>
                  <StatusBadge status={k.status} expiresAt={k.expiresAt} />
                </td>
                <td className="nowrap">{k.lastRevealedAt ? dateTime(k.lastRevealedAt) : <span className="muted">{t('common.never')}</span>}</td>
                <td className="num">{number(k.revealCount)}</td>
                <td className="actions-cell">{actions.buttons(k, { detailLink: true })}</td>
              </tr>
            ))}
            {!pager.loading && pager.items.length === 0 && (
              <tr>
                <td colSpan={9} className="empty">
                  {filtered ? t('common.noMatch') : t('common.empty')}
                </td>
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <Pager pager={pager} />
      {actions.dialogs}
    </div>
  );
}
