import Ajv2020, { type ValidateFunction } from 'ajv/dist/2020';
import type request from 'supertest';
import { openApiJson } from '../../src/openapi/document';

/**
 * Every answer the API tests receive through ctx.http() is checked against the OpenAPI document (the one the code
 * generates, which tests/api/openapi.test.ts keeps equal to docs/openapi.json): its status must be one the
 * operation lists, and its body must match that status's schema. An answer the document does not describe fails the
 * request as a failed `.expect()` would. Fix the document (src/openapi), not the test, unless the server is wrong.
 */

type Json = Record<string, any>;
const DOC_ID = 'pkv:openapi';
const METHODS = new Set(['get', 'post', 'put', 'patch', 'delete']);

interface PathEntry {
  template: string;
  pattern: RegExp;
  /** Templated segments: fewer is more specific (`/audit-events/export` before `/audit-events/{id}`). */
  params: number;
}

let state: { doc: Json; ajv: Ajv2020; paths: PathEntry[]; validators: Map<string, ValidateFunction> } | undefined;

function load() {
  if (state) return state;
  const doc = JSON.parse(openApiJson()) as Json;
  // strict: false, as the document is added whole: its OpenAPI keywords (paths, responses…) are not JSON Schema.
  const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema(doc, DOC_ID);
  const paths = Object.keys(doc.paths)
    .map((template) => ({
      template,
      params: (template.match(/\{/g) ?? []).length,
      pattern: new RegExp(`^${template.replace(/[.]/g, '\\.').replace(/\{path\}/g, '.+').replace(/\{\w+\}/g, '[^/]+')}$`),
    }))
    .sort((a, b) => a.params - b.params);
  state = { doc, ajv, paths, validators: new Map() };
  return state;
}

const pointer = (...parts: string[]) => parts.map((p) => p.replace(/~/g, '~0').replace(/\//g, '~1')).join('/');

function validatorAt(ptr: string): ValidateFunction {
  const s = load();
  let v = s.validators.get(ptr);
  if (!v) {
    v = s.ajv.compile({ $ref: `${DOC_ID}#/${ptr}` });
    s.validators.set(ptr, v);
  }
  return v;
}

function resolve(doc: Json, node: Json): { node: Json; ptr: string | undefined } {
  if (typeof node.$ref === 'string') {
    const ptr = node.$ref.slice(2);
    return { node: ptr.split('/').reduce((n: Json, k: string) => n[k.replace(/~1/g, '/').replace(/~0/g, '~')], doc), ptr };
  }
  return { node, ptr: undefined };
}

function fail(what: string, method: string, url: string, status: number, extra = ''): never {
  throw new Error(`OpenAPI: ${method.toUpperCase()} ${url} answered ${status}: ${what}${extra ? `\n${extra}` : ''}\n(fix src/openapi and run npm run openapi, or the server)`);
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

/** Throws when `res` is not an answer the document describes. */
export function checkAgainstOpenApi(res: request.Response): void {
  const req = (res as unknown as { req?: { method?: string; path?: string } }).req;
  const method = (req?.method ?? '').toLowerCase();
  const url = req?.path ?? '';
  const pathname = url.split('?')[0];
  if (!/^\/(api\/v1\/|gateway\/|healthz$|readyz$)/.test(pathname) || !METHODS.has(method)) return; // the console's pages and assets; HEAD/OPTIONS
  const s = load();
  const status = res.status;
  const type = String(res.headers['content-type'] ?? '');
  const isJson = /^application\/json/.test(type);
  // A test may parse the answer itself (`.parse(asText)`): the body is then its text.
  const body = isJson && typeof res.body === 'string' ? parseJson(res.body) : res.body;
  const entry = s.paths.find((p) => p.pattern.test(pathname) && s.doc.paths[p.template][method]);
  if (!entry) {
    // A route the document does not have: the only right answer is the envelope's 404 (the catch-all of app.ts).
    if (status !== 404 || !isJson || body?.error?.code !== 'not_found') fail('no such operation in the document, and not a 404 not_found', method, url, status);
    return;
  }
  const operation = s.doc.paths[entry.template][method];
  const gateway = entry.template.startsWith('/gateway/');
  // The gateway passes the provider's answers through (the `default` response): its own are the error envelope
  // carrying the answer's own request id, and those are checked like any other.
  if (gateway && !(isJson && body?.error?.requestId && body.error.requestId === res.headers['x-request-id'])) return;
  const listed = operation.responses[String(status)];
  if (!listed) fail(`status not listed for ${method.toUpperCase()} ${entry.template} (it lists ${Object.keys(operation.responses).join(', ')})`, method, url, status, JSON.stringify(body).slice(0, 500));
  const { node: response, ptr: responsePtr } = resolve(s.doc, listed);
  const content = response.content as Json | undefined;
  if (!content) {
    if ((res.text ?? (typeof res.body === 'string' ? res.body : '')) !== '') fail('the document says no body, but one came', method, url, status);
    return;
  }
  const mediaType = Object.keys(content).find((m) => type.startsWith(m));
  if (!mediaType) fail(`content type "${type}" not listed (${Object.keys(content).join(', ')})`, method, url, status);
  if (mediaType !== 'application/json') return;
  const base = responsePtr ?? pointer('paths', entry.template, method, 'responses', String(status));
  const validate = validatorAt(`${base}/${pointer('content', mediaType, 'schema')}`);
  if (!validate(body)) {
    fail(`body does not match the schema of ${method.toUpperCase()} ${entry.template} ${status}`, method, url, status,
      `${s.ajv.errorsText(validate.errors, { separator: '\n' })}\nbody: ${JSON.stringify(body).slice(0, 800)}`);
  }
}

type Agent = ReturnType<typeof request>;

/** A supertest agent whose every request carries the check above as its first assertion. */
export function checkedAgent(agent: Agent): Agent {
  return new Proxy(agent, {
    get(target, prop, receiver) {
      const value = Reflect.get(target, prop, receiver);
      if (typeof prop !== 'string' || !METHODS.has(prop) || typeof value !== 'function') return value;
      return (...args: unknown[]) => (value as (...a: unknown[]) => request.Test).apply(target, args).expect(checkAgainstOpenApi);
    },
  });
}
