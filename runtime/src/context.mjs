// Per-invocation state and deploy identity.
//
// One host process serves many invocations at once, so "the current invocation" cannot be a
// global: it lives in an AsyncLocalStorage store that follows the invocation through every
// await, timer and stream pull it starts. Console capture, `Netlify.context` and error logs
// read it to tag their output with the right request id.

import { AsyncLocalStorage } from 'node:async_hooks';

const invocations = new AsyncLocalStorage();

/**
 * Runs `fn` with `invocation` as the current invocation.
 * `invocation` carries at least `requestId` and `functionName`; dialects may add fields
 * (the Netlify dialect stores its context object as `netlifyContext`).
 */
export function runInInvocation(invocation, fn) {
  return invocations.run(invocation, fn);
}

/** The invocation the calling code belongs to, or undefined outside any invocation. */
export function currentInvocation() {
  return invocations.getStore();
}

/**
 * The deploy and site this process serves. A pod serves one deploy, so these come from the
 * environment the operator (or `kpages dev`) sets. Read once per process and kept (reading
 * process.env costs a microsecond per variable, and this is read on every invocation);
 * `Netlify.env.set`/`delete` call forgetDeployIdentity so user code sees its own changes.
 * Passing `env` reads that object instead, uncached.
 */
export function deployIdentity(env = undefined) {
  if (env !== undefined) return readIdentity(env);
  return (cachedIdentity ??= readIdentity(process.env));
}

let cachedIdentity;

/** Drops the kept identity: the next deployIdentity() reads process.env again. */
export function forgetDeployIdentity() {
  cachedIdentity = undefined;
}

function readIdentity(env) {
  return Object.freeze({
    siteId: env.SITE_ID ?? '',
    siteName: env.SITE_NAME ?? '',
    siteUrl: env.URL ?? '',
    deployId: env.DEPLOY_ID ?? '',
    context: env.CONTEXT ?? 'dev',
    accountId: env.ACCOUNT_ID ?? '',
    // Vendors report the serving region; we have no region, so the operator may set one.
    region: env.KPAGES_REGION ?? 'local',
  });
}
