// Bridges Node's http objects and the Fetch API objects user code speaks.
//
// Bodies stream in both directions: a request body reaches `req.body` as the client sends it,
// and a response body whose ReadableStream produces chunks over time reaches the socket chunk
// by chunk. Nothing is buffered except where a dialect needs the whole body (Lambda).

import { Readable } from 'node:stream';
import { once } from 'node:events';
import { userHeaderPairs } from './control.mjs';
import { HostResponse, HostRequest, canDeferRequest } from './fetch.mjs';

const BODYLESS_METHODS = new Set(['GET', 'HEAD']);
const NULL_BODY_STATUSES = new Set([101, 103, 204, 205, 304]);

/**
 * A Fetch `Request` for the user's view of `req`: absolute public URL, no control headers,
 * the body streamed from the socket.
 *
 * `signal()` returns the AbortSignal that aborts when the client goes away. Where this Node
 * allows (fetch.mjs), the request is a HostRequest that builds undici's Request — and with it
 * the signal — only when something needs more than its method, URL and headers.
 */
export function toWebRequest(req, url, { extraHeaders = [], signal } = {}) {
  const headers = userHeaderPairs(req);
  if (extraHeaders.length > 0) {
    // The platform's headers replace what a client sent under the same names: a client must not
    // choose the IP address or request id a function sees.
    const names = new Set(extraHeaders.map(([name]) => name.toLowerCase()));
    const kept = headers.filter(([name]) => !names.has(name.toLowerCase()));
    headers.length = 0;
    headers.push(...kept, ...extraHeaders);
  }
  if (canDeferRequest(req.method)) return new HostRequest(url, req.method, headers, req, signal);
  const init = { method: req.method, headers };
  if (!BODYLESS_METHODS.has(req.method)) {
    init.body = Readable.toWeb(req);
    // Required by the Fetch spec for streaming request bodies.
    init.duplex = 'half';
  }
  if (signal) init.signal = signal();
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

// A body that is complete within the turn of the event loop that returned it (a string, bytes,
// a stream that enqueues everything at once) is sent in one write with a content-length, up to
// this many bytes; anything slower or larger streams as it is produced.
const ONE_WRITE_MAX_BYTES = 64 * 1024;
const TURN_OVER = Symbol('turn over');

/**
 * Writes a Fetch Response to `res`, streaming its body as produced.
 * Resolves when the body has been written or the client went away (then the body stream is
 * cancelled so a producer stops working for nobody).
 *
 * The body is read for as long as chunks keep arriving within the current turn of the event
 * loop. If it ends there, status line, headers and body leave in one write with a
 * content-length (the common case: `new Response(string)`); otherwise the headers and what
 * was read so far are sent once the turn is over, so a stream that waits before (or between)
 * chunks still lets the client see the status line and the chunks as they are produced.
 */
export async function sendWebResponse(res, response, method) {
  res.statusCode = response.status;
  if (response.statusText) res.statusMessage = response.statusText;
  const headers = response.headers;
  let cookies = null;
  for (const [name, value] of headers) {
    if (name === 'set-cookie') {
      cookies ??= typeof headers.getSetCookie === 'function' ? headers.getSetCookie() : [value];
      continue;
    }
    res.setHeader(name, value);
  }
  if (cookies !== null && cookies.length > 0) res.setHeader('set-cookie', cookies);

  // A HostResponse made from a string, bytes or nothing and untouched: write that, no stream.
  const kept = HostResponse.takeSource(response);
  if (kept !== undefined) {
    if (kept === null || method === 'HEAD' || isNullBodyStatus(response.status)) res.end();
    else if (!res.destroyed) endWith(res, kept, typeof kept === 'string' ? Buffer.byteLength(kept) : kept.byteLength);
    return;
  }
  const body = response.body;
  if (!body || method === 'HEAD' || isNullBodyStatus(response.status)) {
    if (body) await body.cancel().catch(() => {});
    res.end();
    return;
  }
  const source = completeBody(response, body);
  if (source !== undefined) {
    if (res.destroyed) return;
    endWith(res, source, typeof source === 'string' ? Buffer.byteLength(source) : source.byteLength);
    return;
  }
  const reader = body.getReader();
  const chunks = [];
  let size = 0;
  let turnOver = null;
  let pending;
  try {
    // Chunks available in this turn, bounded so a producer that never pauses cannot make the
    // host buffer without end.
    for (;;) {
      pending = reader.read();
      turnOver ??= new Promise((resolve) => setImmediate(resolve, TURN_OVER));
      const next = await Promise.race([pending, turnOver]);
      if (next === TURN_OVER) break;
      pending = undefined;
      if (next.done) {
        if (res.destroyed) return;
        endWith(res, chunks.length === 1 ? chunks[0] : concat(chunks, size), size);
        return;
      }
      const chunk = next.value;
      chunks.push(chunk);
      // Strings come from Node streams converted with Readable.toWeb (a Lambda stream body);
      // anything else that is not bytes is left for res.write to reject, as before.
      if (chunk instanceof Uint8Array) size += chunk.byteLength;
      else if (typeof chunk === 'string') size += Buffer.byteLength(chunk);
      else break;
      if (size > ONE_WRITE_MAX_BYTES) break;
    }
  } catch (err) {
    // As with a body that fails mid-stream: the status line and what was produced so far go
    // out, then the connection is cut (the status line is committed once the body starts).
    if (!res.destroyed && !res.headersSent) res.flushHeaders();
    startStreaming(res, chunks);
    res.destroy(err);
    throw err;
  }
  if (res.destroyed) {
    await reader.cancel().catch(() => {});
    return;
  }
  await streamRest(res, reader, chunks, pending);
}

/** The whole body is known: one write, with a content-length unless the function framed it. */
function endWith(res, data, size) {
  if (!res.hasHeader('content-length') && !res.hasHeader('transfer-encoding')) res.setHeader('content-length', size);
  // A string goes out in the same write as the headers without being copied into a buffer.
  if (size === 0) res.end();
  else res.end(data);
}

function concat(chunks, size) {
  return Buffer.concat(chunks.map((c) => (typeof c === 'string' ? Buffer.from(c) : c)), size);
}

/**
 * The key of the internal state of this Node's Response (undici), where a body made from a
 * string or bytes keeps that value (`source`) next to the stream it would produce; null
 * when Response is not built that way. Checked once, on probe Responses.
 */
export const RESPONSE_STATE = findResponseStateKey();

function findResponseStateKey() {
  try {
    const probe = new Response('probe');
    const key = Object.getOwnPropertySymbols(probe).find((s) => s.description === 'state');
    if (!key || probe[key]?.body?.source !== 'probe' || probe[key].body.stream !== probe.body) return null;
    const bytes = new Response(new Uint8Array([1, 2]));
    const source = bytes[key]?.body?.source;
    return source instanceof Uint8Array && source.length === 2 && source[1] === 2 ? key : null;
  } catch {
    return null;
  }
}

/**
 * The whole body of `response` when it was made from a string or bytes and nothing has
 * touched its stream: exactly the bytes the stream would produce, without reading it.
 * Undefined for anything else (a stream, a Blob, FormData, a used or locked body, a Response
 * from another implementation), which is then read through its stream.
 */
function completeBody(response, body) {
  if (RESPONSE_STATE === null || !(response instanceof Response)) return undefined;
  const state = response[RESPONSE_STATE]?.body;
  if (!state || state.stream !== body || body.locked || response.bodyUsed) return undefined;
  const { source } = state;
  return typeof source === 'string' || source instanceof Uint8Array ? source : undefined;
}

/** Sends the headers now, with the chunks read so far. */
function startStreaming(res, chunks) {
  if (res.destroyed) return;
  if (chunks.length === 0) {
    if (!res.headersSent) res.flushHeaders();
    return;
  }
  for (const chunk of chunks) res.write(chunk);
}

/** Sends the headers and `chunks`, then streams the rest; `pending` is a read in flight, if any. */
async function streamRest(res, reader, chunks, pending) {
  const clientGone = new Promise((resolve) => res.once('close', () => resolve(null)));
  try {
    startStreaming(res, chunks);
    for (;;) {
      const next = await Promise.race([pending ?? reader.read(), clientGone]);
      pending = undefined;
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
  if (HostResponse.takeSource(response) !== undefined) return;
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
