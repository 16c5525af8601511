// Express and Koa apps exported from an EdgeOne `[[name]].js` file ("framework mode").
//
// The app is mounted at the function's directory: for `node-functions/koa/[[default]].js`
// the router sends `/koa/users?x=1` with params {default: "users"}, and the app sees
// `/users?x=1`. Apps get the real IncomingMessage/ServerResponse pair (with `req.url`
// rewritten and control headers removed), so they stream their responses directly and any
// middleware that relies on Node's http objects works unchanged.

import { stripControlHeaders } from '../control.mjs';

/** Recognises an Express (or Connect-style) app or a Koa app; null for anything else. */
export function asFrameworkApp(value) {
  if (typeof value === 'function' && typeof value.handle === 'function' && typeof value.use === 'function') {
    return { framework: 'express', listener: value };
  }
  if (value && typeof value === 'object' && typeof value.callback === 'function' && typeof value.use === 'function') {
    // Koa builds its request listener once; middleware was registered at module load.
    return { framework: 'koa', listener: value.callback() };
  }
  return null;
}

/**
 * The path the app sees: "/" + the catch-all rest, reusing the request's own (still
 * percent-encoded) path segments when they decode to the rest, so encoded characters survive.
 */
export function mountedPath(rawPath, rest) {
  if (rest === undefined || rest === null || rest === '') return '/';
  const restText = Array.isArray(rest) ? rest.join('/') : String(rest);
  if (restText === '') return '/';
  if (rawPath.endsWith(`/${restText}`)) return `/${restText}`;
  // Walk back over '/' boundaries for the raw suffix that decodes to the rest ("a%2Fb" for "a/b").
  for (let i = rawPath.lastIndexOf('/'); i >= 0; i = rawPath.lastIndexOf('/', i - 1)) {
    const tail = rawPath.slice(i + 1);
    try {
      if (decodeURIComponent(tail) === restText) return `/${tail}`;
    } catch {
      // Malformed escapes in this suffix: keep looking, then fall back to encoding the rest.
    }
    if (i === 0) break;
  }
  return `/${encodeURI(restText)}`;
}

export function createFrameworkAdapter(app, fn) {
  return {
    kind: app.framework,
    framework: true,
    invoke(call) {
      const { req, res } = call;
      const [rawPath, query] = splitUrl(req.url);
      const rest = fn.catchAll ? call.control.params[fn.catchAll] : '';
      req.url = mountedPath(rawPath, rest) + (query === undefined ? '' : `?${query}`);
      stripControlHeaders(req);
      const done = new Promise((resolve) => res.once('close', resolve));
      app.listener(req, res);
      return { direct: done };
    },
  };
}

function splitUrl(url) {
  const q = url.indexOf('?');
  return q === -1 ? [url, undefined] : [url.slice(0, q), url.slice(q + 1)];
}
