import { useCallback, useEffect, useState } from 'react';
import { call, client, ApiError, qs, query, type AuditEvent, type ProviderKey } from '../api';
import { useDirectory } from '../directory';
import { errorText } from '../errors';
import { useTitle } from '../hooks';
import { useI18n, type MessageKey } from '../i18n';
import { Link } from '../router';
import { useMe } from '../session';
import { Alert } from '../components/Alert';
import { HealthBadge, StatusBadge } from '../components/Badges';
import { Pager, usePaged } from '../components/Pager';
import { PROVIDER_BASE_URL, type Provider } from '../providers';
import { AuditTable } from './AuditTable';
import { GatewaySnippet } from './GatewaySnippet';
import { HealthSection } from './KeyHealth';
import { useKeyActions, type Notice } from './KeyActions';
import { UsageSection } from './KeyUsage';
import { VirtualKeysSection } from './VirtualKeys';

export function KeyDetailPage({ id }: { id: string }) {
  const { t, dateTime, number } = useI18n();
  const me = useMe();
  const { userName, projectName } = useDirectory();
  useTitle(t('detail.title'));
  const [k, setK] = useState<ProviderKey | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState<Notice>(null);
  const [tick, setTick] = useState(0);

  useEffect(() => {
    let live = true;
    call(client.GET('/api/v1/provider-keys/{id}', { params: { path: { id } } }))
      .then((key) => live && (setK(key), setError(null)))
      .catch((e: unknown) => live && setError(e));
    return () => {
      live = false;
    };
  }, [id, tick]);

  const trail = usePaged<AuditEvent>((cursor, limit) => call(client.GET('/api/v1/provider-keys/{id}/audit-events', { params: { path: { id }, query: query('/api/v1/provider-keys/{id}/audit-events', { limit, cursor }) } })), id);
  const reloadAll = useCallback(() => {
    setTick((n) => n + 1);
    trail.reload();
  }, [trail]);
  const actions = useKeyActions({ onChanged: reloadAll, onNotice: setNotice });

  if (error) {
    const missing = error instanceof ApiError && (error.code === 'not_found' || error.code === 'validation_failed');
    return (
      <div className="page">
        <p className="crumbs">
          <Link to="/keys">← {t('nav.keys')}</Link>
        </p>
        <Alert kind="error">{missing ? t('detail.notFound') : errorText(t, error)}</Alert>
      </div>
    );
  }
  if (!k) return <div className="page muted">{t('common.loading')}</div>;

  return (
    <div className="page">
      <p className="crumbs">
        <Link to="/keys">← {t('nav.keys')}</Link>
      </p>
      <div className="page-head">
        <h1 className="key-title">
          <span data-testid="detail-name">{k.name}</span> <StatusBadge status={k.status} expiresAt={k.expiresAt} /> {k.status !== 'deleted' && <HealthBadge status={k.health.status} />}
        </h1>
        {actions.buttons(k)}
      </div>
      {notice && (
        <Alert kind={notice.kind} onDismiss={() => setNotice(null)} testId="page-notice">
          {notice.text}
        </Alert>
      )}
      <section className="card">
        <dl className="kv" data-testid="key-meta">
          <dt>{t('keys.col.provider')}</dt>
          <dd>{t(`provider.${k.provider}` as MessageKey)}</dd>
          <dt>{t('keys.col.hint')}</dt>
          <dd>
            <code className="hint">{k.hint}</code>
          </dd>
          <dt>{t('keys.col.owner')}</dt>
          <dd>{userName(k.ownerId)}</dd>
          <dt>{t('keys.col.project')}</dt>
          <dd>{projectName(k.projectId)}</dd>
          <dt>{t('keyForm.remark')}</dt>
          <dd className="pre" data-testid="detail-remark">
            {k.remark ?? t('common.none')}
          </dd>
          <dt>{t('keyForm.baseUrl')}</dt>
          <dd data-testid="detail-base-url">
            <BaseUrl k={k} />
          </dd>
          <dt>{t('keyForm.expiresAt')}</dt>
          <dd>{k.expiresAt ? dateTime(k.expiresAt) : t('keyForm.noExpiry')}</dd>
          <dt>{t('keys.col.lastRevealed')}</dt>
          <dd>{k.lastRevealedAt ? dateTime(k.lastRevealedAt) : t('common.never')}</dd>
          <dt>{t('keys.col.revealCount')}</dt>
          <dd data-testid="detail-reveal-count">{number(k.revealCount)}</dd>
          <dt>{t('detail.createdBy')}</dt>
          <dd>{userName(k.createdBy)}</dd>
          <dt>{t('common.created')}</dt>
          <dd>{dateTime(k.createdAt)}</dd>
          <dt>{t('common.updated')}</dt>
          <dd>{dateTime(k.updatedAt)}</dd>
          <dt>{t('detail.id')}</dt>
          <dd>
            <code>{k.id}</code>
          </dd>
        </dl>
      </section>

      <HealthSection k={k} onChanged={reloadAll} />

      {me.role !== 'auditor' && (
        <section aria-labelledby="gateway-heading" className="gateway">
          <div className="section-head">
            <div>
              <h2 id="gateway-heading">{t('detail.gateway')}</h2>
              <p className="muted small">{t('detail.gatewayNote')}</p>
            </div>
          </div>
          <VirtualKeysSection k={k} key={tick} onChanged={trail.reload} />
          <GatewaySnippet k={k} />
        </section>
      )}
      <UsageSection keyId={k.id} />

      <div className="section-head">
        <div>
          <h2>{t('detail.trail')}</h2>
          <p className="muted small">{t('detail.trailNote')}</p>
        </div>
        {me.role !== 'member' && <Link to={`/audit${qs({ keyId: k.id })}`}>{t('detail.openInAudit')} →</Link>}
      </div>
      {trail.error != null && <Alert kind="error">{errorText(t, trail.error)}</Alert>}
      <AuditTable events={trail.items} showKey={false} loading={trail.loading} emptyText={t('common.empty')} />
      <Pager pager={trail} />
      {actions.dialogs}
    </div>
  );
}

/** The key's own base URL, else the provider's default (said so), else a note that the gateway cannot use it yet. */
function BaseUrl({ k }: { k: ProviderKey }) {
  const { t } = useI18n();
  if (k.baseUrl) return <code className="wrap">{k.baseUrl}</code>;
  const fallback = PROVIDER_BASE_URL[k.provider as Provider];
  if (fallback)
    return (
      <>
        <code className="wrap">{fallback}</code> <span className="muted small">({t('detail.baseUrlDefault')})</span>
      </>
    );
  return <span className="muted">{t('detail.baseUrlNone')}</span>;
}
