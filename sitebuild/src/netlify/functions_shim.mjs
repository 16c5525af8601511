// kpages stand-in for the `@netlify/functions` package, bundled into functions that import
// it. Its TypeScript types (Config, Context, Handler, …) are erased at build time; these are
// its runtime helpers. Scheduling and streaming are decided by `kpages build` and the function
// host, so the wrappers return the handler unchanged.

/** Netlify v1 scheduled function helper: the cron is read from the source at build time. */
export function schedule(_cron, handler) {
  return handler;
}

/** Netlify v1 streaming helper: the host streams any ReadableStream body. */
export function stream(handler) {
  return handler;
}

/** On-demand builder helper: kpages serves every response fresh. */
export function builder(handler) {
  return handler;
}

/** Cache purge: kpages keeps no CDN cache of function responses, so there is nothing to purge. */
export async function purgeCache() {}
