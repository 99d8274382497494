import { ApiError } from './api';
import type { MessageKey, T } from './i18n';

/** Per-call wording for a code, e.g. a 409 on deleting a project means "it still holds keys". */
export type ErrorOverrides = Partial<Record<string, MessageKey>>;

/** Any error as one plain sentence in the reader's language. Never echoes a secret (the API never sends one). */
export function errorText(t: T, err: unknown, overrides: ErrorOverrides = {}): string {
  if (!(err instanceof ApiError)) return t('error.unknown', { code: err instanceof Error ? err.name : 'error' });
  const o = overrides[err.code];
  if (o) return t(o);
  switch (err.code) {
    case 'key_disabled':
    case 'key_expired':
    case 'forbidden':
    case 'not_found':
    case 'conflict':
    case 'payload_too_large':
    case 'unavailable':
    case 'unauthorized':
    case 'network':
      return t(`error.${err.code}` as MessageKey);
    case 'rate_limited':
      return err.retryAfter ? t('error.rate_limited', { seconds: err.retryAfter }) : t('error.rate_limited_soon');
    case 'internal':
      return t('error.internal', { requestId: err.requestId ?? '—' });
    case 'validation_failed': {
      const d = err.details[0];
      if (d && typeof d.field === 'string' && typeof d.message === 'string') {
        if (d.field === 'body.reason') return t('error.reason_required');
        return t('error.validation_failed', { detail: `${d.field.replace(/^(body|query|path)\./, '')} — ${d.message}` });
      }
      return t('error.validation_generic');
    }
    default:
      return t('error.unknown', { code: err.code });
  }
}
