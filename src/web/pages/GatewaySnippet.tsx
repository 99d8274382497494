import type { ProviderKey } from '../api';
import { useI18n, type MessageKey } from '../i18n';
import { upstreamOf, type Provider } from '../providers';
import { gatewaySnippets } from '../snippets';
import { CopyButton } from '../components/Secret';

/**
 * How to call the provider through this vault: the SDK and curl, with this vault's own address filled in and a
 * placeholder where the virtual key goes (never a real one).
 */
export function GatewaySnippet({ k }: { k: ProviderKey }) {
  const { t } = useI18n();
  const provider = k.provider as Provider;
  const upstream = upstreamOf(provider, k.baseUrl);
  if (!upstream) return null;
  const origin = window.location.origin;
  const s = gatewaySnippets(origin, provider);
  return (
    <section aria-labelledby="snippet-heading" data-testid="gateway-snippet">
      <div className="section-head">
        <div>
          <h3 id="snippet-heading">{t('gateway.title')}</h3>
          <p className="muted small">{t('gateway.intro')}</p>
        </div>
      </div>
      <div className="card snippets">
        <div className="snippet">
          <div className="snippet-head">
            <h4>{t(`gateway.sdk.${s.sdk}` as MessageKey)}</h4>
            <CopyButton text={() => s.code} label={t('gateway.copyCode')} className="small" testId="copy-sdk-snippet" />
          </div>
          <pre data-testid="snippet-sdk">
            <code>{s.code}</code>
          </pre>
        </div>
        <div className="snippet">
          <div className="snippet-head">
            <h4>curl</h4>
            <CopyButton text={() => s.curl} label={t('gateway.copyCurl')} className="small" testId="copy-curl-snippet" />
          </div>
          <pre data-testid="snippet-curl">
            <code>{s.curl}</code>
          </pre>
        </div>
        <p className="muted small" data-testid="snippet-route">
          {t('gateway.route')} <code className="wrap">{`${origin}/gateway${s.path}`}</code> → <code className="wrap">{`${upstream}${s.path}`}</code>
        </p>
      </div>
    </section>
  );
}
