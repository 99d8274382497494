import { useI18n, type MessageKey } from '../i18n';

export function StatusBadge({ status, expiresAt }: { status: string; expiresAt?: string | null }) {
  const { t } = useI18n();
  const expired = status === 'active' && !!expiresAt && new Date(expiresAt).getTime() <= Date.now();
  const s = expired ? 'expired' : status;
  return <span className={`badge badge-${s}`}>{t(`status.${s}` as MessageKey)}</span>;
}

export function OutcomeBadge({ outcome }: { outcome: string }) {
  const { t } = useI18n();
  return <span className={`badge badge-outcome-${outcome}`}>{t(`outcome.${outcome}` as MessageKey)}</span>;
}

export function RoleBadge({ role }: { role: string }) {
  const { t } = useI18n();
  return <span className={`badge badge-role-${role}`}>{t(`role.${role}` as MessageKey)}</span>;
}

/** A key's health in words (never colour alone): valid, invalid, no credit, rate limited, provider error, unknown. */
export function HealthBadge({ status }: { status: string }) {
  const { t } = useI18n();
  return (
    <span className={`badge badge-health-${status}`} data-testid="health-badge" data-health={status}>
      {t(`health.status.${status}` as MessageKey)}
    </span>
  );
}
