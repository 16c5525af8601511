// EdgeOne Pages Node Functions: `onRequest` and the method-specific `onRequestGet`,
// `onRequestPost`, … exports (named, or `export default function onRequest`), each called
// with one `context` = {request, params, env, uuid, clientIp, server: {region, requestId}, geo}
// and returning a Response. A default export that is an Express or Koa app runs in framework
// mode instead (see frameworks.mjs).

import { randomUUID } from 'node:crypto';
import { deployIdentity } from '../context.mjs';
import { isResponseLike } from '../web.mjs';
import { InvalidResultError, LoadError, describeExports } from './errors.mjs';
import { asFrameworkApp, createFrameworkAdapter } from './frameworks.mjs';

export const METHOD_EXPORTS = {
  GET: 'onRequestGet',
  POST: 'onRequestPost',
  PATCH: 'onRequestPatch',
  PUT: 'onRequestPut',
  DELETE: 'onRequestDelete',
  HEAD: 'onRequestHead',
  OPTIONS: 'onRequestOptions',
};

export function createEdgeOneAdapter(ns, fn) {
  const app = asFrameworkApp(ns.default);
  if (app) return createFrameworkAdapter(app, fn);

  const handlers = new Map();
  for (const [method, name] of Object.entries(METHOD_EXPORTS)) {
    if (typeof ns[name] === 'function') handlers.set(method, ns[name]);
  }
  const onRequest = typeof ns.onRequest === 'function' ? ns.onRequest
    : typeof ns.default === 'function' ? ns.default : undefined;
  if (!onRequest && handlers.size === 0) {
    throw new LoadError(`expected an EdgeOne handler: onRequest, ${Object.values(METHOD_EXPORTS).join(', ')}, or a default export that is a function, an Express app or a Koa app; ${describeExports(ns)}`);
  }
  const allowed = onRequest ? null : [...handlers.keys()].join(', ');

  return {
    kind: 'edgeone',
    async invoke(call) {
      // The method-specific handler wins over the catch-all onRequest.
      const handler = handlers.get(call.req.method) ?? onRequest;
      if (!handler) {
        return { response: new Response(`method ${call.req.method} not allowed; this function handles ${allowed}`, { status: 405, headers: { allow: allowed } }) };
      }
      const result = await handler(createEdgeOneContext(call));
      if (!isResponseLike(result)) {
        throw new InvalidResultError(`EdgeOne handler returned ${result === undefined ? 'undefined' : typeof result}; it must return a Response`);
      }
      return { response: result };
    },
  };
}

/** EdgeOne's geo field names, from the router's geo JSON. */
export function edgeOneGeo(geo) {
  return {
    countryName: geo.country?.name,
    countryCodeAlpha2: geo.country?.code,
    regionName: geo.subdivision?.name,
    regionCode: geo.subdivision?.code,
    cityName: geo.city,
    latitude: geo.latitude,
    longitude: geo.longitude,
    timezone: geo.timezone,
  };
}

export function createEdgeOneContext(call) {
  const { control } = call;
  return {
    request: call.webRequest(),
    params: control.params,
    env: process.env,
    uuid: randomUUID(),
    clientIp: control.clientIp,
    server: { region: deployIdentity().region, requestId: control.requestId },
    geo: edgeOneGeo(control.geo),
  };
}
