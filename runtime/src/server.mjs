// The HTTP side of the host: readiness, dispatch on control headers, invocation modes,
// deadlines, and turning every failure into a status in one place.
//
//   request ─► /.kpages/ready?  ─► readiness JSON
//           └► control headers ─► 400 (malformed) / 404 (unknown) / 500 (failed to load)
//                              └► invocation (AsyncLocalStorage scope)
//                                   sync:       user Response streamed │ 500 on throw │ 504 after timeoutMs
//                                   background,
//                                   schedule:   run to completion ─► 200 {ok:true} │ 500 {ok:false,error}

import http from 'node:http';
import { performance } from 'node:perf_hooks';
import { deployIdentity, runInInvocation } from './context.mjs';
import { ControlError, readControl, publicUrl } from './control.mjs';
import { logger, errorFields, logInvocation } from './logging.mjs';
import { drainResponse, sendJson, sendWebResponse, toWebRequest } from './web.mjs';

export const READY_PATH = '/.kpages/ready';

export function createHostServer({ registry, pending }) {
  const server = http.createServer((req, res) => {
    handleRequest(req, res, { registry, pending }).catch((err) => {
      // Only host bugs get here; user failures are answered inside the invocation.
      logger.error('host error while handling a request', errorFields(err));
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error in the function host' });
      else res.destroy();
    });
  });
  // The router keeps connections to the host alive; outlive its idle pool so it never reuses a
  // connection the host is closing. Wall time is the router's job, so no request timeout here.
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  server.requestTimeout = 0;
  return server;
}

async function handleRequest(req, res, host) {
  const { registry } = host;
  if (pathOf(req.url) === READY_PATH && !req.headers['x-kpages-function']) {
    const ready = registry.settled;
    sendJson(res, ready ? 200 : 503, { ready, functions: registry.statuses() });
    return;
  }

  let control;
  try {
    control = readControl(req.headers);
  } catch (err) {
    if (!(err instanceof ControlError)) throw err;
    sendJson(res, err.status, { error: err.message });
    return;
  }

  const entry = registry.get(control.functionName);
  if (!entry) {
    sendJson(res, 404, { error: `no function named "${control.functionName}" in this deploy`, requestId: control.requestId });
    return;
  }
  // A request that arrives while modules are still importing waits for its own function only.
  if (entry.state === 'pending') await entry.loaded;
  await invoke(entry, control, req, res, host);
}

function pathOf(url) {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}

/** Extra request headers Netlify's platform adds, which Netlify user code reads. */
function platformHeaders(dialect, control) {
  if (dialect === 'edgeone') return [];
  const headers = [['x-nf-request-id', control.requestId]];
  if (control.clientIp) headers.push(['x-nf-client-connection-ip', control.clientIp], ['client-ip', control.clientIp]);
  return headers;
}

async function invoke(entry, control, req, res, host) {
  const { def } = entry;
  const started = performance.now();
  const invocation = { requestId: control.requestId, functionName: def.name, invocation: control.invocation };
  const tags = { requestId: control.requestId, function: def.name };
  let status;

  await runInInvocation(invocation, async () => {
    if (entry.state === 'failed') {
      status = 500;
      const error = `function "${def.name}" failed to load from ${def.file}: ${entry.error}`;
      if (control.invocation === 'sync') sendJson(res, 500, { error, requestId: control.requestId });
      else sendJson(res, 500, { ok: false, error, requestId: control.requestId });
      return;
    }
    const call = createCall(entry, control, req, res, host, invocation);
    status = control.invocation === 'sync'
      ? await runSync(entry, call, tags)
      : await runToCompletion(entry, call, tags);
  });

  logInvocation(control.requestId, def.name, control.invocation, status, Math.round((performance.now() - started) * 100) / 100, control.traceparent);
}

/** What a dialect adapter gets: the request in every shape it may need, and host services. */
function createCall(entry, control, req, res, host, invocation) {
  const { def } = entry;
  const limitMs = control.invocation === 'sync' ? def.timeoutMs : def.backgroundTimeoutMs;
  const url = publicUrl(req);
  const extraHeaders = platformHeaders(def.dialect, control);
  // `request.signal` aborts when the client disconnects before the response is complete. It
  // is made on first use (see toWebRequest); a client that left before then finds it aborted.
  let abort;
  const signal = () => {
    if (abort) return abort.signal;
    abort = new AbortController();
    if (res.closed) {
      if (!res.writableFinished) abort.abort(new Error('client disconnected'));
    } else {
      res.once('close', () => {
        if (!res.writableFinished) abort.abort(new Error('client disconnected'));
      });
    }
    return abort.signal;
  };
  let webRequest;
  const makeWebRequest = () => {
    webRequest = toWebRequest(req, url, { extraHeaders, signal });
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.once('finish', () => {
        // A streamed body the function never read would stay in the socket and stall the next
        // request on this keep-alive connection. Node's own drain skips requests that were read
        // through a stream, so discard the rest here.
        if (!req.complete && !req.destroyed) {
          req.removeAllListeners('data');
          req.resume();
        }
      });
    }
    return webRequest;
  };
  return {
    fn: def,
    control,
    req,
    res,
    url,
    extraHeaders,
    invocation,
    deadline: Date.now() + limitMs,
    limitMs,
    webRequest: () => webRequest ?? makeWebRequest(),
    waitUntil: (promise) => host.pending.add(promise, { requestId: control.requestId, function: def.name }),
  };
}

/** Races `work` against the invocation's deadline: `{value}`, `{timedOut: true}`, or `work`'s rejection. */
function withDeadline(work, limitMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => resolve({ timedOut: true }), limitMs);
    work.then(
      (value) => {
        clearTimeout(timer);
        resolve({ value });
      },
      (err) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}

function logUserError(err, tags, what) {
  logger.error(what, { ...tags, ...errorFields(err) });
}

/** A sync invocation: the user's response goes to the client as it is produced. */
async function runSync(entry, call, tags) {
  const { res, req } = call;
  let timedOut = false;
  const work = (async () => {
    const outcome = await entry.adapter.invoke(call);
    if (outcome.direct) {
      await outcome.direct;
      return res.statusCode;
    }
    if (timedOut) {
      // The client already has its 504; nobody will read this body.
      await outcome.response.body?.cancel().catch(() => {});
      return 504;
    }
    await sendWebResponse(res, outcome.response, req.method);
    return outcome.response.status;
  })();

  let result;
  try {
    result = await withDeadline(work, call.limitMs);
  } catch (err) {
    logUserError(err, tags, 'function threw');
    if (!res.headersSent) {
      sendJson(res, 500, errorBody(`function "${call.fn.name}" failed`, err, call));
    } else {
      res.destroy();
    }
    return 500;
  }
  if (!result.timedOut) return result.value;

  timedOut = true;
  work.catch((err) => logUserError(err, tags, 'function failed after its timeout'));
  logger.error('function timed out', { ...tags, timeoutMs: call.limitMs });
  if (!res.headersSent) {
    sendJson(res, 504, { error: `function "${call.fn.name}" did not finish within ${call.limitMs} ms`, requestId: call.control.requestId });
  } else {
    // Part of the body is out: cutting the connection is the only way to say it is incomplete.
    res.destroy();
  }
  return 504;
}

/**
 * A background or scheduled invocation: run to completion, discard the function's own body,
 * and tell the queue (or scheduler) whether to retry.
 */
async function runToCompletion(entry, call, tags) {
  const { res } = call;
  const answer = (ok, error) => {
    sendJson(res, ok ? 200 : 500, ok ? { ok: true } : { ok: false, error, requestId: call.control.requestId });
    return ok ? 200 : 500;
  };
  if (entry.adapter.framework) {
    return answer(false, `function "${call.fn.name}" is an ${entry.adapter.kind} app, which can only be invoked synchronously`);
  }
  const work = (async () => {
    const { response } = await entry.adapter.invoke(call);
    await drainResponse(response);
    // A server error is a failed run whatever the dialect: the queue should retry it.
    if (response.status >= 500) throw new Error(`function answered with status ${response.status}`);
  })();

  let result;
  try {
    result = await withDeadline(work, call.limitMs);
  } catch (err) {
    logUserError(err, tags, `${call.control.invocation} function failed`);
    return answer(false, err instanceof Error ? err.message : String(err));
  }
  if (result.timedOut) {
    work.catch((err) => logUserError(err, tags, 'function failed after its timeout'));
    logger.error('function timed out', { ...tags, timeoutMs: call.limitMs });
    return answer(false, `function "${call.fn.name}" did not finish within ${call.limitMs} ms`);
  }
  return answer(true);
}

/**
 * The body of a 500 for a failed sync invocation. The error's message is user data and may be
 * sensitive, so it is shown to clients only in `kpages dev` (CONTEXT=dev); the logs always
 * carry it with the stack.
 */
function errorBody(summary, err, call) {
  const body = { error: `${summary}; see the function logs for request ${call.control.requestId}`, requestId: call.control.requestId };
  if (deployIdentity().context === 'dev') body.detail = err instanceof Error ? err.message : String(err);
  return body;
}
