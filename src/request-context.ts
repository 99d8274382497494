import { AsyncLocalStorage } from 'node:async_hooks';

export interface RequestContext {
  requestId: string;
  actorId?: string;
}

/** Carries the request id to every log line written while serving that request. */
export const requestContext = new AsyncLocalStorage<RequestContext>();
