// Bridges Node's http objects and the Fetch API objects user code speaks.
//
// Bodies stream in both directions: a request body reaches `req.body` as the client sends it,
// and a response body whose ReadableStream produces chunks over time reaches the socket chunk
// by chunk. Nothing is buffered except where a dialect needs the whole body (Lambda).

import { Readable } from 'node:stream';
import { once } from 'node:events';
import { userHeaderPairs } from './control.mjs';

const BODYLESS_METHODS = new Set(['GET', 'HEAD']);
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/**
 * A Fetch `Request` for the user's view of `req`: absolute public URL, no control headers,
 * the body streamed from the socket. `signal` aborts when the client goes away.
 */
export function toWebRequest(req, url, { extraHeaders = [], signal } = {}) {
  const headers = new Headers();
  for (const [name, value] of userHeaderPairs(req)) headers.append(name, value);
  for (const [name, value] of extraHeaders) if (!headers.has(name)) headers.set(name, value);
  const init = { method: req.method, headers, signal };
  if (!BODYLESS_METHODS.has(req.method)) {
    init.body = Readable.toWeb(req);
    // Required by the Fetch spec for streaming request bodies.
    init.duplex = 'half';
  }
  return new Request(url, init);
}

/** Reads the whole request body (Lambda events carry it as one string). */
export async function readWholeBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks);
}

/** Duck-typed so a Response from a bundled fetch polyfill is accepted too. */
export function isResponseLike(value) {
  return value instanceof Response
    || (value !== null && typeof value === 'object' && typeof value.status === 'number'
      && value.headers !== null && typeof value.headers?.get === 'function' && 'body' in value);
}

export function isNullBodyStatus(status) {
  return NULL_BODY_STATUSES.has(status);
}

/**
 * Writes a Fetch Response to `res`, streaming its body as produced.
 * Resolves when the body has been written or the client went away (then the body stream is
 * cancelled so a producer stops working for nobody).
 */
export async function sendWebResponse(res, response, method) {
  res.statusCode = response.status;
  if (response.statusText) res.statusMessage = response.statusText;
  const cookies = typeof response.headers.getSetCookie === 'function' ? response.headers.getSetCookie() : [];
  for (const [name, value] of response.headers) {
    if (name === 'set-cookie') continue;
    res.setHeader(name, value);
  }
  if (cookies.length > 0) res.setHeader('set-cookie', cookies);

  const body = response.body;
  if (!body || method === 'HEAD' || isNullBodyStatus(response.status)) {
    if (body) await body.cancel().catch(() => {});
    res.end();
    return;
  }
  // Send headers now: a stream that waits before its first chunk should still let the client
  // see the status line.
  res.flushHeaders();
  const reader = body.getReader();
  const clientGone = new Promise((resolve) => res.once('close', () => resolve(true)));
  try {
    for (;;) {
      const next = await Promise.race([reader.read(), clientGone.then(() => null)]);
      if (next === null || res.destroyed) {
        await reader.cancel().catch(() => {});
        return;
      }
      if (next.done) break;
      if (!res.write(next.value)) {
        const drained = await Promise.race([once(res, 'drain').then(() => true), clientGone.then(() => false)]);
        if (!drained) {
          await reader.cancel().catch(() => {});
          return;
        }
      }
    }
  } catch (err) {
    // Headers are gone already; the only honest signal left is a broken connection.
    res.destroy(err);
    throw err;
  }
  res.end();
}

/** Reads a Response body to its end without keeping it (background functions' bodies are discarded). */
export async function drainResponse(response) {
  if (!response.body) return;
  const reader = response.body.getReader();
  for (;;) {
    const { done } = await reader.read();
    if (done) return;
  }
}

/** A JSON response written straight to `res` (host-generated answers: errors, readiness). */
export function sendJson(res, status, value, extraHeaders = {}) {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
    ...extraHeaders,
  });
  res.end(body);
}
