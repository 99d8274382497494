import { useState, type FormEvent } from 'react';
import { call, client, qs, query, type Project } from '../api';
import { useDirectory } from '../directory';
import { errorText } from '../errors';
import { useI18n } from '../i18n';
import { Link } from '../router';
import { useMe } from '../session';
import { Alert } from '../components/Alert';
import { ConfirmDialog, Dialog } from '../components/Dialog';
import { Field } from '../components/Field';
import { Menu } from '../components/Menu';
import { DataTable } from '../components/DataTable';
import { useOpenFromQuery, useTitle } from '../hooks';
import { SetupGuide, useVaultEmpty } from './SetupGuide';
import { Pager, usePaged } from '../components/Pager';
import type { Notice } from './KeyActions';

type Open = { kind: 'add' } | { kind: 'edit' | 'delete'; p: Project } | null;

export function ProjectsPage() {
  const { t, dateTime } = useI18n();
  const me = useMe();
  const dir = useDirectory();
  useTitle(t('projects.title'));
  const [open, setOpen] = useState<Open>(null);
  const [notice, setNotice] = useState<Notice>(null);
  const pager = usePaged<Project>((cursor, limit) => call(client.GET('/api/v1/projects', { params: { query: query('/api/v1/projects', { limit, cursor }) } })), 'projects');
  const admin = me.role === 'admin';
  const vaultEmpty = useVaultEmpty();
  useOpenFromQuery(admin, () => setOpen({ kind: 'add' }));
  const changed = (n: Notice) => {
    setNotice(n);
    pager.reload();
    void dir.reload().catch(() => undefined);
  };
  const close = () => setOpen(null);

  return (
    <div className="page">
      <div className="page-head">
        <h1>{t('projects.title')}</h1>
        {admin && (
          <button type="button" className="primary" onClick={() => setOpen({ kind: 'add' })} data-testid="add-project">
            + {t('projects.add')}
          </button>
        )}
      </div>
      {notice && (
        <Alert kind={notice.kind} onDismiss={() => setNotice(null)} testId="page-notice">
          {notice.text}
        </Alert>
      )}
      {pager.error != null && <Alert kind="error">{errorText(t, pager.error)}</Alert>}
      {admin && vaultEmpty && <SetupGuide />}
      <DataTable
        rows={pager.items}
        rowKey={(p) => p.id}
        rowAttrs={() => ({ 'data-testid': 'project-row' })}
        loading={pager.loading}
        label={t('projects.title')}
        testId="projects-table"
        empty={admin ? t('projects.emptyAdmin') : t('projects.empty')}
        columns={[
          { id: 'name', header: t('common.name'), cell: (p) => <strong className="name">{p.name}</strong> },
          { id: 'description', header: t('common.description'), className: 'pre', cell: (p) => p.description ?? '' },
          { id: 'created', header: t('common.created'), className: 'nowrap', cell: (p) => dateTime(p.createdAt) },
        ]}
        actions={(p) => (
          <div className="row-actions">
            <Link to={`/keys${qs({ projectId: p.id })}`} className="button small" aria-label={t('projects.viewKeysOf', { name: p.name })}>
              {t('projects.viewKeys')}
            </Link>
            {admin && (
              <Menu label={<span aria-hidden="true">⋯</span>} ariaLabel={t('common.moreFor', { name: p.name })} className="row-menu">
                <button type="button" role="menuitem" onClick={() => setOpen({ kind: 'edit', p })}>
                  {t('common.edit')}
                </button>
                <button type="button" role="menuitem" className="danger-text" onClick={() => setOpen({ kind: 'delete', p })}>
                  {t('common.delete')}
                </button>
              </Menu>
            )}
          </div>
        )}
      />
      <Pager pager={pager} />

      {open?.kind === 'add' && <ProjectDialog onClose={close} onDone={(p) => changed({ kind: 'success', text: t('projects.created', { name: p.name }) })} />}
      {open?.kind === 'edit' && <ProjectDialog p={open.p} onClose={close} onDone={(p) => changed({ kind: 'success', text: t('projects.saved', { name: p.name }) })} />}
      {open?.kind === 'delete' && (
        <ConfirmDialog
          title={t('common.delete')}
          message={t('projects.deleteConfirm', { name: open.p.name })}
          confirmLabel={t('common.delete')}
          danger
          errors={{ conflict: 'projects.deleteConflict' }}
          onClose={close}
          onConfirm={async () => {
            await call(client.DELETE('/api/v1/projects/{id}', { params: { path: { id: open.p.id } } }));
            changed({ kind: 'success', text: t('projects.deleted', { name: open.p.name }) });
          }}
        />
      )}
    </div>
  );
}

/** Create, or edit with a confirmation of what changes. */
function ProjectDialog({ p, onClose, onDone }: { p?: Project; onClose(): void; onDone(p: Project): void }) {
  const { t } = useI18n();
  const [name, setName] = useState(p?.name ?? '');
  const [description, setDescription] = useState(p?.description ?? '');
  const [step, setStep] = useState<'form' | 'confirm'>('form');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const none = t('common.none');
  const changes: string[] = [];
  const patch: Record<string, unknown> = {};
  if (p) {
    if (name.trim() !== p.name) (patch.name = name.trim()), changes.push(t('common.change', { field: t('common.name'), from: p.name, to: name.trim() }));
    if (description.trim() !== (p.description ?? '')) (patch.description = description.trim() || null), changes.push(t('common.change', { field: t('common.description'), from: p.description || none, to: description.trim() || none }));
  }
  const send = async () => {
    setBusy(true);
    setError(null);
    try {
      const saved = p
        ? await call(client.PATCH('/api/v1/projects/{id}', { params: { path: { id: p.id } }, body: patch }))
        : await call(client.POST('/api/v1/projects', { body: { name: name.trim(), ...(description.trim() ? { description: description.trim() } : {}) } }));
      onDone(saved);
      onClose();
    } catch (err) {
      setError(errorText(t, err, { conflict: 'projects.taken' }));
      setBusy(false);
      setStep('form');
    }
  };
  const submit = (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    if (!name.trim()) return setError(t('keyForm.required', { field: t('projects.name') }));
    if (!p) return void send();
    if (changes.length === 0) return setError(t('common.noChanges'));
    setStep('confirm');
  };
  return (
    <Dialog title={p ? t('projects.editTitle', { name: p.name }) : t('projects.add')} onClose={onClose} testId="project-dialog">
      {step === 'form' ? (
        <form onSubmit={submit} noValidate>
          <Field label={t('projects.name')} htmlFor="project-name">
            <input id="project-name" value={name} onChange={(e) => setName(e.target.value)} maxLength={128} data-autofocus />
          </Field>
          <Field label={t('common.description')} htmlFor="project-description" optional={t('common.optional')}>
            <textarea id="project-description" value={description} onChange={(e) => setDescription(e.target.value)} maxLength={1024} rows={3} />
          </Field>
          {error && <Alert kind="error">{error}</Alert>}
          <div className="dialog-actions">
            <button type="button" onClick={onClose}>
              {t('common.cancel')}
            </button>
            <button type="submit" className="primary" disabled={busy}>
              {p ? t('common.save') : t('common.create')}
            </button>
          </div>
        </form>
      ) : (
        <div>
          <p className="confirm-message">{t('projects.editConfirm', { name: p!.name })}</p>
          <ul className="change-list">
            {changes.map((c) => (
              <li key={c}>{c}</li>
            ))}
          </ul>
          <div className="dialog-actions">
            <button type="button" onClick={() => setStep('form')}>
              {t('common.back')}
            </button>
            <button type="button" className="primary" onClick={() => void send()} disabled={busy} autoFocus>
              {t('common.confirm')}
            </button>
          </div>
        </div>
      )}
    </Dialog>
  );
}
