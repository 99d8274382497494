import { useEffect, useRef, useState, type FormEvent, type ReactNode } from 'react';
import { ApiError, call, client, type ProviderKey } from '../api';
import { useDirectory } from '../directory';
import { errorText } from '../errors';
import { useI18n, type MessageKey, type T } from '../i18n';
import { Link } from '../router';
import { Alert } from '../components/Alert';
import { Dialog } from '../components/Dialog';
import { Field, isoToLocal, localToIso } from '../components/Field';
import { SecretInput } from '../components/Secret';
import { Combobox, type ComboOption } from '../components/Combobox';
import { useMe } from '../session';
import { hintFor, normaliseSecret, PROVIDER_BASE_URL, PROVIDERS, shapeIssue, type Provider } from '../providers';

/** "This secret is already stored as the key X": names the existing key (fetched by the id the 409 carries). */
function DuplicateNotice({ existingId }: { existingId: string }) {
  const { t } = useI18n();
  const [name, setName] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    call(client.GET('/api/v1/provider-keys/{id}', { params: { path: { id: existingId } } }))
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

type Failure = { kind: 'duplicate'; id: string } | { kind: 'text'; text: string } | { kind: 'baseUrl'; text: string };

function failureOf(t: T, err: unknown): Failure {
  if (err instanceof ApiError && err.code === 'conflict') {
    const id = err.details.find((d) => typeof d.existingKeyId === 'string')?.existingKeyId;
    if (typeof id === 'string') return { kind: 'duplicate', id };
  }
  // The server's own words on a base URL it refuses (https only, loopback for http, no query…), under the field.
  const baseUrl = err instanceof ApiError && err.code === 'validation_failed' ? err.details.find((d) => d.field === 'body.baseUrl') : undefined;
  if (baseUrl && typeof baseUrl.message === 'string') return { kind: 'baseUrl', text: t('keyForm.baseUrlRefused', { message: baseUrl.message }) };
  return { kind: 'text', text: errorText(t, err) };
}

function FailureView({ failure }: { failure: Failure | null }) {
  if (!failure || failure.kind === 'baseUrl') return null;
  return failure.kind === 'duplicate' ? <DuplicateNotice existingId={failure.id} /> : <Alert kind="error">{failure.text}</Alert>;
}

/** Where the gateway sends the key's calls: empty for the provider's default, which the help names. */
function BaseUrlField({ id, provider, value, onChange, error }: { id: string; provider: Provider; value: string; onChange(v: string): void; error: string | null }) {
  const { t } = useI18n();
  const fallback = PROVIDER_BASE_URL[provider];
  return (
    <Field
      label={t('keyForm.baseUrl')}
      htmlFor={id}
      optional={fallback ? t('common.optional') : undefined}
      help={fallback ? t('keyForm.baseUrlHelp', { url: fallback }) : t('keyForm.baseUrlHelpNeeded')}
      error={error}
    >
      <input id={id} type="url" inputMode="url" value={value} onChange={(e) => onChange(e.target.value)} maxLength={2048} placeholder={fallback ?? 'https://…'} spellCheck={false} autoCapitalize="off" aria-invalid={error ? true : undefined} />
    </Field>
  );
}

function Actions({ children }: { children: ReactNode }) {
  return <div className="dialog-actions">{children}</div>;
}

/** Owners can be admins or members (auditors never see secrets), and must be active. */
function useOwnerOptions(): ComboOption[] {
  const { users } = useDirectory();
  const me = useMe();
  const { t } = useI18n();
  return users
    .filter((u) => u.status === 'active' && u.role !== 'auditor')
    .map((u) => ({ value: u.id, label: u.username, detail: [u.displayName, u.id === me.id ? t('common.you') : null].filter(Boolean).join(' · ') || null }));
}

/** A live check of the pasted value against the provider's usual shape, and the hint it will be shown as. */
function SecretCheck({ id, provider, secret, warned }: { id: string; provider: Provider; secret: string; warned: boolean }) {
  const { t } = useI18n();
  const value = normaliseSecret(secret);
  const issue = shapeIssue(provider, secret);
  return (
    <div id={id} className="secret-check" role="status">
      {issue && (
        <div className={`field-warning ${warned ? 'emphasis' : ''}`} data-testid="shape-warning">
          ⚠ {t(`shape.${issue}` as MessageKey, { provider: t(`provider.${provider}` as MessageKey) })} {warned && t('shape.saveAnyway')}
        </div>
      )}
      {value && (
        <div className="help" data-testid="hint-preview">
          {t('keyForm.hintPreview')} <code className="hint">{hintFor(provider, value)}</code>
        </div>
      )}
    </div>
  );
}

export function AddKeyDialog({ onClose, onAdded }: { onClose(): void; onAdded(k: ProviderKey): void }) {
  const { t, zone } = useI18n();
  const { projects } = useDirectory();
  const me = useMe();
  const owners = useOwnerOptions();
  const [ownerId, setOwnerId] = useState('');
  const [projectId, setProjectId] = useState(projects.length === 1 ? projects[0].id : '');
  const [provider, setProvider] = useState<Provider>('volcengine-ark');
  const [name, setName] = useState('');
  const [secret, setSecret] = useState('');
  const [remark, setRemark] = useState('');
  const [expires, setExpires] = useState('');
  const [baseUrl, setBaseUrl] = useState('');
  const [failure, setFailure] = useState<Failure | null>(null);
  const [added, setAdded] = useState<ProviderKey | null>(null);
  // The value the admin was warned about at their last save: saving it again is deliberate.
  const [warnedFor, setWarnedFor] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const nameRef = useRef<HTMLInputElement>(null);
  const onlyMe = owners.length === 1 && owners[0].value === me.id;
  const issue = shapeIssue(provider, secret);
  const warned = issue !== null && warnedFor === secret;

  const save = async (another: boolean) => {
    setFailure(null);
    setAdded(null);
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
    if (issue && !warned) return setWarnedFor(secret);
    setBusy(true);
    try {
      const key = await call(
        client.POST('/api/v1/provider-keys', {
          body: { ownerId, projectId, provider, name: name.trim(), secret, ...(remark.trim() ? { remark } : {}), ...(expiresAt ? { expiresAt } : {}), ...(baseUrl.trim() ? { baseUrl: baseUrl.trim() } : {}) },
        }),
      );
      setSecret('');
      onAdded(key);
      if (!another) return onClose();
      // The next key of the batch: same owner, project, provider and base URL; everything about the key itself starts empty.
      setName('');
      setRemark('');
      setExpires('');
      setWarnedFor(null);
      setAdded(key);
      setBusy(false);
      nameRef.current?.focus();
    } catch (err) {
      setFailure(failureOf(t, err));
      setBusy(false);
    }
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    void save(false);
  };

  return (
    <Dialog title={t('keyForm.addTitle')} onClose={onClose} className="dialog-wide" testId="add-key-dialog">
      <form onSubmit={submit} noValidate autoComplete="off">
        {projects.length === 0 && (
          <Alert kind="warning" testId="no-project">
            {t('keyForm.noProjects')}{' '}
            <Link to="/projects?new=1" onClick={onClose}>
              {t('setup.createProject')}
            </Link>
          </Alert>
        )}
        {added && (
          <Alert kind="success" testId="added-notice">
            {t('keyForm.addedNext', { name: added.name, hint: added.hint })}
          </Alert>
        )}
        <div className="grid-2">
          <Field
            label={t('keyForm.owner')}
            htmlFor="key-owner"
            help={
              onlyMe ? (
                <span id="key-owner-help">
                  {t('keyForm.onlyYou')}{' '}
                  <Link to="/users?new=1" onClick={onClose}>
                    {t('setup.addUsers')}
                  </Link>
                </span>
              ) : undefined
            }
          >
            <Combobox id="key-owner" options={owners} value={ownerId} onChange={setOwnerId} placeholder={t('keyForm.ownerPick')} noMatch={t('keyForm.ownerNoMatch')} describedBy={onlyMe ? 'key-owner-help' : undefined} />
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
            <select id="key-provider" value={provider} onChange={(e) => setProvider(e.target.value as Provider)}>
              {PROVIDERS.map((p) => (
                <option key={p} value={p}>
                  {t(`provider.${p}` as MessageKey)}
                </option>
              ))}
            </select>
          </Field>
          <Field label={t('keyForm.name')} htmlFor="key-name">
            <input ref={nameRef} id="key-name" value={name} onChange={(e) => setName(e.target.value)} maxLength={128} placeholder={t('keyForm.namePlaceholder')} required />
          </Field>
        </div>
        <Field label={t('keyForm.secret')} htmlFor="key-secret" help={t('keyForm.secretHelp')}>
          <SecretInput id="key-secret" value={secret} onChange={setSecret} required aria-describedby="key-secret-check" />
          <SecretCheck id="key-secret-check" provider={provider} secret={secret} warned={warned} />
        </Field>
        <div className="grid-2">
          <Field label={t('keyForm.remark')} htmlFor="key-remark" optional={t('common.optional')}>
            <textarea id="key-remark" value={remark} onChange={(e) => setRemark(e.target.value)} maxLength={1024} rows={2} />
          </Field>
          <Field label={`${t('keyForm.expiresAt')} (${zone(localToIso(expires))})`} htmlFor="key-expires" optional={t('common.optional')}>
            <input id="key-expires" type="datetime-local" value={expires} onChange={(e) => setExpires(e.target.value)} />
          </Field>
        </div>
        <BaseUrlField id="key-base-url" provider={provider} value={baseUrl} onChange={setBaseUrl} error={failure?.kind === 'baseUrl' ? failure.text : null} />
        <FailureView failure={failure} />
        <Actions>
          <button type="button" onClick={onClose}>
            {t('common.cancel')}
          </button>
          <button type="button" onClick={() => void save(true)} disabled={busy} data-testid="add-another">
            {warned ? t('keyForm.addAnotherAnyway') : t('keyForm.addAnother')}
          </button>
          <button type="submit" className="primary" disabled={busy} data-testid="add-submit">
            {warned ? t('keyForm.addAnyway') : t('keyForm.submitAdd')}
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
  const { t, dateTime, zone } = useI18n();
  const { projects, userName, projectName } = useDirectory();
  const owners = useOwnerOptions();
  const [name, setName] = useState(k.name);
  const [remark, setRemark] = useState(k.remark ?? '');
  const [ownerId, setOwnerId] = useState(k.ownerId);
  const [projectId, setProjectId] = useState(k.projectId);
  const [expires, setExpires] = useState(isoToLocal(k.expiresAt));
  const [baseUrl, setBaseUrl] = useState(k.baseUrl ?? '');
  const [step, setStep] = useState<'form' | 'confirm'>('form');
  const [error, setError] = useState<string | null>(null);
  const [baseUrlError, setBaseUrlError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [reason, setReason] = useState('');
  const me = useMe();
  const provider = k.provider as Provider;
  const shownUrl = (url: string | null) => url ?? (PROVIDER_BASE_URL[provider] ? t('keyForm.baseUrlDefault', { url: PROVIDER_BASE_URL[provider]! }) : '');

  const expiresAt = localToIso(expires);
  const patch: Record<string, unknown> = {};
  const changes: Change[] = [];
  if (name.trim() !== k.name) (patch.name = name.trim()), changes.push({ field: t('keyForm.name'), from: k.name, to: name.trim() });
  if (remark.trim() !== (k.remark ?? '')) (patch.remark = remark.trim() || null), changes.push({ field: t('keyForm.remark'), from: k.remark ?? '', to: remark.trim() });
  if (ownerId !== k.ownerId) (patch.ownerId = ownerId), changes.push({ field: t('keyForm.owner'), from: userName(k.ownerId), to: userName(ownerId) });
  if (projectId !== k.projectId) (patch.projectId = projectId), changes.push({ field: t('keyForm.project'), from: projectName(k.projectId), to: projectName(projectId) });
  if (isoToLocal(k.expiresAt) !== expires) (patch.expiresAt = expiresAt), changes.push({ field: t('keyForm.expiresAt'), from: k.expiresAt ? dateTime(k.expiresAt) : t('keyForm.noExpiry'), to: expiresAt ? dateTime(expiresAt) : t('keyForm.noExpiry') });
  const newBaseUrl = baseUrl.trim() || null;
  if (newBaseUrl !== k.baseUrl) (patch.baseUrl = newBaseUrl), changes.push({ field: t('keyForm.baseUrl'), from: shownUrl(k.baseUrl), to: shownUrl(newBaseUrl) });
  // The server revokes the key's virtual keys when its owner, project or baseUrl changes: say so before saving.
  const revokesVirtualKeys = patch.ownerId !== undefined || patch.projectId !== undefined || patch.baseUrl !== undefined;
  // Who owns someone else's key and where it is sent are theirs: changing either takes a reason, kept in the audit trail.
  const needsReason = (patch.ownerId !== undefined || patch.baseUrl !== undefined) && k.ownerId !== me.id;

  const review = (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    setBaseUrlError(null);
    if (!name.trim()) return setError(t('keyForm.required', { field: t('keyForm.name') }));
    if (patch.expiresAt && new Date(expiresAt!).getTime() <= Date.now()) return setError(t('keyForm.pastDate'));
    if (changes.length === 0) return setError(t('common.noChanges'));
    setStep('confirm');
  };
  const save = async () => {
    if (needsReason && !reason.trim()) return setError(t('keyForm.reasonRequired'));
    setBusy(true);
    setError(null);
    try {
      const saved = await call(client.PATCH('/api/v1/provider-keys/{id}', { params: { path: { id: k.id } }, body: needsReason ? { ...patch, reason: reason.trim() } : patch }));
      onSaved(saved);
      onClose();
    } catch (err) {
      const failure = failureOf(t, err);
      setBusy(false);
      if (failure.kind !== 'baseUrl') return setError(errorText(t, err));
      setBaseUrlError(failure.text);
      setStep('form');
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
            <Field label={`${t('keyForm.expiresAt')} (${zone(localToIso(expires) ?? k.expiresAt)})`} htmlFor="edit-expires" optional={t('common.optional')}>
              <input id="edit-expires" type="datetime-local" value={expires} onChange={(e) => setExpires(e.target.value)} />
            </Field>
            <Field label={t('keyForm.owner')} htmlFor="edit-owner">
              <Combobox
                id="edit-owner"
                options={owners.some((o) => o.value === k.ownerId) ? owners : [{ value: k.ownerId, label: userName(k.ownerId) }, ...owners]}
                value={ownerId}
                onChange={(v) => setOwnerId(v || k.ownerId)}
                noMatch={t('keyForm.ownerNoMatch')}
              />
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
          <BaseUrlField id="edit-base-url" provider={provider} value={baseUrl} onChange={setBaseUrl} error={baseUrlError} />
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
          {revokesVirtualKeys && (
            <Alert kind="warning" testId="revokes-virtual-keys">
              {t('keyForm.revokesVirtualKeys')}
            </Alert>
          )}
          {needsReason && (
            <Field label={t('keyForm.reason')} htmlFor="edit-reason" help={t('keyForm.reasonHelp')}>
              <textarea id="edit-reason" value={reason} onChange={(e) => setReason(e.target.value)} maxLength={1024} rows={2} />
            </Field>
          )}
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
      const saved = await call(client.PUT('/api/v1/provider-keys/{id}/secret', { params: { path: { id: k.id } }, body: { secret } }));
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
            <SecretInput id="replace-secret" value={secret} onChange={setSecret} aria-describedby="replace-secret-check" />
            <SecretCheck id="replace-secret-check" provider={k.provider as Provider} secret={secret} warned={false} />
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
