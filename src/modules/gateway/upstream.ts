import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { UnauthorizedError, ValidationError } from '../../errors';
import type { CredentialHeader } from '../provider-keys/providers';

export const GATEWAY_PREFIX = '/gateway';

/** `/gateway`, `/gateway/…` or `/gateway?…` in origin form; anything else (absolute form, `/gatewayx`) is express's. */
export function isGatewayUrl(url: string | undefined): boolean {
  if (!url?.startsWith(GATEWAY_PREFIX)) return false;
  const next = url.charAt(GATEWAY_PREFIX.length);
  return next === '' || next === '/' || next === '?';
}

/** Methods never forwarded: TRACE would have the provider echo the request, credential header included. */
const REFUSED_METHODS = new Set(['TRACE', 'TRACK', 'CONNECT']);
/** RFC 3986 pchar plus '/', and for the query '?' too: anything else (backslash, '#', controls, raw non-ASCII) is refused. */
const PATH_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@%/]*$/;
const QUERY_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:@%/?]*$/;

const bad = (message: string) => new ValidationError(message, { details: [{ field: 'path', message }] });

/** A checked `/gateway/<path>?<query>`: `path` is empty or starts with '/'. */
export interface GatewayTarget {
  path: string;
  query: string;
}

/**
 * The part of `/gateway/<path>?<query>` that goes upstream, checked. Nothing can climb out of the key's base path: dot
 * segments (also percent-encoded), encoded slashes or backslashes and empty segments are refused rather than
 * normalized, so the provider sees exactly the path that was checked.
 */
export function gatewayTarget(method: string | undefined, url: string): GatewayTarget {
  if (!method || REFUSED_METHODS.has(method)) throw new ValidationError(`${method ?? 'This'} requests are not forwarded`);
  const rest = url.slice(GATEWAY_PREFIX.length);
  const q = rest.indexOf('?');
  const path = q === -1 ? rest : rest.slice(0, q);
  const query = q === -1 ? '' : rest.slice(q + 1);
  if (!PATH_CHARS.test(path) || !QUERY_CHARS.test(query)) throw bad('The path or query holds characters that are not forwarded');
  if (path.includes('//')) throw bad('Empty path segments are not forwarded');
  for (const segment of path.split('/')) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      throw bad('Malformed percent-encoding in the path');
    }
    // `..;x` is a dot segment to servers that read path parameters; anything but printable ASCII (NUL, full-width
    // dots that a server might fold into '.') is refused outright.
    const bare = decoded.split(';')[0];
    if (bare === '.' || bare === '..') throw bad('Dot segments are not forwarded');
    if (decoded.includes('/') || decoded.includes('\\')) throw bad('Encoded slashes are not forwarded');
    if (!/^[\x20-\x7e]*$/.test(decoded)) throw bad('The path holds characters that are not forwarded');
  }
  try {
    decodeURIComponent(query);
  } catch {
    throw bad('Malformed percent-encoding in the query');
  }
  return { path, query };
}

/** `<base path><path>?<query>`, byte for byte (never re-normalized by a URL parser). */
export function upstreamPathOf(base: URL, t: GatewayTarget): string {
  const full = `${base.pathname.replace(/\/+$/, '')}${t.path}` || '/';
  return t.query ? `${full}?${t.query}` : full;
}

/** The virtual key a client sent, from whichever header its SDK uses; two different ones at once are refused. */
export function presentedKey(headers: IncomingHttpHeaders): string | undefined {
  const found = new Set<string>();
  const auth = headers.authorization;
  if (auth !== undefined) {
    const m = /^Bearer +(\S+) *$/i.exec(auth);
    if (!m) throw new UnauthorizedError();
    found.add(m[1]);
  }
  for (const name of ['x-api-key', 'api-key', 'x-goog-api-key']) {
    const v = headers[name];
    if (v !== undefined) found.add((Array.isArray(v) ? v.join(', ') : v).trim());
  }
  if (found.size > 1) throw new UnauthorizedError();
  const [key] = found;
  return key || undefined;
}

const HOP_BY_HOP = ['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'http2-settings'];

/**
 * Never sent upstream: hop-by-hop headers, every client credential (and cookies), what the vault sets itself (host,
 * length, encoding), and claims about the client that the vault does not vouch for.
 */
const NOT_FORWARDED = new Set([
  ...HOP_BY_HOP,
  'authorization', 'x-api-key', 'api-key', 'x-goog-api-key', 'cookie', 'x-csrf-token',
  'host', 'content-length', 'expect', 'accept-encoding', 'x-request-id',
  'forwarded', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto', 'x-forwarded-port', 'x-real-ip',
  // A method the upstream would act on instead of the one the vault judged (allowlists decide on the real method).
  'x-http-method-override', 'x-http-method', 'x-method-override',
  // A path the upstream (or a proxy before it) would serve instead of the one the vault judged.
  'x-original-url', 'x-rewrite-url', 'x-forwarded-prefix',
]);

/** Names listed in a Connection header are hop-by-hop too (RFC 9110 §7.6.1). */
function connectionListed(value: string | string[] | undefined): Set<string> {
  const text = Array.isArray(value) ? value.join(',') : value ?? '';
  return new Set(text.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean));
}

/** The upstream request's headers: the client's, filtered, plus the provider's credential. */
export function upstreamHeaders(client: IncomingHttpHeaders, credential: CredentialHeader, secret: string, contentLength: number | undefined): Record<string, string> {
  const listed = connectionListed(client.connection);
  const out: Record<string, string> = {};
  for (const [name, value] of Object.entries(client)) {
    if (value === undefined || NOT_FORWARDED.has(name) || listed.has(name)) continue;
    out[name] = Array.isArray(value) ? value.join(', ') : value;
  }
  // Identity only: a compressed answer could not be searched for the key on its way back.
  out['accept-encoding'] = 'identity';
  if (contentLength !== undefined) out['content-length'] = String(contentLength);
  if (credential === 'bearer') out.authorization = `Bearer ${secret}`;
  else out[credential] = secret;
  return out;
}

/**
 * Never passed back to the client: hop-by-hop headers, cookies (they would land on the vault's own origin), redirects
 * (the client would follow them with its virtual key), and what the vault decides for its own origin (caching, HSTS,
 * alternative services, CORS, content policy, clearing site data).
 */
const NOT_RETURNED = new Set([
  ...HOP_BY_HOP,
  'set-cookie', 'set-cookie2', 'location', 'refresh', 'clear-site-data',
  'alt-svc', 'strict-transport-security', 'public-key-pins',
  'cache-control', 'pragma', 'expires', 'content-security-policy', 'content-security-policy-report-only', 'x-content-type-options',
  'date', 'x-request-id',
]);

/** The answer's headers as the client gets them: filtered, the provider's request id renamed, every value scrubbed. */
export function answerHeaders(upstream: Record<string, string | string[] | undefined>, scrub: (v: string) => string, decoded: boolean): OutgoingHttpHeaders {
  const listed = connectionListed(upstream.connection);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(upstream)) {
    const n = name.toLowerCase();
    if (value === undefined || NOT_RETURNED.has(n) || listed.has(n) || n.startsWith('access-control-')) continue;
    if (decoded && (n === 'content-encoding' || n === 'content-length')) continue;
    out[n] = Array.isArray(value) ? value.map(scrub) : scrub(value);
  }
  const upstreamId = upstream['x-request-id'];
  if (typeof upstreamId === 'string') out['x-upstream-request-id'] = scrub(upstreamId);
  return out;
}

export const isJsonType = (contentType: string | undefined) => /^application\/([a-z0-9.+-]*\+)?json\s*(;|$)/i.test(contentType ?? '');

/**
 * The models a checked path names, as the provider will read them (percent-decoded): Google's
 * `…/models/<model>:<method>`, Azure's `…/deployments/<deployment>/…`; every one of them, if it names several.
 */
export function modelsInPath(provider: string, target: GatewayTarget): string[] {
  const pattern = provider === 'google' ? /\/models\/([^/:]+)/g : provider === 'azure-openai' ? /\/deployments\/([^/]+)/g : undefined;
  if (!pattern) return [];
  // Safe to decode whole: gatewayTarget refused encoded slashes, so the segments stay as they were.
  return [...decodeURIComponent(target.path).matchAll(pattern)].map((m) => m[1]);
}
