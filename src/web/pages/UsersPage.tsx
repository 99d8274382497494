import { useState, type FormEvent } from 'react';
import { call, client, query, type Role, type User } from '../api';
import { useDirectory } from '../directory';
import { errorText } from '../errors';
import { useI18n, type MessageKey } from '../i18n';
import { useMe } from '../session';
import { Alert } from '../components/Alert';
import { RoleBadge, StatusBadge } from '../components/Badges';
import { ConfirmDialog, Dialog } from '../components/Dialog';
import { Field } from '../components/Field';
import { Menu } from '../components/Menu';
import { DataTable } from '../components/DataTable';
import { useOpenFromQuery, useTitle } from '../hooks';
import { SetupGuide, useVaultEmpty } from './SetupGuide';
import { Pager, usePaged } from '../components/Pager';
import type { Notice } from './KeyActions';

const ROLES: Role[] = ['member', 'admin', 'auditor'];
const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._@-]{2,63}$/;

type Open = { kind: 'add' } | { kind: 'edit' | 'toggle' | 'password'; u: User } | null;

export function UsersPage() {
  const { t, dateTime } = useI18n();
  const me = useMe();
  const dir = useDirectory();
  useTitle(t('users.title'));
  const [role, setRole] = useState('');
  const [status, setStatus] = useState('');
  const [open, setOpen] = useState<Open>(null);
  const [notice, setNotice] = useState<Notice>(null);
  const pager = usePaged<User>((cursor, limit) => call(client.GET('/api/v1/users', { params: { query: query('/api/v1/users', { role, status, limit, cursor }) } })), `${role}|${status}`);
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
        <h1>{t('users.title')}</h1>
        {admin && (
          <button type="button" className="primary" onClick={() => setOpen({ kind: 'add' })} data-testid="add-user">
            + {t('users.add')}
          </button>
        )}
      </div>
      <div className="filters">
        <label>
          <span>{t('users.role')}</span>
          <select value={role} onChange={(e) => setRole(e.target.value)}>
            <option value="">{t('common.all')}</option>
            {ROLES.map((r) => (
              <option key={r} value={r}>
                {t(`role.${r}` as MessageKey)}
              </option>
            ))}
          </select>
        </label>
        <label>
          <span>{t('common.status')}</span>
          <select value={status} onChange={(e) => setStatus(e.target.value)}>
            <option value="">{t('common.all')}</option>
            <option value="active">{t('status.active')}</option>
            <option value="disabled">{t('status.disabled')}</option>
          </select>
        </label>
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
        rowKey={(u) => u.id}
        rowAttrs={() => ({ 'data-testid': 'user-row' })}
        loading={pager.loading}
        label={t('users.title')}
        testId="users-table"
        empty={role || status ? t('common.noMatch') : t('users.empty')}
        columns={[
          {
            id: 'username',
            header: t('users.username'),
            cell: (u) => (
              <>
                <strong className="name">{u.username}</strong>
                {u.id === me.id && <span className="muted small"> ({t('common.you')})</span>}
              </>
            ),
          },
          { id: 'display', header: t('users.displayName'), cell: (u) => u.displayName ?? '' },
          { id: 'role', header: t('users.role'), cell: (u) => <RoleBadge role={u.role} /> },
          { id: 'status', header: t('common.status'), cell: (u) => <StatusBadge status={u.status} /> },
          { id: 'created', header: t('common.created'), className: 'nowrap', cell: (u) => dateTime(u.createdAt) },
        ]}
        actions={
          admin
            ? (u) => (
                <Menu label={<span aria-hidden="true">⋯</span>} ariaLabel={t('common.moreFor', { name: u.username })} className="row-menu">
                  <button type="button" role="menuitem" onClick={() => setOpen({ kind: 'edit', u })}>
                    {t('common.edit')}
                  </button>
                  <button type="button" role="menuitem" onClick={() => setOpen({ kind: 'password', u })}>
                    {t('users.setPassword')}
                  </button>
                  <button type="button" role="menuitem" className={u.status === 'active' ? 'danger-text' : undefined} onClick={() => setOpen({ kind: 'toggle', u })}>
                    {u.status === 'active' ? t('users.disable') : t('users.enable')}
                  </button>
                </Menu>
              )
            : undefined
        }
      />
      <Pager pager={pager} />

      {open?.kind === 'add' && <AddUserDialog onClose={close} onDone={(u) => changed({ kind: 'success', text: t('users.created', { name: u.username }) })} />}
      {open?.kind === 'edit' && <EditUserDialog u={open.u} onClose={close} onDone={(u) => changed({ kind: 'success', text: t('users.saved', { name: u.username }) })} />}
      {open?.kind === 'password' && <SetPasswordDialog u={open.u} onClose={close} onDone={() => changed({ kind: 'success', text: t('users.passwordSet', { name: open.u.username }) })} />}
      {open?.kind === 'toggle' && (
        <ConfirmDialog
          title={open.u.status === 'active' ? t('users.disable') : t('users.enable')}
          message={open.u.status === 'active' ? t('users.disableConfirm', { name: open.u.username }) : t('users.enableConfirm', { name: open.u.username })}
          confirmLabel={open.u.status === 'active' ? t('users.disable') : t('users.enable')}
          danger={open.u.status === 'active'}
          errors={{ conflict: 'users.lastAdmin' }}
          onClose={close}
          onConfirm={async () => {
            const u = await call(client.PATCH('/api/v1/users/{id}', { params: { path: { id: open.u.id } }, body: { status: open.u.status === 'active' ? 'disabled' : 'active' } }));
            changed({ kind: 'success', text: t('users.saved', { name: u.username }) });
          }}
        />
      )}
    </div>
  );
}

function AddUserDialog({ onClose, onDone }: { onClose(): void; onDone(u: User): void }) {
  const { t } = useI18n();
  const [username, setUsername] = useState('');
  const [displayName, setDisplayName] = useState('');
  const [role, setRole] = useState<Role>('member');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setError(null);
    if (!USERNAME.test(username.trim())) return setError(t('users.usernameRule'));
    if (password.length < 12) return setError(t('users.passwordRule'));
    setBusy(true);
    try {
      const u = await call(client.POST('/api/v1/users', { body: { username: username.trim(), password, role, ...(displayName.trim() ? { displayName: displayName.trim() } : {}) } }));
      onDone(u);
      onClose();
    } catch (err) {
      setError(errorText(t, err, { conflict: 'users.taken' }));
      setBusy(false);
    }
  };
  return (
    <Dialog title={t('users.add')} onClose={onClose} testId="add-user-dialog">
      <form onSubmit={submit} noValidate autoComplete="off">
        <Field label={t('users.username')} htmlFor="user-username" help={t('users.usernameRule')}>
          <input id="user-username" value={username} onChange={(e) => setUsername(e.target.value)} maxLength={64} autoComplete="off" />
        </Field>
        <Field label={t('users.displayName')} htmlFor="user-display" optional={t('common.optional')}>
          <input id="user-display" value={displayName} onChange={(e) => setDisplayName(e.target.value)} maxLength={128} />
        </Field>
        <Field label={t('users.role')} htmlFor="user-role">
          <select id="user-role" value={role} onChange={(e) => setRole(e.target.value as Role)}>
            {ROLES.map((r) => (
              <option key={r} value={r}>
                {t(`role.${r}` as MessageKey)}
              </option>
            ))}
          </select>
        </Field>
        <Field label={t('users.password')} htmlFor="user-password" help={t('users.initialPasswordHelp')}>
          <input id="user-password" type="password" value={password} onChange={(e) => setPassword(e.target.value)} autoComplete="new-password" />
        </Field>
        {error && <Alert kind="error">{error}</Alert>}
        <div className="dialog-actions">
          <button type="button" onClick={onClose}>
            {t('common.cancel')}
          </button>
          <button type="submit" className="primary" disabled={busy}>
            {t('common.create')}
          </button>
        </div>
      </form>
    </Dialog>
  );
}

function EditUserDialog({ u, onClose, onDone }: { u: User; onClose(): void; onDone(u: User): void }) {
  const { t } = useI18n();
  const [displayName, setDisplayName] = useState(u.displayName ?? '');
  const [role, setRole] = useState<Role>(u.role);
  const [step, setStep] = useState<'form' | 'confirm'>('form');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const patch: Record<string, unknown> = {};
  const changes: string[] = [];
  const none = t('common.none');
  if (displayName.trim() !== (u.displayName ?? '')) (patch.displayName = displayName.trim() || null), changes.push(t('common.change', { field: t('users.displayName'), from: u.displayName || none, to: displayName.trim() || none }));
  if (role !== u.role) (patch.role = role), changes.push(t('common.change', { field: t('users.role'), from: t(`role.${u.role}` as MessageKey), to: t(`role.${role}` as MessageKey) }));
  const review = (e: FormEvent) => {
    e.preventDefault();
    if (changes.length === 0) return setError(t('common.noChanges'));
    setError(null);
    setStep('confirm');
  };
  const save = async () => {
    setBusy(true);
    try {
      onDone(await call(client.PATCH('/api/v1/users/{id}', { params: { path: { id: u.id } }, body: patch })));
      onClose();
    } catch (err) {
      setError(errorText(t, err, { conflict: 'users.lastAdmin' }));
      setBusy(false);
    }
  };
  return (
    <Dialog title={t('users.editTitle', { name: u.username })} onClose={onClose}>
      {step === 'form' ? (
        <form onSubmit={review} noValidate>
          <Field label={t('users.displayName')} htmlFor="edit-display" optional={t('common.optional')}>
            <input id="edit-display" value={displayName} onChange={(e) => setDisplayName(e.target.value)} maxLength={128} />
          </Field>
          <Field label={t('users.role')} htmlFor="edit-role">
            <select id="edit-role" value={role} onChange={(e) => setRole(e.target.value as Role)}>
              {ROLES.map((r) => (
                <option key={r} value={r}>
                  {t(`role.${r}` as MessageKey)}
                </option>
              ))}
            </select>
          </Field>
          {error && <Alert kind="error">{error}</Alert>}
          <div className="dialog-actions">
            <button type="button" onClick={onClose}>
              {t('common.cancel')}
            </button>
            <button type="submit" className="primary">
              {t('common.save')}
            </button>
          </div>
        </form>
      ) : (
        <div>
          <p className="confirm-message">{t('users.editConfirm', { name: u.username })}</p>
          <ul className="change-list">
            {changes.map((c) => (
              <li key={c}>{c}</li>
            ))}
          </ul>
          {error && <Alert kind="error">{error}</Alert>}
          <div className="dialog-actions">
            <button type="button" onClick={() => setStep('form')}>
              {t('common.back')}
            </button>
            <button type="button" className="primary" onClick={save} disabled={busy} autoFocus>
              {t('common.confirm')}
            </button>
          </div>
        </div>
      )}
    </Dialog>
  );
}

function SetPasswordDialog({ u, onClose, onDone }: { u: User; onClose(): void; onDone(): void }) {
  const { t } = useI18n();
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    if (password.length < 12) return setError(t('users.passwordRule'));
    setBusy(true);
    setError(null);
    try {
      await call(client.PATCH('/api/v1/users/{id}', { params: { path: { id: u.id } }, body: { password } }));
      onDone();
      onClose();
    } catch (err) {
      setError(errorText(t, err));
      setBusy(false);
    }
  };
  return (
    <Dialog title={t('users.setPasswordTitle', { name: u.username })} onClose={onClose}>
      <form onSubmit={submit} noValidate>
        <p className="muted">{t('users.setPasswordNote')}</p>
        <Field label={t('users.newPassword')} htmlFor="set-password" help={t('users.passwordHelp')}>
          <input id="set-password" type="password" value={password} onChange={(e) => setPassword(e.target.value)} autoComplete="new-password" />
        </Field>
        {error && <Alert kind="error">{error}</Alert>}
        <div className="dialog-actions">
          <button type="button" onClick={onClose}>
            {t('common.cancel')}
          </button>
          <button type="submit" className="danger" disabled={busy}>
            {t('users.setPassword')}
          </button>
        </div>
      </form>
    </Dialog>
  );
}
