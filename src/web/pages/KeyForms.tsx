import { useEffect, useState, type FormEvent, type ReactNode } from 'react';
import { api, ApiError, PROVIDERS, type ProviderKey } from '../api';
import { useDirectory } from '../directory';
import { errorText } from '../errors';
import { useI18n, type MessageKey, type T } from '../i18n';
import { Link } from '../router';
import { Alert } from '../components/Alert';
import { Dialog } from '../components/Dialog';
import { Field, isoToLocal, localToIso } from '../components/Field';
import { SecretInput } from '../components/Secret';

/** "This secret is already stored as the key X": names the existing key (fetched by the id the 409 carries). */
function DuplicateNotice({ existingId }: { existingId: string }) {
  const { t } = useI18n();
  const [name, setName] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    api<ProviderKey>('GET', `/provider-keys/${existingId}`)
      .then((k) => live && setName(k.name))
      .catch(() => undefined);
    return () => {
      live = false;
    };
  }, [existingId]);
  return (
    <Alert kind="error" testId="duplicate-notice">
      {name === null ? t('keyForm.duplicateUnknown', { id: existingId }) : t('keyForm.duplicate', { name })}{' '}
      <Link to={`/keys/${existingId}`}>{t('keyForm.openExisting')}</Link>
    </Alert>
  );
}

type Failure = { kind: 'duplicate'; id: string } | { kind: 'text'; text: string };

function failureOf(t: T, err: unknown): Failure {
  if (err instanceof ApiError && err.code === 'conflict') {
    const id = err.details.find((d) => typeof d.existingKeyId === 'string')?.existingKeyId;
    if (typeof id === 'string') return { kind: 'duplicate', id };
  }
  return { kind: 'text', text: errorText(t, err) };
}

function FailureView({ failure }: { failure: Failure | null }) {
  if (!failure) return null;
  return failure.kind === 'duplicate' ? <DuplicateNotice existingId={failure.id} /> : <Alert kind="error">{failure.text}</Alert>;
}

function Actions({ children }: { children: ReactNode }) {
  return <div className="dialog-actions">{children}</div>;
}

/** Owners can be admins or members (auditors never see secrets), and must be active. */
function useOwnerOptions() {
  const { users } = useDirectory();
  return users.filter((u) => u.status === 'active' && u.role !== 'auditor');
}

export function AddKeyDialog({ onClose, onAdded }: { onClose(): void; onAdded(k: ProviderKey): void }) {
  const { t } = useI18n();
  const { projects } = useDirectory();
  const owners = useOwnerOptions();
  const [ownerId, setOwnerId] = useState('');
  const [projectId, setProjectId] = useState('');
  const [provider, setProvider] = useState<string>('volcengine-ark');
  const [name, setName] = useState('');
  const [secret, setSecret] = useState('');
  const [remark, setRemark] = useState('');
  const [expires, setExpires] = useState('');
  const [failure, setFailure] = useState<Failure | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setFailure(null);
    const missing: Array<[string, MessageKey]> = [
      [ownerId, 'keyForm.owner'],
      [projectId, 'keyForm.project'],
      [name.trim(), 'keyForm.name'],
      [secret.trim(), 'keyForm.secret'],
    ];
    const gap = missing.find(([v]) => !v);
    if (gap) return setFailure({ kind: 'text', text: t('keyForm.required', { field: t(gap[1]) }) });
    const expiresAt = localToIso(expires);
    if (expiresAt && new Date(expiresAt).getTime() <= Date.now()) return setFailure({ kind: 'text', text: t('keyForm.pastDate') });
    setBusy(true);
    try {
      const key = await api<ProviderKey>('POST', '/provider-keys', {
        body: { ownerId, projectId, provider, name: name.trim(), secret, ...(remark.trim() ? { remark } : {}), ...(expiresAt ? { expiresAt } : {}) },
      });
      setSecret('');
      onAdded(key);
      onClose();
    } catch (err) {
      setFailure(failureOf(t, err));
      setBusy(false);
    }
  };

  return (
    <Dialog title={t('keyForm.addTitle')} onClose={onClose} className="dialog-wide" testId="add-key-dialog">
      <form onSubmit={submit} noValidate autoComplete="off">
        {projects.length === 0 && <Alert kind="warning">{t('keyForm.noProjects')}</Alert>}
        <div className="grid-2">
          <Field label={t('keyForm.owner')} htmlFor="key-owner">
            <select id="key-owner" value={ownerId} onChange={(e) => setOwnerId(e.target.value)} required>
              <option value="">{t('keyForm.ownerPick')}</option>
              {owners.map((u) => (
                <option key={u.id} value={u.id}>
                  {u.displayName ? `${u.username} (${u.displayName})` : u.username}
                </option>
              ))}
            </select>
          </Field>
          <Field label={t('keyForm.project')} htmlFor="key-project">
            <select id="key-project" value={projectId} onChange={(e) => setProjectId(e.target.value)} required>
              <option value="">{t('keyForm.projectPick')}</option>
              {projects.map((p) => (
                <option key={p.id} value={p.id}>
                  {p.name}
                </option>
              ))}
            </select>
          </Field>
          <Field label={t('keyForm.provider')} htmlFor="key-provider">
            <select id="key-provider" value={provider} onChange={(e) => setProvider(e.target.value)}>
              {PROVIDERS.map((p) => (
                <option key={p} value={p}>
                  {t(`provider.${p}` as MessageKey)}
                </option>
              ))}
            </select>
          </Field>
          <Field label={t('keyForm.name')} htmlFor="key-name">
            <input id="key-name" value={name} onChange={(e) => setName(e.target.value)} maxLength={128} placeholder={t('keyForm.namePlaceholder')} required />
          </Field>
        </div>
        <Field label={t('keyForm.secret')} htmlFor="key-secret" help={t('keyForm.secretHelp')}>
          <SecretInput id="key-secret" value={secret} onChange={setSecret} required />
        </Field>
        <div className="grid-2">
          <Field label={t('keyForm.remark')} htmlFor="key-remark" optional={t('common.optional')}>
            <textarea id="key-remark" value={remark} onChange={(e) => setRemark(e.target.value)} maxLength={1024} rows={2} />
          </Field>
          <Field label={t('keyForm.expiresAt')} htmlFor="key-expires" optional={t('common.optional')}>
            <input id="key-expires" type="datetime-local" value={expires} onChange={(e) => setExpires(e.target.value)} />
          </Field>
        </div>
        <FailureView failure={failure} />
        <Actions>
          <button type="button" onClick={onClose}>
            {t('common.cancel')}
          </button>
          <button type="submit" className="primary" disabled={busy}>
            {t('keyForm.submitAdd')}
          </button>
        </Actions>
      </form>
    </Dialog>
  );
}

interface Change {
  field: string;
  from: string;
  to: string;
}

function ChangeList({ changes }: { changes: Change[] }) {
  const { t } = useI18n();
  return (
    <ul className="change-list" data-testid="change-list">
      {changes.map((c) => (
        <li key={c.field}>{t('common.change', { field: c.field, from: c.from || t('common.none'), to: c.to || t('common.none') })}</li>
      ))}
    </ul>
  );
}

export function EditKeyDialog({ k, onClose, onSaved }: { k: ProviderKey; onClose(): void; onSaved(k: ProviderKey): void }) {
  const { t, dateTime } = useI18n();
  const { projects, userName, projectName } = useDirectory();
  const owners = useOwnerOptions();
  const [name, setName] = useState(k.name);
  const [remark, setRemark] = useState(k.remark ?? '');
  const [ownerId, setOwnerId] = useState(k.ownerId);
  const [projectId, setProjectId] = useState(k.projectId);
  const [expires, setExpires] = useState(isoToLocal(k.expiresAt));
  const [step, setStep] = useState<'form' | 'confirm'>('form');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const expiresAt = localToIso(expires);
  const patch: Record<string, unknown> = {};
  const changes: Change[] = [];
  if (name.trim() !== k.name) (patch.name = name.trim()), changes.push({ field: t('keyForm.name'), from: k.name, to: name.trim() });
  if (remark.trim() !== (k.remark ?? '')) (patch.remark = remark.trim() || null), changes.push({ field: t('keyForm.remark'), from: k.remark ?? '', to: remark.trim() });
  if (ownerId !== k.ownerId) (patch.ownerId = ownerId), changes.push({ field: t('keyForm.owner'), from: userName(k.ownerId), to: userName(ownerId) });
  if (projectId !== k.projectId) (patch.projectId = projectId), changes.push({ field: t('keyForm.project'), from: projectName(k.projectId), to: projectName(projectId) });
  if (isoToLocal(k.expiresAt) !== expires) (patch.expiresAt = expiresAt), changes.push({ field: t('keyForm.expiresAt'), from: k.expiresAt ? dateTime(k.expiresAt) : t('keyForm.noExpiry'), to: expiresAt ? dateTime(expiresAt) : t('keyForm.noExpiry') });

  const review = (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    if (!name.trim()) return setError(t('keyForm.required', { field: t('keyForm.name') }));
    if (patch.expiresAt && new Date(expiresAt!).getTime() <= Date.now()) return setError(t('keyForm.pastDate'));
    if (changes.length === 0) return setError(t('common.noChanges'));
    setStep('confirm');
  };
  const save = async () => {
    setBusy(true);
    setError(null);
    try {
      const saved = await api<ProviderKey>('PATCH', `/provider-keys/${k.id}`, { body: patch });
      onSaved(saved);
      onClose();
    } catch (err) {
      setError(errorText(t, err));
      setBusy(false);
    }
  };

  return (
    <Dialog title={t('keyForm.editTitle', { name: k.name })} onClose={onClose} className="dialog-wide" testId="edit-key-dialog">
      {step === 'form' ? (
        <form onSubmit={review} noValidate>
          <div className="grid-2">
            <Field label={t('keyForm.name')} htmlFor="edit-name">
              <input id="edit-name" value={name} onChange={(e) => setName(e.target.value)} maxLength={128} />
            </Field>
            <Field label={t('keyForm.expiresAt')} htmlFor="edit-expires" optional={t('common.optional')}>
              <input id="edit-expires" type="datetime-local" value={expires} onChange={(e) => setExpires(e.target.value)} />
            </Field>
            <Field label={t('keyForm.owner')} htmlFor="edit-owner">
              <select id="edit-owner" value={ownerId} onChange={(e) => setOwnerId(e.target.value)}>
                {!owners.some((u) => u.id === k.ownerId) && <option value={k.ownerId}>{userName(k.ownerId)}</option>}
                {owners.map((u) => (
                  <option key={u.id} value={u.id}>
                    {u.username}
                  </option>
                ))}
              </select>
            </Field>
            <Field label={t('keyForm.project')} htmlFor="edit-project">
              <select id="edit-project" value={projectId} onChange={(e) => setProjectId(e.target.value)}>
                {projects.map((p) => (
                  <option key={p.id} value={p.id}>
                    {p.name}
                  </option>
                ))}
              </select>
            </Field>
          </div>
          <Field label={t('keyForm.remark')} htmlFor="edit-remark" optional={t('common.optional')}>
            <textarea id="edit-remark" value={remark} onChange={(e) => setRemark(e.target.value)} maxLength={1024} rows={3} />
          </Field>
          {error && <Alert kind="error">{error}</Alert>}
          <Actions>
            <button type="button" onClick={onClose}>
              {t('common.cancel')}
            </button>
            <button type="submit" className="primary">
              {t('common.save')}
            </button>
          </Actions>
        </form>
      ) : (
        <div>
          <p className="confirm-message">{t('keyForm.editConfirm', { name: k.name })}</p>
          <ChangeList changes={changes} />
          {error && <Alert kind="error">{error}</Alert>}
          <Actions>
            <button type="button" onClick={() => setStep('form')}>
              {t('common.back')}
            </button>
            <button type="button" className="primary" onClick={save} disabled={busy} autoFocus>
              {t('common.confirm')}
            </button>
          </Actions>
        </div>
      )}
    </Dialog>
  );
}

export function ReplaceSecretDialog({ k, onClose, onReplaced }: { k: ProviderKey; onClose(): void; onReplaced(k: ProviderKey): void }) {
  const { t } = useI18n();
  const [secret, setSecret] = useState('');
  const [step, setStep] = useState<'form' | 'confirm'>('form');
  const [failure, setFailure] = useState<Failure | null>(null);
  const [busy, setBusy] = useState(false);

  const review = (e: FormEvent) => {
    e.preventDefault();
    setFailure(null);
    if (!secret.trim()) return setFailure({ kind: 'text', text: t('keyForm.required', { field: t('keyForm.secret') }) });
    setStep('confirm');
  };
  const save = async () => {
    setBusy(true);
    setFailure(null);
    try {
      const saved = await api<ProviderKey>('PUT', `/provider-keys/${k.id}/secret`, { body: { secret } });
      setSecret('');
      onReplaced(saved);
      onClose();
    } catch (err) {
      setFailure(failureOf(t, err));
      setStep('form');
      setBusy(false);
    }
  };

  return (
    <Dialog title={t('keyForm.replaceTitle', { name: k.name })} onClose={onClose} testId="replace-secret-dialog">
      {step === 'form' ? (
        <form onSubmit={review} noValidate autoComplete="off">
          <Field label={t('keyForm.secret')} htmlFor="replace-secret" help={t('keyForm.replaceHelp')}>
            <SecretInput id="replace-secret" value={secret} onChange={setSecret} />
          </Field>
          <FailureView failure={failure} />
          <Actions>
            <button type="button" onClick={onClose}>
              {t('common.cancel')}
            </button>
            <button type="submit" className="primary">
              {t('keyForm.replaceSubmit')}
            </button>
          </Actions>
        </form>
      ) : (
        <div>
          <p className="confirm-message">{t('keyForm.replaceConfirm', { name: k.name })}</p>
          <Actions>
            <button type="button" onClick={() => setStep('form')}>
              {t('common.back')}
            </button>
            <button type="button" className="danger" onClick={save} disabled={busy} autoFocus>
              {t('keyForm.replaceSubmit')}
            </button>
          </Actions>
        </div>
      )}
    </Dialog>
  );
}
