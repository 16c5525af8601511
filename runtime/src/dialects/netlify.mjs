// Netlify Functions (v2 API): `export default async (req, context) => Response | undefined`,
// the global `Netlify` object, and — for modules with no default export — Lambda
// compatibility, because Netlify sites mix both styles in one functions directory.

import { currentInvocation, deployIdentity, forgetDeployIdentity } from '../context.mjs';
import { CookieJar } from '../cookies.mjs';
import { logger, invocationTags } from '../logging.mjs';
import { format } from 'node:util';
import { isResponseLike } from '../web.mjs';
import { InvalidResultError, LoadError, describeExports } from './errors.mjs';
import { createLambdaAdapter, findLambdaHandler } from './lambda.mjs';

/** The v2 entry point: a default-exported function, or a default object with `fetch`. */
function findV2Handler(ns) {
  if (typeof ns.default === 'function') return ns.default;
  if (ns.default && typeof ns.default.fetch === 'function') return ns.default.fetch.bind(ns.default);
  return undefined;
}

export function createNetlifyAdapter(ns) {
  const handler = findV2Handler(ns);
  if (!handler) {
    if (findLambdaHandler(ns)) return createLambdaAdapter(ns);
    throw new LoadError(`expected a Netlify function: "export default async (req, context) => ..." or a Lambda-compatible "handler" export; ${describeExports(ns)}`);
  }
  return {
    kind: 'netlify',
    async invoke(call) {
      const request = call.webRequest();
      // Node joins repeated Cookie headers with "; ", which is what a cookie parser wants.
      const cookies = new CookieJar(call.req.headers.cookie ?? null);
      const context = createNetlifyContext(call, cookies);
      // `Netlify.context` reads this through AsyncLocalStorage.
      call.invocation.netlifyContext = context;
      const result = await handler(request, context);
      if (result === undefined) return { response: cookies.applyTo(new Response(null, { status: 204 })) };
      if (!isResponseLike(result)) {
        throw new InvalidResultError(`Function returned an unsupported value (${describeValue(result)}). Accepted types are 'Response' or 'undefined'`);
      }
      return { response: cookies.applyTo(result) };
    },
  };
}

function describeValue(value) {
  if (value === null) return 'null';
  if (typeof value === 'object') return value.constructor?.name ?? 'object';
  return typeof value;
}

/** Netlify's geo shape from the router's geo JSON; unknown fields stay undefined. */
export function netlifyGeo(geo) {
  return {
    city: geo.city,
    country: geo.country ? { code: geo.country.code, name: geo.country.name } : undefined,
    subdivision: geo.subdivision ? { code: geo.subdivision.code, name: geo.subdivision.name } : undefined,
    latitude: geo.latitude,
    longitude: geo.longitude,
    timezone: geo.timezone,
    postalCode: geo.postalCode,
  };
}

/** The `context` argument of a v2 function, per Netlify's Functions API reference. */
export function createNetlifyContext(call, cookies) {
  const identity = deployIdentity();
  const { control } = call;
  let url;
  return {
    account: { id: identity.accountId },
    cookies,
    deploy: {
      context: identity.context,
      id: identity.deployId,
      // The router sends traffic only to a site's active deploy or to a preview URL; a
      // production deploy that receives traffic is the published one.
      published: identity.context === 'production',
    },
    geo: netlifyGeo(control.geo),
    ip: control.clientIp,
    params: control.params,
    requestId: control.requestId,
    server: { region: identity.region },
    site: { id: identity.siteId, name: identity.siteName, url: identity.siteUrl },
    // Parsed on first read (most functions never look); the same URL object every time. A
    // getter in the literal keeps the object's fast shape (defineProperty afterwards did not).
    get url() {
      return (url ??= new URL(call.url));
    },
    waitUntil: (promise) => call.waitUntil(promise),
    json: (value, init) => Response.json(value, init),
    log: (...args) => logger.info(format(...args), { source: 'context.log', ...invocationTags() }),
    next: () => {
      throw new Error('context.next() is only available in Netlify Edge Functions, not in Netlify Functions: return a Response instead');
    },
  };
}

/**
 * Installs the global `Netlify` object before any user module loads.
 *
 * `Netlify.env` is backed by process.env, as in Netlify's Node runtime: `set` and `delete`
 * change the environment of this process (all later invocations of every function), not just
 * the current invocation. A per-invocation overlay would make `Netlify.env` and `process.env`
 * disagree, which breaks libraries that read process.env directly.
 */
export function installNetlifyGlobal(target = globalThis) {
  const env = Object.freeze({
    get: (name) => process.env[name],
    has: (name) => Object.prototype.hasOwnProperty.call(process.env, name),
    set: (name, value) => {
      process.env[name] = String(value);
      forgetDeployIdentity();
    },
    delete: (name) => {
      delete process.env[name];
      forgetDeployIdentity();
    },
    toObject: () => ({ ...process.env }),
  });
  const netlify = Object.freeze({
    env,
    get context() {
      return currentInvocation()?.netlifyContext ?? null;
    },
  });
  Object.defineProperty(target, 'Netlify', { value: netlify, configurable: true, enumerable: false, writable: false });
}
