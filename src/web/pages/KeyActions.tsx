import { useCallback, useState, type ReactNode } from 'react';
import { call, client, type ProviderKey, type Revealed } from '../api';
import { errorText } from '../errors';
import { useI18n } from '../i18n';
import { navigate } from '../router';
import { useMe } from '../session';
import { ConfirmDialog } from '../components/Dialog';
import { Menu } from '../components/Menu';
import { AddKeyDialog, EditKeyDialog, ReplaceSecretDialog } from './KeyForms';
import { ReasonDialog, RevealDialog, revealKey } from './Reveal';

export type Notice = { kind: 'success' | 'error' | 'info'; text: string } | null;

type Open =
  | { kind: 'add' }
  | { kind: 'edit' | 'replace' | 'toggle' | 'delete' | 'reason'; k: ProviderKey }
  | { kind: 'revealed'; k: ProviderKey; revealed: Revealed }
  | null;

/**
 * Every key action (reveal, add, edit, disable/enable, replace secret, delete) with its dialog and
 * confirmation, shared by the keys list and the key detail page.
 */
export function useKeyActions({ onChanged, onNotice, afterDelete }: { onChanged(): void; onNotice(n: Notice): void; afterDelete?(): void }) {
  const { t } = useI18n();
  const me = useMe();
  const [open, setOpen] = useState<Open>(null);
  const [revealing, setRevealing] = useState<string | null>(null);
  const close = useCallback(() => setOpen(null), []);
  const openAdd = useCallback(() => setOpen({ kind: 'add' }), []);

  const canReveal = (k: ProviderKey) => me.role !== 'auditor' && k.status !== 'deleted';
  const canWrite = (k: ProviderKey) => me.role === 'admin' && k.status !== 'deleted';

  const reveal = async (k: ProviderKey) => {
    onNotice(null);
    if (me.role === 'admin' && k.ownerId !== me.id) return setOpen({ kind: 'reason', k });
    setRevealing(k.id);
    try {
      const revealed = await revealKey(k.id);
      setOpen({ kind: 'revealed', k, revealed });
    } catch (err) {
      onNotice({ kind: 'error', text: errorText(t, err) });
      onChanged();
    } finally {
      setRevealing(null);
    }
  };

  const dialogs: ReactNode = (() => {
    if (!open) return null;
    switch (open.kind) {
      case 'add':
        return (
          <AddKeyDialog
            onClose={close}
            onAdded={(k) => {
              onNotice({ kind: 'success', text: t('keys.added', { name: k.name, hint: k.hint }) });
              onChanged();
            }}
          />
        );
      case 'edit':
        return (
          <EditKeyDialog
            k={open.k}
            onClose={close}
            onSaved={(k) => {
              onNotice({ kind: 'success', text: t('keys.updated', { name: k.name }) });
              onChanged();
            }}
          />
        );
      case 'replace':
        return (
          <ReplaceSecretDialog
            k={open.k}
            onClose={close}
            onReplaced={(k) => {
              onNotice({ kind: 'success', text: t('keys.replaced', { name: k.name, hint: k.hint }) });
              onChanged();
            }}
          />
        );
      case 'toggle': {
        const k = open.k;
        const disabling = k.status === 'active';
        return (
          <ConfirmDialog
            title={disabling ? t('keys.disable') : t('keys.enable')}
            message={disabling ? t('keyForm.toggleDisable', { name: k.name }) : t('keyForm.toggleEnable', { name: k.name })}
            confirmLabel={disabling ? t('keys.disable') : t('keys.enable')}
            danger={disabling}
            onClose={close}
            onConfirm={async () => {
              await call(client.PATCH('/api/v1/provider-keys/{id}', { params: { path: { id: k.id } }, body: { status: disabling ? 'disabled' : 'active' } }));
              onNotice({ kind: 'success', text: disabling ? t('keys.disabledDone', { name: k.name }) : t('keys.enabledDone', { name: k.name }) });
              onChanged();
            }}
          />
        );
      }
      case 'delete': {
        const k = open.k;
        return (
          <ConfirmDialog
            title={t('keyForm.deleteTitle')}
            message={t('keyForm.deleteConfirm', { name: k.name })}
            confirmLabel={t('common.delete')}
            danger
            onClose={close}
            onConfirm={async () => {
              await call(client.DELETE('/api/v1/provider-keys/{id}', { params: { path: { id: k.id } } }));
              onNotice({ kind: 'success', text: t('keys.deleted', { name: k.name }) });
              onChanged();
              afterDelete?.();
            }}
          />
        );
      }
      case 'reason':
        return <ReasonDialog k={open.k} onClose={close} onRevealed={(revealed) => setOpen({ kind: 'revealed', k: open.k, revealed })} />;
      case 'revealed':
        return (
          <RevealDialog
            k={open.k}
            revealed={open.revealed}
            onHide={(expired) => {
              setOpen(null);
              if (expired) onNotice({ kind: 'info', text: t('reveal.gone', { name: open.k.name }) });
              onChanged();
            }}
          />
        );
    }
  })();

  /** The reveal button and (for admins) the menu of management actions, for one key. */
  const buttons = (k: ProviderKey, opts: { detailLink?: boolean } = {}) => (
    <div className="row-actions">
      {canReveal(k) && (
        <button type="button" className="primary small" onClick={() => void reveal(k)} disabled={revealing === k.id} aria-label={revealing === k.id ? undefined : t('keys.revealNamed', { name: k.name })} data-testid="reveal-button">
          {revealing === k.id ? t('reveal.busy') : t('keys.reveal')}
        </button>
      )}
      {(canWrite(k) || opts.detailLink) && (
        <Menu label={<span aria-hidden="true">⋯</span>} ariaLabel={t('common.moreFor', { name: k.name })} className="row-menu" testId="key-menu">
          {opts.detailLink && (
            <button type="button" role="menuitem" onClick={() => navigate(`/keys/${k.id}`)}>
              {t('keys.openDetail')}
            </button>
          )}
          {canWrite(k) && (
            <>
              <button type="button" role="menuitem" onClick={() => setOpen({ kind: 'edit', k })}>
                {t('common.edit')}
              </button>
              <button type="button" role="menuitem" onClick={() => setOpen({ kind: 'toggle', k })}>
                {k.status === 'active' ? t('keys.disable') : t('keys.enable')}
              </button>
              <button type="button" role="menuitem" onClick={() => setOpen({ kind: 'replace', k })}>
                {t('keys.replaceSecret')}
              </button>
              <button type="button" role="menuitem" className="danger-text" onClick={() => setOpen({ kind: 'delete', k })}>
                {t('common.delete')}
              </button>
            </>
          )}
        </Menu>
      )}
    </div>
  );

  return { dialogs, buttons, openAdd };
}
